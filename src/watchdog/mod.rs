//! The watchdog role (`edgewatch watch`): turns each finished clip in the spool into an alert
//! email, exactly once as seen by the recipient, and deletes the clip only once it is delivered
//! and archived.
//!
//! Per clip, state lives next to it in the spool (`<id>.delivery`, see [`state`]):
//! ```text
//! sidecar appears ─▶ rate limit? ─▶ suppressed (summarised in the next email) ──┐
//!                          │                                                     ▼
//!                          └─▶ pending ─▶ send to each recipient ─▶ accepted ─▶ archived? ─▶ delete
//!                                            └─ 5xx × permanent-attempts ─▶ failed/ (kept)
//! ```
//! A crash before SMTP acceptance resends; a crash after the acceptance was recorded does not.
//! The one window SMTP cannot close (accepted, not yet recorded) resends with the same
//! Message-ID, which mail clients treat as the same message.

pub mod mail;
pub mod state;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use notify::event::{AccessKind, AccessMode, EventKind};
use notify::Watcher;
use prometheus_client::registry::Registry;
use rand::Rng;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, FirstAlert, Location, WatchMode};
use crate::fault::crash_point;
use crate::s3::S3Client;
use crate::spool::{self, Archived, ClipPaths, EventRecord, Sidecar};
use crate::telemetry::{self, ClassLabel, Health, ModeLabel, WatchdogMetrics};
use mail::{Alert, Mailer, SendError};
use state::{Delivery, Limiter, Part, RecipientStatus, Suppressed, FAILED_DIR};

/// Recipients used in outbox mode when none are configured.
const OUTBOX_DEFAULT_TO: &str = "operator@localhost";
/// Safety rescan even when inotify works (a missed event must not strand a clip).
const RESCAN: Duration = Duration::from_secs(60);
/// First retry after the relay refused the configuration (capped by `watch.retry-max`).
const CONFIG_RETRY: Duration = Duration::from_secs(30);

/// What a watchdog run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Emails accepted (one per recipient).
    pub sent: u64,
    pub failed: u64,
    pub suppressed: u64,
    pub deleted: u64,
}

pub struct Running {
    pub http_addr: SocketAddr,
    handle: tokio::task::JoinHandle<anyhow::Result<Summary>>,
}

impl Running {
    pub async fn wait(self) -> anyhow::Result<Summary> {
        self.handle.await.context("watchdog task panicked")?
    }
}

pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<Summary> {
    start(cfg, shutdown).await?.wait().await
}

pub async fn start(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let mut registry = Registry::with_prefix("edgewatch");
    telemetry::register_build_info(&mut registry);
    let metrics = WatchdogMetrics::register(&mut registry);
    let health = Health::new(cfg.http.stale_after, false);
    let (http_addr, _http) = telemetry::serve(cfg.http.listen, Arc::new(registry), health.clone(), shutdown.clone())
        .await
        .with_context(|| format!("binding the metrics endpoint {}", cfg.http.listen))?;
    tracing::info!(addr = %http_addr, "serving /metrics, /healthz and /readyz");
    let mailer = Mailer::new(&cfg.smtp).context("setting up the mail transport")?;
    let s3 = match cfg.archive_location() {
        Some(Location::S3 { .. }) => Some(S3Client::new(&cfg.s3).await),
        _ => None,
    };
    let spool_dir = cfg.clip.spool_dir.clone();
    std::fs::create_dir_all(spool_dir.join(FAILED_DIR))
        .with_context(|| format!("creating {}", spool_dir.join(FAILED_DIR).display()))?;
    let limiter = match Limiter::load(&spool_dir) {
        // Written atomically, so only damage from outside gets here. Starting the limits afresh
        // may let one extra alert through; refusing to start would send none, restart after restart.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            tracing::error!(path = %Limiter::path(&spool_dir).display(), error = %e, "the rate limiter's state is corrupt; starting its limits afresh");
            Limiter::default()
        }
        other => other.context("reading the watchdog's rate-limit state")?,
    };
    let lock = state::SpoolLock::open(&spool_dir).context("opening the watchdog's lock file")?;
    let wd = Watchdog {
        to: if cfg.smtp.to.is_empty() && cfg.smtp.host.is_empty() {
            vec![OUTBOX_DEFAULT_TO.to_string()]
        } else {
            cfg.smtp.to.clone()
        },
        require_archive: cfg.require_archive(),
        cfg,
        spool: spool_dir,
        mailer,
        s3,
        metrics,
        limiter,
        retry: HashMap::new(),
        delivered: HashSet::new(),
        relay_down: false,
        relay_back: false,
        relay_suspect: false,
        summary: Summary::default(),
        logged: HashSet::new(),
        over_limit_logged: None,
        config_problem: None,
        health,
        lock,
        decided: Arc::default(),
        unsaved: HashMap::new(),
        limiter_unsaved: false,
    };
    let handle = tokio::spawn(wd.run(shutdown));
    Ok(Running { http_addr, handle })
}

struct Watchdog {
    cfg: Config,
    to: Vec<String>,
    require_archive: bool,
    spool: PathBuf,
    mailer: Mailer,
    s3: Option<S3Client>,
    metrics: WatchdogMetrics,
    limiter: Limiter,
    /// Clips in backoff.
    retry: HashMap<String, Backoff>,
    /// Clips whose alert is delivered (or suppressed and summarised) and which wait only for
    /// their archive marker or are kept: a pass checks the marker instead of re-reading them.
    delivered: HashSet<String>,
    /// Set by a network failure during a pass: the relay is down, so the rest of the pass does
    /// not try it again (with a black-holed link each try would wait out the connect timeout).
    relay_down: bool,
    /// Set when the relay answered again: clips waiting on it are retried at once.
    relay_back: bool,
    /// The last attempt found the relay unreachable: probe it before building the next message.
    relay_suspect: bool,
    summary: Summary,
    /// Ids already logged as waiting (for the archive), to log once.
    logged: HashSet<String>,
    over_limit_logged: Option<Instant>,
    /// The relay refuses our configuration (credentials, TLS): logged and shown in /readyz once
    /// per change, cleared when an email is accepted again.
    config_problem: Option<String>,
    health: Arc<Health>,
    /// Held during each pass, so `watch --retry-failed` never moves files under a pass.
    lock: state::SpoolLock,
    /// Set by the watcher when an event record appears (open events go first, even mid-pass).
    decided: Arc<std::sync::atomic::AtomicBool>,
    /// Delivery states the full spool could not take (ENOSPC), kept here and written once space
    /// frees: delivering and deleting is what frees it, so a full spool must not stop them.
    unsaved: HashMap<String, Delivery>,
    /// The limiter's state could not be written (ENOSPC); written again each pass.
    limiter_unsaved: bool,
}

fn remove_if_exists(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A clip waiting to be tried again.
struct Backoff {
    due: Instant,
    delay: Duration,
    /// Waiting on the SMTP relay (network or 4xx), rather than on a local problem or a 5xx.
    relay: bool,
}

/// `edgewatch watch --retry-failed [ID]`: puts events from `failed/` back into the spool with
/// the recipients that were given up reset, for the running watchdog (or the next one) to send.
/// Holds the spool lock, so a running watchdog never sees the files half moved.
pub fn retry_failed(cfg: &Config, only: Option<&str>) -> anyhow::Result<Vec<String>> {
    let spool_dir = &cfg.clip.spool_dir;
    let failed = spool_dir.join(FAILED_DIR);
    let lock = state::SpoolLock::open(spool_dir).context("opening the watchdog's lock file")?;
    let _held = lock.lock().context("taking the spool lock")?;
    let mut ids = spool::events(&failed).with_context(|| format!("reading {}", failed.display()))?;
    if let Some(want) = only {
        ids.retain(|id| id == want);
        anyhow::ensure!(!ids.is_empty(), "no event {want} in {}", failed.display());
    }
    for id in &ids {
        if let Some(mut d) = Delivery::load(&failed, id)? {
            d.reset_failed();
            d.save(&failed, id)?;
        }
        for f in clip_files(&failed, id) {
            let to = spool_dir.join(f.file_name().expect("clip files have names"));
            rename_if_exists(&f, &to).with_context(|| format!("moving {} back", f.display()))?;
        }
        remove_if_exists(&failed.join(format!("{id}.reason")))?;
        spool::sync_dir(spool_dir)?;
        spool::sync_dir(&failed)?;
        tracing::info!(event_id = %id, "put back from failed/ for another try");
    }
    Ok(ids)
}

/// The files of one event in deletion/move order: the data, the record, the sidecar, then the
/// archive marker and the delivery. An interrupted delete leaves either a sidecar with its marker,
/// which is settled again, or an orphaned delivery, which [`Watchdog::clean_orphans`] finishes.
/// (With the marker gone before the sidecar, a restart waited for an archive that could never
/// come: the clip it would upload was already deleted.)
fn clip_files(spool: &Path, id: &str) -> Vec<PathBuf> {
    let p = ClipPaths::new(spool, id);
    vec![p.clip, p.still, p.event, p.sidecar, p.archived, Delivery::path(spool, id)]
}

/// The event as its sidecar tells it, for a first alert whose record is gone.
fn record_of(s: &Sidecar) -> EventRecord {
    EventRecord {
        event_id: s.event_id.clone(),
        node: s.node.clone(),
        camera: s.camera.clone(),
        event_time: s.event_time,
        media_time: 0.0,
        decided_at: s.event_time,
        score: s.peak_score,
        threshold: s.threshold,
        model_name: s.model_name.clone(),
        model_sha256: s.model_sha256.clone(),
        still_file: s.still_file.clone(),
    }
}

impl Watchdog {
    async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<Summary> {
        let (kick_tx, mut kick_rx) = mpsc::channel::<()>(1);
        let watcher = self.start_watcher(kick_tx)?;
        let idle = if watcher.is_some() { RESCAN } else { self.cfg.watch.poll_interval };
        self.health.set_initialised();
        loop {
            let next_retry = self.pass().await;
            let wait = next_retry.map_or(idle, |d| d.min(idle));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                // `Some`: in poll mode there is no watcher and the channel is closed; a closed
                // channel must not wake the loop (it would spin).
                Some(_) = kick_rx.recv() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        drop(watcher);
        Ok(self.summary)
    }

    /// inotify (through notify) on the spool; `None` means polling.
    fn start_watcher(&self, kick: mpsc::Sender<()>) -> anyhow::Result<Option<notify::RecommendedWatcher>> {
        let decided = self.decided.clone();
        let mode = self.cfg.watch.mode;
        let label = |m: &'static str| self.metrics.watch_mode.get_or_create(&ModeLabel { mode: m }).set(1);
        if mode == WatchMode::Poll {
            label("poll");
            return Ok(None);
        }
        let handler = move |res: notify::Result<notify::Event>| {
            // The kernel's queue overflowed (IN_Q_OVERFLOW, a Rescan event with no paths) or the
            // watch reported an error: any file may have been missed, so a full pass now, not at
            // the next periodic rescan; it may have been a decision.
            if res.as_ref().map_or(true, |ev| ev.need_rescan()) {
                decided.store(true, std::sync::atomic::Ordering::Release);
                let _ = kick.try_send(());
                return;
            }
            // Only the detector's final renames matter: the event record, the sidecar and the
            // archive marker.
            if let Ok(ev) = res {
                // notify also reports opens (IN_OPEN): our own reads of sidecars and markers
                // would wake the loop again, which then reads them again, forever.
                if matches!(ev.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write)) {
                    return;
                }
                let ext = |p: &std::path::PathBuf| p.extension().and_then(|e| e.to_str()).map(str::to_string);
                let exts: Vec<String> = ev.paths.iter().filter_map(ext).collect();
                if exts.iter().any(|e| e == spool::EVENT_EXT) {
                    // A new decision: the pass under way cuts short its clip emails for it.
                    decided.store(true, std::sync::atomic::Ordering::Release);
                }
                if exts
                    .iter()
                    .any(|e| [spool::EVENT_EXT, spool::SIDECAR_EXT, spool::ARCHIVED_EXT].contains(&e.as_str()))
                {
                    let _ = kick.try_send(());
                }
            }
        };
        let attempt = notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(&self.spool, notify::RecursiveMode::NonRecursive)?;
            Ok(w)
        });
        match attempt {
            Ok(w) => {
                label("inotify");
                tracing::info!(spool = %self.spool.display(), "watching the spool with inotify");
                Ok(Some(w))
            }
            Err(e) if mode == WatchMode::Auto => {
                label("poll");
                tracing::warn!(error = %e, interval = ?self.cfg.watch.poll_interval, "inotify unavailable; polling the spool");
                Ok(None)
            }
            Err(e) => Err(anyhow::anyhow!("watching {} with inotify: {e}", self.spool.display())),
        }
    }

    /// One reconcile pass over the spool. Returns the time until the next retry is due.
    async fn pass(&mut self) -> Option<Duration> {
        let _locked = match self.lock.lock() {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the spool lock; passing without it");
                None
            }
        };
        let ids = match spool::events(&self.spool) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(spool = %self.spool.display(), error = %e, "cannot read the spool");
                return Some(self.cfg.watch.retry_max.min(Duration::from_secs(10)));
            }
        };
        self.metrics.spool_scans.inc();
        self.clean_orphans(&ids);
        self.delivered.retain(|id| ids.contains(id));
        // Gone from the spool (delivered, or moved to failed/): nothing left to write.
        self.unsaved.retain(|id, _| ids.contains(id));
        self.flush_unsaved();
        let now = Instant::now();
        self.relay_down = false;
        // Events still open first: their first alert is the one that must leave at once.
        let open: Vec<&String> = ids.iter().filter(|id| !ClipPaths::new(&self.spool, id).sidecar.exists()).collect();
        let closed = ids.iter().filter(|id| !open.contains(id));
        self.decided.store(false, std::sync::atomic::Ordering::Release);
        for id in open.iter().copied().chain(closed) {
            // A decision while clip emails go out: its first alert must not wait behind them.
            if !open.contains(&id) && self.decided.load(std::sync::atomic::Ordering::Acquire) {
                self.relay_back = true; // the next pass starts at once
                break;
            }
            if self.retry.get(id).is_some_and(|b| b.due > now) {
                continue;
            }
            if let Err(e) = self.process(id).await {
                tracing::error!(event_id = %id, error = %format!("{e:#}"), "cannot process clip; will retry");
                self.backoff(id, false);
            }
        }
        self.update_gauges(&ids);
        self.enforce_limits(&ids);
        self.retry.retain(|id, _| ids.contains(id));
        if std::mem::take(&mut self.relay_back) {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        self.retry.values().map(|b| b.due.saturating_duration_since(now)).min()
    }

    fn backoff(&mut self, id: &str, relay: bool) -> Duration {
        self.backoff_from(id, relay, self.cfg.watch.retry_min)
    }

    /// Backoff starting at `first` (capped by `watch.retry-max`), doubling per retry.
    fn backoff_from(&mut self, id: &str, relay: bool, first: Duration) -> Duration {
        let w = &self.cfg.watch;
        let first = first.max(w.retry_min).min(w.retry_max);
        let delay = self.retry.get(id).map_or(first, |b| (b.delay * 2).max(first).min(w.retry_max));
        // Jitter keeps a fleet from hammering a relay that comes back.
        let wait = Duration::from_secs_f64(rand::rng().random_range(0.5..=1.0) * delay.as_secs_f64());
        self.retry.insert(id.to_string(), Backoff { due: Instant::now() + wait, delay, relay });
        wait
    }

    fn message_id(&self, id: &str) -> String {
        format!("<{id}.{}@edgewatch>", self.cfg.node)
    }

    fn first_message_id(&self, id: &str) -> String {
        format!("<{id}.first.{}@edgewatch>", self.cfg.node)
    }

    /// A fresh delivery state for `id`: the first alert too when the event was decided (it has a
    /// record) and `alert.first` asks for one.
    fn new_delivery(&self, id: &str, decided: bool, summary: Vec<Suppressed>) -> Delivery {
        let first = (decided && self.cfg.alert.first == FirstAlert::Snapshot).then(|| self.first_message_id(id));
        Delivery::new(self.message_id(id), first, &self.to, summary)
    }

    async fn process(&mut self, id: &str) -> anyhow::Result<()> {
        if self.delivered.contains(id) {
            return self.settle(id);
        }
        let paths = ClipPaths::new(&self.spool, id);
        let record = match spool::read_event(&paths.event) {
            Ok(r) => Some(r),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::error!(event_id = %id, error = %e, "unreadable event record; moving the event to failed/");
                return self.move_to_failed(id, &format!("unreadable event record: {e}"));
            }
        };
        let sidecar = match spool::read_sidecar(&paths.sidecar) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::error!(event_id = %id, error = %e, "unreadable sidecar; moving the event to failed/");
                return self.move_to_failed(id, &format!("unreadable sidecar: {e}"));
            }
        };
        let (camera, event_time, score) = match (&record, &sidecar) {
            (Some(r), _) => (r.camera.clone(), r.event_time, r.score),
            (None, Some(s)) => (s.camera.clone(), s.event_time, s.peak_score),
            (None, None) => return Ok(()), // deleted meanwhile
        };
        let stored = match self.unsaved.get(id) {
            Some(d) => Some(d.clone()),
            None => match Delivery::load(&self.spool, id) {
                // Written atomically, so only damage from outside gets here. Started again, past
                // the rate limit (the event was admitted once): the same Message-IDs, so a
                // recipient who has it sees one message; failing the pass forever would send none.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    tracing::error!(event_id = %id, error = %e, "corrupt delivery state; delivering the event again");
                    let del = self.new_delivery(id, record.is_some(), Default::default());
                    self.persist(id, &del)?;
                    Some(del)
                }
                other => other?,
            },
        };
        let mut del = match stored {
            Some(d) => d,
            None => self.admit(id, &camera, event_time, score, record.is_some())?,
        };
        if !del.finished() {
            self.deliver(id, record.as_ref(), sidecar.as_ref(), &mut del).await?;
        }
        // Until the sidecar is there the detector is still writing the event: nothing to settle.
        if sidecar.is_none() || !del.finished() {
            return Ok(());
        }
        if del.any_failed() {
            // Archived first: the archiver reads the clip from the spool, and once it is in
            // failed/ it would drop the event as gone, so the evidence would never reach S3.
            if self.require_archive && !ClipPaths::new(&self.spool, id).archived.exists() {
                if self.logged.insert(format!("{id}/failed")) {
                    tracing::error!(event_id = %id, reason = %del.failure_report(), "delivery failed for good; kept in the spool until archived, then moved to failed/");
                }
                return Ok(());
            }
            return self.move_to_failed(id, &del.failure_report());
        }
        self.delivered.insert(id.to_string());
        self.settle(id)
    }

    /// Writes an event's delivery state. A full spool (ENOSPC) keeps it in memory instead, and the
    /// pass goes on: the email goes out and the delivered event is deleted, which is what frees
    /// the spool. Until it is written, a crash could send that event's email a second time (never
    /// zero times); said once per event in the log.
    fn persist(&mut self, id: &str, del: &Delivery) -> anyhow::Result<()> {
        match del.save(&self.spool, id) {
            Ok(()) => {
                self.unsaved.remove(id);
                Ok(())
            }
            Err(e) if spool::is_no_space(&e) => {
                if self.unsaved.insert(id.to_string(), del.clone()).is_none() {
                    tracing::warn!(event_id = %id, error = %e, "spool full: this event's delivery state is kept in memory until space frees; a crash meanwhile may send its email twice, never not at all");
                }
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("saving the delivery state of {id}")),
        }
    }

    /// [`Watchdog::persist`] for the rate limiter's state.
    fn persist_limiter(&mut self) -> anyhow::Result<()> {
        match self.limiter.save(&self.spool) {
            Ok(()) => {
                self.limiter_unsaved = false;
                Ok(())
            }
            Err(e) if spool::is_no_space(&e) => {
                if !std::mem::replace(&mut self.limiter_unsaved, true) {
                    tracing::warn!(error = %e, "spool full: the rate limiter's state is kept in memory until space frees");
                }
                Ok(())
            }
            Err(e) => Err(e).context("saving the rate limiter's state"),
        }
    }

    /// Writes what a full spool could not take, now that there may be room.
    fn flush_unsaved(&mut self) {
        for (id, del) in std::mem::take(&mut self.unsaved) {
            if let Err(e) = del.save(&self.spool, &id) {
                // Still full (said once already) or failing otherwise: kept, tried next pass.
                if !spool::is_no_space(&e) {
                    tracing::warn!(event_id = %id, error = %e, "cannot write the delivery state kept in memory");
                }
                self.unsaved.insert(id, del);
            }
        }
        if self.limiter_unsaved {
            if let Err(e) = self.persist_limiter() {
                tracing::warn!(error = %format!("{e:#}"), "cannot write the rate limiter's state kept in memory");
            }
        }
    }

    /// A delivered clip: deleted once it is archived too (unless clips are kept).
    fn settle(&mut self, id: &str) -> anyhow::Result<()> {
        if self.require_archive && !ClipPaths::new(&self.spool, id).archived.exists() {
            if self.logged.insert(id.to_string()) {
                tracing::info!(event_id = %id, "delivered; waiting for the archive before deleting");
            }
            return Ok(());
        }
        if !self.cfg.watch.keep_delivered {
            self.delete(id)?;
        }
        Ok(())
    }

    /// First sight of an event (its record, or a sidecar from a detector that writes none):
    /// rate-limit it, then record its delivery state. Limits count events, not emails.
    fn admit(
        &mut self,
        id: &str,
        camera: &str,
        event_time: chrono::DateTime<Utc>,
        score: f32,
        decided: bool,
    ) -> anyhow::Result<Delivery> {
        let now = Utc::now();
        let w = &self.cfg.watch;
        if self.limiter.allows(camera, now, w.min_gap, w.max_per_hour) {
            let summary = self.limiter.take_suppressed(camera);
            let del = self.new_delivery(id, decided, summary);
            // Delivery first: a crash before the limiter is saved lists the summary twice, never zero times.
            self.persist(id, &del)?;
            self.limiter.record(camera, now);
            self.persist_limiter()?;
            Ok(del)
        } else {
            self.limiter.suppressed.push(Suppressed {
                event_id: id.to_string(),
                camera: camera.to_string(),
                event_time,
                peak_score: score,
            });
            // Limiter first: a crash before the delivery is saved re-admits the event, never loses it.
            self.persist_limiter()?;
            let del = Delivery::suppressed(self.message_id(id));
            self.persist(id, &del)?;
            self.metrics.alerts_suppressed.inc();
            self.summary.suppressed += 1;
            tracing::info!(event_id = %id, camera = %camera, "alert suppressed by the rate limit; it will be summarised in the next email");
            Ok(del)
        }
    }

    /// Whether to go on with this event now: false when the relay is known to be down (the
    /// event is put in backoff with the others).
    async fn relay_ready(&mut self, id: &str) -> bool {
        if self.relay_down {
            // Another event just found the relay unreachable in this pass: wait with it.
            self.backoff(id, true);
            return false;
        }
        if self.relay_suspect {
            match self.mailer.reachable().await {
                Err(e) if e.is_config() => {
                    self.metrics.smtp_errors.get_or_create(&ClassLabel { class: e.class() }).inc();
                    self.config_error(id, &e);
                    return false;
                }
                Err(e @ (SendError::Network(_) | SendError::Temporary(_))) => {
                    self.metrics.smtp_errors.get_or_create(&ClassLabel { class: e.class() }).inc();
                    self.relay_down |= matches!(e, SendError::Network(_));
                    let wait = self.backoff(id, true);
                    tracing::warn!(event_id = %id, error = %e, retry_in = ?wait, "SMTP relay still unreachable; will retry");
                    return false;
                }
                // It answers (or refuses for good, which the send below classifies and counts).
                _ => self.relay_suspect = false,
            }
        }
        true
    }

    async fn deliver(
        &mut self,
        id: &str,
        record: Option<&EventRecord>,
        sidecar: Option<&Sidecar>,
        del: &mut Delivery,
    ) -> anyhow::Result<()> {
        let paths = ClipPaths::new(&self.spool, id);
        // The first alert, from the record (or, were it gone, from the sidecar's copy of it).
        let first_pending = del.pending(Part::First);
        if !first_pending.is_empty() {
            let Some(r) = record.cloned().or_else(|| sidecar.map(record_of)) else { return Ok(()) };
            if !self.relay_ready(id).await {
                return Ok(());
            }
            let still = std::fs::read(&paths.still).ok();
            let message_id = del.first.as_ref().map(|f| f.message_id.clone()).expect("pending first alert");
            for to in &first_pending {
                let msg = mail::first(&self.cfg.smtp, to, &r, &message_id, still.as_deref(), &del.summary);
                let decided = r.decided_at;
                let observe = move |m: &WatchdogMetrics| {
                    if let Ok(t) = (Utc::now() - decided).to_std() {
                        m.first_latency_seconds.observe(t.as_secs_f64());
                    }
                };
                if !self.send(id, del, Part::First, to, msg, observe).await? {
                    return Ok(());
                }
            }
        }
        let Some(s) = sidecar else { return Ok(()) };
        let pending = del.pending(Part::Clip);
        if pending.is_empty() {
            return Ok(());
        }
        let has_clip = s.clip_missing.is_none();
        let archived: Option<Archived> =
            std::fs::read(&paths.archived).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let attach = has_clip && s.clip_bytes <= self.cfg.smtp.max_attachment.as_u64();
        let link = match (&archived, attach) {
            _ if !has_clip => None,
            (Some(a), false) => Some(self.link(&a.clip_url).await),
            (Some(a), true) => Some(a.clip_url.clone()),
            (None, true) => None,
            // No archive to wait for, or one that could only write an empty marker (a full
            // spool): the email says the clip is too large and has no link, rather than never going.
            (None, false) if !self.require_archive || paths.archived.exists() => None,
            (None, false) => {
                // Too big to attach and nothing to link to yet: the archive marker will wake us.
                if self.logged.insert(format!("{id}/link")) {
                    tracing::info!(event_id = %id, bytes = s.clip_bytes, "clip over smtp.max-attachment; waiting for the archive to link it");
                }
                return Ok(());
            }
        };
        if first_pending.is_empty() && !self.relay_ready(id).await {
            return Ok(());
        }
        // Encoded once here, whatever the number of recipients.
        let clip = if attach {
            Some(mail::base64_body(&std::fs::read(&paths.clip).context("reading the clip")?))
        } else {
            None
        };
        let still = std::fs::read(&paths.still).ok();
        let finalised = std::fs::metadata(&paths.sidecar).and_then(|m| m.modified()).ok();
        // The clip email threads under the first alert, with its subject.
        let reply_to = del.first.as_ref().map(|f| {
            let r = record.cloned().unwrap_or_else(|| record_of(s));
            (f.message_id.clone(), mail::subject(&self.cfg.smtp.subject, &(&r).into()))
        });
        for to in pending {
            let alert = Alert {
                sidecar: s,
                message_id: &del.message_id,
                clip: clip.clone(),
                still: still.clone(),
                link: link.clone(),
                summary: if del.first.is_some() { &[] } else { &del.summary },
                reply_to: reply_to.as_ref().map(|(m, subj)| (m.as_str(), subj.clone())),
            };
            let msg = mail::build(&self.cfg.smtp, &to, &alert);
            let observe = |m: &WatchdogMetrics| {
                if let Some(t) = finalised.and_then(|f| f.elapsed().ok()) {
                    m.latency_seconds.observe(t.as_secs_f64());
                }
            };
            if !self.send(id, del, Part::Clip, &to, msg, observe).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Sends one of an event's emails to one recipient and records the outcome. False when the
    /// relay failed (the event is in backoff; the other recipients wait with it).
    async fn send(
        &mut self,
        id: &str,
        del: &mut Delivery,
        part: Part,
        to: &str,
        msg: Result<lettre::Message, SendError>,
        on_accept: impl FnOnce(&WatchdogMetrics),
    ) -> anyhow::Result<bool> {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                let r = del.part_mut(part).and_then(|r| r.get_mut(to)).expect("a pending recipient");
                r.status = RecipientStatus::Failed;
                r.last_error = Some(e.to_string());
                r.failed_at = Some(Utc::now());
                self.persist(id, del)?;
                self.metrics.alerts_failed.inc();
                self.summary.failed += 1;
                tracing::error!(event_id = %id, recipient = %to, error = %e, "cannot build the alert");
                return Ok(true);
            }
        };
        crash_point("before-send");
        match self.mailer.send(msg).await {
            Ok(()) => {
                crash_point("after-accept");
                let r = del.part_mut(part).and_then(|r| r.get_mut(to)).expect("a pending recipient");
                r.status = RecipientStatus::Accepted;
                r.accepted_at = Some(Utc::now());
                self.persist(id, del)?;
                crash_point("after-record");
                self.metrics.alerts_sent.inc();
                self.summary.sent += 1;
                on_accept(&self.metrics);
                if let Some(was) = self.config_problem.take() {
                    self.health.set_condition("smtp", None);
                    tracing::info!(was = %was, "the SMTP relay accepts the configuration again; sending what was queued");
                }
                self.retry.remove(id);
                self.relay_suspect = false;
                // The relay is back: whatever waited on it goes now, not after its backoff
                // (up to `retry-max`) runs out.
                let before = self.retry.len();
                self.retry.retain(|_, b| !b.relay);
                self.relay_back |= self.retry.len() < before;
                let what = match part {
                    Part::First => "first alert",
                    Part::Clip => "alert",
                };
                tracing::info!(event_id = %id, recipient = %to, summarised = del.summary.len(), "{what} accepted");
                Ok(true)
            }
            Err(e) => {
                self.metrics.smtp_errors.get_or_create(&ClassLabel { class: e.class() }).inc();
                if e.is_config() {
                    // Not the recipient's verdict: nothing is counted against the alert.
                    self.config_error(id, &e);
                    return Ok(false);
                }
                if let SendError::Permanent(_) | SendError::Build(_) = e {
                    let limit = self.cfg.watch.permanent_attempts;
                    let r = del.part_mut(part).and_then(|r| r.get_mut(to)).expect("a pending recipient");
                    r.permanent_failures += 1;
                    r.last_error = Some(e.to_string());
                    let gave_up = r.permanent_failures >= limit;
                    if gave_up {
                        r.status = RecipientStatus::Failed;
                        r.failed_at = Some(Utc::now());
                        self.metrics.alerts_failed.inc();
                        self.summary.failed += 1;
                        tracing::error!(event_id = %id, recipient = %to, error = %e, tries = limit, "recipient rejected the alert permanently; giving up on it");
                    }
                    self.persist(id, del)?;
                    if gave_up {
                        return Ok(true);
                    }
                }
                self.relay_down |= matches!(e, SendError::Network(_));
                self.relay_suspect |= matches!(e, SendError::Network(_));
                let wait = self.backoff(id, matches!(e, SendError::Network(_) | SendError::Temporary(_)));
                tracing::warn!(event_id = %id, recipient = %to, error = %e, retry_in = ?wait, "alert not delivered; will retry");
                // The relay is likely down for every recipient: try them all later.
                Ok(false)
            }
        }
    }

    /// The relay refuses our configuration: the event waits (slowly: no retry fixes this until
    /// an operator does), the rest of the pass with it, and the state is logged and shown in
    /// `/readyz` once per change, not once per retry.
    fn config_error(&mut self, id: &str, e: &SendError) {
        let state = e.to_string();
        if self.config_problem.as_deref() != Some(state.as_str()) {
            tracing::error!(class = e.class(), error = %state,
                "the SMTP relay refuses edgewatch's configuration; alerts stay queued until it is fixed (then restart the watchdog)");
            self.health.set_condition("smtp", Some(format!("SMTP {} error: {state}", e.class())));
            self.config_problem = Some(state);
        }
        self.relay_down = true;
        let wait = self.backoff_from(id, true, CONFIG_RETRY);
        tracing::debug!(event_id = %id, retry_in = ?wait, "alert waits for the SMTP configuration to be fixed");
    }

    /// A presigned URL for `s3://bucket/key`, or the location as it is.
    async fn link(&self, url: &str) -> String {
        if let (Some(s3), Ok(Location::S3 { bucket, prefix })) = (&self.s3, Location::parse(url)) {
            match s3.presign_get(&bucket, &prefix, self.cfg.smtp.link_expiry).await {
                Ok(u) => return u,
                Err(e) => tracing::warn!(url, error = %e, "cannot presign the clip URL; sending the plain location"),
            }
        }
        url.to_string()
    }

    fn delete(&mut self, id: &str) -> anyhow::Result<()> {
        for (i, f) in clip_files(&self.spool, id).iter().enumerate() {
            remove_if_exists(f).with_context(|| format!("deleting {}", f.display()))?;
            match i {
                0 => crash_point("mid-delete"),
                // The clip and the record gone, the sidecar not yet.
                2 => crash_point("late-delete"),
                _ => {}
            }
        }
        spool::sync_dir(&self.spool)?;
        self.unsaved.remove(id);
        self.delivered.remove(id);
        self.metrics.clips_deleted.inc();
        self.summary.deleted += 1;
        self.logged.retain(|k| !k.starts_with(id));
        if self.require_archive {
            tracing::info!(event_id = %id, "event delivered and archived; deleted from the spool");
        } else {
            tracing::info!(event_id = %id, "event delivered; deleted from the spool");
        }
        Ok(())
    }

    fn move_to_failed(&mut self, id: &str, why: &str) -> anyhow::Result<()> {
        let failed = self.spool.join(FAILED_DIR);
        std::fs::create_dir_all(&failed)?;
        spool::write_atomic(&failed.join(format!("{id}.reason")), why.as_bytes())?;
        for f in clip_files(&self.spool, id) {
            let to = failed.join(f.file_name().expect("clip files have names"));
            rename_if_exists(&f, &to).with_context(|| format!("moving {} to failed/", f.display()))?;
        }
        spool::sync_dir(&self.spool)?;
        self.metrics.clips_failed.inc();
        tracing::error!(event_id = %id, reason = why, dir = %failed.display(), "clip kept in failed/");
        Ok(())
    }

    /// Leftovers of an interrupted delete or move (a delivery record whose sidecar is gone).
    fn clean_orphans(&mut self, complete: &[String]) {
        let Ok(rd) = std::fs::read_dir(&self.spool) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(&format!(".{}", state::DELIVERY_EXT)) else { continue };
            if complete.iter().any(|c| c == id) {
                continue;
            }
            let failed = self.spool.join(FAILED_DIR);
            let moving = failed.join(format!("{id}.{}", spool::SIDECAR_EXT)).exists();
            for f in clip_files(&self.spool, id) {
                let res = if moving {
                    rename_if_exists(&f, &failed.join(f.file_name().expect("named")))
                } else {
                    remove_if_exists(&f)
                };
                if let Err(err) = res {
                    tracing::error!(file = %f.display(), error = %err, "cannot clean up after an interrupted delete");
                }
            }
        }
    }

    fn update_gauges(&mut self, ids: &[String]) {
        let mut pending = 0;
        let mut oldest: Option<std::time::SystemTime> = None;
        for id in ids {
            if self.delivered.contains(id) {
                continue;
            }
            // Waiting for the relay: a first alert not sent, or a closed event's email. (An
            // event whose first alert went out waits for its clip, not for delivery.)
            let paths = ClipPaths::new(&self.spool, id);
            let closed = paths.sidecar.exists();
            let (first_done, done) = match Delivery::load(&self.spool, id).ok().flatten() {
                Some(d) => (d.first_finished(), d.finished()),
                None => (false, false),
            };
            if !first_done || (closed && !done) {
                pending += 1;
                let since = if closed { paths.sidecar } else { paths.event };
                let t = std::fs::metadata(since).and_then(|m| m.modified()).ok();
                oldest = match (oldest, t) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        self.metrics.queue_depth.set(pending);
        let age = oldest.and_then(|t| t.elapsed().ok()).unwrap_or_default();
        self.metrics.oldest_pending_seconds.set(age.as_secs_f64());
        self.metrics.suppressed_pending.set(self.limiter.suppressed.len() as i64);
    }

    /// Spool limits: evict delivered and archived clips oldest first; never an undelivered one.
    fn enforce_limits(&mut self, ids: &[String]) {
        let (max_size, min_free) = (self.cfg.watch.spool_max_size.as_u64(), self.cfg.watch.spool_min_free.as_u64());
        let bytes_of = |files: &[PathBuf]| -> u64 {
            files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum()
        };
        let spool_size = |spool: &Path| -> u64 {
            std::fs::read_dir(spool)
                .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
                .unwrap_or(0)
        };
        // Measured once and then kept up to date by what is evicted: re-reading the spool for
        // every candidate would cost (clips x files) stats per pass, just when it is full.
        let (mut size, mut free) = (spool_size(&self.spool), spool::free_space(&self.spool).unwrap_or(u64::MAX));
        let mut evicted = 0;
        for id in ids {
            if size <= max_size && free >= min_free {
                break;
            }
            let closed = ClipPaths::new(&self.spool, id).sidecar.exists();
            let done = self.delivered.contains(id)
                || (closed
                    && Delivery::load(&self.spool, id).ok().flatten().is_some_and(|d| d.finished() && !d.any_failed()));
            let archived = !self.require_archive || ClipPaths::new(&self.spool, id).archived.exists();
            if done && archived {
                let bytes = bytes_of(&clip_files(&self.spool, id));
                if let Err(e) = self.delete(id) {
                    tracing::error!(event_id = %id, error = %format!("{e:#}"), "cannot evict clip");
                    break;
                }
                size = size.saturating_sub(bytes);
                free = free.saturating_add(bytes);
                self.metrics.spool_evicted.inc();
                evicted += 1;
            }
        }
        if evicted > 0 {
            // The running figures are estimates (the filesystem's blocks); the gauges get the truth.
            size = spool_size(&self.spool);
            free = spool::free_space(&self.spool).unwrap_or(u64::MAX);
        }
        let still_over = size > max_size || free < min_free;
        self.metrics.spool_bytes.set(size as i64);
        self.metrics.spool_over_limit.set(still_over as i64);
        if evicted > 0 {
            tracing::warn!(evicted, "spool over its limits: evicted delivered and archived clips");
        }
        if still_over && self.over_limit_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(300)) {
            self.over_limit_logged = Some(Instant::now());
            tracing::error!(spool = %self.spool.display(), "spool over its limits and nothing left that is delivered and archived; undelivered clips are kept");
        }
    }
}
