//! The spool directory shared by the detector and the watchdog, and its on-disk protocol.
//!
//! ```text
//! <spool>/.tmp/             work files; never read by anyone else
//! <spool>/.reserve          space the detector releases when an event cannot be written otherwise
//! <spool>/<id>.jpg          a still of the moment the event was decided (renamed before the record)
//! <spool>/<id>.event        the event record, written the moment the decision fires
//! <spool>/<id>.mp4          the clip (renamed into place before its sidecar)
//! <spool>/<id>.json         the sidecar, renamed last: the event is closed, with its clip or
//!                           with the reason it has none (`clip-missing`)
//! <spool>/<id>.archived     written by the archiver once the event's files are in the archive
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
pub const EVENT_EXT: &str = "event";
pub const RESERVE_FILE: &str = ".reserve";

/// ENOSPC or EDQUOT: the spool's filesystem (or the writer's quota) is full.
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc_errno::ENOSPC | libc_errno::EDQUOT)) || e.kind() == io::ErrorKind::StorageFull
}

mod libc_errno {
    pub const ENOSPC: i32 = rustix::io::Errno::NOSPC.raw_os_error();
    pub const EDQUOT: i32 = rustix::io::Errno::DQUOT.raw_os_error();
}

/// Writes `files` into the spool as one step: each to `.tmp/`, fsynced, then renamed in the
/// given order and the directory fsynced. Readers see each file whole or not at all, and the
/// last file's appearance means every earlier one is there. On error nothing is left in `.tmp/`.
pub fn commit(spool: &Path, files: &[(&str, &[u8])]) -> io::Result<()> {
    let tmp = spool.join(TMP_DIR);
    let staged: Vec<PathBuf> = files.iter().map(|(name, _)| tmp.join(name)).collect();
    let result = (|| {
        for ((_, data), path) in files.iter().zip(&staged) {
            write_file_synced(path, data)?;
        }
        for ((name, _), path) in files.iter().zip(&staged) {
            fs::rename(path, spool.join(name))?;
        }
        sync_dir(spool)
    })();
    if result.is_err() {
        for p in &staged {
            let _ = fs::remove_file(p);
        }
    }
    result
}

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
    if let Err(e) = write_file_synced(&tmp, data) {
        // A part-written temporary file (a full disk, most likely) would hold on to the space.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
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

/// `<id>.event`: an event as decided, written before anything else is done about it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EventRecord {
    pub event_id: String,
    pub node: String,
    pub camera: String,
    /// Wall time of the frame whose score fired the decision.
    pub event_time: DateTime<Utc>,
    /// Media time of that frame: seconds from the start of the source.
    pub media_time: f64,
    /// When the decision was made (the score arrives after its frame).
    pub decided_at: DateTime<Utc>,
    /// The score that fired the decision.
    pub score: f32,
    pub threshold: f32,
    pub model_name: String,
    pub model_sha256: String,
    /// File name of the still in the spool; empty when there was no frame to take it from.
    pub still_file: String,
}

/// The JSON written when an event is closed: with its clip, or with the reason it has none.
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
    /// Set when the event has no clip, with the reason ("clip unavailable: the detector
    /// restarted at ...", "clip dropped: the spool was full ..."); `clip_file` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_missing: Option<String>,
    /// The clip was cut after a restart from the frame journal: it ends where capture stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
}

impl Sidecar {
    /// The sidecar of an event closed without a clip.
    pub fn without_clip(r: &EventRecord, reason: String) -> Sidecar {
        Sidecar {
            event_id: r.event_id.clone(),
            node: r.node.clone(),
            camera: r.camera.clone(),
            event_time: r.event_time,
            clip_start: r.event_time,
            clip_end: r.event_time,
            pre_roll: 0.0,
            duration: 0.0,
            frames: 0,
            width: 0,
            height: 0,
            peak_score: r.score,
            threshold: r.threshold,
            model_name: r.model_name.clone(),
            model_sha256: r.model_sha256.clone(),
            scores: Vec::new(),
            clip_file: String::new(),
            still_file: r.still_file.clone(),
            clip_bytes: 0,
            clip_sha256: String::new(),
            clip_missing: Some(reason),
            recovered: false,
        }
    }
}

/// What the archiver records once a clip is archived.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Archived {
    /// `s3://bucket/key` or a local path; empty when the event has no clip.
    pub clip_url: String,
    pub sidecar_url: String,
    pub archived_at: DateTime<Utc>,
}

/// Paths of one clip's files.
#[derive(Clone, Debug)]
pub struct ClipPaths {
    pub event: PathBuf,
    pub clip: PathBuf,
    pub still: PathBuf,
    pub sidecar: PathBuf,
    pub archived: PathBuf,
}

impl ClipPaths {
    pub fn new(spool: &Path, id: &str) -> Self {
        ClipPaths {
            event: spool.join(format!("{id}.{EVENT_EXT}")),
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

/// Ids of the spool files with any of `exts`, each once, oldest first (ids start with the UTC time).
fn ids_with(spool: &Path, exts: &[&str]) -> io::Result<Vec<String>> {
    let mut ids: Vec<String> = fs::read_dir(spool)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (id, ext) = name.rsplit_once('.')?;
            (exts.contains(&ext) && !id.is_empty() && !id.starts_with('.')).then(|| id.to_string())
        })
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Ids of closed events (sidecar present), oldest first.
pub fn complete_clips(spool: &Path) -> io::Result<Vec<String>> {
    ids_with(spool, &[SIDECAR_EXT])
}

/// Ids of every event in the spool: decided (record present), closed (sidecar present), or both.
pub fn events(spool: &Path) -> io::Result<Vec<String>> {
    ids_with(spool, &[EVENT_EXT, SIDECAR_EXT])
}

/// Ids of events decided but not closed: the record is there, the sidecar is not.
pub fn open_events(spool: &Path) -> io::Result<Vec<String>> {
    let closed = complete_clips(spool)?;
    Ok(ids_with(spool, &[EVENT_EXT])?.into_iter().filter(|id| closed.binary_search(id).is_err()).collect())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<T> {
    let data = fs::read(path)?;
    serde_json::from_slice(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub fn read_sidecar(path: &Path) -> io::Result<Sidecar> {
    read_json(path)
}

pub fn read_event(path: &Path) -> io::Result<EventRecord> {
    read_json(path)
}

/// The files of an event, in commit order: its still (when it has one), then its record, so
/// that a record in the spool means its still is there too.
pub fn event_files(record: &EventRecord, still: &[u8]) -> Vec<(String, Vec<u8>)> {
    let json = serde_json::to_vec_pretty(record).expect("plain data serialises");
    let mut files = Vec::with_capacity(2);
    if !record.still_file.is_empty() {
        files.push((record.still_file.clone(), still.to_vec()));
    }
    files.push((format!("{}.{EVENT_EXT}", record.event_id), json));
    files
}

/// Writes an event's still and record as one commit ([`event_files`]).
pub fn write_event(spool: &Path, record: &EventRecord, still: &[u8]) -> io::Result<()> {
    let files = event_files(record, still);
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    commit(spool, &refs)
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

    fn record(id: &str, still: bool) -> EventRecord {
        EventRecord {
            event_id: id.into(),
            node: "n".into(),
            camera: "cam0".into(),
            event_time: DateTime::<Utc>::UNIX_EPOCH,
            media_time: 1.5,
            decided_at: DateTime::<Utc>::UNIX_EPOCH,
            score: 0.9,
            threshold: 0.5,
            model_name: "m".into(),
            model_sha256: "0".repeat(64),
            still_file: if still { format!("{id}.{STILL_EXT}") } else { String::new() },
        }
    }

    #[test]
    fn events_are_listed_by_state_and_written_still_first() {
        let d = tempfile::tempdir().unwrap();
        prepare(d.path()).unwrap();
        write_event(d.path(), &record("b", true), b"jpeg").unwrap();
        write_event(d.path(), &record("a", false), b"").unwrap();
        fs::write(d.path().join("c.json"), b"{}").unwrap();
        fs::write(d.path().join("a.json"), b"{}").unwrap();
        assert_eq!(events(d.path()).unwrap(), ["a", "b", "c"]);
        assert_eq!(open_events(d.path()).unwrap(), ["b"]);
        assert_eq!(complete_clips(d.path()).unwrap(), ["a", "c"]);
        assert_eq!(read_event(&ClipPaths::new(d.path(), "b").event).unwrap(), record("b", true));
        assert_eq!(fs::read(d.path().join("b.jpg")).unwrap(), b"jpeg");
        assert!(!d.path().join("a.jpg").exists(), "no still, no file");
        let names: Vec<String> = event_files(&record("x", true), b"j").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["x.jpg", "x.event"], "the still before the record");
        assert_eq!(fs::read_dir(d.path().join(TMP_DIR)).unwrap().count(), 0);
    }

    #[test]
    fn a_failed_commit_leaves_nothing_behind() {
        let d = tempfile::tempdir().unwrap();
        prepare(d.path()).unwrap();
        // The second file's rename fails (its target is a directory): the first is already
        // renamed, but nothing stays in .tmp/.
        fs::create_dir(d.path().join("b.event")).unwrap();
        fs::write(d.path().join("b.event").join("x"), b"").unwrap();
        let err = commit(d.path(), &[("b.jpg", b"j"), ("b.event", b"{}")]).unwrap_err();
        assert!(!is_no_space(&err), "{err}");
        assert_eq!(fs::read_dir(d.path().join(TMP_DIR)).unwrap().count(), 0);
        assert!(is_no_space(&io::Error::from_raw_os_error(28)) && is_no_space(&io::Error::from_raw_os_error(122)));
    }

    #[test]
    fn a_sidecar_from_before_events_reads_as_one_with_its_clip() {
        let old = r#"{"event_id":"e","node":"n","camera":"c","event_time":"2026-01-01T00:00:00Z",
            "clip_start":"2026-01-01T00:00:00Z","clip_end":"2026-01-01T00:00:10Z","pre_roll":5.0,"duration":10.0,
            "frames":150,"width":640,"height":480,"peak_score":0.9,"threshold":0.5,"model_name":"m",
            "model_sha256":"s","scores":[],"clip_file":"e.mp4","still_file":"e.jpg","clip_bytes":1,"clip_sha256":"x"}"#;
        let s: Sidecar = serde_json::from_str(old).unwrap();
        assert!(s.clip_missing.is_none() && !s.recovered);
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("clip_missing") && !json.contains("recovered"), "unchanged on disk: {json}");
        let none = Sidecar::without_clip(&record("e", true), "why".into());
        assert_eq!(
            (none.clip_missing.as_deref(), none.clip_file.as_str(), none.still_file.as_str()),
            (Some("why"), "", "e.jpg")
        );
    }
}
