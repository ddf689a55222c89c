//! Configuration: typed, strict, layered with figment.
//!
//! Precedence (lowest first): built-in defaults < TOML file < `EDGEWATCH_*` environment
//! < secret files named by `EDGEWATCH_*_FILE` variables (mounted Kubernetes Secrets).
//! Nested keys use `__` in variable names: `EDGEWATCH_SOURCE__DEVICE=/dev/video1`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

/// Default location of the config file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/edgewatch/edgewatch.toml";
/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "EDGEWATCH_";
/// Suffix of variables that name a file holding the value (Kubernetes Secret mounts).
pub const ENV_FILE_SUFFIX: &str = "_FILE";

/// A value that must never reach logs, error messages or `Debug` output.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The only way to read the value; grep for it when auditing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    // Serialising is only used to show the effective config, so it redacts too.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

/// The whole configuration file. Every role reads the sections it needs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Node name, used in clip metadata and object keys. Defaults to the host name.
    pub node: String,
    /// Camera name on this node.
    pub camera: String,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub source: SourceConfig,
    pub model: ModelConfig,
    pub decision: DecisionConfig,
    pub motion: MotionConfig,
    pub clip: ClipConfig,
    pub alert: AlertConfig,
    pub archive: ArchiveConfig,
    pub s3: S3Config,
    pub smtp: SmtpConfig,
    pub watch: WatchConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogConfig {
    /// `human` for terminals, `json` for promtail/Loki.
    pub format: LogFormat,
    /// A tracing filter directive, e.g. `info` or `edgewatch=debug,info`.
    pub level: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpConfig {
    /// Address for `/metrics`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
    /// `/readyz` fails when no frame arrived for this long.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    V4l2,
    File,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PixelFormat {
    /// MJPEG when the camera offers it, else YUYV.
    Auto,
    Mjpeg,
    Yuyv,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Pace {
    /// Deliver frames at the file's own frame rate, like a camera.
    Realtime,
    /// As fast as the pipeline consumes them (benchmarks, tests); inference never skips.
    Fast,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// V4L2 device node.
    pub device: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub pixel_format: PixelFormat,
    /// JPEG quality used when YUYV frames must be compressed for the clip ring.
    pub jpeg_quality: u8,
    /// First delay after a camera error; doubles up to `reconnect-max`.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Video file (MJPEG in AVI) for `kind = "file"`.
    pub path: Option<PathBuf>,
    pub pace: Pace,
    /// Start again at the end of the file instead of stopping.
    #[serde(rename = "loop")]
    pub looping: bool,
}

/// The inference engine. tract is pure Rust and always built in; onnxruntime needs the
/// `onnxruntime` cargo feature and its shared library at run time. `auto` (the default) takes
/// onnxruntime when this build has it and its library loads, tract otherwise: the same scores
/// (within 1e-4, tested), and onnxruntime is the faster engine on the backbone (bench/README.md).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    Auto,
    Tract,
    Onnxruntime,
}

impl Backend {
    /// The name used in the config and in the `model_info` metric.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Tract => "tract",
            Backend::Onnxruntime => "onnxruntime",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModelConfig {
    /// A local directory holding `manifest.toml`, or `s3://bucket/prefix`.
    pub source: String,
    /// Where models fetched from S3 are kept, verified, for offline restarts.
    pub cache_dir: PathBuf,
    /// Pin the manifest itself: its sha256 (hex). Empty = trust the source.
    pub manifest_sha256: String,
    pub backend: Backend,
    /// `libonnxruntime.so` for `backend = "onnxruntime"` or `"auto"`. Unset: `ORT_DYLIB_PATH`, else the
    /// dynamic loader's search path.
    pub onnxruntime_library: Option<PathBuf>,
    /// Threads for one inference; 1 keeps a core free for capture and encoding on a Pi.
    pub threads: usize,
    /// tract only: run all of the backbone's convolutions channels-last (same features; see
    /// `infer::channels_last`). `false` runs the graph as exported, with only the depthwise
    /// convolutions moved channels-last by tract itself (bench/README.md, session 9).
    pub channels_last: bool,
    /// `scaled`: inference frames are decoded at the smallest 1/2^k of the frame that is still twice
    /// the model's input (DCT-domain scaling; `infer::decode`), `full`: the whole frame. Clips always
    /// keep the camera's JPEGs.
    pub decode: crate::infer::Decode,
    /// Cores inference may use on average (the inference thread's CPU per second). Over it, the
    /// detector samples less often, down to the manifest's `temporal.sample-fps-min`; a model
    /// without that range keeps its rate and the detector says once that the budget is not held.
    pub cpu_budget: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DecisionConfig {
    /// Override the manifest's threshold.
    pub threshold: Option<f32>,
    /// An event starts when K of the last N head evaluations are at or above the threshold.
    pub k: usize,
    pub n: usize,
    /// Quiet time after a clip ends before a new event may start.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

/// Motion gating: the backbone runs on frames with motion (see [`crate::motion`]), and at least
/// every `max-skip` so a motionless scene is still looked at.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MotionConfig {
    /// `false` runs the backbone on every sampled frame.
    pub enabled: bool,
    /// Grey levels (of 255) a blurred pixel must differ from the background to count as changed.
    pub threshold: u8,
    /// Motion when the largest blob of changed pixels covers at least this fraction of the frame.
    pub min_area: f32,
    /// When this fraction of the unmasked pixels changes at once (lights, IR switching), the
    /// background is re-learned instead of reporting motion.
    pub lighting: f32,
    /// Weight of each sampled frame in the running-average background.
    pub alpha: f32,
    /// The backbone runs at least this often, motion or not.
    #[serde(with = "humantime_serde")]
    pub max_skip: Duration,
    /// The backbone keeps running this long after motion stops.
    #[serde(with = "humantime_serde")]
    pub hold: Duration,
    /// A head score at or above this fraction of the threshold keeps the backbone running for
    /// the clip's post-roll: near a decision nothing is skipped. 1 holds it only at a decision.
    pub near_decision: f32,
    /// Polygons whose pixels never count as motion (a tree, a road), each a list of `[x, y]`
    /// points in frame pixels (`source.width` x `source.height`).
    pub mask: Vec<Vec<[f32; 2]>>,
}

impl MotionConfig {
    /// What [`crate::motion::MotionDetector::new`] takes.
    pub fn params(&self) -> crate::motion::MotionParams {
        crate::motion::MotionParams {
            threshold: self.threshold,
            min_area: self.min_area,
            lighting: self.lighting,
            alpha: self.alpha,
            mask: self.mask.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClipConfig {
    /// Finished clips (`<id>.mp4` + `<id>.json`) appear here by atomic rename.
    pub spool_dir: PathBuf,
    #[serde(with = "humantime_serde")]
    pub pre_roll: Duration,
    #[serde(with = "humantime_serde")]
    pub post_roll: Duration,
    /// A continuing event extends the post-roll up to this total length.
    #[serde(with = "humantime_serde")]
    pub max_length: Duration,
    /// H.264 target bitrate in kbit/s (1500 keeps 10 s of 640x480 near 2 MB).
    pub bitrate_kbps: u32,
    /// Refuse to write a clip when the spool's filesystem has less free space than this.
    pub min_free_space: ByteSize,
    /// Clips that cannot be written (spool full) are held in memory up to this many bytes and
    /// retried; beyond it the oldest is dropped and its event closed as "clip dropped".
    pub hold_max: ByteSize,
    /// Space the detector keeps in the spool (`.reserve`) and releases when an event record or
    /// still cannot be written otherwise: the first alert must not wait for space.
    pub reserve: ByteSize,
    /// Directory for the frame journal: an event's frames, appended as they are captured, so a
    /// detector killed before its clip is written can still cut it after a restart. Meant for a
    /// memory-backed directory (an emptyDir with `medium: Memory`, or /run). Unset: no journal,
    /// and such an event is closed as "clip unavailable".
    pub frame_journal: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FirstAlert {
    /// An email with the still as soon as the event is decided, then the clip in a reply.
    Snapshot,
    /// One email per event, with the clip, once it is written.
    None,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AlertConfig {
    /// What the watchdog sends when an event is decided, before its clip exists.
    pub first: FirstAlert,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ArchiveConfig {
    /// `s3://bucket/prefix`, a local directory, or empty for no archive.
    pub target: String,
    /// Objects larger than this are uploaded in parts.
    pub multipart_threshold: ByteSize,
    pub part_size: ByteSize,
    /// First retry delay after a failed upload; doubles (with jitter) up to `retry-max`.
    #[serde(with = "humantime_serde")]
    pub retry_min: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct S3Config {
    /// Custom endpoint for S3-compatible stores; empty for AWS.
    pub endpoint: String,
    pub region: String,
    /// Path-style URLs (`endpoint/bucket/key`), needed by most S3-compatible stores.
    pub force_path_style: bool,
    /// Static credentials; when absent the standard AWS credential chain is used.
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    /// Whole-request timeout, so a dead link cannot stall the upload queue forever.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Time allowed to connect (at most `timeout`).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for the first byte of an answer, for a store that accepts and never
    /// answers (at most `timeout`).
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SmtpTls {
    /// TLS from the first byte (port 465).
    Implicit,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    Starttls,
    /// No encryption: only to localhost unless `smtp.allow-plain-remote`.
    None,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SmtpConfig {
    /// SMTP relay host; empty writes .eml files to `outbox-dir` instead (demo, tests).
    pub host: String,
    /// Defaults to 465, 587 or 25 by `tls`.
    pub port: Option<u16>,
    pub tls: SmtpTls,
    /// Allow `tls = "none"` to a host other than localhost (credentials would travel in clear).
    pub allow_plain_remote: bool,
    /// Extra CA certificate (PEM) to trust, for relays with a private CA.
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
    /// Placeholders: {node} {camera} {time} {score} {event_id}.
    pub subject: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Where .eml files go when `host` is empty.
    pub outbox_dir: PathBuf,
    /// Clips larger than this are linked (presigned S3 URL) instead of attached.
    pub max_attachment: ByteSize,
    /// Lifetime of presigned links.
    #[serde(with = "humantime_serde")]
    pub link_expiry: Duration,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WatchMode {
    /// inotify, falling back to polling when the filesystem does not support it.
    Auto,
    Inotify,
    Poll,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WatchConfig {
    pub mode: WatchMode,
    /// Scan interval in poll mode (and the safety rescan with inotify is 60 s).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Wait for the archive marker before deleting; defaults to whether `archive.target` is set.
    pub require_archive: Option<bool>,
    /// Minimum time between two alert emails for one camera; events in between are summarised.
    #[serde(with = "humantime_serde")]
    pub min_gap: Duration,
    /// At most this many alert emails per camera per hour.
    pub max_per_hour: u32,
    #[serde(with = "humantime_serde")]
    pub retry_min: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Tries before a permanently rejected recipient (5xx) is given up.
    pub permanent_attempts: u32,
    /// Keep delivered and archived clips in the spool (evicted oldest first by the limits below).
    pub keep_delivered: bool,
    /// Above this total size, delivered and archived clips are evicted oldest first.
    pub spool_max_size: ByteSize,
    /// Below this much free space, likewise.
    pub spool_min_free: ByteSize,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "edgewatch".to_string())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node: hostname(),
            camera: "cam0".into(),
            log: LogConfig { format: LogFormat::Human, level: "info".into() },
            http: HttpConfig {
                listen: "0.0.0.0:9870".parse().expect("valid literal"),
                stale_after: Duration::from_secs(5),
            },
            source: SourceConfig {
                kind: SourceKind::V4l2,
                device: "/dev/video0".into(),
                width: 640,
                height: 480,
                fps: 15,
                pixel_format: PixelFormat::Auto,
                jpeg_quality: 80,
                reconnect_min: Duration::from_millis(500),
                reconnect_max: Duration::from_secs(30),
                path: None,
                pace: Pace::Realtime,
                looping: false,
            },
            model: ModelConfig {
                source: "/var/lib/edgewatch/model".into(),
                cache_dir: "/var/cache/edgewatch/model".into(),
                manifest_sha256: String::new(),
                backend: Backend::Auto,
                onnxruntime_library: None,
                threads: 1,
                channels_last: true,
                decode: crate::infer::Decode::Scaled,
                cpu_budget: 0.5,
            },
            decision: DecisionConfig { threshold: None, k: 3, n: 5, cooldown: Duration::from_secs(10) },
            motion: MotionConfig {
                enabled: true,
                threshold: crate::motion::DEFAULT_THRESHOLD,
                min_area: crate::motion::DEFAULT_MIN_AREA,
                lighting: crate::motion::DEFAULT_LIGHTING,
                alpha: crate::motion::DEFAULT_ALPHA,
                // A backstop for what the motion detector cannot see (a change slower than its
                // background follows): the model sees it within 10 s. Forced runs are then 1 in
                // 50 samples at 5/s; at 2-3 s they alone cost the still scene's 1/10 budget (a
                // lone run costs ~1.5x a steady one, out of cache). Past the head's window a still
                // ring is one feature, so the head rests too.
                max_skip: Duration::from_secs(10),
                // Covers a pause in a fight (a body on the ground) without re-waiting for motion.
                hold: Duration::from_secs(1),
                // The rule: within half the threshold the model is close to deciding.
                near_decision: 0.5,
                mask: Vec::new(),
            },
            clip: ClipConfig {
                spool_dir: "/var/spool/edgewatch".into(),
                pre_roll: Duration::from_secs(5),
                post_roll: Duration::from_secs(5),
                max_length: Duration::from_secs(30),
                bitrate_kbps: 1500,
                min_free_space: ByteSize::mib(64),
                hold_max: ByteSize::mib(32),
                reserve: ByteSize::mib(1),
                frame_journal: None,
            },
            alert: AlertConfig { first: FirstAlert::Snapshot },
            archive: ArchiveConfig {
                target: String::new(),
                multipart_threshold: ByteSize::mib(16),
                part_size: ByteSize::mib(8),
                retry_min: Duration::from_secs(1),
                retry_max: Duration::from_secs(300),
            },
            s3: S3Config {
                endpoint: String::new(),
                region: "us-east-1".into(),
                force_path_style: false,
                access_key_id: None,
                secret_access_key: None,
                session_token: None,
                timeout: Duration::from_secs(60),
                connect_timeout: Duration::from_secs(5),
                read_timeout: Duration::from_secs(15),
            },
            smtp: SmtpConfig {
                host: String::new(),
                port: None,
                tls: SmtpTls::Starttls,
                allow_plain_remote: false,
                ca_file: None,
                username: None,
                password: None,
                from: "edgewatch@localhost".into(),
                to: Vec::new(),
                subject: "[edgewatch] {node}/{camera}: event at {time} (score {score})".into(),
                timeout: Duration::from_secs(30),
                outbox_dir: "/var/spool/edgewatch-outbox".into(),
                max_attachment: ByteSize::mib(20),
                link_expiry: Duration::from_secs(7 * 24 * 3600),
            },
            watch: WatchConfig {
                mode: WatchMode::Auto,
                poll_interval: Duration::from_secs(2),
                require_archive: None,
                min_gap: Duration::from_secs(60),
                max_per_hour: 30,
                retry_min: Duration::from_secs(1),
                retry_max: Duration::from_secs(300),
                permanent_attempts: 3,
                keep_delivered: false,
                spool_max_size: ByteSize::gib(2),
                spool_min_free: ByteSize::mib(256),
            },
        }
    }
}

/// Where a model or an archive lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// Parses `s3://bucket/prefix` or a filesystem path.
    pub fn parse(s: &str) -> Result<Location, String> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("`{s}` has no bucket name (expected s3://bucket/prefix)"));
            }
            return Ok(Location::S3 { bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() });
        }
        if s.contains("://") {
            return Err(format!("`{s}`: only s3:// URLs and local paths are supported"));
        }
        Ok(Location::Local(PathBuf::from(s)))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Every problem found in a configuration, so `check-config` can list them all at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problem", self.0.len())?;
        if self.0.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str("):")?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where each key's value came from (the file, an environment variable, a secret file).
pub struct Origins(Figment);

impl Origins {
    /// `key` as written in the file (`clip.spool-dir`).
    pub fn of(&self, key: &str) -> String {
        self.0.find_metadata(key).map(describe_source).unwrap_or_else(|| "the built-in default".into())
    }
}

/// One key set by one environment variable or secret file, named so errors say where it came from.
struct Single {
    origin: String,
    key: String,
    value: Value,
}

impl Provider for Single {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.origin.clone())
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut parts: Vec<&str> = self.key.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        let mut dict = Dict::new();
        dict.insert(last.to_string(), self.value.clone());
        for part in parts.into_iter().rev() {
            let mut outer = Dict::new();
            outer.insert(part.to_string(), Value::from(dict));
            dict = outer;
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Maps `EDGEWATCH_S3__SECRET_ACCESS_KEY` to `s3.secret-access-key`.
fn env_key_to_path(var: &str) -> String {
    var.to_ascii_lowercase().split("__").map(|s| s.replace('_', "-")).collect::<Vec<_>>().join(".")
}

/// Where configuration comes from; tests set `env` explicitly instead of touching the process.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// A TOML file; `None` uses built-in defaults (plus the environment) only.
    pub file: Option<PathBuf>,
    /// Whether a missing `file` is an error (true when the user named it).
    pub file_required: bool,
    /// Environment variables to consult (name, value).
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The process environment and the given file.
    pub fn from_process(file: Option<PathBuf>, file_required: bool) -> Self {
        Sources { file, file_required, env: std::env::vars().collect() }
    }
}

impl Config {
    /// Layers every source and validates the result, reporting every problem found.
    pub fn load(sources: &Sources) -> Result<Config, ConfigErrors> {
        Self::load_with_defaults(Config::default(), sources)
    }

    /// Like [`Config::load`] but over other defaults (the demo's, for example).
    pub fn load_with_defaults(defaults: Config, sources: &Sources) -> Result<Config, ConfigErrors> {
        Self::load_with_origins(defaults, sources).map(|(c, _)| c)
    }

    /// Like [`Config::load_with_defaults`], with where each key's value came from.
    pub fn load_with_origins(defaults: Config, sources: &Sources) -> Result<(Config, Origins), ConfigErrors> {
        let mut problems = Vec::new();
        let known = Figment::from(Serialized::defaults(&defaults));
        let mut user = Figment::new();

        if let Some(file) = &sources.file {
            if file.exists() {
                user = user.merge(Toml::file_exact(file));
            } else if sources.file_required {
                problems.push(format!("config file {} does not exist", file.display()));
            }
        }

        // A key whose own name ends in `-file` (`smtp.ca-file`) is set by its variable as is;
        // any other `*_FILE` variable names a secret file holding the value of its key.
        let names_a_key = |rest: &str| known.find_value(&env_key_to_path(rest)).is_ok();
        let is_secret_file = |rest: &str| rest.ends_with(ENV_FILE_SUFFIX) && !names_a_key(rest);
        let env_pairs: Vec<(String, String)> = sources
            .env
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(ENV_PREFIX)?;
                // EDGEWATCH_CONFIG names the file (the CLI reads it); it is not a key.
                (!rest.is_empty() && rest != "CONFIG" && !is_secret_file(rest)).then(|| (rest.to_string(), v.clone()))
            })
            .collect();
        // figment's Env reads the process environment; tests pass an explicit list, so each
        // variable becomes its own provider, parsed like figment's Env (`15` → int, `true` → bool).
        for (rest, v) in &env_pairs {
            user = user.merge(Single {
                origin: format!("environment variable `{ENV_PREFIX}{rest}`"),
                key: env_key_to_path(rest),
                value: v.parse().unwrap_or_else(|_| Value::from(v.clone())),
            });
        }

        for (k, file) in &sources.env {
            let Some(rest) = k.strip_prefix(ENV_PREFIX) else { continue };
            if !is_secret_file(rest) {
                continue;
            }
            let rest = rest.strip_suffix(ENV_FILE_SUFFIX).expect("checked above");
            if rest.is_empty() {
                continue;
            }
            match std::fs::read_to_string(file) {
                Ok(content) => {
                    user = user.merge(Single {
                        origin: format!("secret file named by `{k}`"),
                        key: env_key_to_path(rest),
                        // Taken verbatim (never parsed), less the newline such files end with.
                        value: Value::from(content.trim_end_matches(['\n', '\r']).to_string()),
                    })
                }
                // The error names the variable and the path, never the content.
                Err(e) => problems.push(format!("`{k}` names {file}, which cannot be read: {e}")),
            }
        }

        // Unknown keys: compare the user's key paths with the defaults' (serde stops at the first).
        let mut unknown = BTreeSet::new();
        let user_v = match (known.extract::<Value>(), user.extract::<Value>()) {
            (Ok(known_v), Ok(user_v)) => {
                unknown_keys(&known_v, &user_v, "", &mut unknown);
                for key in &unknown {
                    let from = user.find_metadata(key).map(describe_source).unwrap_or_else(|| "unknown source".into());
                    problems.push(format!("unknown key `{key}` (from {from})"));
                }
                user_v
            }
            (_, Err(e)) | (Err(e), _) => {
                problems.extend(figment_problems(e, &user));
                return Err(ConfigErrors(problems));
            }
        };

        // The rest is read without the unknown keys and section by section, so that one bad
        // value does not hide the others (serde stops at the first error in a struct); a
        // section that cannot be read keeps its defaults for the cross-field rules below.
        let merged = known.merge(Serialized::defaults(without_keys(user_v, &unknown)));
        let mut config = defaults;
        for (key, field) in [("node", &mut config.node), ("camera", &mut config.camera)] {
            match merged.extract_inner(key) {
                Ok(v) => *field = v,
                Err(e) => problems.extend(figment_problems(e, &user)),
            }
        }
        // A section at a time, its errors' paths prefixed with its name.
        macro_rules! read {
            ($($field:ident: $key:literal),*) => {$(
                match merged.focus($key).extract() {
                    Ok(v) => config.$field = v,
                    Err(e) => problems.extend(figment_problems(prefixed(e, $key), &user)),
                }
            )*};
        }
        read!(log: "log", http: "http", source: "source", model: "model", decision: "decision", motion: "motion",
            clip: "clip", alert: "alert", archive: "archive", s3: "s3", smtp: "smtp", watch: "watch");
        // Cross-field rules, each message with where its first key's value came from.
        for msg in config.validate() {
            let key = msg.split('`').nth(1).unwrap_or_default();
            match user.find_metadata(key) {
                Some(m) => problems.push(format!("{msg} (from {})", describe_source(m))),
                None => problems.push(msg),
            }
        }
        if problems.is_empty() {
            Ok((config, Origins(user)))
        } else {
            Err(ConfigErrors(problems))
        }
    }

    /// Cross-field rules serde cannot express. Each message names the key and the fix.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        let s = &self.source;
        if self.node.trim().is_empty() {
            p.push("`node` is empty; set it to this node's name".into());
        }
        if !is_key_safe(&self.node) || !is_key_safe(&self.camera) {
            p.push("`node` and `camera` may contain only letters, digits, `-`, `_` and `.` (they become file names and object keys)".into());
        }
        match s.kind {
            SourceKind::File => {
                if s.path.is_none() {
                    p.push("`source.path` is required when `source.kind = \"file\"`".into());
                }
            }
            SourceKind::V4l2 => {
                if s.width == 0 || s.height == 0 {
                    p.push("`source.width` and `source.height` must be positive".into());
                }
            }
        }
        if s.fps == 0 || s.fps > 120 {
            p.push(format!("`source.fps` = {} is out of range (1..=120)", s.fps));
        }
        if !(1..=100).contains(&s.jpeg_quality) {
            p.push(format!("`source.jpeg-quality` = {} is out of range (1..=100)", s.jpeg_quality));
        }
        if s.reconnect_min.is_zero() || s.reconnect_min > s.reconnect_max {
            p.push("`source.reconnect-min` must be positive and at most `source.reconnect-max`".into());
        }
        if let Err(e) = Location::parse(&self.model.source) {
            p.push(format!("`model.source`: {e}"));
        }
        if !self.model.manifest_sha256.is_empty()
            && (self.model.manifest_sha256.len() != 64
                || !self.model.manifest_sha256.chars().all(|c| c.is_ascii_hexdigit()))
        {
            p.push("`model.manifest-sha256` must be 64 hex digits or empty".into());
        }
        if !(self.model.cpu_budget > 0.0 && self.model.cpu_budget <= 64.0) {
            p.push(format!(
                "`model.cpu-budget` = {} is out of range (above 0, at most 64 cores)",
                self.model.cpu_budget
            ));
        }
        if self.model.threads == 0 || self.model.threads > 16 {
            p.push(format!("`model.threads` = {} is out of range (1..=16)", self.model.threads));
        }
        if self.model.backend == Backend::Onnxruntime && !cfg!(feature = "onnxruntime") {
            p.push(
                "`model.backend` = \"onnxruntime\" is not available: this binary was built without the \
                 `onnxruntime` cargo feature (use \"tract\", or a build with `--features onnxruntime`)"
                    .into(),
            );
        }
        if self.model.onnxruntime_library.as_ref().is_some_and(|l| l.as_os_str().is_empty()) {
            p.push(
                "`model.onnxruntime-library` is empty; remove it to use ORT_DYLIB_PATH or the loader's search path"
                    .into(),
            );
        }
        let d = &self.decision;
        if let Some(t) = d.threshold {
            if !(0.0..=1.0).contains(&t) || t.is_nan() {
                p.push(format!("`decision.threshold` = {t} must be within 0..=1"));
            }
        }
        if d.n == 0 || d.k == 0 || d.k > d.n {
            p.push(format!("`decision.k` = {} and `decision.n` = {} must satisfy 1 <= k <= n", d.k, d.n));
        }
        if d.n > 1000 {
            p.push("`decision.n` is larger than 1000".into());
        }
        let mo = &self.motion;
        if mo.threshold == 0 {
            p.push("`motion.threshold` = 0 is out of range (1..=255)".into());
        }
        for (key, v) in [("min-area", mo.min_area), ("lighting", mo.lighting), ("alpha", mo.alpha)] {
            // Written so that NaN fails too.
            if !(v > 0.0 && v <= 1.0) {
                p.push(format!("`motion.{key}` = {v} must be within (0, 1]"));
            }
        }
        if !(0.0..=1.0).contains(&mo.near_decision) {
            // Above 1 an open event's frames could be skipped; NaN fails the range too.
            p.push(format!("`motion.near-decision` must be between 0 and 1, got {}", mo.near_decision));
        }
        if mo.max_skip.is_zero() {
            p.push(
                "`motion.max-skip` must be positive (`motion.enabled = false` runs the backbone on every frame)".into(),
            );
        }
        for (i, poly) in mo.mask.iter().enumerate() {
            if poly.len() < 3 {
                p.push(format!("`motion.mask` polygon {i} has {} point(s); a polygon needs at least 3", poly.len()));
            }
            let (w, h) = (s.width as f32, s.height as f32);
            for (j, &[x, y]) in poly.iter().enumerate() {
                if !((0.0..=w).contains(&x) && (0.0..=h).contains(&y)) {
                    p.push(format!(
                        "`motion.mask` polygon {i}, point {j} [{x}, {y}] is outside the {}x{} frame (`source.width` x `source.height`)",
                        s.width, s.height
                    ));
                }
            }
        }
        let c = &self.clip;
        if c.post_roll.is_zero() {
            p.push("`clip.post-roll` must be positive".into());
        }
        if c.pre_roll > Duration::from_secs(60) {
            p.push("`clip.pre-roll` over 60 s would hold too many frames in memory".into());
        }
        if c.max_length < c.pre_roll + c.post_roll {
            p.push(format!(
                "`clip.max-length` ({}) must be at least `clip.pre-roll` + `clip.post-roll` ({})",
                humantime::format_duration(c.max_length),
                humantime::format_duration(c.pre_roll + c.post_roll)
            ));
        }
        if c.max_length > Duration::from_secs(600) {
            p.push("`clip.max-length` over 10 minutes is not supported".into());
        }
        if !(100..=20_000).contains(&c.bitrate_kbps) {
            p.push(format!("`clip.bitrate-kbps` = {} is out of range (100..=20000)", c.bitrate_kbps));
        }
        if c.spool_dir.as_os_str().is_empty() {
            p.push("`clip.spool-dir` is empty".into());
        }
        if c.reserve > ByteSize::mib(64) {
            p.push("`clip.reserve` over 64 MiB would take more than the events it is for need".into());
        }
        if let Some(j) = &c.frame_journal {
            if j.as_os_str().is_empty() || j == &c.spool_dir || j.starts_with(&c.spool_dir) {
                p.push("`clip.frame-journal` must be a directory of its own, outside `clip.spool-dir` (a memory-backed one such as /run/edgewatch/frames)".into());
            }
        }
        let a = &self.archive;
        let archive = if a.target.is_empty() {
            None
        } else {
            match Location::parse(&a.target) {
                Ok(l) => Some(l),
                Err(e) => {
                    p.push(format!("`archive.target`: {e}"));
                    None
                }
            }
        };
        if let Some(Location::Local(dir)) = &archive {
            if dir == &c.spool_dir {
                p.push("`archive.target` must not be the spool directory".into());
            }
        }
        // S3 rejects parts under 5 MiB (except the last), so smaller sizes only work on some stores.
        if a.part_size < ByteSize::mib(5) {
            p.push("`archive.part-size` must be at least 5 MiB (the S3 minimum)".into());
        }
        if a.multipart_threshold < a.part_size {
            p.push("`archive.multipart-threshold` must be at least `archive.part-size`".into());
        }
        if a.retry_min.is_zero() || a.retry_min > a.retry_max {
            p.push("`archive.retry-min` must be positive and at most `archive.retry-max`".into());
        }
        let uses_s3 = matches!(archive, Some(Location::S3 { .. }))
            || matches!(Location::parse(&self.model.source), Ok(Location::S3 { .. }));
        let s3 = &self.s3;
        if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
            p.push("`s3.access-key-id` and `s3.secret-access-key` must be given together (or neither, for the AWS credential chain)".into());
        }
        if uses_s3 && s3.region.is_empty() {
            p.push("`s3.region` is required when S3 is used".into());
        }
        if !(s3.endpoint.is_empty() || s3.endpoint.starts_with("http://") || s3.endpoint.starts_with("https://")) {
            p.push(format!("`s3.endpoint` = `{}` must start with http:// or https://", s3.endpoint));
        }
        if s3.timeout.is_zero() || s3.connect_timeout.is_zero() || s3.read_timeout.is_zero() {
            p.push("`s3.timeout`, `s3.connect-timeout` and `s3.read-timeout` must be positive".into());
        }
        let m = &self.smtp;
        if !m.host.is_empty() {
            if m.to.is_empty() {
                p.push("`smtp.host` is set but `smtp.to` has no recipient".into());
            }
            let local = matches!(m.host.as_str(), "localhost" | "127.0.0.1" | "::1");
            if m.tls == SmtpTls::None && !local && !m.allow_plain_remote {
                p.push(format!(
                    "`smtp.tls = \"none\"` to `{}` would send mail (and credentials) in clear; use starttls or implicit, or set `smtp.allow-plain-remote = true`",
                    m.host
                ));
            }
            // username without password is checked when the watchdog starts: the password
            // usually arrives at run time through EDGEWATCH_SMTP__PASSWORD_FILE.
        }
        let is_address =
            |a: &str| a.parse::<lettre::Address>().is_ok() || a.parse::<lettre::message::Mailbox>().is_ok();
        if !is_address(&m.from) {
            p.push(format!("`smtp.from` = `{}` is not an email address", m.from));
        }
        for addr in m.to.iter().filter(|a| !is_address(a)) {
            p.push(format!("`smtp.to` holds `{addr}`, which is not an email address"));
        }
        if m.timeout.is_zero() {
            p.push("`smtp.timeout` must be positive".into());
        }
        let w = &self.watch;
        if w.poll_interval.is_zero() {
            p.push("`watch.poll-interval` must be positive".into());
        }
        if w.retry_min.is_zero() || w.retry_min > w.retry_max {
            p.push("`watch.retry-min` must be positive and at most `watch.retry-max`".into());
        }
        if w.permanent_attempts == 0 {
            p.push("`watch.permanent-attempts` must be at least 1".into());
        }
        if w.max_per_hour == 0 {
            p.push("`watch.max-per-hour` must be at least 1".into());
        }
        if w.require_archive == Some(true) && self.archive.target.is_empty() {
            p.push("`watch.require-archive = true` but `archive.target` is empty: clips would never be deleted".into());
        }
        p
    }

    /// Defaults for the watchdog: the same, but metrics on 9871 so both containers of a pod
    /// (one network namespace) can run with an unchanged config.
    pub fn watchdog_defaults() -> Config {
        let mut c = Config::default();
        c.http.listen.set_port(9871);
        c
    }

    /// Every secret value in the config, for the log writer to redact wherever they appear.
    pub fn secrets(&self) -> Vec<String> {
        let s3 = [&self.s3.access_key_id, &self.s3.secret_access_key, &self.s3.session_token];
        s3.into_iter().chain([&self.smtp.password]).flatten().map(|s| s.expose().to_string()).collect()
    }

    /// Whether the watchdog waits for the archive marker before deleting a clip.
    pub fn require_archive(&self) -> bool {
        self.watch.require_archive.unwrap_or(!self.archive.target.is_empty())
    }

    /// The archive target, if any (validated by [`Config::validate`]).
    pub fn archive_location(&self) -> Option<Location> {
        (!self.archive.target.is_empty()).then(|| Location::parse(&self.archive.target).ok()).flatten()
    }

    /// The decision threshold: the config's override or the manifest's.
    pub fn threshold(&self, manifest_threshold: f32) -> f32 {
        self.decision.threshold.unwrap_or(manifest_threshold)
    }

    /// The config as TOML with secrets redacted (for `check-config --print`).
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

fn is_key_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s != "."
        && s != ".."
}

fn unknown_keys(known: &Value, user: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let (Some(kd), Some(ud)) = (known.as_dict(), user.as_dict()) else { return };
    for (k, uv) in ud {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match kd.get(k) {
            None => {
                out.insert(path);
            }
            Some(kv) => unknown_keys(kv, uv, &path, out),
        }
    }
}

fn describe_source(m: &Metadata) -> String {
    match &m.source {
        Some(figment::Source::File(p)) => format!("{} {}", m.name, p.display()),
        _ => m.name.to_string(),
    }
}

/// figment's errors, each with its key and where the user's value came from (the values are
/// read from a merged copy, so the origin is looked up in the user's own layers).
fn figment_problems(e: figment::Error, user: &Figment) -> Vec<String> {
    e.into_iter()
        .map(|e| {
            let path = e.path.join(".");
            let key = if path.is_empty() { String::new() } else { format!("`{path}`: ") };
            let from = user
                .find_metadata(&path)
                .or(e.metadata.as_ref())
                .map(|m| format!(" (from {})", describe_source(m)))
                .unwrap_or_default();
            format!("{key}{}{from}", e.kind)
        })
        .collect()
}

/// `e` with `section` in front of each error's key path.
fn prefixed(e: figment::Error, section: &str) -> figment::Error {
    let mut out: Option<figment::Error> = None;
    for mut one in e {
        one.path.insert(0, section.to_string());
        out = Some(match out {
            None => one,
            Some(prev) => prev.chain(one),
        });
    }
    out.expect("an error has at least one part")
}

/// `v` without the given dotted key paths.
fn without_keys(mut v: Value, paths: &BTreeSet<String>) -> Value {
    fn remove(v: &mut Value, parts: &[&str]) {
        let Value::Dict(_, d) = v else { return };
        match parts {
            [last] => {
                d.remove(*last);
            }
            [first, rest @ ..] => {
                if let Some(next) = d.get_mut(*first) {
                    remove(next, rest)
                }
            }
            [] => {}
        }
    }
    for path in paths {
        remove(&mut v, &path.split('.').collect::<Vec<_>>());
    }
    v
}

/// Reads a config for `check-config`: no side effects, every problem listed.
pub fn check_file(path: &Path, defaults: Config) -> Result<(Config, Origins), ConfigErrors> {
    Config::load_with_origins(defaults, &Sources::from_process(Some(path.to_path_buf()), true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, toml).unwrap();
        Config::load(&Sources {
            file: Some(f),
            file_required: true,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        })
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Vec::<String>::new());
        let c = load("", &[]).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn precedence_file_then_env_then_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("sk");
        std::fs::write(&secret, "s3cr3t\n").unwrap();
        let c = load(
            "camera = \"door\"\n[source]\nfps = 10\n[s3]\naccess-key-id = \"from-file\"\nsecret-access-key = \"file\"\n",
            &[
                ("EDGEWATCH_SOURCE__FPS", "12"),
                ("EDGEWATCH_S3__SECRET_ACCESS_KEY", "from-env"),
                ("EDGEWATCH_S3__SECRET_ACCESS_KEY_FILE", secret.to_str().unwrap()),
                ("OTHER_SOURCE__FPS", "99"),
            ],
        )
        .unwrap();
        assert_eq!(c.camera, "door");
        assert_eq!(c.source.fps, 12);
        assert_eq!(c.s3.secret_access_key.as_ref().unwrap().expose(), "s3cr3t");
        assert_eq!(c.s3.access_key_id.as_ref().unwrap().expose(), "from-file");
    }

    #[test]
    fn a_missing_default_file_gives_the_defaults_and_a_named_one_is_an_error() {
        let missing = Some(PathBuf::from("/nonexistent/edgewatch.toml"));
        let c = Config::load(&Sources { file: missing.clone(), file_required: false, env: Vec::new() }).unwrap();
        assert_eq!(c, Config::default());
        let e = Config::load(&Sources { file: missing, file_required: true, env: Vec::new() }).unwrap_err();
        assert!(e.to_string().contains("config file /nonexistent/edgewatch.toml does not exist"), "{e}");
    }

    #[test]
    fn plain_smtp_to_a_remote_host_needs_allow_plain_remote() {
        let toml = "[smtp]\nhost = \"mail.example.com\"\ntls = \"none\"\nto = [\"a@example.com\"]\n";
        let e = load(toml, &[]).unwrap_err().to_string();
        assert!(e.contains("would send mail (and credentials) in clear"), "{e}");
        let c = load(&format!("{toml}allow-plain-remote = true\n"), &[]).unwrap();
        assert!(c.smtp.allow_plain_remote);
        assert!(
            load("[smtp]\nhost = \"localhost\"\ntls = \"none\"\nto = [\"a@example.com\"]\n", &[]).is_ok(),
            "localhost is fine"
        );
    }

    #[test]
    fn a_key_named_file_is_set_by_its_variable_and_others_name_secret_files() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "hunter2\n").unwrap();
        let c = load(
            "",
            &[
                ("EDGEWATCH_SMTP__CA_FILE", "/etc/ssl/site-ca.pem"),
                ("EDGEWATCH_SMTP__PASSWORD_FILE", pw.to_str().unwrap()),
            ],
        )
        .unwrap();
        assert_eq!(c.smtp.ca_file.as_deref(), Some(Path::new("/etc/ssl/site-ca.pem")), "the key smtp.ca-file, as is");
        assert_eq!(c.smtp.password.as_ref().unwrap().expose(), "hunter2", "smtp.password, from the file");
    }

    #[test]
    fn secrets_are_redacted() {
        let c = load("[s3]\naccess-key-id = \"AKIAXXXX\"\nsecret-access-key = \"topsecret\"\n", &[]).unwrap();
        for shown in [format!("{c:?}"), c.to_redacted_toml()] {
            assert!(!shown.contains("topsecret") && !shown.contains("AKIAXXXX"), "{shown}");
            assert!(shown.contains("[redacted]"));
        }
    }

    #[test]
    fn every_problem_is_listed_with_its_source() {
        let e =
            load("cmera = \"x\"\n[source]\nfsp = 3\n[decision]\nk = 9\nn = 2\n", &[("EDGEWATCH_CLIP__PRE_ROL", "1s")])
                .unwrap_err();
        let all = e.to_string();
        assert!(all.contains("unknown key `cmera` (from TOML file"), "{all}");
        assert!(all.contains("unknown key `source.fsp`"), "{all}");
        assert!(all.contains("unknown key `clip.pre-rol`"), "{all}");
        // And in the same run, the cross-field rule with its key and source.
        assert!(all.contains("`decision.k` = 9 and `decision.n` = 2") && all.contains("(from TOML file"), "{all}");
        assert_eq!(e.0.len(), 4, "{all}");
    }

    #[test]
    fn channels_last_is_on_unless_turned_off() {
        assert!(load("", &[]).unwrap().model.channels_last);
        assert!(!load("[model]\nchannels-last = false\n", &[]).unwrap().model.channels_last);
        assert!(!load("", &[("EDGEWATCH_MODEL__CHANNELS_LAST", "false")]).unwrap().model.channels_last);
    }

    #[test]
    fn decode_is_scaled_unless_full_is_chosen() {
        use crate::infer::Decode;
        assert_eq!(load("", &[]).unwrap().model.decode, Decode::Scaled);
        assert_eq!(load("[model]\ndecode = \"full\"\n", &[]).unwrap().model.decode, Decode::Full);
        let all = load("[model]\ndecode = \"dc-only\"\n", &[]).unwrap_err().to_string();
        assert!(all.contains("`model.decode`") && all.contains("dc-only"), "{all}");
    }

    #[test]
    fn the_backend_is_tract_unless_onnxruntime_is_chosen() {
        assert_eq!(load("", &[]).unwrap().model.backend, Backend::Auto);
        let toml = "[model]\nbackend = \"onnxruntime\"\nonnxruntime-library = \"/opt/ort/libonnxruntime.so\"\n";
        let r = load(toml, &[("EDGEWATCH_MODEL__THREADS", "2")]);
        if cfg!(feature = "onnxruntime") {
            let c = r.unwrap();
            assert_eq!(c.model.backend, Backend::Onnxruntime);
            assert_eq!(c.model.onnxruntime_library.as_deref(), Some(Path::new("/opt/ort/libonnxruntime.so")));
            assert_eq!(c.model.threads, 2);
        } else {
            let all = r.unwrap_err().to_string();
            assert!(
                all.contains("`model.backend` = \"onnxruntime\" is not available")
                    && all.contains("--features onnxruntime"),
                "{all}"
            );
        }
        let all = load("[model]\nbackend = \"openvino\"\n", &[]).unwrap_err().to_string();
        assert!(all.contains("`model.backend`") && all.contains("openvino"), "{all}");
    }

    #[test]
    fn motion_defaults_parse_and_are_the_detectors() {
        let c = load("[motion]\n", &[]).unwrap();
        assert_eq!(c.motion, Config::default().motion);
        assert!(c.motion.enabled && c.motion.mask.is_empty());
        assert_eq!((c.motion.max_skip, c.motion.hold), (Duration::from_secs(10), Duration::from_secs(1)));
        assert_eq!(c.motion.params(), crate::motion::MotionParams::default());
    }

    #[test]
    fn an_unknown_motion_key_is_rejected() {
        let all = load("[motion]\nthreshhold = 30\n", &[]).unwrap_err().to_string();
        assert!(all.contains("unknown key `motion.threshhold` (from TOML file"), "{all}");
    }

    #[test]
    fn motion_numbers_out_of_range_are_rejected() {
        let toml = "[motion]\nthreshold = 0\nmin-area = 0.0\nlighting = 1.5\nalpha = -0.1\nmax-skip = \"0s\"\nnear-decision = 1.5\n";
        let all = load(toml, &[]).unwrap_err().to_string();
        for want in [
            "`motion.threshold` = 0 is out of range (1..=255)",
            "`motion.min-area` = 0 must be within (0, 1]",
            "`motion.lighting` = 1.5 must be within (0, 1]",
            "`motion.alpha` = -0.1 must be within (0, 1]",
            "`motion.max-skip` must be positive",
            "`motion.near-decision` must be between 0 and 1, got 1.5",
        ] {
            assert!(all.contains(want), "{want}: {all}");
        }
        let all = load("[motion]\nthreshold = 256\n", &[]).unwrap_err().to_string();
        assert!(all.contains("`motion.threshold`"), "u8: {all}");
        let mut c = Config::default();
        c.motion.alpha = f32::NAN;
        assert_eq!(c.validate(), vec!["`motion.alpha` = NaN must be within (0, 1]".to_string()]);
    }

    #[test]
    fn a_motion_mask_outside_the_frame_or_with_too_few_points_is_rejected() {
        let mut c = Config::default();
        c.motion.mask = vec![vec![[0.0, 0.0], [641.0, 0.0], [640.0, 480.0]], vec![[1.0, 1.0], [2.0, 2.0]]];
        let p = c.validate();
        assert!(
            p.iter().any(|m| m.contains("`motion.mask` polygon 0, point 1 [641, 0] is outside the 640x480 frame")),
            "{p:?}"
        );
        assert!(p.iter().any(|m| m.contains("`motion.mask` polygon 1 has 2 point(s)")), "{p:?}");
        assert_eq!(p.len(), 2, "{p:?}");
        // From a file, against the configured frame size, with where the value came from.
        let all = load("[source]\nwidth = 320\nheight = 240\n[motion]\nmask = [[[0, 0], [320, 241], [0, 240]]]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            all.contains("polygon 0, point 1 [320, 241] is outside the 320x240 frame")
                && all.contains("(from TOML file"),
            "{all}"
        );
    }

    #[test]
    fn a_valid_motion_mask_is_accepted() {
        let toml = "[source]\nwidth = 320\nheight = 240\n[motion]\nthreshold = 30\nmin-area = 0.01\nmax-skip = \"5s\"\n\
                    hold = \"0s\"\nmask = [[[0, 0], [320, 0], [320, 40.5], [0, 40]], [[10, 200], [20, 240], [0, 240]]]\n";
        let c = load(toml, &[]).unwrap();
        let want = vec![
            vec![[0.0, 0.0], [320.0, 0.0], [320.0, 40.5], [0.0, 40.0]],
            vec![[10.0, 200.0], [20.0, 240.0], [0.0, 240.0]],
        ];
        assert_eq!(c.motion.mask, want);
        let p = c.motion.params();
        assert_eq!((p.threshold, p.min_area, p.mask), (30, 0.01, want));
        assert_eq!((c.motion.max_skip, c.motion.hold), (Duration::from_secs(5), Duration::ZERO));
        // `check-config --print` shows it, and what it shows loads back the same.
        let printed = c.to_redacted_toml();
        assert!(printed.contains("[motion]") && printed.contains("min-area = 0.01"), "{printed}");
        assert_eq!(load(&printed, &[]).unwrap().motion, c.motion, "{printed}");
    }
}
