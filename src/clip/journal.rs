//! The frame journal: an open event's frames, appended to `<dir>/<id>.frames` as they are
//! captured, so that a detector killed before its clip is written can still cut the clip after
//! a restart.
//!
//! No fsync: the journal is meant for a memory-backed directory (an emptyDir with
//! `medium: Memory`, /run), and a write that has returned is in the kernel's page cache, which
//! survives the death of the process (SIGKILL, OOM kill, panic) but not of the machine.
//! Each record is `pts (u64 ns, LE) | length (u32, LE) | JPEG`; a record cut short by the kill
//! is ignored on reading.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use crate::spool::EventRecord;

const EXT: &str = "frames";
/// An event record the spool could not take when the event was decided (`<id>.record.json`).
const RECORD_EXT: &str = "record.json";
const HEADER: usize = 12;

/// The journal directory.
#[derive(Clone, Debug)]
pub struct FrameJournal {
    dir: PathBuf,
}

/// One event's journal file, open for appending.
pub struct FrameLog {
    file: File,
    path: PathBuf,
    pub frames: usize,
    pub bytes: u64,
}

impl FrameJournal {
    pub fn open(dir: &Path) -> io::Result<FrameJournal> {
        fs::create_dir_all(dir)?;
        Ok(FrameJournal { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.{EXT}"))
    }

    /// Starts `id`'s journal with the frames captured so far (the pre-roll).
    pub fn start<'a>(&self, id: &str, frames: impl IntoIterator<Item = (Duration, &'a [u8])>) -> io::Result<FrameLog> {
        let path = self.path(id);
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
        let mut log = FrameLog { file, path, frames: 0, bytes: 0 };
        for (pts, jpeg) in frames {
            log.append(pts, jpeg)?;
        }
        Ok(log)
    }

    /// The frames journalled for `id`, oldest first; `None` when there is no journal.
    pub fn read(&self, id: &str) -> io::Result<Option<Vec<(Duration, Bytes)>>> {
        let data = match fs::read(self.path(id)) {
            Ok(d) => Bytes::from(d),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut frames = Vec::new();
        let mut at = 0;
        while data.len() >= at + HEADER {
            let pts = u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
            let len = u32::from_le_bytes(data[at + 8..at + HEADER].try_into().expect("4 bytes")) as usize;
            let end = at + HEADER + len;
            if end > data.len() {
                break; // the write the kill interrupted
            }
            frames.push((Duration::from_nanos(pts), data.slice(at + HEADER..end)));
            at = end;
        }
        Ok(Some(frames))
    }

    pub fn remove(&self, id: &str) {
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(file = %self.path(id).display(), error = %e, "cannot remove a frame journal")
            }
            _ => {}
        }
    }

    /// Keeps an event record the spool could not take (full, failing) beside the frames, until
    /// the spool has it: otherwise a restart meanwhile would not know the event was ever decided.
    pub fn hold_record(&self, record: &EventRecord) -> io::Result<()> {
        let data = serde_json::to_vec(record).map_err(io::Error::other)?;
        // Renamed into place, so a kill mid-write leaves no half record.
        crate::spool::write_atomic(&self.record_path(&record.event_id), &data)
    }

    /// Forgets `id`'s held record: the spool has it now.
    pub fn release_record(&self, id: &str) {
        match fs::remove_file(self.record_path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(file = %self.record_path(id).display(), error = %e, "cannot remove a held event record")
            }
            _ => {}
        }
    }

    /// The records held by [`FrameJournal::hold_record`], by event id; unreadable ones are
    /// logged and skipped.
    pub fn held_records(&self) -> io::Result<Vec<EventRecord>> {
        let mut records = Vec::new();
        for e in fs::read_dir(&self.dir)?.flatten() {
            // Temporary files end in `.tmp`: only whole records match.
            if !e.file_name().to_string_lossy().ends_with(&format!(".{RECORD_EXT}")) {
                continue;
            }
            match crate::spool::read_event(&e.path()) {
                Ok(r) => records.push(r),
                Err(err) => tracing::error!(file = %e.path().display(), error = %err, "unreadable held event record"),
            }
        }
        records.sort_by(|a: &EventRecord, b| a.event_id.cmp(&b.event_id));
        Ok(records)
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.{RECORD_EXT}"))
    }

    /// Ids with a journal file.
    pub fn ids(&self) -> io::Result<Vec<String>> {
        let mut ids: Vec<String> = fs::read_dir(&self.dir)?
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(&format!(".{EXT}")).map(str::to_string))
            .collect();
        ids.sort();
        Ok(ids)
    }
}

impl FrameLog {
    pub fn append(&mut self, pts: Duration, jpeg: &[u8]) -> io::Result<()> {
        let mut header = [0u8; HEADER];
        header[..8].copy_from_slice(&(pts.as_nanos() as u64).to_le_bytes());
        header[8..].copy_from_slice(&(jpeg.len() as u32).to_le_bytes());
        // Two writes, no userspace buffer: once `append` returns, the frame survives the process.
        self.file.write_all(&header)?;
        self.file.write_all(jpeg)?;
        self.frames += 1;
        self.bytes += (HEADER + jpeg.len()) as u64;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_torn_last_record_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let j = FrameJournal::open(&d.path().join("frames")).unwrap();
        assert!(j.read("e1").unwrap().is_none());
        let pre = [(Duration::from_millis(0), &b"one"[..]), (Duration::from_millis(66), &b"two!"[..])];
        let mut log = j.start("e1", pre).unwrap();
        log.append(Duration::from_millis(133), b"three").unwrap();
        assert_eq!((log.frames, log.bytes), (3, 3 * 12 + 12));
        let got = j.read("e1").unwrap().unwrap();
        let want: Vec<(Duration, Bytes)> = vec![
            (Duration::from_millis(0), Bytes::from_static(b"one")),
            (Duration::from_millis(66), Bytes::from_static(b"two!")),
            (Duration::from_millis(133), Bytes::from_static(b"three")),
        ];
        assert_eq!(got, want);
        // A kill in the middle of the next append: its header and part of its JPEG are there.
        let full = fs::read(log.path()).unwrap();
        let mut torn = full.clone();
        torn.extend_from_slice(&200u64.to_le_bytes());
        torn.extend_from_slice(&100u32.to_le_bytes());
        torn.extend_from_slice(b"only part");
        fs::write(log.path(), &torn).unwrap();
        assert_eq!(j.read("e1").unwrap().unwrap(), want);
        // ... or only part of its header.
        fs::write(log.path(), [&full[..], &[1, 2, 3][..]].concat()).unwrap();
        assert_eq!(j.read("e1").unwrap().unwrap(), want);
        assert_eq!(j.ids().unwrap(), vec!["e1".to_string()]);
        j.remove("e1");
        assert!(j.read("e1").unwrap().is_none() && j.ids().unwrap().is_empty());
    }
}
