//! The spool directory shared by the detector and the watchdog, and its on-disk protocol.
//!
//! ```text
//! <spool>/.tmp/             work files; never read by anyone else
//! <spool>/<id>.mp4          the clip (renamed into place first)
//! <spool>/<id>.jpg          a still of the moment the event fired
//! <spool>/<id>.json         the sidecar, renamed last: its appearance means "clip complete"
//! <spool>/<id>.archived     written by the archiver once both files are in the archive
//! ```
//! Every file is written to `.tmp/`, fsynced, and renamed, so no reader ever sees a partial file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const TMP_DIR: &str = ".tmp";
pub const CLIP_EXT: &str = "mp4";
pub const SIDECAR_EXT: &str = "json";
pub const STILL_EXT: &str = "jpg";
pub const ARCHIVED_EXT: &str = "archived";

/// Creates (or truncates) `path`, writes `data`, and fsyncs it.
pub fn write_file_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Makes renames in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `path` atomically: a temp file beside it, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    write_file_synced(&tmp, data)?;
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Bytes available to unprivileged users on the filesystem holding `dir`.
pub fn free_space(dir: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// One score sample in the sidecar.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ScorePoint {
    /// Seconds from the clip's first frame.
    pub t: f64,
    pub score: f32,
}

/// The JSON written next to each clip.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Sidecar {
    pub event_id: String,
    pub node: String,
    pub camera: String,
    /// When the decision fired.
    pub event_time: DateTime<Utc>,
    pub clip_start: DateTime<Utc>,
    pub clip_end: DateTime<Utc>,
    /// Seconds of video before the event.
    pub pre_roll: f64,
    /// Seconds of video in the clip.
    pub duration: f64,
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    pub peak_score: f32,
    pub threshold: f32,
    pub model_name: String,
    pub model_sha256: String,
    pub scores: Vec<ScorePoint>,
    /// File name of the clip in the spool.
    pub clip_file: String,
    /// File name of the still (the frame at the decision) in the spool.
    pub still_file: String,
    pub clip_bytes: u64,
    pub clip_sha256: String,
}

/// What the archiver records once a clip is archived.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Archived {
    /// `s3://bucket/key` or a local path.
    pub clip_url: String,
    pub sidecar_url: String,
    pub archived_at: DateTime<Utc>,
}

/// Paths of one clip's files.
#[derive(Clone, Debug)]
pub struct ClipPaths {
    pub clip: PathBuf,
    pub still: PathBuf,
    pub sidecar: PathBuf,
    pub archived: PathBuf,
}

impl ClipPaths {
    pub fn new(spool: &Path, id: &str) -> Self {
        ClipPaths {
            clip: spool.join(format!("{id}.{CLIP_EXT}")),
            still: spool.join(format!("{id}.{STILL_EXT}")),
            sidecar: spool.join(format!("{id}.{SIDECAR_EXT}")),
            archived: spool.join(format!("{id}.{ARCHIVED_EXT}")),
        }
    }
}

/// Creates the spool and its temp dir, and clears temp files left by a crash (they were never
/// renamed, so nobody has seen them and the clip they belonged to is incomplete).
pub fn prepare(spool: &Path) -> io::Result<()> {
    fs::create_dir_all(spool.join(TMP_DIR))?;
    for e in fs::read_dir(spool.join(TMP_DIR))? {
        let e = e?;
        tracing::warn!(file = %e.path().display(), "removing an unfinished temp file from a previous run");
        let _ = fs::remove_file(e.path());
    }
    Ok(())
}

/// Ids of complete clips (sidecar present), oldest first by id (ids start with the UTC time).
pub fn complete_clips(spool: &Path) -> io::Result<Vec<String>> {
    let mut ids: Vec<String> = fs::read_dir(spool)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(&format!(".{SIDECAR_EXT}"))?.to_string();
            (!id.starts_with('.')).then_some(id)
        })
        .collect();
    ids.sort();
    Ok(ids)
}

pub fn read_sidecar(path: &Path) -> io::Result<Sidecar> {
    let data = fs::read(path)?;
    serde_json::from_slice(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_temp_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn prepare_clears_stale_temp_files_and_lists_complete_clips() {
        let d = tempfile::tempdir().unwrap();
        prepare(d.path()).unwrap();
        fs::write(d.path().join(TMP_DIR).join("x.mp4"), b"partial").unwrap();
        fs::write(d.path().join("b.json"), b"{}").unwrap();
        fs::write(d.path().join("a.json"), b"{}").unwrap();
        fs::write(d.path().join("c.mp4"), b"no sidecar yet").unwrap();
        fs::write(d.path().join(".a.json.tmp"), b"").unwrap();
        prepare(d.path()).unwrap();
        assert_eq!(fs::read_dir(d.path().join(TMP_DIR)).unwrap().count(), 0);
        assert_eq!(complete_clips(d.path()).unwrap(), vec!["a".to_string(), "b".to_string()]);
        assert!(free_space(d.path()).unwrap() > 0);
    }
}
