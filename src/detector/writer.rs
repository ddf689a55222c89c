//! Everything the detector writes into the spool after the decision: event records it could
//! not write at once, clips (encoded in memory, then committed), and events closed without a
//! clip. Writes that fail for want of space are held in memory, bounded by `clip.hold-max`,
//! and retried until the watchdog frees space; nothing is ever half-written in the spool.
//!
//! At start-up, [`recover`] closes the events an earlier run decided but did not close: from
//! the frame journal when it holds their frames, else as "clip unavailable".

use std::collections::VecDeque;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use tokio::sync::mpsc;

use super::{Ctx, EventReport};
use crate::clip::encode::{encode_mp4, ClipFrame, EncodeSettings};
use crate::clip::FinishedClip;
use crate::fault::crash_point;
use crate::model;
use crate::source::Frame;
use crate::spool::{self, ClipPaths, EventRecord, ScorePoint, Sidecar};
use crate::telemetry::ReasonLabel;

/// First and longest wait between attempts while the spool is full.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Attempts before a clip that fails for another reason than space is given up (its event is
/// still closed, without the clip).
const IO_ATTEMPTS: u32 = 3;

/// What the writer thread is asked to do.
pub(super) enum Job {
    /// An event record (and its still) that could not be written at the decision.
    Event { record: EventRecord, still: Bytes },
    /// A finished event: encode its clip, then write it and the sidecar.
    Clip { record: EventRecord, clip: FinishedClip, recovered: bool },
    /// Close an event without a clip.
    Missing { record: EventRecord, reason: Missing },
}

/// Why an event has no clip; the label of `edgewatch_events_without_clip_total`.
#[derive(Clone, Debug)]
pub(super) enum Missing {
    Restart(String),
    Dropped,
    Failed(String),
}

impl Missing {
    fn label(&self) -> &'static str {
        match self {
            Missing::Restart(_) => "restart",
            Missing::Dropped => "spool_full",
            Missing::Failed(_) => "write_failed",
        }
    }

    fn text(&self) -> String {
        match self {
            Missing::Restart(t) => {
                format!("clip unavailable: the detector restarted at {t} before the clip was written")
            }
            Missing::Dropped => "clip dropped: the spool was full for longer than clip.hold-max could hold it".into(),
            Missing::Failed(e) => format!("clip unavailable: it could not be written ({e})"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum WriteError {
    #[error("spool has {free} bytes free, below clip.min-free-space ({min})")]
    BelowMinFree { free: u64, min: u64 },
    #[error("no space left on the spool's filesystem")]
    NoSpace,
    #[error("{0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        if spool::is_no_space(&e) {
            WriteError::NoSpace
        } else {
            WriteError::Io(e)
        }
    }
}

impl WriteError {
    fn is_full(&self) -> bool {
        matches!(self, WriteError::BelowMinFree { .. } | WriteError::NoSpace)
    }

    fn reason(&self) -> &'static str {
        if self.is_full() {
            "disk_full"
        } else {
            "io"
        }
    }
}

/// `<spool>/.reserve`: space set aside while the spool has it, given back the moment an event
/// record or a closing sidecar cannot be written otherwise (they are small and must not wait).
pub(super) struct Reserve {
    path: PathBuf,
    size: u64,
    present: AtomicBool,
}

impl Reserve {
    pub(super) fn new(spool: &Path, size: u64) -> Reserve {
        let r = Reserve { path: spool.join(spool::RESERVE_FILE), size, present: AtomicBool::new(false) };
        r.present.store(std::fs::metadata(&r.path).is_ok_and(|m| m.len() >= size), Ordering::Release);
        r.ensure();
        r
    }

    /// Whether the reserve is asked for and not in place.
    fn wanted(&self) -> bool {
        self.size > 0 && !self.present.load(Ordering::Acquire)
    }

    /// Sets the reserve aside again if it was used and the spool has room for it.
    fn ensure(&self) {
        if self.size == 0 || self.present.load(Ordering::Acquire) {
            return;
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if spool::free_space(dir).map_or(true, |f| f < self.size * 4) {
            return;
        }
        // Written, not fallocated: tmpfs and every filesystem count written blocks alike.
        match spool::write_file_synced(&self.path, &vec![0u8; self.size as usize]) {
            Ok(()) => self.present.store(true, Ordering::Release),
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                tracing::debug!(error = %e, "cannot set the spool reserve aside yet");
            }
        }
    }

    /// Gives the reserve back; true when there was one to give.
    fn release(&self) -> bool {
        if !self.present.swap(false, Ordering::AcqRel) {
            return false;
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                tracing::warn!(bytes = self.size, "spool full: released the reserve to write an event");
                true
            }
            Err(e) => {
                tracing::error!(file = %self.path.display(), error = %e, "cannot release the spool reserve");
                false
            }
        }
    }
}

/// A small, must-write commit (an event record, a closing sidecar), with the reserve as the
/// last resort.
fn with_reserve(ctx: &Ctx, write: impl Fn() -> std::io::Result<()>) -> Result<(), WriteError> {
    match write() {
        Err(e) if spool::is_no_space(&e) && ctx.reserve.release() => Ok(write()?),
        other => Ok(other?),
    }
}

/// The event record and its still, at the decision (on the recorder thread).
pub(super) fn write_event(ctx: &Ctx, record: &EventRecord, still: &[u8]) -> Result<(), WriteError> {
    with_reserve(ctx, || spool::write_event(&ctx.cfg.clip.spool_dir, record, still))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Event,
    Clip,
    Missing,
}

/// A write waiting for the spool: its files, committed in order.
struct Pending {
    record: EventRecord,
    kind: Kind,
    files: Vec<(String, Bytes)>,
    /// For clips: what the run reports once it is written, and why, should it be dropped.
    report: Option<EventReport>,
    missing: Option<Missing>,
    since: Instant,
    io_failures: u32,
    /// Whether the first failure was counted and logged (once per held write, not per retry).
    failed: bool,
}

impl Pending {
    fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, b)| b.len() as u64).sum()
    }
}

/// What the writer did, for the run's summary.
#[derive(Default)]
pub(super) struct Written {
    pub events: Vec<EventReport>,
    pub without_clip: Vec<(String, String)>,
    pub still_open: usize,
}

struct Writer<'a> {
    ctx: &'a Ctx,
    arch_tx: mpsc::UnboundedSender<String>,
    held: VecDeque<Pending>,
    out: Written,
}

/// Encodes and writes each job; holds what the spool has no room for and retries it.
pub(super) fn writer_loop(ctx: &Ctx, rx: Receiver<Job>, arch_tx: mpsc::UnboundedSender<String>) -> Written {
    let mut w = Writer { ctx, arch_tx, held: VecDeque::new(), out: Written::default() };
    let mut delay = RETRY_MIN;
    loop {
        let job = if w.held.is_empty() && !ctx.reserve.wanted() {
            match rx.recv() {
                Ok(j) => Some(j),
                Err(_) => break,
            }
        } else if w.held.is_empty() {
            // The reserve was used: set it aside again as soon as the spool has room (the
            // watchdog frees it), before the next full-spool event needs it.
            match rx.recv_timeout(RETRY_MAX) {
                Ok(j) => Some(j),
                Err(RecvTimeoutError::Timeout) => {
                    ctx.reserve.ensure();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv_timeout(delay) {
                Ok(j) => Some(j),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        if let Some(job) = job {
            w.accept(job);
        }
        if w.flush() {
            delay = RETRY_MIN;
        } else {
            delay = (delay * 2).min(RETRY_MAX);
        }
    }
    // Input ended. At the end of a file, what is held is still retried until it is written or
    // the process is told to stop; at shutdown it gets one last try.
    while !w.held.is_empty() && !ctx.shutdown.is_cancelled() {
        super::sleep_unless_shutdown(&ctx.shutdown, delay);
        delay = if w.flush() { RETRY_MIN } else { (delay * 2).min(RETRY_MAX) };
    }
    w.flush();
    if !w.held.is_empty() {
        let ids: Vec<&str> = w.held.iter().map(|p| p.record.event_id.as_str()).collect();
        tracing::error!(events = ?ids, "exiting with events not yet closed (spool full); the next start closes them from the frame journal or as \"clip unavailable\" (an event whose record was never written only with a frame journal)");
    }
    w.out.still_open = w.held.len();
    w.out
}

impl Writer<'_> {
    fn accept(&mut self, job: Job) {
        let pending = match job {
            Job::Event { record, still } => {
                let files = spool::event_files(&record, &still).into_iter().map(|(n, d)| (n, Bytes::from(d))).collect();
                Pending::new(record, Kind::Event, files)
            }
            Job::Clip { record, clip, recovered } => match self.encode(&record, &clip, recovered) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(event_id = %record.event_id, error = %e, "cannot encode the clip; closing the event without it");
                    self.ctx.metrics.clip_write_failed.get_or_create(&ReasonLabel { reason: "encode" }).inc();
                    missing(record, Missing::Failed(format!("encoding: {e}")))
                }
            },
            Job::Missing { record, reason } => missing(record, reason),
        };
        self.held.push_back(pending);
        self.bound();
    }

    /// Encodes the clip in memory and prepares its files (clip, then sidecar).
    fn encode(
        &self,
        record: &EventRecord,
        clip: &FinishedClip,
        recovered: bool,
    ) -> Result<Pending, crate::clip::encode::EncodeError> {
        let cfg = &self.ctx.cfg;
        let id = &record.event_id;
        let started = Instant::now();
        let first = clip.frames.first().map(|f| f.pts).unwrap_or(clip.trigger_pts);
        let frames: Vec<ClipFrame> =
            clip.frames.iter().map(|f| ClipFrame { jpeg: f.jpeg.clone(), pts: f.pts - first }).collect();
        let fps = cfg.source.fps as f32;
        // The real rate of the frames at hand (a file may differ from `source.fps`).
        let span = frames.last().map(|f| f.pts).unwrap_or_default().as_secs_f32();
        let settings = EncodeSettings {
            bitrate_bps: cfg.clip.bitrate_kbps * 1000,
            fps: if frames.len() > 1 && span > 0.0 { (frames.len() - 1) as f32 / span } else { fps },
            keyframe_interval: (fps * 2.0).max(1.0) as u32,
        };
        let mut mp4 = Cursor::new(Vec::with_capacity(2 << 20));
        let stats = encode_mp4(&frames, &settings, &mut mp4)?;
        crash_point("mid-encode");
        let mp4 = Bytes::from(mp4.into_inner());
        self.ctx.metrics.frames_decode_failed.inc_by(stats.frames_skipped as u64);
        let wall_of = |pts: Duration| {
            clip.trigger_wall + chrono::Duration::from_std(pts).unwrap_or_default()
                - chrono::Duration::from_std(clip.trigger_pts).unwrap_or_default()
        };
        let clip_file = format!("{id}.{}", spool::CLIP_EXT);
        let sidecar = Sidecar {
            event_id: id.clone(),
            node: record.node.clone(),
            camera: record.camera.clone(),
            event_time: record.event_time,
            clip_start: wall_of(first),
            clip_end: wall_of(clip.frames.last().map(|f| f.pts).unwrap_or(first)),
            pre_roll: clip.trigger_pts.saturating_sub(first).as_secs_f64(),
            duration: stats.duration.as_secs_f64(),
            frames: stats.frames_encoded,
            width: stats.width,
            height: stats.height,
            peak_score: clip.peak,
            threshold: record.threshold,
            model_name: record.model_name.clone(),
            model_sha256: record.model_sha256.clone(),
            scores: clip
                .scores
                .iter()
                .map(|(p, s)| ScorePoint { t: p.saturating_sub(first).as_secs_f64(), score: *s })
                .collect(),
            clip_file: clip_file.clone(),
            still_file: record.still_file.clone(),
            clip_bytes: mp4.len() as u64,
            clip_sha256: model::sha256_hex(&mp4),
            clip_missing: None,
            recovered,
        };
        let report = EventReport {
            event_id: id.clone(),
            event_time: record.event_time,
            trigger_at: clip.trigger_pts.as_secs_f64(),
            peak_score: clip.peak,
            clip: ClipPaths::new(&cfg.clip.spool_dir, id).clip,
            clip_bytes: mp4.len() as u64,
            duration: stats.duration.as_secs_f64(),
            frames: stats.frames_encoded,
            write_seconds: 0.0,
        };
        let json = Bytes::from(serde_json::to_vec_pretty(&sidecar).expect("plain data serialises"));
        let sidecar_file = format!("{id}.{}", spool::SIDECAR_EXT);
        let mut p = Pending::new(record.clone(), Kind::Clip, vec![(clip_file, mp4), (sidecar_file, json)]);
        p.report = Some(report);
        p.since = started;
        Ok(p)
    }

    /// Keeps the clips held in memory under `clip.hold-max`: the oldest is dropped first, and
    /// its event closed as "clip dropped" (the alert still goes out).
    fn bound(&mut self) {
        let max = self.ctx.cfg.clip.hold_max.as_u64();
        loop {
            let held: u64 = self.held.iter().filter(|p| p.kind == Kind::Clip).map(Pending::bytes).sum();
            if held <= max {
                break;
            }
            let Some(i) = self.held.iter().position(|p| p.kind == Kind::Clip) else { break };
            let old = self.held.remove(i).expect("found above");
            self.ctx.metrics.clips_dropped.inc();
            tracing::error!(event_id = %old.record.event_id, bytes = old.bytes(), held, hold_max = max,
                "spool full for too long: dropping the oldest held clip; its event is still alerted");
            let mut m = missing(old.record, Missing::Dropped);
            m.failed = true; // its failure was counted while it was a clip
            self.held.insert(i, m);
        }
    }

    /// One attempt at every held write, oldest first; true when any was written.
    fn flush(&mut self) -> bool {
        let mut progress = false;
        let mut i = 0;
        while i < self.held.len() {
            let id = &self.held[i].record.event_id;
            // An event's writes land in order: its record before its clip.
            if self.held.iter().take(i).any(|p| &p.record.event_id == id) {
                i += 1;
                continue;
            }
            match self.commit(&self.held[i]) {
                Ok(()) => {
                    let p = self.held.remove(i).expect("index checked");
                    self.written(p);
                    progress = true;
                }
                Err(e) => {
                    self.failed(i, e);
                    i += 1;
                }
            }
        }
        let clips: Vec<&Pending> = self.held.iter().filter(|p| p.kind == Kind::Clip).collect();
        let bytes: u64 = clips.iter().map(|p| p.bytes()).sum();
        self.ctx.metrics.clips_held.set(clips.len() as i64);
        self.ctx.metrics.clip_bytes_held.set(bytes as i64);
        let full = self.held.iter().any(|p| p.failed);
        self.ctx.health.set_condition(
            "spool",
            full.then(|| {
                format!("spool full or failing: {} write(s) held in memory ({bytes} bytes of clips)", self.held.len())
            }),
        );
        if self.held.is_empty() {
            self.ctx.reserve.ensure();
        }
        progress
    }

    fn commit(&self, p: &Pending) -> Result<(), WriteError> {
        let spool_dir = &self.ctx.cfg.clip.spool_dir;
        let files: Vec<(&str, &[u8])> = p.files.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
        if p.kind != Kind::Clip {
            return with_reserve(self.ctx, || spool::commit(spool_dir, &files));
        }
        let min = self.ctx.cfg.clip.min_free_space.as_u64();
        let free = spool::free_space(spool_dir)?;
        if free < min + p.bytes() {
            return Err(WriteError::BelowMinFree { free, min });
        }
        // The clip first, the sidecar last: a sidecar in the spool means the clip is complete.
        crate::fault::io_error("clip-write")?;
        spool::commit(spool_dir, &files[..1])?;
        crash_point("after-clip-rename");
        spool::commit(spool_dir, &files[1..])?;
        Ok(())
    }

    fn written(&mut self, p: Pending) {
        let ctx = self.ctx;
        let id = p.record.event_id.clone();
        if p.failed {
            tracing::info!(event_id = %id, held_for = ?p.since.elapsed(), "spool has room again: held write done");
        }
        match p.kind {
            Kind::Event => {
                ctx.metrics.event_write_seconds.observe(p.since.elapsed().as_secs_f64());
                if let Some(j) = &ctx.journal {
                    j.release_record(&id);
                }
                return;
            }
            Kind::Clip => {
                let report = EventReport {
                    write_seconds: p.since.elapsed().as_secs_f64(),
                    ..p.report.expect("clips carry their report")
                };
                ctx.metrics.clips_written.inc();
                ctx.metrics.clip_bytes.inc_by(report.clip_bytes);
                ctx.metrics.clip_write_seconds.observe(report.write_seconds);
                tracing::info!(event_id = %id, clip = %report.clip.display(), bytes = report.clip_bytes,
                    duration = report.duration, peak = report.peak_score, "clip written");
                self.out.events.push(report);
            }
            Kind::Missing => {
                let why = p.missing.expect("missing events carry their reason");
                ctx.metrics.events_without_clip.get_or_create(&ReasonLabel { reason: why.label() }).inc();
                tracing::warn!(event_id = %id, reason = %why.text(), "event closed without a clip");
                self.out.without_clip.push((id.clone(), why.text()));
            }
        }
        if let Some(j) = &ctx.journal {
            j.remove(&id);
            j.release_record(&id);
        }
        let _ = self.arch_tx.send(id);
    }

    fn failed(&mut self, i: usize, e: WriteError) {
        let ctx = self.ctx;
        let p = &mut self.held[i];
        if !p.failed {
            p.failed = true;
            ctx.metrics.clip_write_failed.get_or_create(&ReasonLabel { reason: e.reason() }).inc();
            tracing::error!(event_id = %p.record.event_id, what = ?p.kind, bytes = p.bytes(), error = %e,
                "cannot write to the spool; held in memory and retried");
        }
        if e.is_full() || p.kind != Kind::Clip {
            return;
        }
        p.io_failures += 1;
        if p.io_failures >= IO_ATTEMPTS {
            tracing::error!(event_id = %p.record.event_id, error = %e, attempts = IO_ATTEMPTS,
                "giving up on the clip; closing its event without it");
            let record = p.record.clone();
            let mut m = missing(record, Missing::Failed(e.to_string()));
            m.failed = true;
            self.held[i] = m;
        }
    }
}

impl Pending {
    fn new(record: EventRecord, kind: Kind, files: Vec<(String, Bytes)>) -> Pending {
        Pending {
            record,
            kind,
            files,
            report: None,
            missing: None,
            since: Instant::now(),
            io_failures: 0,
            failed: false,
        }
    }
}

/// The closing sidecar of an event without a clip.
fn missing(record: EventRecord, why: Missing) -> Pending {
    let sidecar = Sidecar::without_clip(&record, why.text());
    let json = Bytes::from(serde_json::to_vec_pretty(&sidecar).expect("plain data serialises"));
    let name = format!("{}.{}", record.event_id, spool::SIDECAR_EXT);
    let mut p = Pending::new(record, Kind::Missing, vec![(name, json)]);
    p.missing = Some(why);
    p
}

/// Jobs that close the events an earlier run decided but did not close: the clip cut from the
/// frame journal where it kept the frames, else the event closed as "clip unavailable". Events
/// whose record the spool never took (full when they were decided) are in the journal too: their
/// record is written first. Journal files of events already closed are removed.
pub(super) fn recover(ctx: &Ctx) -> Vec<Job> {
    let spool_dir = &ctx.cfg.clip.spool_dir;
    let open = match spool::open_events(spool_dir) {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(spool = %spool_dir.display(), error = %e, "cannot look for unfinished events");
            return Vec::new();
        }
    };
    let mut held = Vec::new();
    if let Some(j) = &ctx.journal {
        let records = j.held_records().unwrap_or_else(|e| {
            tracing::error!(dir = %j.dir().display(), error = %e, "cannot look for held event records");
            Vec::new()
        });
        for mut r in records {
            let paths = ClipPaths::new(spool_dir, &r.event_id);
            if paths.event.exists() || paths.sidecar.exists() {
                j.release_record(&r.event_id);
            } else {
                // The still was only in memory.
                r.still_file.clear();
                held.push(r);
            }
        }
        for id in j.ids().unwrap_or_default() {
            if open.binary_search(&id).is_err() && !held.iter().any(|r| r.event_id == id) {
                j.remove(&id);
            }
        }
    }
    let now = Utc::now().format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let mut jobs = Vec::new();
    let mut records = Vec::new();
    for id in open {
        let paths = ClipPaths::new(spool_dir, &id);
        match spool::read_event(&paths.event) {
            Ok(r) => records.push(r),
            Err(e) => {
                tracing::error!(event_id = %id, error = %e, "unreadable event record; left for an operator");
                continue;
            }
        }
        // A clip renamed in just before the kill, without its sidecar: cut again or closed without.
        let _ = std::fs::remove_file(&paths.clip);
    }
    for record in held {
        tracing::warn!(event_id = %record.event_id, "event decided before the restart, its record never written (spool full): writing it now");
        jobs.push(Job::Event { record: record.clone(), still: Bytes::new() });
        records.push(record);
    }
    for record in records {
        let id = record.event_id.clone();
        let frames = ctx.journal.as_ref().and_then(|j| match j.read(&id) {
            Ok(f) => f.filter(|f| !f.is_empty()),
            Err(e) => {
                tracing::error!(event_id = %id, error = %e, "cannot read the frame journal");
                None
            }
        });
        match frames {
            Some(frames) => {
                let clip = journal_clip(&record, frames, &ctx.cfg.clip);
                tracing::warn!(event_id = %id, frames = clip.frames.len(), "event left open by a restart: cutting its clip from the frame journal");
                jobs.push(Job::Clip { clip, record, recovered: true });
            }
            None => {
                tracing::warn!(event_id = %id, "event left open by a restart, with no frames journalled: closing it without a clip");
                jobs.push(Job::Missing { record, reason: Missing::Restart(now.clone()) });
            }
        }
    }
    jobs
}

/// The clip of a restarted event: the frames the journal kept within the clip's longest span
/// (`clip.max-length` from the pre-roll's start), ending where capture stopped.
fn journal_clip(record: &EventRecord, frames: Vec<(Duration, Bytes)>, cfg: &crate::config::ClipConfig) -> FinishedClip {
    let trigger_pts = Duration::from_secs_f64(record.media_time.max(0.0));
    let start = trigger_pts.saturating_sub(cfg.pre_roll);
    let frames = frames.into_iter().filter(|(pts, _)| *pts >= start && *pts <= start + cfg.max_length);
    let wall = |pts: Duration| {
        record.event_time + chrono::Duration::from_std(pts).unwrap_or_default()
            - chrono::Duration::from_std(trigger_pts).unwrap_or_default()
    };
    let frames: Vec<Frame> =
        frames.enumerate().map(|(i, (pts, jpeg))| Frame { seq: i as u64, pts, wall: wall(pts), jpeg }).collect();
    FinishedClip {
        trigger_pts,
        trigger_wall: record.event_time,
        end_pts: frames.last().map_or(trigger_pts, |f| f.pts),
        frames,
        scores: vec![(trigger_pts, record.score)],
        peak: record.score,
        truncated: true,
    }
}
