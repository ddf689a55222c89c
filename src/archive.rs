//! Archiving clips to S3 (or a local directory) from a durable queue.
//!
//! The queue *is* the spool: every complete clip without an `<id>.archived` marker is pending,
//! so pending uploads survive restarts without a separate journal. Object keys are
//! deterministic (`prefix/node/date/id.ext`), so a retry after a crash overwrites the same
//! object instead of creating a duplicate.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{ArchiveConfig, Location};
use crate::s3::{S3Client, S3Error};
use crate::spool::{self, Archived, ClipPaths, Sidecar};
use crate::telemetry::{ClassLabel, DetectorMetrics, ResultLabel};

pub enum Target {
    Dir(PathBuf),
    S3 { client: S3Client, bucket: String, prefix: String },
}

impl Target {
    pub fn new(loc: Location, s3: Option<S3Client>) -> Result<Target, String> {
        Ok(match loc {
            Location::Local(dir) => Target::Dir(dir),
            Location::S3 { bucket, prefix } => Target::S3 {
                client: s3.ok_or("archive.target is on S3 but no S3 client was configured")?,
                bucket,
                prefix,
            },
        })
    }
}

/// The object key of a spool file: `prefix/node/YYYY-MM-DD/file`.
pub fn object_key(prefix: &str, sidecar: &Sidecar, file: &str) -> String {
    let date = sidecar.event_time.format("%Y-%m-%d");
    let rel = format!("{}/{date}/{file}", sidecar.node);
    if prefix.is_empty() {
        rel
    } else {
        format!("{prefix}/{rel}")
    }
}

#[derive(Debug, thiserror::Error)]
enum UploadError {
    /// The clip vanished from the spool (deleted by hand?): nothing left to archive.
    #[error("clip files are gone from the spool: {0}")]
    Gone(std::io::Error),
    #[error("{0}")]
    S3(#[from] S3Error),
    #[error("writing the archive: {0}")]
    Io(std::io::Error),
}

pub struct Archiver {
    pub target: Target,
    pub spool: PathBuf,
    pub cfg: ArchiveConfig,
    pub metrics: DetectorMetrics,
}

impl Archiver {
    /// Uploads queued clips until `ids` is closed and the queue is empty, or until shutdown.
    /// Returns the ids archived by this run.
    pub async fn run(self, mut ids: mpsc::UnboundedReceiver<String>, shutdown: CancellationToken) -> Vec<String> {
        let mut queue: VecDeque<String> = VecDeque::new();
        let spool = self.spool.clone();
        match tokio::task::spawn_blocking(move || pending(&spool)).await {
            Ok(Ok(found)) => {
                if !found.is_empty() {
                    tracing::info!(count = found.len(), "resuming uploads left from a previous run");
                }
                queue.extend(found);
            }
            Ok(Err(e)) => {
                tracing::error!(spool = %self.spool.display(), error = %e, "cannot scan the spool for pending uploads")
            }
            Err(e) => tracing::error!(error = %e, "spool scan panicked"),
        }
        let mut done = Vec::new();
        let mut input_open = true;
        let mut delay = self.cfg.retry_min;
        loop {
            self.metrics.upload_queue_depth.set(queue.len() as i64);
            // Take everything already sent without waiting.
            while let Ok(id) = ids.try_recv() {
                if !queue.contains(&id) {
                    queue.push_back(id);
                }
            }
            self.metrics.upload_queue_depth.set(queue.len() as i64);
            let Some(id) = queue.front().cloned() else {
                if !input_open {
                    return done;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return done,
                    got = ids.recv() => match got {
                        Some(id) => queue.push_back(id),
                        None => input_open = false,
                    },
                }
                continue;
            };
            let started = Instant::now();
            let result = tokio::select! {
                // An interrupted upload stays queued (no marker was written) and resumes next start.
                _ = shutdown.cancelled() => return done,
                r = self.upload(&id) => r,
            };
            match result {
                Ok(()) => {
                    self.metrics.uploads.get_or_create(&ResultLabel { result: "ok" }).inc();
                    self.metrics.upload_seconds.observe(started.elapsed().as_secs_f64());
                    queue.pop_front();
                    done.push(id);
                    delay = self.cfg.retry_min;
                }
                Err(UploadError::Gone(e)) => {
                    self.metrics.uploads.get_or_create(&ResultLabel { result: "gone" }).inc();
                    tracing::error!(event_id = %id, error = %e, "clip disappeared from the spool before it was archived");
                    queue.pop_front();
                }
                Err(e) => {
                    self.metrics.uploads.get_or_create(&ResultLabel { result: "failed" }).inc();
                    let class = match &e {
                        UploadError::S3(s3) => s3.class(),
                        _ => "io",
                    };
                    self.metrics.archive_errors.get_or_create(&ClassLabel { class }).inc();
                    // Full jitter keeps a fleet from retrying in lockstep after an outage.
                    let wait = Duration::from_secs_f64(rand::rng().random_range(0.5..=1.0) * delay.as_secs_f64());
                    tracing::warn!(event_id = %id, class, error = %e, retry_in = ?wait, queued = queue.len(), "archive upload failed; will retry");
                    delay = (delay * 2).min(self.cfg.retry_max);
                    tokio::select! {
                        _ = shutdown.cancelled() => return done,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    async fn upload(&self, id: &str) -> Result<(), UploadError> {
        let paths = ClipPaths::new(&self.spool, id);
        let sidecar_bytes = tokio::fs::read(&paths.sidecar).await.map_err(gone_or_io)?;
        let sidecar: Sidecar = serde_json::from_slice(&sidecar_bytes)
            .map_err(|e| UploadError::Gone(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        // An event without a clip is archived as its sidecar and still: the record of what happened.
        let (data_path, data_name, data_type) = if sidecar.clip_missing.is_none() {
            (&paths.clip, format!("{id}.{}", spool::CLIP_EXT), "video/mp4")
        } else {
            (&paths.still, format!("{id}.{}", spool::STILL_EXT), "image/jpeg")
        };
        let data = match tokio::fs::read(data_path).await {
            Ok(d) => Some(d),
            Err(e) if sidecar.clip_missing.is_some() && e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(gone_or_io(e)),
        };
        let side_name = format!("{id}.{}", spool::SIDECAR_EXT);
        let (data_url, sidecar_url) = match &self.target {
            Target::S3 { client, bucket, prefix } => {
                let sk = object_key(prefix, &sidecar, &side_name);
                let (thr, part) =
                    (self.cfg.multipart_threshold.as_u64() as usize, self.cfg.part_size.as_u64() as usize);
                let mut data_url = String::new();
                if let Some(data) = data {
                    let dk = object_key(prefix, &sidecar, &data_name);
                    client.put(bucket, &dk, Bytes::from(data), data_type, thr, part).await?;
                    data_url = format!("s3://{bucket}/{dk}");
                }
                client.put(bucket, &sk, Bytes::from(sidecar_bytes), "application/json", thr, part).await?;
                (data_url, format!("s3://{bucket}/{sk}"))
            }
            Target::Dir(dir) => {
                let dk = dir.join(object_key("", &sidecar, &data_name));
                let sk = dir.join(object_key("", &sidecar, &side_name));
                let (dk2, sk2, has_data) = (dk.clone(), sk.clone(), data.is_some());
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    std::fs::create_dir_all(sk2.parent().unwrap_or(Path::new(".")))?;
                    if let Some(data) = data {
                        spool::write_atomic(&dk2, &data)?;
                    }
                    spool::write_atomic(&sk2, &sidecar_bytes)
                })
                .await
                .map_err(|e| UploadError::Io(std::io::Error::other(e)))?
                .map_err(UploadError::Io)?;
                (if has_data { dk.display().to_string() } else { String::new() }, sk.display().to_string())
            }
        };
        // The clip's URL; an event without a clip has none to link to.
        let clip_url = if sidecar.clip_missing.is_none() { data_url } else { String::new() };
        let marker = Archived { clip_url, sidecar_url, archived_at: Utc::now() };
        let data = serde_json::to_vec_pretty(&marker).map_err(|e| UploadError::Io(std::io::Error::other(e)))?;
        let path = paths.archived.clone();
        tokio::task::spawn_blocking(move || match spool::write_atomic(&path, &data) {
            // A full spool: an empty marker takes no data block, and the watchdog deletes a
            // delivered event only once the marker is there, which is what frees the spool. The
            // email then goes without the archive link (an attached clip needs none).
            Err(e) if spool::is_no_space(&e) => {
                tracing::warn!(path = %path.display(), error = %e, "spool full: writing an empty archive marker (no link)");
                spool::write_file_synced(&path, &[])
                    .and_then(|()| spool::sync_dir(path.parent().unwrap_or(std::path::Path::new("."))))
            }
            other => other,
        })
        .await
        .map_err(|e| UploadError::Io(std::io::Error::other(e)))?
        .map_err(UploadError::Io)?;
        tracing::info!(event_id = %id, url = %marker.sidecar_url, "event archived");
        Ok(())
    }
}

/// A file that is not there is gone for good (dropped from the queue); any other read error
/// (EIO, EMFILE, ...) may pass, so it is retried like a failed upload.
fn gone_or_io(e: std::io::Error) -> UploadError {
    if e.kind() == std::io::ErrorKind::NotFound {
        UploadError::Gone(e)
    } else {
        UploadError::Io(e)
    }
}

/// Complete clips in the spool that have no archive marker yet.
pub fn pending(spool: &Path) -> std::io::Result<Vec<String>> {
    Ok(spool::complete_clips(spool)?.into_iter().filter(|id| !ClipPaths::new(spool, id).archived.exists()).collect())
}
