//! Frame sources: a V4L2 camera, or a video file (MJPEG in AVI) for the demo, tests and benchmarks.
//!
//! Every source yields compressed JPEG frames: the clip ring keeps them as delivered, and only
//! sampled frames are decoded for inference.

mod avi;
mod file;
#[cfg(target_os = "linux")]
mod v4l2;

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

pub use avi::{AviError, AviReader};
pub use file::FileSource;
#[cfg(target_os = "linux")]
pub use v4l2::V4l2Source;

/// One captured frame.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Counts every frame the source delivered, from 0.
    pub seq: u64,
    /// Media time since the source started; monotonic. Events and clips are timed on it.
    pub pts: Duration,
    /// Wall-clock time of capture (for a fast file source: start time + pts).
    pub wall: DateTime<Utc>,
    /// The frame as a JPEG.
    pub jpeg: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The camera or file cannot be opened; retried with backoff for cameras.
    #[error("cannot open {what}: {source}")]
    Open { what: String, source: std::io::Error },
    /// The camera does not support what the config asks for; not retried.
    #[error("{0}")]
    Unsupported(String),
    /// A read failed (unplug, I/O error); cameras reconnect.
    #[error("reading {what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Avi(#[from] AviError),
}

impl SourceError {
    /// Whether reconnecting may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Open { .. } | SourceError::Io { .. })
    }
}

/// A blocking source of frames, driven from its own thread.
pub trait FrameSource: Send {
    /// The next frame, `Ok(None)` at the end of a file. Blocks for cameras.
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;
    /// Nominal frames per second.
    fn fps(&self) -> f64;
    /// Human description for logs.
    fn describe(&self) -> String;
    /// Whether frames come paced in real time (cameras, paced files) or as fast as consumed.
    fn realtime(&self) -> bool;
}

/// Picks frames for inference at the model's sampling rate, in media time.
#[derive(Debug, Clone)]
pub struct Sampler {
    interval: Duration,
    next: Duration,
}

impl Sampler {
    pub fn new(sample_fps: f64) -> Self {
        Sampler { interval: Duration::from_secs_f64(1.0 / sample_fps), next: Duration::ZERO }
    }

    /// Samples at `fps` from the next frame on (the adaptive rate, `detector::rate`).
    pub fn set_fps(&mut self, fps: f64) {
        let interval = Duration::from_secs_f64(1.0 / fps);
        if interval != self.interval {
            // The next frame due moves by the difference, so the new spacing starts at once.
            self.next = (self.next + interval).saturating_sub(self.interval);
            self.interval = interval;
        }
    }

    /// Whether the frame at `pts` is sampled. A 1 ms tolerance absorbs rounding of frame times.
    pub fn take(&mut self, pts: Duration) -> bool {
        if pts + Duration::from_millis(1) < self.next {
            return false;
        }
        // After a gap (outage, skipped frames) restart the grid instead of bursting to catch up.
        self.next = if pts > self.next + self.interval { pts + self.interval } else { self.next + self.interval };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_takes_every_third_frame_at_15_fps() {
        let mut s = Sampler::new(5.0);
        let taken: Vec<u64> =
            (0..30u64).filter(|i| s.take(Duration::from_nanos((*i as f64 * 1e9 / 15.0).round() as u64))).collect();
        assert_eq!(taken, (0..30).step_by(3).collect::<Vec<_>>());
    }
}
