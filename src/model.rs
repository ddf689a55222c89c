//! The model contract (two ONNX files + a manifest) and fetching it from S3 into a verified cache.
//!
//! ```text
//! backbone.onnx  image [1,3,H,W] (normalised RGB)  -> feature [1,F]
//! head.onnx      features [1,T,F]                  -> score [1,1] (violence probability)
//! manifest.toml  input size, normalisation, T, sampling rate, threshold, sha256 of each file
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, Location};
use crate::s3::{S3Client, S3Error};

pub const MANIFEST_TOML: &str = "manifest.toml";
pub const MANIFEST_JSON: &str = "manifest.json";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// Manifest format version; only 1 exists.
    pub format: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub input: InputSpec,
    pub temporal: TemporalSpec,
    pub decision: DecisionSpec,
    pub backbone: FileSpec,
    pub head: FileSpec,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct InputSpec {
    pub width: u32,
    pub height: u32,
    /// Per-channel (RGB) mean and std applied to pixel/255.
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TemporalSpec {
    /// T: features per head evaluation.
    pub window: usize,
    /// Frames per second fed to the backbone.
    pub sample_fps: f64,
    /// The lowest rate the model was trained to accept (issue 23): the detector may sample as low
    /// as this to keep within `model.cpu-budget`. Absent: the rate is fixed at `sample-fps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_fps_min: Option<f64>,
    /// F: backbone feature size.
    pub feature_dim: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DecisionSpec {
    pub threshold: f32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSpec {
    /// File name relative to the manifest.
    pub file: String,
    pub sha256: String,
    /// Graph input and output names.
    pub input: String,
    pub output: String,
}

impl FileSpec {
    /// The manifest's digest for this file against the SHA-256 of what was read (a file changed
    /// since the bundle was verified fails like a corrupt one).
    pub fn check_digest(&self, actual: String) -> Result<(), ModelError> {
        if actual.eq_ignore_ascii_case(&self.sha256) {
            Ok(())
        } else {
            Err(ModelError::Checksum { path: self.file.clone(), expected: self.sha256.clone(), actual })
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model manifest {path}: {msg}")]
    Manifest { path: String, msg: String },
    #[error("model file {path}: sha256 is {actual}, the manifest says {expected}")]
    Checksum { path: String, expected: String, actual: String },
    #[error("model manifest sha256 is {actual}, `model.manifest-sha256` pins {expected}")]
    ManifestPin { expected: String, actual: String },
    #[error("reading model file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("model {what} does not fit the contract: {msg}")]
    Contract { what: String, msg: String },
    #[error("cannot load the onnxruntime library at {path}: {msg}")]
    Runtime { path: String, msg: String },
    #[error("inference backend `{0}` is not built into this binary (cargo feature `{0}`)")]
    BackendUnavailable(&'static str),
    #[error(
        "fetching the model from s3://{bucket}/{key} failed ({source}) and no verified cached copy exists in {cache}"
    )]
    Fetch { bucket: String, key: String, cache: String, source: S3Error },
}

impl Manifest {
    /// Parses TOML or JSON and checks the values make sense.
    pub fn parse(text: &str, json: bool, path: &str) -> Result<Manifest, ModelError> {
        let err = |msg: String| ModelError::Manifest { path: path.to_string(), msg };
        let m: Manifest = if json {
            serde_json::from_str(text).map_err(|e| err(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| err(e.to_string()))?
        };
        let mut problems = Vec::new();
        if m.format != 1 {
            problems.push(format!("format {} is not supported (expected 1)", m.format));
        }
        if m.input.width < 16 || m.input.height < 16 || m.input.width > 4096 || m.input.height > 4096 {
            problems.push(format!("input size {}x{} is out of range", m.input.width, m.input.height));
        }
        if m.input.std.iter().any(|s| *s <= 0.0 || !s.is_finite()) {
            problems.push("input.std must be positive".into());
        }
        if m.temporal.window == 0 || m.temporal.window > 512 {
            problems.push(format!("temporal.window {} is out of range (1..=512)", m.temporal.window));
        }
        if !(m.temporal.sample_fps > 0.0 && m.temporal.sample_fps <= 120.0) {
            problems.push(format!("temporal.sample-fps {} is out of range", m.temporal.sample_fps));
        }
        if let Some(min) = m.temporal.sample_fps_min {
            if !(min > 0.0 && min <= m.temporal.sample_fps) {
                problems.push(format!(
                    "temporal.sample-fps-min {min} must be above 0 and at most sample-fps ({})",
                    m.temporal.sample_fps
                ));
            }
        }
        if m.temporal.feature_dim == 0 {
            problems.push("temporal.feature-dim must be positive".into());
        }
        if !(0.0..=1.0).contains(&m.decision.threshold) {
            problems.push(format!("decision.threshold {} must be within 0..=1", m.decision.threshold));
        }
        for (what, f) in [("backbone", &m.backbone), ("head", &m.head)] {
            if f.sha256.len() != 64 || !f.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                problems.push(format!("{what}.sha256 must be 64 hex digits"));
            }
            if f.file.contains('/') || f.file.contains('\\') || f.file.starts_with('.') || f.file.is_empty() {
                problems.push(format!("{what}.file `{}` must be a plain file name next to the manifest", f.file));
            }
        }
        if problems.is_empty() {
            Ok(m)
        } else {
            Err(err(problems.join("; ")))
        }
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A reader that hashes what passes through it (SHA-256), so a file can be verified exactly as
/// it is parsed, without a copy in memory and without reading it twice.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: std::io::Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new() }
    }

    /// Reads what the consumer left unread (so the digest covers the whole input), then returns it.
    pub fn finish(mut self) -> std::io::Result<String> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok(hex::encode(self.hasher.finalize()))
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The SHA-256 of a file, read in pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    HashingReader::new(std::fs::File::open(path)?).finish()
}

/// A manifest and its files, read into memory and verified.
#[derive(Clone, Debug)]
pub struct ModelBundle {
    pub manifest: Manifest,
    pub manifest_sha256: String,
    /// The manifest exactly as read, so the cache keeps a copy with the same digest.
    pub manifest_bytes: Vec<u8>,
    pub manifest_is_json: bool,
    pub backbone: Vec<u8>,
    pub head: Vec<u8>,
    /// Where it was loaded from (for logs).
    pub origin: String,
    /// The directory the files were read from, when they were (a local model or the cache):
    /// [`crate::infer::Engine::load_taking`] then lets the engine read each file itself and
    /// checks its digest again, instead of holding a copy in memory while the engine loads.
    pub dir: Option<PathBuf>,
}

impl ModelBundle {
    /// Reads a model directory and verifies every checksum.
    pub fn from_dir(dir: &Path, pin: &str) -> Result<ModelBundle, ModelError> {
        let (path, json) = if dir.join(MANIFEST_TOML).exists() || !dir.join(MANIFEST_JSON).exists() {
            (dir.join(MANIFEST_TOML), false)
        } else {
            (dir.join(MANIFEST_JSON), true)
        };
        let read =
            |p: &Path| std::fs::read(p).map_err(|source| ModelError::Io { path: p.display().to_string(), source });
        let text = read(&path)?;
        let files = |f: &FileSpec| read(&dir.join(&f.file));
        let mut bundle = Self::from_parts(&text, json, &path.display().to_string(), pin, files)?;
        bundle.dir = Some(dir.to_path_buf());
        Ok(bundle)
    }

    /// Builds a bundle from a manifest's bytes and a way to read the files it names.
    pub fn from_parts(
        manifest_bytes: &[u8],
        json: bool,
        origin: &str,
        pin: &str,
        mut read: impl FnMut(&FileSpec) -> Result<Vec<u8>, ModelError>,
    ) -> Result<ModelBundle, ModelError> {
        let manifest_sha256 = sha256_hex(manifest_bytes);
        if !pin.is_empty() && !pin.eq_ignore_ascii_case(&manifest_sha256) {
            return Err(ModelError::ManifestPin { expected: pin.to_string(), actual: manifest_sha256 });
        }
        let text = std::str::from_utf8(manifest_bytes)
            .map_err(|_| ModelError::Manifest { path: origin.to_string(), msg: "not UTF-8".into() })?;
        let manifest = Manifest::parse(text, json, origin)?;
        let mut load = |f: &FileSpec| -> Result<Vec<u8>, ModelError> {
            let data = read(f)?;
            f.check_digest(sha256_hex(&data))?;
            Ok(data)
        };
        let backbone = load(&manifest.backbone)?;
        let head = load(&manifest.head)?;
        Ok(ModelBundle {
            manifest,
            manifest_sha256,
            manifest_bytes: manifest_bytes.to_vec(),
            manifest_is_json: json,
            backbone,
            head,
            origin: origin.to_string(),
            dir: None,
        })
    }

    /// Writes the bundle into `dir` atomically (temp dir + rename), for the cache.
    pub fn write_dir(&self, dir: &Path) -> std::io::Result<()> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)?;
        let tmp = parent.join(format!(".tmp-{}", self.manifest_sha256));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        crate::spool::write_file_synced(&tmp.join(&self.manifest.backbone.file), &self.backbone)?;
        crate::spool::write_file_synced(&tmp.join(&self.manifest.head.file), &self.head)?;
        let name = if self.manifest_is_json { MANIFEST_JSON } else { MANIFEST_TOML };
        crate::spool::write_file_synced(&tmp.join(name), &self.manifest_bytes)?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::rename(&tmp, dir)?;
        crate::spool::sync_dir(parent)
    }
}

/// Resolves `model.source`: a local directory is read directly; `s3://` is fetched into the
/// cache, and a verified cached copy is used when S3 cannot be reached.
pub async fn load(cfg: &Config, s3: Option<&S3Client>) -> Result<ModelBundle, anyhow::Error> {
    let loc = Location::parse(&cfg.model.source).map_err(anyhow::Error::msg)?;
    match loc {
        Location::Local(dir) => {
            let dir2 = dir.clone();
            let pin = cfg.model.manifest_sha256.clone();
            Ok(tokio::task::spawn_blocking(move || ModelBundle::from_dir(&dir2, &pin)).await??)
        }
        Location::S3 { bucket, prefix } => {
            let cache = cfg.model.cache_dir.clone();
            let s3 = s3.ok_or_else(|| anyhow::anyhow!("model.source is on S3 but no S3 client was configured"))?;
            match fetch_s3(s3, &bucket, &prefix, &cfg.model.manifest_sha256).await {
                Ok(bundle) => {
                    let target = cache_dir_for(&cache, &bundle.manifest_sha256);
                    let cache2 = cache.clone();
                    let (mut bundle, res) = tokio::task::spawn_blocking(move || {
                        let res = bundle.write_dir(&target).and_then(|()| {
                            crate::spool::write_atomic(&cache2.join("current"), bundle.manifest_sha256.as_bytes())
                        });
                        (bundle, res.map(|()| target))
                    })
                    .await?;
                    match res {
                        // Cached: the engine may read the files from there (see `ModelBundle::dir`).
                        Ok(dir) => bundle.dir = Some(dir),
                        // A read-only or full cache must not stop a detector that has its model.
                        Err(e) => tracing::warn!(cache = %cache.display(), error = %e, "cannot cache the model"),
                    }
                    Ok(bundle)
                }
                Err((key, e)) => {
                    let pin = cfg.model.manifest_sha256.clone();
                    let cache2 = cache.clone();
                    let cached = tokio::task::spawn_blocking(move || load_cached(&cache2, &pin)).await?;
                    match cached {
                        Some(b) => {
                            tracing::warn!(bucket = %bucket, key = %key, error = %e, sha256 = %b.manifest_sha256,
                                "S3 unreachable; starting with the verified cached model");
                            Ok(b)
                        }
                        None => {
                            Err(ModelError::Fetch { bucket, key, cache: cache.display().to_string(), source: e }.into())
                        }
                    }
                }
            }
        }
    }
}

fn cache_dir_for(cache: &Path, sha: &str) -> PathBuf {
    cache.join(sha)
}

fn load_cached(cache: &Path, pin: &str) -> Option<ModelBundle> {
    let sha = std::fs::read_to_string(cache.join("current")).ok()?;
    let dir = cache_dir_for(cache, sha.trim());
    match ModelBundle::from_dir(&dir, pin) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cached model is unusable");
            None
        }
    }
}

/// Downloads manifest and files; on failure returns the key that failed and why.
async fn fetch_s3(s3: &S3Client, bucket: &str, prefix: &str, pin: &str) -> Result<ModelBundle, (String, S3Error)> {
    let key_of = |name: &str| if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
    let toml_key = key_of(MANIFEST_TOML);
    let (manifest, json, mkey) = match s3.get(bucket, &toml_key).await {
        Ok(b) => (b, false, toml_key),
        Err(S3Error::NotFound { .. }) => {
            let k = key_of(MANIFEST_JSON);
            match s3.get(bucket, &k).await {
                Ok(b) => (b, true, k),
                Err(e) => return Err((toml_key, e)),
            }
        }
        Err(e) => return Err((toml_key, e)),
    };
    let origin = format!("s3://{bucket}/{mkey}");
    // Parse first (synchronously) to learn the file names, then fetch them.
    let text = String::from_utf8_lossy(&manifest).into_owned();
    let parsed = Manifest::parse(&text, json, &origin).map_err(|e| (mkey.clone(), S3Error::Invalid(e.to_string())))?;
    let mut files = std::collections::HashMap::new();
    for f in [&parsed.backbone, &parsed.head] {
        let k = key_of(&f.file);
        let data = s3.get(bucket, &k).await.map_err(|e| (k.clone(), e))?;
        files.insert(f.file.clone(), data);
    }
    ModelBundle::from_parts(&manifest, json, &origin, pin, |f| Ok(files.remove(&f.file).unwrap_or_default()))
        .map_err(|e| (mkey, S3Error::Invalid(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_MANIFEST: &str = include_str!("../model/test-brightness/manifest.toml");

    fn with_min(min: &str) -> String {
        TEST_MANIFEST.replace("sample-fps = 5.0", &format!("sample-fps = 5.0\nsample-fps-min = {min}"))
    }

    #[test]
    fn sample_fps_min_is_optional_and_checked() {
        let fixed = Manifest::parse(TEST_MANIFEST, false, "m.toml").unwrap();
        assert_eq!(fixed.temporal.sample_fps_min, None);
        let ranged = Manifest::parse(&with_min("2.5"), false, "m.toml").unwrap();
        assert_eq!(ranged.temporal.sample_fps_min, Some(2.5));
        for bad in ["0.0", "-1.0", "7.5"] {
            let err = Manifest::parse(&with_min(bad), false, "m.toml").unwrap_err().to_string();
            assert!(err.contains("temporal.sample-fps-min") && err.contains("m.toml"), "{bad}: {err}");
        }
    }
}
