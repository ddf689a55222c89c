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
use crate::clip::journal::{FrameJournal, FrameLog};
use crate::clip::{Decider, Recorder, RecorderConfig};
use crate::config::{Config, Location, Pace, SourceKind};
use crate::fault::crash_point;
use crate::infer::{Engine, Streamer};
use crate::model::{self, ModelBundle};
use crate::s3::S3Client;
use crate::source::{FileSource, Frame, FrameSource, Sampler, SourceError};
use crate::spool::{self, EventRecord};
use crate::telemetry::{self, DetectorMetrics, Health, ModelLabels, ResultLabel};
use gate::{Gate, Verdict};
use writer::{Job, Reserve};

mod gate;
pub mod rate;
mod writer;

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
    /// Backbone runs; with motion gating, `frames_inferred` = these + `backbone_skipped`.
    pub backbone_runs: u64,
    /// Sampled frames the motion gate kept from the backbone (the scene was still).
    pub backbone_skipped: u64,
    /// Lighting changes the motion detector re-baselined on.
    pub motion_rebaselines: u64,
    /// The sampling rate when the run ended (the adaptive rate, `model.cpu-budget`).
    pub sample_fps: f64,
    /// Changes of the sampling rate over the run.
    pub sample_rate_changes: u64,
    /// Whether the run ended at the lowest rate the model allows and still over budget.
    pub sample_rate_floor: bool,
    /// Events closed with a clip.
    pub events: Vec<EventReport>,
    /// Events closed without one (id, reason): restarted without a frame journal, dropped
    /// while the spool was full, or unwritable.
    pub without_clip: Vec<(String, String)>,
    /// Events still open when the run ended (their clip could not be written in time): the
    /// next start closes them.
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
    let c = cfg.clone();
    start_with_camera(cfg, shutdown, Box::new(move || open_v4l2(&c))).await
}

/// [`start`] with another camera (tests script one that fails and recovers).
pub async fn start_with_camera(
    cfg: Config,
    shutdown: CancellationToken,
    camera: OpenCamera,
) -> anyhow::Result<Running> {
    let mut registry = Registry::with_prefix("edgewatch");
    telemetry::register_build_info(&mut registry);
    let metrics = DetectorMetrics::register(&mut registry);
    let health = Health::new(cfg.http.stale_after, true);
    let (http_addr, _http) = telemetry::serve(cfg.http.listen, Arc::new(registry), health.clone(), shutdown.clone())
        .await
        .with_context(|| format!("binding the metrics endpoint {}", cfg.http.listen))?;
    tracing::info!(addr = %http_addr, "serving /metrics, /healthz and /readyz");
    let handle = tokio::spawn(pipeline(cfg, shutdown, metrics, health, camera));
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
    camera: OpenCamera,
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
    // The graphs' bytes are needed only while the engine is built: hand them over, so that they
    // are freed as soon as they are parsed (the run keeps the manifest and its digest). What the
    // build freed in glibc's heap (onnxruntime's) goes back to the kernel: glibc returns only the
    // heap's top by itself. jemalloc (Rust's allocations) returns freed pages after its decay time.
    let (bundle, engine) = tokio::task::spawn_blocking(move || {
        let mut bundle = bundle;
        let engine = Engine::load_taking(&mut bundle, &model_cfg);
        crate::alloc::release_free_memory();
        (bundle, engine)
    })
    .await?;
    let engine = engine?;
    let m = &bundle.manifest;
    metrics
        .model_info
        .get_or_create(&ModelLabels {
            name: m.name.clone(),
            sha256: bundle.manifest_sha256.clone(),
            input_size: format!("{}x{}", m.input.width, m.input.height),
            window: m.temporal.window.to_string(),
            backend: engine.backend().name().into(),
            backend_reason: engine.why().reason.into(),
        })
        .set(1);
    // The CPU spent so far (start-up, model fetch and verification, graph optimisation): what
    // a restart costs a Pi, and what the benchmark subtracts to compare steady-state inference
    // with pipelines that time their loop only.
    let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let startup_cpu_s = ((cpu.tv_sec as f64 + cpu.tv_nsec as f64 * 1e-9) * 1e3).round() / 1e3;
    tracing::info!(name = %m.name, sha256 = %bundle.manifest_sha256, origin = %bundle.origin,
        input = %format!("{}x{}", m.input.width, m.input.height), window = m.temporal.window, backend = %engine.backend(),
        backend_reason = engine.why().reason, backend_detail = %engine.why().detail, layout = engine.input_layout().name(), depthwise_kernel = engine.depthwise_kernel(), decode = cfg.model.decode.name(), motion_gating = cfg.motion.enabled, sample_fps = m.temporal.sample_fps, sample_fps_min = m.temporal.sample_fps_min.unwrap_or(m.temporal.sample_fps), cpu_budget = cfg.model.cpu_budget, startup_cpu_s, allocator = %crate::alloc::describe(),
        "model loaded");
    health.set_initialised();

    spool::prepare(&cfg.clip.spool_dir)
        .with_context(|| format!("preparing the spool {}", cfg.clip.spool_dir.display()))?;
    let reserve = Reserve::new(&cfg.clip.spool_dir, cfg.clip.reserve.as_u64());
    let journal = match &cfg.clip.frame_journal {
        Some(dir) => {
            Some(FrameJournal::open(dir).with_context(|| format!("creating the frame journal {}", dir.display()))?)
        }
        None => None,
    };

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

    let rate = rate::SharedRate::new(bundle.manifest.temporal.sample_fps);
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        metrics: metrics.clone(),
        health,
        bundle,
        shutdown: shutdown.clone(),
        reserve,
        journal,
        rate,
    });
    let threads = tokio::task::spawn_blocking(move || run_threads(ctx, engine, source, camera, arch_tx));
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
    reserve: Reserve,
    journal: Option<FrameJournal>,
    /// The sampling rate: the inference thread's [`rate::Controller`] sets it, the capture
    /// thread's sampler follows it.
    rate: rate::SharedRate,
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
    camera: OpenCamera,
    arch_tx: mpsc::UnboundedSender<String>,
) -> anyhow::Result<Summary> {
    // Sized for ~8 s of 15 fps: absorbs an encoder hiccup without dropping frames.
    let (rec_tx, rec_rx) = smpsc::sync_channel::<RecMsg>(128);
    let (inf_tx, inf_rx) = smpsc::sync_channel::<InferMsg>(1);
    // Events decided but not closed by an earlier run: their clips are cut first.
    let recovered = writer::recover(&ctx);
    let (job_tx, job_rx) = smpsc::sync_channel::<Job>(4);
    let spawn = |name: &str| std::thread::Builder::new().name(name.to_string());
    let c = ctx.clone();
    let encoder = spawn("encoder").spawn(move || writer::writer_loop(&c, job_rx, arch_tx))?;
    for job in recovered {
        let _ = job_tx.send(job);
    }

    let c = ctx.clone();
    let score_tx = rec_tx.clone();
    let capture = spawn("capture").spawn(move || capture_loop(&c, source, camera, rec_tx, inf_tx))?;
    let c = ctx.clone();
    let inference = spawn("inference").spawn(move || inference_loop(&c, engine, inf_rx, score_tx))?;
    let c = ctx.clone();
    let recorder = spawn("recorder").spawn(move || recorder_loop(&c, rec_rx, job_tx))?;

    let captured = capture.join().map_err(|_| anyhow::anyhow!("capture thread panicked"))?;
    let (inferred, skipped) = inference.join().map_err(|_| anyhow::anyhow!("inference thread panicked"))?;
    recorder.join().map_err(|_| anyhow::anyhow!("recorder thread panicked"))?;
    let written = encoder.join().map_err(|_| anyhow::anyhow!("encoder thread panicked"))?;
    let frames_captured = captured?;
    Ok(Summary {
        frames_captured,
        frames_inferred: inferred,
        frames_inference_skipped: skipped,
        backbone_runs: ctx.metrics.backbone_runs.get(),
        backbone_skipped: ctx.metrics.backbone_skipped_still.get(),
        motion_rebaselines: ctx.metrics.motion_rebaselines.get(),
        sample_fps: ctx.metrics.sample_fps.get(),
        sample_rate_changes: rate::Reason::ALL
            .iter()
            .map(|r| {
                ctx.metrics.sample_rate_changes.get_or_create(&telemetry::ReasonLabel { reason: r.as_str() }).get()
            })
            .sum(),
        sample_rate_floor: ctx.metrics.sample_rate_floor.get() == 1,
        events: written.events,
        without_clip: written.without_clip,
        clip_failures: written.still_open,
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

/// Opens the camera (a V4L2 device in the field; tests script their own).
pub type OpenCamera = Box<dyn FnMut() -> Result<Box<dyn FrameSource>, SourceError> + Send>;

/// Backoff after camera failures, open and read alike: from `reconnect-min`, doubling to
/// `reconnect-max`, and back to `reconnect-min` only once frames have flowed for
/// `reconnect-max` (a camera that opens and then fails its reads must not spin). Logged at
/// error once per change of failure, not once per attempt.
struct Reconnect {
    min: Duration,
    max: Duration,
    delay: Duration,
    flowing_since: Option<Instant>,
    outage_since: Option<Instant>,
    attempts: u64,
    logged: Option<String>,
}

impl Reconnect {
    fn new(min: Duration, max: Duration) -> Self {
        Reconnect { min, max, delay: min, flowing_since: None, outage_since: None, attempts: 0, logged: None }
    }

    /// A failure: how long to wait before the next attempt.
    fn failed(&mut self, m: &DetectorMetrics, device: &str, what: &'static str, e: &SourceError) -> Duration {
        // Unsupported formats will not fix themselves, but the process must not exit into a
        // crash loop either: keep retrying slowly and say why.
        let wait = if e.is_transient() { self.delay } else { self.max };
        self.delay = (self.delay * 2).min(self.max);
        self.flowing_since = None;
        self.outage_since.get_or_insert_with(Instant::now);
        self.attempts += 1;
        m.camera_up.set(0);
        m.camera_reconnects.inc();
        m.camera_outage_seconds.inc_by(wait.as_secs_f64());
        let state = format!("{what}: {e}");
        if self.logged.as_deref() != Some(state.as_str()) {
            tracing::error!(device, error = %e, retry_in = ?wait, "camera {what}; retrying with backoff");
            self.logged = Some(state);
        } else {
            tracing::debug!(device, error = %e, retry_in = ?wait, attempts = self.attempts, "camera {what} again");
        }
        wait
    }

    /// A frame arrived.
    fn frame(&mut self, m: &DetectorMetrics) {
        match self.flowing_since {
            None => {
                self.flowing_since = Some(Instant::now());
                m.camera_up.set(1);
                if let Some(t) = self.outage_since.take() {
                    tracing::info!(outage = ?t.elapsed(), attempts = self.attempts, "camera delivering frames again");
                    self.logged = None;
                }
            }
            Some(t) if self.delay > self.min && t.elapsed() >= self.max => self.delay = self.min,
            Some(_) => {}
        }
    }
}

/// Reads frames until the end of a file or shutdown; cameras reconnect with capped backoff.
fn capture_loop(
    ctx: &Ctx,
    mut file: Option<Box<dyn FrameSource>>,
    mut open_camera: OpenCamera,
    rec_tx: SyncSender<RecMsg>,
    inf_tx: SyncSender<InferMsg>,
) -> anyhow::Result<u64> {
    let m = &ctx.metrics;
    let cfg = &ctx.cfg;
    let device = cfg.source.device.display().to_string();
    let is_file = file.is_some();
    let mut sampler = Sampler::new(ctx.rate.get());
    let mut captured = 0u64;
    let mut reconnect = Reconnect::new(cfg.source.reconnect_min, cfg.source.reconnect_max);
    let frame_interval = Duration::from_secs_f64(1.0 / cfg.source.fps.max(1) as f64);
    let mut pts_offset = Duration::ZERO;
    let mut last_pts: Option<Duration> = None;
    'sources: loop {
        if ctx.shutdown.is_cancelled() {
            break;
        }
        let mut src = match file.take() {
            Some(s) => s,
            None if is_file => break,
            None => match open_camera() {
                Ok(s) => {
                    tracing::info!(source = %s.describe(), "camera ready");
                    // A reopened camera restarts its clock: media time goes on from the last
                    // frame, one frame later, so it never stands still or goes back.
                    if let Some(last) = last_pts {
                        pts_offset = last + frame_interval;
                    }
                    let _ = inf_tx.try_send(InferMsg::Reset);
                    s
                }
                Err(e) => {
                    let wait = reconnect.failed(m, &device, "unavailable", &e);
                    if !sleep_unless_shutdown(&ctx.shutdown, wait) {
                        break;
                    }
                    continue;
                }
            },
        };
        let realtime = src.realtime();
        loop {
            if ctx.shutdown.is_cancelled() {
                break 'sources;
            }
            let frame = match src.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break 'sources,
                Err(e) if is_file => {
                    let path = cfg.source.path.as_deref().unwrap_or(std::path::Path::new("?")).display().to_string();
                    tracing::warn!(file = %path, error = %e, frames = captured, "the video file cannot be read to its end; closing the events so far, then exiting with an error");
                    return Err(anyhow::Error::new(e).context(format!("reading the video file {path}")));
                }
                Err(e) => {
                    // Read errors back off like open errors: a camera that opens and then fails
                    // its reads (a hung USB device, a brown-out) must not spin.
                    let wait = reconnect.failed(m, &device, "read failed", &e);
                    drop(src);
                    if !sleep_unless_shutdown(&ctx.shutdown, wait) {
                        break 'sources;
                    }
                    continue 'sources;
                }
            };
            let frame = Frame { pts: frame.pts + pts_offset, ..frame };
            last_pts = Some(frame.pts);
            captured += 1;
            m.frames_captured.inc();
            reconnect.frame(m);
            ctx.health.progress();

            sampler.set_fps(ctx.rate.get());
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

fn open_v4l2(cfg: &Config) -> Result<Box<dyn FrameSource>, SourceError> {
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

/// Runs the backbone on each sampled frame the motion gate lets through (every one with
/// `motion.enabled = false`) and the head over the ring; returns (inferred, skipped).
fn inference_loop(ctx: &Ctx, engine: Engine, rx: Receiver<InferMsg>, tx: SyncSender<RecMsg>) -> (u64, u64) {
    let m = &ctx.metrics;
    let mut pre = engine.preprocessor().with_decode(ctx.cfg.model.decode);
    let mut streamer = Streamer::new(engine);
    let threshold = ctx.cfg.threshold(ctx.bundle.manifest.decision.threshold);
    let mut gate = ctx.cfg.motion.enabled.then(|| Gate::new(&ctx.cfg, threshold));
    let mut inferred = 0;
    let mut failed = 0;
    let mut rate = rate_controller(ctx);
    m.sample_fps.set(rate.fps());
    let mut cpu_seen = thread_cpu();
    for msg in rx {
        let frame = match msg {
            InferMsg::Frame(f) => f,
            InferMsg::Reset => {
                rate.reset();
                streamer.reset();
                if let Some(g) = &mut gate {
                    g.reset();
                }
                continue;
            }
        };
        // The CPU of every frame before this one, whatever path it took (skipped, undecodable).
        let cpu = thread_cpu();
        m.inference_cpu_seconds.inc_by(cpu.saturating_sub(cpu_seen).as_secs_f64());
        cpu_seen = cpu;
        let backlog = m.frames_inference_skipped.get();
        if let Some(change) = rate.observe(rate::Observation { pts: frame.pts, cpu, backlog }) {
            rate_changed(ctx, &change);
        }
        m.sample_rate_floor.set(rate.at_floor() as i64);
        crate::fault::slow("INFERENCE");
        crate::fault::busy("INFERENCE");
        let verdict = gate.as_mut().map_or(Verdict::Run("gating off"), |g| g.judge(frame.pts, &frame.jpeg, m));
        // A still frame repeats the newest feature; with none yet, it runs like any other.
        let repeated = if verdict == Verdict::Skip { streamer.repeat() } else { None };
        let ran = repeated.is_none();
        let step = match repeated {
            Some(step) => {
                m.backbone_skipped_still.inc();
                step
            }
            None => {
                let input = match pre.tensor(&frame.jpeg) {
                    Ok(t) => t,
                    Err(e) => {
                        m.frames_decode_failed.inc();
                        tracing::debug!(seq = frame.seq, error = %e, "skipping undecodable frame");
                        continue;
                    }
                };
                let step = streamer.push(input);
                if step.is_ok() {
                    m.backbone_runs.inc();
                    if let Some(g) = &mut gate {
                        g.ran(frame.pts);
                    }
                }
                step
            }
        };
        match step {
            Ok((score, timing)) => {
                inferred += 1;
                m.frames_inferred.inc();
                if ran {
                    m.backbone_seconds.observe(timing.backbone.as_secs_f64());
                }
                if let Some(score) = score {
                    tracing::trace!(pts = frame.pts.as_secs_f64(), score, backbone = ran, ?verdict, "scored");
                    if let Some(g) = &mut gate {
                        g.scored(frame.pts, score);
                    }
                    if let Some(head) = timing.head {
                        m.head_seconds.observe(head.as_secs_f64());
                    }
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

/// The adaptive rate's controller for this model, camera and budget, reading the board's
/// throttling state from /sys.
fn rate_controller(ctx: &Ctx) -> rate::Controller {
    let t = &ctx.bundle.manifest.temporal;
    let sysfs = rate::Pressure::new("/sys");
    rate::Controller::new(
        t.sample_fps,
        t.sample_fps_min.unwrap_or(t.sample_fps),
        ctx.cfg.source.fps as f64,
        ctx.cfg.model.cpu_budget,
        Box::new(move || sysfs.read()),
    )
    .sharing(ctx.rate.clone())
}

fn rate_changed(ctx: &Ctx, c: &rate::Change) {
    let m = &ctx.metrics;
    let budget = ctx.cfg.model.cpu_budget;
    let cores = (c.cores * 1e3).round() / 1e3;
    if c.floor {
        tracing::warn!(fps = c.to, cores, budget, reason = c.reason.as_str(),
            "sampling at the lowest rate the model allows and still over model.cpu-budget (or throttled); frames are not skipped, the budget is exceeded");
        return;
    }
    m.sample_fps.set(c.to);
    m.sample_rate_changes.get_or_create(&telemetry::ReasonLabel { reason: c.reason.as_str() }).inc();
    tracing::info!(from = c.from, to = c.to, cores, budget, reason = c.reason.as_str(), "sampling rate changed");
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn recorder_loop(ctx: &Ctx, rx: Receiver<RecMsg>, jobs: SyncSender<Job>) {
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
    // The open event: its record, and its frame journal while that can be written.
    let mut open: Option<(EventRecord, Option<FrameLog>)> = None;
    for msg in rx {
        let finished = match msg {
            RecMsg::Frame(f) => {
                let (pts, jpeg) = (f.pts, f.jpeg.clone());
                let finished = rec.on_frame(f);
                if let Some((record, log @ Some(_))) = &mut open {
                    journal_append(record, log, pts, &jpeg);
                }
                finished
            }
            RecMsg::Score { pts, wall, score } => {
                let out = rec.on_score(pts, wall, score);
                if out.started {
                    open = Some(decide(ctx, &rec, pts, wall, score, threshold, &jobs));
                }
                out.finished
            }
        };
        if let Some(clip) = finished {
            let (record, _) = open.take().expect("a finished clip had an open event");
            if jobs.send(Job::Clip { record, clip, recovered: false }).is_err() {
                return;
            }
        }
    }
    // Input ended (end of file or shutdown): finish the clip in flight rather than lose it.
    if let (Some(clip), Some((record, _))) = (rec.flush(), open.take()) {
        tracing::info!(event_id = %record.event_id, frames = clip.frames.len(), "finishing the clip in flight");
        let _ = jobs.send(Job::Clip { record, clip, recovered: false });
    }
}

/// The decision fired: before anything else, the event and its still go durably into the spool
/// (the watchdog's first alert starts from them), then the frame journal opens.
fn decide(
    ctx: &Ctx,
    rec: &Recorder,
    pts: Duration,
    wall: DateTime<Utc>,
    score: f32,
    threshold: f32,
    jobs: &SyncSender<Job>,
) -> (EventRecord, Option<FrameLog>) {
    let decided = Instant::now();
    crash_point("after-decision");
    let cfg = &ctx.cfg;
    let id = event_id(&wall, &cfg.camera);
    let frames = rec.active_frames();
    // The camera's own JPEG of the moment the decision fired.
    let still = frames.iter().min_by_key(|f| f.pts.abs_diff(pts)).map(|f| f.jpeg.clone()).unwrap_or_default();
    let m = &ctx.bundle.manifest;
    let record = EventRecord {
        event_id: id.clone(),
        node: cfg.node.clone(),
        camera: cfg.camera.clone(),
        event_time: wall,
        media_time: pts.as_secs_f64(),
        decided_at: Utc::now(),
        score,
        threshold,
        model_name: m.name.clone(),
        model_sha256: ctx.bundle.manifest_sha256.clone(),
        still_file: if still.is_empty() { String::new() } else { format!("{id}.{}", spool::STILL_EXT) },
    };
    ctx.metrics.events.inc();
    match writer::write_event(ctx, &record, &still) {
        Ok(()) => {
            ctx.metrics.event_write_seconds.observe(decided.elapsed().as_secs_f64());
            tracing::info!(event_id = %id, at = pts.as_secs_f64(), score, threshold, "event started");
        }
        Err(e) => {
            // Held and retried by the writer, ahead of this event's clip; and kept in the frame
            // journal, which outlives the process, so a restart before the spool takes it still
            // knows of the event.
            tracing::error!(event_id = %id, error = %e, "event started, but its record cannot be written yet; retrying");
            if let Some(j) = &ctx.journal {
                if let Err(e) = j.hold_record(&record) {
                    tracing::warn!(event_id = %id, dir = %j.dir().display(), error = %e, "cannot keep the event record in the frame journal; a restart before the spool takes it loses the event");
                }
            }
            let _ = jobs.send(Job::Event { record: record.clone(), still });
        }
    }
    crash_point("after-event-write");
    let log = ctx.journal.as_ref().and_then(|j| {
        j.start(&id, frames.iter().map(|f| (f.pts, &f.jpeg[..])))
            .map_err(|e| tracing::warn!(event_id = %id, dir = %j.dir().display(), error = %e, "cannot journal the event's frames; a restart before its clip is written loses the clip"))
            .ok()
    });
    (record, log)
}

fn journal_append(record: &EventRecord, log: &mut Option<FrameLog>, pts: Duration, jpeg: &[u8]) {
    if let Some(l) = log {
        if let Err(e) = l.append(pts, jpeg) {
            tracing::warn!(event_id = %record.event_id, file = %l.path().display(), error = %e, "frame journal stopped; a restart before the clip is written keeps only the frames journalled so far");
            *log = None;
        }
    }
}

/// `20261126T093000.123Z-cam0`: sorts by time, unique per camera (cooldown separates events).
pub fn event_id(wall: &DateTime<Utc>, camera: &str) -> String {
    format!("{}-{camera}", wall.format("%Y%m%dT%H%M%S%.3fZ"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_the_decisions_utc_time_and_sort_by_it() {
        let t = "2026-01-01T00:00:00.123Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(event_id(&t, "cam0"), "20260101T000000.123Z-cam0");
        let later = t + chrono::Duration::milliseconds(877);
        let much_later = t + chrono::Duration::days(400);
        let mut ids = vec![event_id(&much_later, "cam0"), event_id(&later, "cam0"), event_id(&t, "cam0")];
        ids.sort();
        assert_eq!(ids, [event_id(&t, "cam0"), event_id(&later, "cam0"), event_id(&much_later, "cam0")]);
    }
}
