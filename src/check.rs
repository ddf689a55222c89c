//! `edgewatch check-config`: the file, then the world it names. Offline by default: the model
//! loads, the video file or camera is there and is what it should be, the spool and the archive
//! directory can be written, the SMTP settings are complete. `--online` adds the servers: S3's
//! HeadBucket and an SMTP session up to AUTH, sending nothing.
//!
//! Every problem names the key and where its value came from. The exit status is the class of
//! the first problem in this order, so scripts can tell them apart:
//! 2 the file itself, 3 model, 4 video source, 5 spool, 6 archive and S3, 7 SMTP.

use std::path::{Path, PathBuf};

use crate::config::{Config, Location, Origins, SourceKind};

/// What a problem is about; its number is the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Config = 2,
    Model = 3,
    Source = 4,
    Spool = 5,
    Archive = 6,
    Smtp = 7,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Config => "config",
            Class::Model => "model",
            Class::Source => "source",
            Class::Spool => "spool",
            Class::Archive => "archive",
            Class::Smtp => "smtp",
        }
    }

    pub fn parse(s: &str) -> Option<Class> {
        [Class::Model, Class::Source, Class::Spool, Class::Archive, Class::Smtp].into_iter().find(|c| c.name() == s)
    }
}

#[derive(Clone, Debug)]
pub struct Problem {
    pub class: Class,
    /// The key at fault, as written in the file (`model.source`).
    pub key: String,
    /// Where its value came from: the file, an environment variable, a built-in default.
    pub origin: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] `{}` (from {}): {}", self.class.name(), self.key, self.origin, self.message)
    }
}

/// Which role the file is for: each checks what it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Detector,
    Watchdog,
    All,
}

impl Role {
    fn checks(self) -> &'static [Class] {
        match self {
            Role::Detector => &[Class::Model, Class::Source, Class::Spool, Class::Archive],
            Role::Watchdog => &[Class::Spool, Class::Archive, Class::Smtp],
            Role::All => &[Class::Model, Class::Source, Class::Spool, Class::Archive, Class::Smtp],
        }
    }
}

pub struct Options {
    pub role: Role,
    /// Classes not to check (a build sandbox has no camera, spool or secrets).
    pub skip: Vec<Class>,
    pub online: bool,
}

struct Report<'a> {
    origins: &'a Origins,
    problems: Vec<Problem>,
}

impl Report<'_> {
    fn add(&mut self, class: Class, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            class,
            key: key.to_string(),
            origin: self.origins.of(key),
            message: message.into(),
        });
    }
}

/// Checks everything the role uses; the problems, in class order.
pub async fn check(cfg: &Config, origins: &Origins, opts: &Options) -> Vec<Problem> {
    let mut r = Report { origins, problems: Vec::new() };
    let want = |c: Class| opts.role.checks().contains(&c) && !opts.skip.contains(&c);
    if want(Class::Model) {
        model(cfg, &mut r).await;
    }
    if want(Class::Source) {
        source(cfg, &mut r);
    }
    if want(Class::Spool) {
        spool(cfg, &mut r);
    }
    if want(Class::Archive) {
        archive(cfg, &mut r, opts.online).await;
    }
    if want(Class::Smtp) {
        smtp(cfg, &mut r, opts.online).await;
    }
    r.problems.sort_by_key(|p| p.class);
    r.problems
}

async fn model(cfg: &Config, r: &mut Report<'_>) {
    match Location::parse(&cfg.model.source) {
        Err(e) => r.add(Class::Model, "model.source", e),
        Ok(Location::S3 { bucket, .. }) => {
            if bucket.is_empty() {
                r.add(Class::Model, "model.source", "no bucket in the S3 location");
            }
        }
        Ok(Location::Local(dir)) => {
            if !dir.is_dir() {
                r.add(Class::Model, "model.source", format!("{} is not a directory", dir.display()));
                return;
            }
            // The same load the detector does: manifest, sha256 of each file, both graphs parsed
            // and their inputs and outputs checked against the manifest.
            let (pin, model_cfg) = (cfg.model.manifest_sha256.clone(), cfg.model.clone());
            let loaded = tokio::task::spawn_blocking(move || -> Result<(), String> {
                let bundle = crate::model::ModelBundle::from_dir(&dir, &pin).map_err(|e| e.to_string())?;
                crate::infer::Engine::load_with(&bundle, &model_cfg).map(|_| ()).map_err(|e| e.to_string())
            })
            .await;
            match loaded {
                Ok(Ok(())) => {}
                Ok(Err(e)) => r.add(Class::Model, "model.source", e),
                Err(e) => r.add(Class::Model, "model.source", format!("loading the model panicked: {e}")),
            }
        }
    }
}

fn source(cfg: &Config, r: &mut Report<'_>) {
    let s = &cfg.source;
    match s.kind {
        SourceKind::File => {
            let Some(path) = &s.path else { return }; // a cross-field rule already said so
            match std::fs::File::open(path) {
                Err(e) => r.add(Class::Source, "source.path", format!("cannot open {}: {e}", path.display())),
                Ok(f) => {
                    if let Err(e) = crate::source::AviReader::new(std::io::BufReader::new(f)) {
                        r.add(Class::Source, "source.path", format!("{}: {e}", path.display()));
                    }
                }
            }
        }
        SourceKind::V4l2 => {
            if let Err(e) = capture_device(&s.device) {
                r.add(Class::Source, "source.device", e);
            }
        }
    }
}

/// The device exists, is a character device, and is a V4L2 video capture device.
fn capture_device(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.file_type().is_char_device() {
        return Err(format!("{} is not a device (a V4L2 camera is a character device)", path.display()));
    }
    #[cfg(target_os = "linux")]
    {
        let dev = v4l::Device::with_path(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        let caps = dev.query_caps().map_err(|e| format!("{} is not a V4L2 device: {e}", path.display()))?;
        if !caps.capabilities.contains(v4l::capability::Flags::VIDEO_CAPTURE) {
            return Err(format!("{} ({}) is a V4L2 device but not a video capture device", path.display(), caps.card));
        }
    }
    Ok(())
}

/// Whether `dir` can be written, or created (its nearest existing ancestor can be written);
/// that existing directory.
fn writable_dir(dir: &Path) -> Result<PathBuf, String> {
    let mut probe: PathBuf = dir.to_path_buf();
    while !probe.exists() {
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p.to_path_buf(),
            _ => return Err(format!("{} cannot be created: no existing parent", dir.display())),
        }
    }
    if !probe.is_dir() {
        return Err(format!("{} is not a directory", probe.display()));
    }
    match rustix::fs::access(&probe, rustix::fs::Access::WRITE_OK) {
        Ok(()) => Ok(probe),
        Err(e) if probe == dir => Err(format!("{} is not writable: {e}", dir.display())),
        Err(e) => Err(format!("{} does not exist and {} is not writable: {e}", dir.display(), probe.display())),
    }
}

fn spool(cfg: &Config, r: &mut Report<'_>) {
    let dir = &cfg.clip.spool_dir;
    let existing = match writable_dir(dir) {
        Ok(d) => d,
        Err(e) => return r.add(Class::Spool, "clip.spool-dir", e),
    };
    // The filesystem the spool is (or will be) on.
    let min = cfg.clip.min_free_space.as_u64();
    match crate::spool::free_space(&existing) {
        Ok(free) if free < min => r.add(
            Class::Spool,
            "clip.min-free-space",
            format!("{} has {free} bytes free, below clip.min-free-space ({min})", existing.display()),
        ),
        Ok(_) => {}
        Err(e) => r.add(Class::Spool, "clip.spool-dir", format!("{}: {e}", existing.display())),
    }
    if let Some(j) = &cfg.clip.frame_journal {
        if let Err(e) = writable_dir(j) {
            r.add(Class::Spool, "clip.frame-journal", e);
        }
    }
}

async fn archive(cfg: &Config, r: &mut Report<'_>, online: bool) {
    let bucket = match cfg.archive_location() {
        None => None,
        Some(Location::Local(dir)) => {
            if let Err(e) = writable_dir(&dir) {
                r.add(Class::Archive, "archive.target", e);
            }
            None
        }
        Some(Location::S3 { bucket, .. }) => Some(bucket),
    };
    let model_bucket = match Location::parse(&cfg.model.source) {
        Ok(Location::S3 { bucket, .. }) => Some(bucket),
        _ => None,
    };
    if bucket.is_none() && model_bucket.is_none() {
        return;
    }
    let s3 = &cfg.s3;
    if s3.access_key_id.is_none() && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() && s3.endpoint.is_empty() {
        // The AWS chain may still find credentials (instance role, profile): a note, not a problem.
        tracing::debug!("no static S3 keys: the AWS credential chain will be used");
    }
    if !online {
        return;
    }
    let client = crate::s3::S3Client::new(s3).await;
    for (key, b) in [("archive.target", bucket), ("model.source", model_bucket)] {
        let Some(b) = b else { continue };
        if let Err(e) = client.head_bucket(&b).await {
            r.add(Class::Archive, key, format!("bucket {b} at {}: {e}", endpoint_name(&s3.endpoint)));
        }
    }
}

fn endpoint_name(endpoint: &str) -> &str {
    if endpoint.is_empty() {
        "AWS"
    } else {
        endpoint
    }
}

async fn smtp(cfg: &Config, r: &mut Report<'_>, online: bool) {
    let m = &cfg.smtp;
    if m.host.is_empty() {
        if let Err(e) = writable_dir(&m.outbox_dir) {
            r.add(Class::Smtp, "smtp.outbox-dir", e);
        }
        return;
    }
    // A password without a username is a leftover the watchdog ignores (it warns); a
    // username without a password cannot log in.
    if m.username.is_some() && m.password.is_none() {
        r.add(Class::Smtp, "smtp.password", "smtp.username is set but no password: set EDGEWATCH_SMTP__PASSWORD_FILE");
    }
    if let Some(ca) = &m.ca_file {
        match std::fs::read(ca) {
            Err(e) => r.add(Class::Smtp, "smtp.ca-file", format!("{}: {e}", ca.display())),
            Ok(pem) => {
                if lettre::transport::smtp::client::Certificate::from_pem(&pem).is_err() {
                    r.add(Class::Smtp, "smtp.ca-file", format!("{} holds no PEM certificate", ca.display()));
                }
            }
        }
    }
    if !online || r.problems.iter().any(|p| p.class == Class::Smtp) {
        return;
    }
    // Connect, TLS and AUTH as the watchdog does, then QUIT: nothing is sent.
    match crate::watchdog::mail::Mailer::new(m) {
        Err(e) => r.add(Class::Smtp, "smtp.host", format!("{e:#}")),
        Ok(mailer) => {
            if let Err(e) = mailer.reachable().await {
                let key = match e.class() {
                    "auth" => "smtp.password",
                    "tls" => "smtp.tls",
                    _ => "smtp.host",
                };
                r.add(Class::Smtp, key, format!("{} ({})", e, e.class()));
            }
        }
    }
}
