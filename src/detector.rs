//! The detector role: capture → (sampled) inference → events → clips in the spool → archive.
//!
//! ```text
//! capture thread ──all frames──▶ recorder thread ──finished events──▶ encoder thread ──ids──▶ archiver task
//!        └──sampled frames (bounded 1)──▶ inference thread ──scores──┘
//! ```
//! Capture never waits for inference: when inference is busy a sampled frame is skipped for
//! inference (counted) but still recorded. Only a `pace = "fast"` file source, which has no
//! real time to keep, waits for inference so that runs are deterministic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self as smpsc, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::archive::{Archiver, Target};
use crate::clip::encode::{encode_mp4, ClipFrame, EncodeSettings};
use crate::clip::{Decider, FinishedClip, Recorder, RecorderConfig};
use crate::config::{Config, Location, Pace, SourceKind};
use crate::infer::{Engine, Streamer};
use crate::model::{self, ModelBundle};
use crate::s3::S3Client;
use crate::source::{FileSource, Frame, FrameSource, Sampler, SourceError};
use crate::spool::{self, ClipPaths, ScorePoint, Sidecar};
use crate::telemetry::{self, DetectorMetrics, Health, ModelLabels, ReasonLabel, ResultLabel};

/// One event as reported by a run.
#[derive(Clone, Debug, Serialize)]
pub struct EventReport {
    pub event_id: String,
    pub event_time: DateTime<Utc>,
    /// Media time of the decision, seconds from the start of the source.
    pub trigger_at: f64,
    pub peak_score: f32,
    pub clip: PathBuf,
    pub clip_bytes: u64,
    pub duration: f64,
    pub frames: usize,
    /// Seconds from the end of the post-roll to the clip in the spool, and CPU seconds spent.
    pub write_seconds: f64,
}

/// What a finished run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub frames_captured: u64,
    pub frames_inferred: u64,
    pub frames_inference_skipped: u64,
    pub events: Vec<EventReport>,
    pub clip_failures: usize,
    pub archived: Vec<String>,
    pub model_sha256: String,
}

/// A detector started in the background.
pub struct Running {
    pub http_addr: SocketAddr,
    handle: tokio::task::JoinHandle<anyhow::Result<Summary>>,
}

impl Running {
    /// Waits for the end of input (file sources) or shutdown.
    pub async fn wait(self) -> anyhow::Result<Summary> {
        self.handle.await.context("detector task panicked")?
    }
}

/// Runs the detector until `shutdown` (or the end of a non-looping file).
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<Summary> {
    start(cfg, shutdown).await?.wait().await
}

/// Binds the HTTP endpoint, then runs the pipeline in the background.
pub async fn start(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let mut registry = Registry::with_prefix("edgewatch");
    telemetry::register_build_info(&mut registry);
    let metrics = DetectorMetrics::register(&mut registry);
    let health = Health::new(cfg.http.stale_after, true);
    let (http_addr, _http) = telemetry::serve(cfg.http.listen, Arc::new(registry), health.clone(), shutdown.clone())
        .await
        .with_context(|| format!("binding the metrics endpoint {}", cfg.http.listen))?;
    tracing::info!(addr = %http_addr, "serving /metrics, /healthz and /readyz");
    let handle = tokio::spawn(pipeline(cfg, shutdown, metrics, health));
    Ok(Running { http_addr, handle })
}

fn needs_s3(cfg: &Config) -> bool {
    matches!(Location::parse(&cfg.model.source), Ok(Location::S3 { .. }))
        || matches!(cfg.archive_location(), Some(Location::S3 { .. }))
}

async fn pipeline(
    cfg: Config,
    shutdown: CancellationToken,
    metrics: DetectorMetrics,
    health: Arc<Health>,
) -> anyhow::Result<Summary> {
    let s3 = if needs_s3(&cfg) { Some(S3Client::new(&cfg.s3).await) } else { None };

    let bundle = match model::load(&cfg, s3.as_ref()).await {
        Ok(b) => {
            metrics.model_fetches.get_or_create(&ResultLabel { result: "ok" }).inc();
            b
        }
        Err(e) => {
            metrics.model_fetches.get_or_create(&ResultLabel { result: "failed" }).inc();
            return Err(e.context(format!("loading the model from {}", cfg.model.source)));
        }
    };
    let model_cfg = cfg.model.clone();
    // The graphs' bytes are needed only while the engine is built: lend them to it rather than
    // copy them, and drop them afterwards (the run keeps the manifest and its digest).
    let (mut bundle, engine) = tokio::task::spawn_blocking(move || {
        let engine = Engine::load_with(&bundle, &model_cfg);
        (bundle, engine)
    })
    .await?;
    let engine = engine?;
    bundle.backbone = Vec::new();
    bundle.head = Vec::new();
    let m = &bundle.manifest;
    metrics
        .model_info
        .get_or_create(&ModelLabels {
            name: m.name.clone(),
            sha256: bundle.manifest_sha256.clone(),
            input_size: format!("{}x{}", m.input.width, m.input.height),
            window: m.temporal.window.to_string(),
            backend: engine.backend().name().into(),
        })
        .set(1);
    // The CPU spent so far (start-up, model fetch and verification, graph optimisation): what
    // a restart costs a Pi, and what the benchmark subtracts to compare steady-state inference
    // with pipelines that time their loop only.
    let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let startup_cpu_s = ((cpu.tv_sec as f64 + cpu.tv_nsec as f64 * 1e-9) * 1e3).round() / 1e3;
    tracing::info!(name = %m.name, sha256 = %bundle.manifest_sha256, origin = %bundle.origin,
        input = %format!("{}x{}", m.input.width, m.input.height), window = m.temporal.window, backend = %engine.backend(),
        layout = engine.input_layout().name(), depthwise_kernel = engine.depthwise_kernel(), startup_cpu_s,
        "model loaded");
    health.set_initialised();

    spool::prepare(&cfg.clip.spool_dir)
        .with_context(|| format!("preparing the spool {}", cfg.clip.spool_dir.display()))?;

    // Open a file source now so a bad path fails the run instead of retrying forever.
    let source: Option<Box<dyn FrameSource>> = match cfg.source.kind {
        SourceKind::File => {
            let path = cfg.source.path.clone().context("source.path is required for a file source")?;
            let realtime = cfg.source.pace == Pace::Realtime;
            let src = FileSource::open(&path, realtime, cfg.source.looping)?;
            tracing::info!(source = %src.describe(), "file source opened");
            Some(Box::new(src))
        }
        SourceKind::V4l2 => None,
    };

    let (arch_tx, arch_rx) = mpsc::unbounded_channel::<String>();
    let archiver = match cfg.archive_location() {
        Some(loc) => {
            let target = Target::new(loc, s3.clone()).map_err(anyhow::Error::msg)?;
            let a = Archiver {
                target,
                spool: cfg.clip.spool_dir.clone(),
                cfg: cfg.archive.clone(),
                metrics: metrics.clone(),
            };
            Some(tokio::spawn(a.run(arch_rx, shutdown.clone())))
        }
        None => None,
    };

    let ctx = Arc::new(Ctx { cfg: cfg.clone(), metrics: metrics.clone(), health, bundle, shutdown: shutdown.clone() });
    let threads = tokio::task::spawn_blocking(move || run_threads(ctx, engine, source, arch_tx));
    let (mut summary, threads_result) = match threads.await {
        Ok(Ok(s)) => (s, Ok(())),
        Ok(Err(e)) => (Summary::default(), Err(e)),
        Err(e) => (Summary::default(), Err(anyhow::anyhow!("pipeline thread panicked: {e}"))),
    };
    if let Some(a) = archiver {
        summary.archived = a.await.unwrap_or_default();
    }
    threads_result?;
    Ok(summary)
}

struct Ctx {
    cfg: Config,
    metrics: DetectorMetrics,
    health: Arc<Health>,
    bundle: ModelBundle,
    shutdown: CancellationToken,
}

enum RecMsg {
    Frame(Frame),
    Score { pts: Duration, wall: DateTime<Utc>, score: f32 },
}

enum InferMsg {
    Frame(Frame),
    /// The camera reconnected: drop stale history.
    Reset,
}

fn run_threads(
    ctx: Arc<Ctx>,
    engine: Engine,
    source: Option<Box<dyn FrameSource>>,
    arch_tx: mpsc::UnboundedSender<String>,
) -> anyhow::Result<Summary> {
    // Sized for ~8 s of 15 fps: absorbs an encoder hiccup without dropping frames.
    let (rec_tx, rec_rx) = smpsc::sync_channel::<RecMsg>(128);
    let (inf_tx, inf_rx) = smpsc::sync_channel::<InferMsg>(1);
    let (enc_tx, enc_rx) = smpsc::sync_channel::<FinishedClip>(4);
    let spawn = |name: &str| std::thread::Builder::new().name(name.to_string());

    let c = ctx.clone();
    let score_tx = rec_tx.clone();
    let capture = spawn("capture").spawn(move || capture_loop(&c, source, rec_tx, inf_tx))?;
    let c = ctx.clone();
    let inference = spawn("inference").spawn(move || inference_loop(&c, engine, inf_rx, score_tx))?;
    let c = ctx.clone();
    let recorder = spawn("recorder").spawn(move || recorder_loop(&c, rec_rx, enc_tx))?;
    let c = ctx.clone();
    let encoder = spawn("encoder").spawn(move || encoder_loop(&c, enc_rx, arch_tx))?;

    let captured = capture.join().map_err(|_| anyhow::anyhow!("capture thread panicked"))?;
    let (inferred, skipped) = inference.join().map_err(|_| anyhow::anyhow!("inference thread panicked"))?;
    recorder.join().map_err(|_| anyhow::anyhow!("recorder thread panicked"))?;
    let (events, clip_failures) = encoder.join().map_err(|_| anyhow::anyhow!("encoder thread panicked"))?;
    let frames_captured = captured?;
    Ok(Summary {
        frames_captured,
        frames_inferred: inferred,
        frames_inference_skipped: skipped,
        events,
        clip_failures,
        archived: Vec::new(),
        model_sha256: ctx.bundle.manifest_sha256.clone(),
    })
}

/// Sleeps up to `d`, waking early on shutdown. Returns false when shutting down.
fn sleep_unless_shutdown(shutdown: &CancellationToken, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if shutdown.is_cancelled() {
            return false;
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
    }
    !shutdown.is_cancelled()
}

/// Reads frames until the end of a file or shutdown; cameras reconnect with capped backoff.
fn capture_loop(
    ctx: &Ctx,
    mut file: Option<Box<dyn FrameSource>>,
    rec_tx: SyncSender<RecMsg>,
    inf_tx: SyncSender<InferMsg>,
) -> anyhow::Result<u64> {
    let m = &ctx.metrics;
    let cfg = &ctx.cfg;
    let is_file = file.is_some();
    let mut sampler = Sampler::new(ctx.bundle.manifest.temporal.sample_fps);
    let mut captured = 0u64;
    let mut backoff = cfg.source.reconnect_min;
    let mut pts_offset = Duration::ZERO;
    let mut last_pts = Duration::ZERO;
    'sources: loop {
        if ctx.shutdown.is_cancelled() {
            break;
        }
        let mut src = match file.take() {
            Some(s) => s,
            None if is_file => break,
            None => match open_camera(cfg) {
                Ok(s) => {
                    tracing::info!(source = %s.describe(), "camera ready");
                    backoff = cfg.source.reconnect_min;
                    // A reopened camera restarts its clock; keep media time monotonic.
                    pts_offset = last_pts;
                    let _ = inf_tx.try_send(InferMsg::Reset);
                    s
                }
                Err(e) => {
                    m.camera_up.set(0);
                    m.camera_reconnects.inc();
                    // Unsupported formats will not fix themselves, but the process must not exit
                    // into a crash loop either: keep retrying slowly and say why.
                    let wait = if e.is_transient() { backoff } else { cfg.source.reconnect_max };
                    tracing::error!(device = %cfg.source.device.display(), error = %e, retry_in = ?wait, "camera unavailable");
                    m.camera_outage_seconds.inc_by(wait.as_secs_f64());
                    backoff = (backoff * 2).min(cfg.source.reconnect_max);
                    if !sleep_unless_shutdown(&ctx.shutdown, wait) {
                        break;
                    }
                    continue;
                }
            },
        };
        m.camera_up.set(1);
        let realtime = src.realtime();
        loop {
            if ctx.shutdown.is_cancelled() {
                break 'sources;
            }
            let frame = match src.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break 'sources,
                Err(e) if is_file => return Err(anyhow::Error::new(e).context("reading the video file")),
                Err(e) => {
                    m.camera_up.set(0);
                    tracing::error!(error = %e, "camera read failed; reconnecting");
                    continue 'sources;
                }
            };
            let frame = Frame { pts: frame.pts + pts_offset, ..frame };
            last_pts = frame.pts;
            captured += 1;
            m.frames_captured.inc();
            ctx.health.progress();

            if sampler.take(frame.pts) {
                if realtime {
                    match inf_tx.try_send(InferMsg::Frame(frame.clone())) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            m.frames_inference_skipped.inc();
                        }
                        Err(TrySendError::Disconnected(_)) => break 'sources,
                    }
                } else if inf_tx.send(InferMsg::Frame(frame.clone())).is_err() {
                    break 'sources;
                }
            }
            if realtime {
                match rec_tx.try_send(RecMsg::Frame(frame)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        m.frames_dropped.inc();
                    }
                    Err(TrySendError::Disconnected(_)) => break 'sources,
                }
            } else if rec_tx.send(RecMsg::Frame(frame)).is_err() {
                break 'sources;
            }
        }
    }
    m.camera_up.set(0);
    Ok(captured)
}

fn open_camera(cfg: &Config) -> Result<Box<dyn FrameSource>, SourceError> {
    #[cfg(target_os = "linux")]
    {
        let s = &cfg.source;
        Ok(Box::new(crate::source::V4l2Source::open(
            &s.device,
            s.width,
            s.height,
            s.fps,
            s.pixel_format,
            s.jpeg_quality,
        )?))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cfg;
        Err(SourceError::Unsupported("V4L2 cameras need Linux".into()))
    }
}

/// Runs the backbone on each sampled frame and the head over the ring; returns (inferred, skipped).
fn inference_loop(ctx: &Ctx, engine: Engine, rx: Receiver<InferMsg>, tx: SyncSender<RecMsg>) -> (u64, u64) {
    let m = &ctx.metrics;
    let mut pre = engine.preprocessor();
    let mut streamer = Streamer::new(engine);
    let mut inferred = 0;
    let mut failed = 0;
    for msg in rx {
        let frame = match msg {
            InferMsg::Frame(f) => f,
            InferMsg::Reset => {
                streamer.reset();
                continue;
            }
        };
        let input = match pre.tensor(&frame.jpeg) {
            Ok(t) => t,
            Err(e) => {
                m.frames_decode_failed.inc();
                tracing::debug!(seq = frame.seq, error = %e, "skipping undecodable frame");
                continue;
            }
        };
        match streamer.push(input) {
            Ok((score, timing)) => {
                inferred += 1;
                m.frames_inferred.inc();
                m.backbone_seconds.observe(timing.backbone.as_secs_f64());
                if let (Some(score), Some(head)) = (score, timing.head) {
                    m.head_seconds.observe(head.as_secs_f64());
                    m.score.set(score as f64);
                    if tx.send(RecMsg::Score { pts: frame.pts, wall: frame.wall, score }).is_err() {
                        break;
                    }
                }
            }
            Err(e) => {
                // A model that fails at run time fails every frame; say so without flooding logs.
                failed += 1;
                if failed == 1 || failed % 1000 == 0 {
                    tracing::error!(error = %e, failures = failed, "inference failed");
                }
            }
        }
    }
    (inferred, m.frames_inference_skipped.get())
}

fn recorder_loop(ctx: &Ctx, rx: Receiver<RecMsg>, enc_tx: SyncSender<FinishedClip>) {
    let cfg = &ctx.cfg;
    let threshold = cfg.threshold(ctx.bundle.manifest.decision.threshold);
    let mut rec = Recorder::new(
        RecorderConfig {
            pre_roll: cfg.clip.pre_roll,
            post_roll: cfg.clip.post_roll,
            max_length: cfg.clip.max_length,
            cooldown: cfg.decision.cooldown,
        },
        Decider::new(cfg.decision.k, cfg.decision.n, threshold),
    );
    for msg in rx {
        let finished = match msg {
            RecMsg::Frame(f) => rec.on_frame(f),
            RecMsg::Score { pts, wall, score } => {
                let out = rec.on_score(pts, wall, score);
                if out.started {
                    ctx.metrics.events.inc();
                    tracing::info!(at = pts.as_secs_f64(), score, threshold, "event started");
                }
                out.finished
            }
        };
        if let Some(clip) = finished {
            if enc_tx.send(clip).is_err() {
                return;
            }
        }
    }
    // Input ended (end of file or shutdown): finish the clip in flight rather than lose it.
    if let Some(clip) = rec.flush() {
        tracing::info!(frames = clip.frames.len(), "finishing the clip in flight");
        let _ = enc_tx.send(clip);
    }
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("spool has {free} bytes free, below clip.min-free-space ({min})")]
    DiskFull { free: u64, min: u64 },
    #[error("no space left on the spool device")]
    NoSpace,
    #[error("encoding: {0}")]
    Encode(#[from] crate::clip::encode::EncodeError),
    #[error("writing: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        if e.raw_os_error() == Some(28) {
            WriteError::NoSpace
        } else {
            WriteError::Io(e)
        }
    }
}

impl WriteError {
    fn reason(&self) -> &'static str {
        match self {
            WriteError::DiskFull { .. } | WriteError::NoSpace => "disk_full",
            WriteError::Encode(_) => "encode",
            WriteError::Io(_) => "io",
        }
    }
}

/// Encodes and writes each finished event; returns the reports and the number of failures.
fn encoder_loop(
    ctx: &Ctx,
    rx: Receiver<FinishedClip>,
    arch_tx: mpsc::UnboundedSender<String>,
) -> (Vec<EventReport>, usize) {
    let mut reports = Vec::new();
    let mut failures = 0;
    for clip in rx {
        let started = Instant::now();
        let id = event_id(&clip.trigger_wall, &ctx.cfg.camera);
        // Full disk: a bounded retry (space may be freed by the watchdog), then a loud failure.
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match write_clip(ctx, &id, &clip) {
                Err(e @ (WriteError::DiskFull { .. } | WriteError::NoSpace)) if attempt < 3 => {
                    tracing::error!(event_id = %id, error = %e, attempt, "cannot write clip; retrying in 5 s");
                    if !sleep_unless_shutdown(&ctx.shutdown, Duration::from_secs(5)) {
                        break Err(e);
                    }
                }
                other => break other,
            }
        };
        match result {
            Ok(report) => {
                let report = EventReport { write_seconds: started.elapsed().as_secs_f64(), ..report };
                ctx.metrics.clips_written.inc();
                ctx.metrics.clip_bytes.inc_by(report.clip_bytes);
                ctx.metrics.clip_write_seconds.observe(report.write_seconds);
                tracing::info!(event_id = %id, clip = %report.clip.display(), bytes = report.clip_bytes,
                    duration = report.duration, peak = report.peak_score, "clip written");
                let _ = arch_tx.send(id);
                reports.push(report);
            }
            Err(e) => {
                failures += 1;
                ctx.metrics.clip_write_failed.get_or_create(&ReasonLabel { reason: e.reason() }).inc();
                tracing::error!(event_id = %id, error = %e, "clip lost: could not be written to the spool");
            }
        }
    }
    (reports, failures)
}

/// `20261126T093000.123Z-cam0`: sorts by time, unique per camera (cooldown separates events).
pub fn event_id(wall: &DateTime<Utc>, camera: &str) -> String {
    format!("{}-{camera}", wall.format("%Y%m%dT%H%M%S%.3fZ"))
}

fn write_clip(ctx: &Ctx, id: &str, clip: &FinishedClip) -> Result<EventReport, WriteError> {
    let cfg = &ctx.cfg;
    let spool_dir = &cfg.clip.spool_dir;
    let free = spool::free_space(spool_dir)?;
    if free < cfg.clip.min_free_space.as_u64() {
        return Err(WriteError::DiskFull { free, min: cfg.clip.min_free_space.as_u64() });
    }
    let first = clip.frames.first().map(|f| f.pts).unwrap_or(clip.trigger_pts);
    let frames: Vec<ClipFrame> =
        clip.frames.iter().map(|f| ClipFrame { jpeg: f.jpeg.clone(), pts: f.pts - first }).collect();
    let fps = cfg.source.fps as f32;
    let settings = EncodeSettings {
        bitrate_bps: cfg.clip.bitrate_kbps * 1000,
        fps: if frames.len() > 1 {
            // The real rate of the frames at hand (a file may differ from `source.fps`).
            let span = frames.last().map(|f| f.pts).unwrap_or_default().as_secs_f32();
            if span > 0.0 {
                (frames.len() - 1) as f32 / span
            } else {
                fps
            }
        } else {
            fps
        },
        keyframe_interval: (fps * 2.0).max(1.0) as u32,
    };
    let paths = ClipPaths::new(spool_dir, id);
    let tmp_dir = spool_dir.join(spool::TMP_DIR);
    let tmp_clip = tmp_dir.join(format!("{id}.{}", spool::CLIP_EXT));
    let tmp_side = tmp_dir.join(format!("{id}.{}", spool::SIDECAR_EXT));
    let tmp_still = tmp_dir.join(format!("{id}.{}", spool::STILL_EXT));
    let result = (|| -> Result<EventReport, WriteError> {
        let file = std::fs::File::create(&tmp_clip)?;
        let mut out = std::io::BufWriter::new(file);
        let stats = encode_mp4(&frames, &settings, &mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        let bytes = std::fs::read(&tmp_clip)?;
        ctx.metrics.frames_decode_failed.inc_by(stats.frames_skipped as u64);
        let wall_of = |pts: Duration| {
            clip.trigger_wall + chrono::Duration::from_std(pts).unwrap_or_default()
                - chrono::Duration::from_std(clip.trigger_pts).unwrap_or_default()
        };
        let m = &ctx.bundle.manifest;
        let sidecar = Sidecar {
            event_id: id.to_string(),
            node: cfg.node.clone(),
            camera: cfg.camera.clone(),
            event_time: clip.trigger_wall,
            clip_start: wall_of(first),
            clip_end: wall_of(clip.frames.last().map(|f| f.pts).unwrap_or(first)),
            pre_roll: clip.trigger_pts.saturating_sub(first).as_secs_f64(),
            duration: stats.duration.as_secs_f64(),
            frames: stats.frames_encoded,
            width: stats.width,
            height: stats.height,
            peak_score: clip.peak,
            threshold: cfg.threshold(m.decision.threshold),
            model_name: m.name.clone(),
            model_sha256: ctx.bundle.manifest_sha256.clone(),
            scores: clip
                .scores
                .iter()
                .map(|(p, s)| ScorePoint { t: p.saturating_sub(first).as_secs_f64(), score: *s })
                .collect(),
            clip_file: format!("{id}.{}", spool::CLIP_EXT),
            still_file: format!("{id}.{}", spool::STILL_EXT),
            clip_bytes: bytes.len() as u64,
            clip_sha256: model::sha256_hex(&bytes),
        };
        let json = serde_json::to_vec_pretty(&sidecar).map_err(|e| WriteError::Io(std::io::Error::other(e)))?;
        spool::write_file_synced(&tmp_side, &json)?;
        // The still is the camera's own JPEG of the moment the decision fired.
        let still = clip.frames.iter().min_by_key(|f| f.pts.abs_diff(clip.trigger_pts)).map(|f| f.jpeg.clone());
        spool::write_file_synced(&tmp_still, &still.unwrap_or_default())?;
        // The clip and still first, the sidecar last: a sidecar in the spool means the clip is complete.
        std::fs::rename(&tmp_clip, &paths.clip)?;
        std::fs::rename(&tmp_still, &paths.still)?;
        std::fs::rename(&tmp_side, &paths.sidecar)?;
        spool::sync_dir(spool_dir)?;
        Ok(EventReport {
            event_id: id.to_string(),
            event_time: clip.trigger_wall,
            trigger_at: clip.trigger_pts.as_secs_f64(),
            peak_score: clip.peak,
            clip: paths.clip.clone(),
            clip_bytes: bytes.len() as u64,
            duration: stats.duration.as_secs_f64(),
            frames: stats.frames_encoded,
            write_seconds: 0.0,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp_clip);
        let _ = std::fs::remove_file(&tmp_side);
        let _ = std::fs::remove_file(&tmp_still);
    }
    result
}
