//! A video file played as if it were a camera.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;

use super::{AviReader, Frame, FrameSource, SourceError};

pub struct FileSource {
    path: PathBuf,
    reader: AviReader<BufReader<File>>,
    realtime: bool,
    looping: bool,
    seq: u64,
    started: Instant,
    started_wall: chrono::DateTime<Utc>,
}

impl FileSource {
    pub fn open(path: &Path, realtime: bool, looping: bool) -> Result<Self, SourceError> {
        let f = File::open(path).map_err(|source| SourceError::Open { what: path.display().to_string(), source })?;
        let reader = AviReader::new(BufReader::with_capacity(256 * 1024, f))?;
        Ok(FileSource {
            path: path.to_path_buf(),
            reader,
            realtime,
            looping,
            seq: 0,
            started: Instant::now(),
            started_wall: Utc::now(),
        })
    }

    pub fn info(&self) -> &super::avi::AviInfo {
        self.reader.info()
    }
}

impl FrameSource for FileSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let data = match self.reader.next_frame()? {
            Some(d) => d,
            None if self.looping && self.seq > 0 => {
                self.reader.rewind();
                match self.reader.next_frame()? {
                    Some(d) => d,
                    None => return Ok(None),
                }
            }
            None => return Ok(None),
        };
        if self.seq == 0 {
            self.started = Instant::now();
            self.started_wall = Utc::now();
        }
        // Media time keeps counting across loops so events and clips stay ordered.
        let pts = Duration::from_nanos((self.seq as f64 * 1e9 / self.reader.info().fps).round() as u64);
        if self.realtime {
            let due = self.started + pts;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        // Paced, a frame's wall time is when a camera would have taken it; as fast as consumed,
        // it is when it was read (media time runs ahead of the clock, and event ids, which are
        // wall times, must stay unique and ordered across restarts).
        let wall = if self.realtime {
            self.started_wall + chrono::Duration::from_std(pts).unwrap_or_default()
        } else {
            Utc::now()
        };
        let frame = Frame { seq: self.seq, pts, wall, jpeg: Bytes::from(data) };
        self.seq += 1;
        Ok(Some(frame))
    }

    fn fps(&self) -> f64 {
        self.reader.info().fps
    }

    fn describe(&self) -> String {
        let i = self.reader.info();
        format!("file {} ({}x{} @ {:.2} fps)", self.path.display(), i.width, i.height, i.fps)
    }

    fn realtime(&self) -> bool {
        self.realtime
    }
}
