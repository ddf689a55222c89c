//! Durable watchdog state: per-clip delivery records, the per-camera rate limiter and the list
//! of suppressed events waiting to be summarised. Every write is atomic (temp + fsync + rename).

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::spool;

pub const DELIVERY_EXT: &str = "delivery";
pub const STATE_DIR: &str = ".watchdog";
pub const FAILED_DIR: &str = "failed";

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RecipientStatus {
    Pending,
    /// The server answered 250 to DATA.
    Accepted,
    /// Rejected permanently `permanent-attempts` times.
    Failed,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Recipient {
    pub status: RecipientStatus,
    /// Permanent (5xx) rejections so far.
    pub permanent_failures: u32,
    pub last_error: Option<String>,
    pub accepted_at: Option<DateTime<Utc>>,
    /// When the recipient was given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<DateTime<Utc>>,
}

/// A suppressed event, reported in the next email for its camera.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Suppressed {
    pub event_id: String,
    pub camera: String,
    pub event_time: DateTime<Utc>,
    pub peak_score: f32,
}

/// The first alert of an event (the still, sent at the decision), per recipient.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FirstAlert {
    pub message_id: String,
    pub recipients: BTreeMap<String, Recipient>,
}

/// Which of an event's emails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The first alert, with the still, as soon as the event is decided.
    First,
    /// The email with the clip (or why there is none): the only one with `alert.first = "none"`.
    Clip,
}

/// `<id>.delivery`: what has happened to one event's alerts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    /// The clip email's, reused for every attempt, so a resend after a crash is recognisably
    /// the same message.
    pub message_id: String,
    /// The first alert, when one is sent (`alert.first = "snapshot"` and the event was seen
    /// decided); the clip email replies to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<FirstAlert>,
    /// True when rate limiting suppressed this event (no email; it is summarised later).
    pub suppressed: bool,
    /// The clip email's outcome per recipient.
    pub recipients: BTreeMap<String, Recipient>,
    /// Earlier suppressed events this email reports.
    pub summary: Vec<Suppressed>,
    pub created_at: DateTime<Utc>,
}

fn pending_for(to: &[String]) -> BTreeMap<String, Recipient> {
    to.iter()
        .map(|r| {
            let pending = Recipient {
                status: RecipientStatus::Pending,
                permanent_failures: 0,
                last_error: None,
                accepted_at: None,
                failed_at: None,
            };
            (r.clone(), pending)
        })
        .collect()
}

fn all_done(r: &BTreeMap<String, Recipient>) -> bool {
    r.values().all(|r| r.status != RecipientStatus::Pending)
}

impl Delivery {
    /// `first`: the first alert's Message-ID, when one is to be sent.
    pub fn new(message_id: String, first: Option<String>, to: &[String], summary: Vec<Suppressed>) -> Self {
        Delivery {
            message_id,
            first: first.map(|message_id| FirstAlert { message_id, recipients: pending_for(to) }),
            suppressed: false,
            recipients: pending_for(to),
            summary,
            created_at: Utc::now(),
        }
    }

    pub fn suppressed(message_id: String) -> Self {
        Delivery {
            message_id,
            first: None,
            suppressed: true,
            recipients: BTreeMap::new(),
            summary: Vec::new(),
            created_at: Utc::now(),
        }
    }

    /// Every recipient has an outcome for every email (or the event was suppressed).
    pub fn finished(&self) -> bool {
        self.first_finished() && all_done(&self.recipients)
    }

    /// Every recipient has an outcome for the first alert (or there is none).
    pub fn first_finished(&self) -> bool {
        self.first.as_ref().is_none_or(|f| all_done(&f.recipients))
    }

    pub fn any_failed(&self) -> bool {
        let first = self.first.iter().flat_map(|f| f.recipients.values());
        first.chain(self.recipients.values()).any(|r| r.status == RecipientStatus::Failed)
    }

    /// The outcomes of one of the event's emails.
    pub fn part(&self, part: Part) -> Option<&BTreeMap<String, Recipient>> {
        match part {
            Part::First => self.first.as_ref().map(|f| &f.recipients),
            Part::Clip => Some(&self.recipients),
        }
    }

    pub fn part_mut(&mut self, part: Part) -> Option<&mut BTreeMap<String, Recipient>> {
        match part {
            Part::First => self.first.as_mut().map(|f| &mut f.recipients),
            Part::Clip => Some(&mut self.recipients),
        }
    }

    /// What `failed/<id>.reason` says: each recipient given up, for which email, with the
    /// server's code and text and the time.
    pub fn failure_report(&self) -> String {
        let mut out = String::from("a recipient rejected the alert permanently\n");
        for (part, name) in [(Part::First, "first alert"), (Part::Clip, "clip email")] {
            for (to, r) in self.part(part).into_iter().flatten() {
                if r.status == RecipientStatus::Failed {
                    let at = r.failed_at.map(|t| t.to_rfc3339()).unwrap_or_default();
                    let why = r.last_error.as_deref().unwrap_or("");
                    out.push_str(&format!("recipient: {to}\nemail: {name}\nreply: {why}\ntime: {at}\n"));
                }
            }
        }
        out
    }

    /// Gives every recipient that was given up another set of tries; true when there was one.
    pub fn reset_failed(&mut self) -> bool {
        let mut any = false;
        for part in [Part::First, Part::Clip] {
            for r in self.part_mut(part).into_iter().flat_map(|m| m.values_mut()) {
                if r.status == RecipientStatus::Failed {
                    r.status = RecipientStatus::Pending;
                    r.permanent_failures = 0;
                    r.failed_at = None;
                    any = true;
                }
            }
        }
        any
    }

    /// Recipients still waiting for `part`.
    pub fn pending(&self, part: Part) -> Vec<String> {
        self.part(part)
            .map(|r| r.iter().filter(|(_, r)| r.status == RecipientStatus::Pending).map(|(k, _)| k.clone()).collect())
            .unwrap_or_default()
    }

    pub fn path(spool: &Path, id: &str) -> PathBuf {
        spool.join(format!("{id}.{DELIVERY_EXT}"))
    }

    pub fn load(spool: &Path, id: &str) -> io::Result<Option<Delivery>> {
        match std::fs::read(Self::path(spool, id)) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, spool: &Path, id: &str) -> io::Result<()> {
        let data = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        spool::write_atomic(&Self::path(spool, id), &data)
    }
}

/// `.watchdog/lock`: held by the watchdog during each pass and by `watch --retry-failed` while it
/// moves files back, so neither sees the other's half-done work.
pub struct SpoolLock(std::fs::File);

impl SpoolLock {
    pub fn open(spool: &Path) -> io::Result<SpoolLock> {
        std::fs::create_dir_all(spool.join(STATE_DIR))?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(spool.join(STATE_DIR).join("lock"))?;
        Ok(SpoolLock(f))
    }

    /// Blocks until the lock is held; released when the guard is dropped. (The guard holds its
    /// own handle of the same open file, which is what flock locks.)
    pub fn lock(&self) -> io::Result<SpoolLockGuard> {
        let f = self.0.try_clone()?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
        Ok(SpoolLockGuard(f))
    }
}

pub struct SpoolLockGuard(std::fs::File);

impl Drop for SpoolLockGuard {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(&self.0, rustix::fs::FlockOperation::Unlock);
    }
}

/// Per-camera send history, for the minimum gap and the hourly cap.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Limiter {
    pub sent: BTreeMap<String, VecDeque<DateTime<Utc>>>,
    pub suppressed: Vec<Suppressed>,
}

impl Limiter {
    pub fn path(spool: &Path) -> PathBuf {
        spool.join(STATE_DIR).join("limiter.json")
    }

    pub fn load(spool: &Path) -> io::Result<Limiter> {
        match std::fs::read(Self::path(spool)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Limiter::default()),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, spool: &Path) -> io::Result<()> {
        std::fs::create_dir_all(spool.join(STATE_DIR))?;
        let data = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        spool::write_atomic(&Self::path(spool), &data)
    }

    /// Whether an alert for `camera` may go out at `now`.
    pub fn allows(&mut self, camera: &str, now: DateTime<Utc>, min_gap: Duration, max_per_hour: u32) -> bool {
        let hist = self.sent.entry(camera.to_string()).or_default();
        let hour_ago = now - chrono::Duration::hours(1);
        while hist.front().is_some_and(|t| *t < hour_ago) {
            hist.pop_front();
        }
        let gap_ok =
            hist.back().is_none_or(|last| now - *last >= chrono::Duration::from_std(min_gap).unwrap_or_default());
        gap_ok && (hist.len() as u32) < max_per_hour
    }

    pub fn record(&mut self, camera: &str, now: DateTime<Utc>) {
        self.sent.entry(camera.to_string()).or_default().push_back(now);
    }

    /// Takes the suppressed events of `camera` for the next email.
    pub fn take_suppressed(&mut self, camera: &str) -> Vec<Suppressed> {
        let (mine, rest): (Vec<_>, Vec<_>) = self.suppressed.drain(..).partition(|s| s.camera == camera);
        self.suppressed = rest;
        mine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_enforces_gap_and_hourly_cap_per_camera() {
        let mut l = Limiter::default();
        let t0 = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(20000);
        let gap = Duration::from_secs(10);
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        assert!(l.allows("a", at(0), gap, 3));
        l.record("a", at(0));
        assert!(!l.allows("a", at(5), gap, 3), "inside the gap");
        assert!(l.allows("b", at(5), gap, 3), "other camera");
        l.record("a", at(10));
        l.record("a", at(20));
        assert!(!l.allows("a", at(40), gap, 3), "cap of 3 per hour");
        assert!(l.allows("a", at(3601), gap, 3), "first send aged out");
    }

    #[test]
    fn delivery_round_trips_and_reports_completion() {
        let d = tempfile::tempdir().unwrap();
        let mut del = Delivery::new("<m@x>".into(), Some("<f@x>".into()), &["a@x".into(), "b@x".into()], vec![]);
        assert!(!del.finished());
        assert_eq!(del.pending(Part::First), vec!["a@x".to_string(), "b@x".to_string()]);
        del.recipients.get_mut("a@x").unwrap().status = RecipientStatus::Accepted;
        del.recipients.get_mut("b@x").unwrap().status = RecipientStatus::Failed;
        assert!(!del.finished(), "the first alert is still pending");
        for r in del.part_mut(Part::First).unwrap().values_mut() {
            r.status = RecipientStatus::Accepted;
        }
        del.save(d.path(), "id1").unwrap();
        let back = Delivery::load(d.path(), "id1").unwrap().unwrap();
        assert_eq!(back, del);
        assert!(back.finished() && back.any_failed() && back.pending(Part::First).is_empty());
        assert!(Delivery::load(d.path(), "nope").unwrap().is_none());
        // A record written before first alerts existed reads as one without a first alert.
        let old = r#"{"message_id":"<m@x>","suppressed":false,"recipients":{},"summary":[],"created_at":"2026-01-01T00:00:00Z"}"#;
        let old: Delivery = serde_json::from_str(old).unwrap();
        assert!(old.first.is_none() && old.finished());
    }
}
