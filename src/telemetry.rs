//! Logs, Prometheus metrics and the health endpoints shared by every role.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global tracing subscriber: human or JSON lines on stdout (promtail reads stdout).
/// Colour only when stdout is a terminal and `NO_COLOR` is unset. `secrets` (S3 keys, the SMTP
/// password) are replaced by `[redacted]` in every line, whatever logged them: the AWS SDK and
/// HTTP stack log request headers at debug and trace.
pub fn init_logging(format: LogFormat, level: &str, secrets: Vec<String>) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let writer = Redacting { secrets: Arc::new(secrets.into_iter().filter(|s| !s.is_empty()).collect()) };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(writer);
    // try_init: tests and the demo may initialise more than once.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
}

/// Stdout, with secrets replaced. tracing-subscriber writes each event with one `write_all`,
/// so a secret is never split across two writes.
#[derive(Clone)]
struct Redacting {
    secrets: Arc<Vec<String>>,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Redacting {
    type Writer = Redacting;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl std::io::Write for Redacting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut out = std::io::stdout().lock();
        match std::str::from_utf8(buf) {
            Ok(text) if self.secrets.iter().any(|s| text.contains(s.as_str())) => {
                out.write_all(redact(text, &self.secrets).as_bytes())?;
            }
            _ => out.write_all(buf)?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

fn redact(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_string(), |t, s| t.replace(s.as_str(), "[redacted]"))
}

/// An error and its causes on one line, each cause once: `{:#}` repeats a cause whose text its
/// parent already includes ("... (os error 2): ... (os error 2)").
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let t = cause.to_string();
        if !parts.last().is_some_and(|p| p.contains(&t)) {
            parts.push(t);
        }
    }
    parts.join(": ")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub name: String,
    pub sha256: String,
    pub input_size: String,
    pub window: String,
    pub backend: String,
    /// Why that engine runs (`infer::Why::reason`): `configured` or one of the `auto-*` codes.
    pub backend_reason: String,
}

/// The detector's metrics. Names are a contract with the dashboards and alert rules.
#[derive(Clone)]
pub struct DetectorMetrics {
    pub frames_captured: Counter,
    pub frames_decode_failed: Counter,
    pub frames_dropped: Counter,
    pub frames_inferred: Counter,
    pub frames_inference_skipped: Counter,
    pub backbone_runs: Counter,
    pub backbone_skipped: Family<ReasonLabel, Counter>,
    /// `backbone_skipped{reason="still"}` itself (the same counter), so the per-frame path does
    /// not look it up in the family each time.
    pub backbone_skipped_still: Counter,
    pub motion_active: Gauge,
    pub motion_rebaselines: Counter,
    /// The adaptive rate (issue 23): frames per second sampled for inference now.
    pub sample_fps: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// CPU time of the inference thread (decode, motion gate, backbone, head).
    pub inference_cpu_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    /// Rate changes by why: budget, backlog, throttled, hot, headroom.
    pub sample_rate_changes: Family<ReasonLabel, Counter>,
    /// 1 while even the lowest rate the model allows cannot hold the budget.
    pub sample_rate_floor: Gauge,
    pub camera_reconnects: Counter,
    pub camera_up: Gauge,
    pub camera_outage_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    pub backbone_seconds: Histogram,
    pub head_seconds: Histogram,
    pub score: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub events: Counter,
    pub clips_written: Counter,
    pub clip_write_failed: Family<ReasonLabel, Counter>,
    pub clip_write_seconds: Histogram,
    pub clip_bytes: Counter,
    /// From the decision to its record and still durable in the spool.
    pub event_write_seconds: Histogram,
    /// Clips waiting in memory for space in the spool, and their bytes.
    pub clips_held: Gauge,
    pub clip_bytes_held: Gauge,
    pub clips_dropped: Counter,
    /// Events closed without a clip, by why.
    pub events_without_clip: Family<ReasonLabel, Counter>,
    pub uploads: Family<ResultLabel, Counter>,
    /// Failed archive uploads by class: auth, network, timeout, server, rejected, io.
    pub archive_errors: Family<ClassLabel, Counter>,
    pub upload_queue_depth: Gauge,
    pub upload_seconds: Histogram,
    pub model_fetches: Family<ResultLabel, Counter>,
    /// Set to 1 for the loaded model (registered before loading, so /metrics serves meanwhile).
    pub model_info: Family<ModelLabels, Gauge>,
}

impl DetectorMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let latency = || Histogram::new(exponential_buckets(0.001, 2.0, 14));
        // Created now, so it is served at 0 before the first skip (a dashboard's rate() has a series).
        let backbone_skipped = Family::<ReasonLabel, Counter>::default();
        let backbone_skipped_still = backbone_skipped.get_or_create(&ReasonLabel { reason: "still" }).clone();
        let m = DetectorMetrics {
            frames_captured: Counter::default(),
            frames_decode_failed: Counter::default(),
            frames_dropped: Counter::default(),
            frames_inferred: Counter::default(),
            frames_inference_skipped: Counter::default(),
            backbone_runs: Counter::default(),
            backbone_skipped,
            backbone_skipped_still,
            motion_active: Gauge::default(),
            motion_rebaselines: Counter::default(),
            sample_fps: Gauge::default(),
            inference_cpu_seconds: Counter::default(),
            sample_rate_changes: Family::default(),
            sample_rate_floor: Gauge::default(),
            camera_reconnects: Counter::default(),
            camera_up: Gauge::default(),
            camera_outage_seconds: Counter::default(),
            backbone_seconds: latency(),
            head_seconds: latency(),
            score: Gauge::default(),
            events: Counter::default(),
            clips_written: Counter::default(),
            clip_write_failed: Family::default(),
            clip_write_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            clip_bytes: Counter::default(),
            event_write_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            clips_held: Gauge::default(),
            clip_bytes_held: Gauge::default(),
            clips_dropped: Counter::default(),
            events_without_clip: Family::default(),
            uploads: Family::default(),
            archive_errors: Family::default(),
            upload_queue_depth: Gauge::default(),
            upload_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            model_fetches: Family::default(),
            model_info: Family::default(),
        };
        // Every label value exists from the start, at 0: dashboards and alert rules see a series
        // rather than none, and a misspelt label is a missing series, not a silent zero.
        for reason in ["disk_full", "io", "encode"] {
            let _ = m.clip_write_failed.get_or_create(&ReasonLabel { reason });
        }
        for reason in ["restart", "spool_full", "write_failed"] {
            let _ = m.events_without_clip.get_or_create(&ReasonLabel { reason });
        }
        for result in ["ok", "failed", "gone"] {
            let _ = m.uploads.get_or_create(&ResultLabel { result });
        }
        for class in crate::s3::S3Error::CLASSES.iter().copied().chain(["io"]) {
            let _ = m.archive_errors.get_or_create(&ClassLabel { class });
        }
        for reason in crate::detector::rate::Reason::ALL {
            let _ = m.sample_rate_changes.get_or_create(&ReasonLabel { reason: reason.as_str() });
        }
        for result in ["ok", "failed"] {
            let _ = m.model_fetches.get_or_create(&ResultLabel { result });
        }
        let r = registry;
        r.register("frames_captured", "Frames delivered by the source", m.frames_captured.clone());
        r.register(
            "frames_decode_failed",
            "Frames that could not be decoded and were skipped",
            m.frames_decode_failed.clone(),
        );
        r.register("frames_dropped", "Frames lost before the clip ring (pipeline saturated)", m.frames_dropped.clone());
        r.register(
            "frames_inferred",
            "Sampled frames scored: the backbone ran, or motion gating repeated its last feature",
            m.frames_inferred.clone(),
        );
        r.register("backbone_runs", "Frames run through the backbone", m.backbone_runs.clone());
        r.register(
            "backbone_skipped",
            "Sampled frames motion gating kept from the backbone, by reason",
            m.backbone_skipped.clone(),
        );
        r.register("motion_active", "1 while the motion detector sees motion", m.motion_active.clone());
        r.register(
            "motion_rebaseline",
            "Lighting changes (most of the frame at once) the motion detector re-baselined on",
            m.motion_rebaselines.clone(),
        );
        r.register("sample_fps", "Frames per second sampled for inference (the adaptive rate)", m.sample_fps.clone());
        r.register(
            "inference_cpu_seconds",
            "CPU time of the inference thread: decode, motion gate, backbone and head",
            m.inference_cpu_seconds.clone(),
        );
        r.register(
            "sample_rate_changes",
            "Changes of the sampling rate, by why: budget, backlog, throttled, hot, headroom",
            m.sample_rate_changes.clone(),
        );
        r.register(
            "sample_rate_floor",
            "1 while the lowest rate the model allows still exceeds model.cpu-budget or the board throttles",
            m.sample_rate_floor.clone(),
        );
        r.register(
            "frames_inference_skipped",
            "Sampled frames not inferred because inference was busy",
            m.frames_inference_skipped.clone(),
        );
        r.register("camera_reconnects", "Camera reconnect attempts after an error", m.camera_reconnects.clone());
        r.register("camera_up", "1 while the camera delivers frames", m.camera_up.clone());
        r.register("camera_outage_seconds", "Time spent without a working camera", m.camera_outage_seconds.clone());
        r.register("backbone_latency_seconds", "Backbone inference time per frame", m.backbone_seconds.clone());
        r.register("head_latency_seconds", "Temporal head inference time per evaluation", m.head_seconds.clone());
        r.register("score", "Latest violence score from the head", m.score.clone());
        r.register("events", "Events detected", m.events.clone());
        r.register("clips_written", "Clips written to the spool", m.clips_written.clone());
        r.register("clip_write_failed", "Clips that could not be written", m.clip_write_failed.clone());
        r.register(
            "clip_write_duration_seconds",
            "From end of post-roll to the clip in the spool (encoding included)",
            m.clip_write_seconds.clone(),
        );
        r.register("clip_bytes", "Bytes of clips written", m.clip_bytes.clone());
        r.register(
            "event_write_duration_seconds",
            "From the decision to the event record and still durable in the spool",
            m.event_write_seconds.clone(),
        );
        r.register("clips_held", "Clips held in memory until the spool has space", m.clips_held.clone());
        r.register(
            "clip_bytes_held",
            "Bytes of clips held in memory until the spool has space",
            m.clip_bytes_held.clone(),
        );
        r.register(
            "clips_dropped",
            "Held clips dropped because clip.hold-max was exceeded (their events are still alerted)",
            m.clips_dropped.clone(),
        );
        r.register("events_without_clip", "Events closed without a clip, by reason", m.events_without_clip.clone());
        r.register("uploads", "Clip uploads to the archive by result", m.uploads.clone());
        r.register("archive_errors", "Failed archive uploads by class", m.archive_errors.clone());
        r.register("upload_queue_depth", "Clips waiting for the archive", m.upload_queue_depth.clone());
        r.register("upload_duration_seconds", "Time per successful upload", m.upload_seconds.clone());
        r.register("model_fetches", "Model fetch attempts by result", m.model_fetches.clone());
        r.register("model_info", "The loaded model (value 1)", m.model_info.clone());
        m
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    pub class: &'static str,
}

/// The watchdog's metrics (same contract as the detector's).
#[derive(Clone)]
pub struct WatchdogMetrics {
    pub alerts_sent: Counter,
    pub alerts_failed: Counter,
    pub alerts_suppressed: Counter,
    pub suppressed_pending: Gauge,
    pub queue_depth: Gauge,
    pub oldest_pending_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub latency_seconds: Histogram,
    pub first_latency_seconds: Histogram,
    pub smtp_errors: Family<ClassLabel, Counter>,
    pub clips_deleted: Counter,
    pub clips_failed: Counter,
    pub spool_bytes: Gauge,
    pub spool_evicted: Counter,
    pub spool_over_limit: Gauge,
    pub watch_mode: Family<ModeLabel, Gauge>,
    pub spool_scans: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: &'static str,
}

impl WatchdogMetrics {
    pub fn register(r: &mut Registry) -> Self {
        let m = WatchdogMetrics {
            alerts_sent: Counter::default(),
            alerts_failed: Counter::default(),
            alerts_suppressed: Counter::default(),
            suppressed_pending: Gauge::default(),
            queue_depth: Gauge::default(),
            oldest_pending_seconds: Gauge::default(),
            latency_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
            first_latency_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
            smtp_errors: Family::default(),
            clips_deleted: Counter::default(),
            clips_failed: Counter::default(),
            spool_bytes: Gauge::default(),
            spool_evicted: Counter::default(),
            spool_over_limit: Gauge::default(),
            watch_mode: Family::default(),
            spool_scans: Counter::default(),
        };
        // Every class exists from the start, at 0 (as the detector's labels).
        for class in crate::watchdog::mail::SendError::CLASSES {
            let _ = m.smtp_errors.get_or_create(&ClassLabel { class });
        }
        r.register("alerts_sent", "Alert emails accepted by the SMTP server (per recipient)", m.alerts_sent.clone());
        r.register("alerts_failed", "Recipients given up after permanent rejections", m.alerts_failed.clone());
        r.register(
            "alerts_suppressed",
            "Events not emailed because of the rate limit (summarised later)",
            m.alerts_suppressed.clone(),
        );
        r.register(
            "alerts_suppressed_pending",
            "Suppressed events waiting for the next email",
            m.suppressed_pending.clone(),
        );
        r.register("alert_queue_depth", "Clips waiting for delivery", m.queue_depth.clone());
        r.register(
            "alert_oldest_pending_seconds",
            "Age of the oldest clip waiting for delivery",
            m.oldest_pending_seconds.clone(),
        );
        r.register(
            "alert_latency_seconds",
            "From the clip appearing in the spool to SMTP acceptance",
            m.latency_seconds.clone(),
        );
        r.register(
            "alert_first_latency_seconds",
            "From the detector's decision to SMTP acceptance of the first (snapshot) alert",
            m.first_latency_seconds.clone(),
        );
        r.register("smtp_errors", "SMTP failures by class", m.smtp_errors.clone());
        r.register("clips_deleted", "Clips deleted after delivery and archive", m.clips_deleted.clone());
        r.register("clips_failed", "Clips moved to failed/", m.clips_failed.clone());
        r.register("spool_bytes", "Bytes in the spool", m.spool_bytes.clone());
        r.register(
            "spool_evicted",
            "Delivered and archived clips evicted by the spool limits",
            m.spool_evicted.clone(),
        );
        r.register(
            "spool_over_limit",
            "1 while the spool is over its limits with nothing evictable",
            m.spool_over_limit.clone(),
        );
        r.register("watch_mode", "How the spool is watched (value 1)", m.watch_mode.clone());
        r.register(
            "spool_scans",
            "Passes over the spool (wake-ups by inotify, retries, rescans, polls)",
            m.spool_scans.clone(),
        );
        m
    }
}

/// Registers `edgewatch_build_info` (a gauge at 1: promtool's text parser rejects the OpenMetrics `info` type).
pub fn register_build_info(registry: &mut Registry) {
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Build {
        version: &'static str,
    }
    let family = Family::<Build, Gauge>::default();
    family.get_or_create(&Build { version: env!("CARGO_PKG_VERSION") }).set(1);
    registry.register("build_info", "edgewatch build", family);
}

/// What `/healthz` and `/readyz` report.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// Set once the model is loaded (detector) or the role is initialised.
    initialised: AtomicBool,
    /// Milliseconds since `started` of the latest frame, plus one (0 = none yet).
    last_progress_ms: AtomicU64,
    stale_after: Duration,
    /// When false, readiness does not depend on frames (roles without a camera).
    needs_progress: bool,
    /// Named problems that make the role not ready until cleared (spool full, ...).
    conditions: std::sync::Mutex<std::collections::BTreeMap<&'static str, String>>,
}

impl Health {
    pub fn new(stale_after: Duration, needs_progress: bool) -> Arc<Self> {
        Arc::new(Health {
            started: Instant::now(),
            initialised: AtomicBool::new(false),
            last_progress_ms: AtomicU64::new(0),
            stale_after,
            needs_progress,
            conditions: Default::default(),
        })
    }
    /// Sets (`Some(why)`) or clears (`None`) a named condition that makes `/readyz` fail.
    pub fn set_condition(&self, name: &'static str, problem: Option<String>) {
        let mut c = self.conditions.lock().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(why) => c.insert(name, why),
            None => c.remove(name),
        };
    }
    pub fn set_initialised(&self) {
        self.initialised.store(true, Ordering::Release);
    }
    /// Called on every frame; a relaxed store is cheap enough for the capture path.
    pub fn progress(&self) {
        let ms = self.started.elapsed().as_millis() as u64 + 1;
        self.last_progress_ms.store(ms, Ordering::Relaxed);
    }
    /// `Ok` when ready, else the reason.
    pub fn ready(&self) -> Result<(), String> {
        if !self.initialised.load(Ordering::Acquire) {
            return Err("not initialised (model loading)".into());
        }
        if self.needs_progress {
            let last = self.last_progress_ms.load(Ordering::Relaxed);
            if last == 0 {
                return Err("no frame received yet".into());
            }
            let age = self.started.elapsed().saturating_sub(Duration::from_millis(last - 1));
            if age > self.stale_after {
                return Err(format!("no frame for {:.1} s", age.as_secs_f64()));
            }
        }
        let c = self.conditions.lock().unwrap_or_else(|e| e.into_inner());
        if !c.is_empty() {
            return Err(c.values().cloned().collect::<Vec<_>>().join("; "));
        }
        Ok(())
    }
}

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    health: Arc<Health>,
}

/// Binds the metrics/health listener. Returns the bound address (useful with port 0).
pub async fn serve(
    listen: SocketAddr,
    registry: Arc<Registry>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(HttpState { registry, health });
    let handle = tokio::spawn(async move {
        let res = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
        if let Err(e) = res {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    Ok((addr, handle))
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves OpenMetrics to clients that ask for it (Prometheus does), else the classic text format
/// that every other tool (promtool, curl users, older agents) reads.
async fn metrics(State(s): State<HttpState>, headers: HeaderMap) -> impl IntoResponse {
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &s.registry).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], "encode failed\n".into());
    }
    let wants_om = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    if wants_om {
        (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], body)
    } else {
        (StatusCode::OK, [(header::CONTENT_TYPE, TEXT_004)], openmetrics_to_text(&body))
    }
}

/// Converts prometheus-client's OpenMetrics output to the text format 0.0.4: counters are
/// described under their `_total` sample name, and `# UNIT`/`# EOF` lines go.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<&str> = None;
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = if kind == "counter" { format!("{name}_total") } else { name.to_string() };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map(|(_, t)| t).unwrap_or("");
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    match s.health.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_causes_said_once() {
        let secrets = vec!["AKIDEXAMPLE".to_string(), "s3cr3t".to_string()];
        assert_eq!(
            redact("Credential=AKIDEXAMPLE/20260101, key s3cr3t and s3cr3t", &secrets),
            "Credential=[redacted]/20260101, key [redacted] and [redacted]"
        );
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        #[derive(Debug, thiserror::Error)]
        #[error("reading model: {0}")]
        struct Wrap(#[source] std::io::Error);
        let e = anyhow::Error::new(Wrap(io)).context("loading the model from /m");
        assert_eq!(error_chain(&e), "loading the model from /m: reading model: No such file or directory (os error 2)");
    }

    #[test]
    fn openmetrics_counters_become_text_format_counters() {
        let om = "# HELP ew_frames Frames.\n# TYPE ew_frames counter\new_frames_total 3\n# HELP ew_up Up.\n# TYPE ew_up gauge\new_up 1\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP ew_frames_total Frames.\n# TYPE ew_frames_total counter\new_frames_total 3\n# HELP ew_up Up.\n# TYPE ew_up gauge\new_up 1\n"
        );
    }
}
