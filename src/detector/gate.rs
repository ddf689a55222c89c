//! Motion gating (`[motion]`): which sampled frames run the backbone.
//!
//! One place decides. A frame runs the backbone when the scene moved, for `motion.hold` after
//! it stopped, at least every `motion.max-skip`, right after a lighting re-baseline (so the ring
//! holds the new scene's feature), and whenever the head is near a decision: a score at or above
//! `motion.near-decision` (default half) of the threshold keeps the gate open for the clip's
//! post-roll, which outlasts any event the score could open. Every other sampled frame repeats the newest feature with its own
//! timestamp ([`Streamer::repeat`]), so the head sees the spacing it was trained with.

use std::time::Duration;

use crate::infer::{Pixels, ScaledDecoder};
use crate::motion::{Gray, MotionDetector};
use crate::telemetry::DetectorMetrics;

/// The motion detector's input: the frame decoded at 1/8 (80x60 from 640x480), luma only; a
/// 1x1 minimum makes [`ScaledDecoder`] pick its smallest scale.
const GRAY_MIN: (u32, u32) = (1, 1);

pub struct Gate {
    motion: MotionDetector,
    decoder: ScaledDecoder,
    gray: Vec<u8>,
    max_skip: Duration,
    hold: Duration,
    post_roll: Duration,
    /// The score that keeps the gate open: `motion.near-decision` x the threshold.
    near: f32,
    last_run: Option<Duration>,
    last_motion: Option<Duration>,
    hot_until: Option<Duration>,
}

/// Why a frame runs the backbone, or that it does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Run(&'static str),
    Skip,
}

impl Gate {
    pub fn new(cfg: &crate::config::Config, threshold: f32) -> Gate {
        Gate {
            motion: MotionDetector::new(&cfg.motion.params(), cfg.source.width, cfg.source.height),
            decoder: ScaledDecoder::new(),
            gray: Vec::new(),
            max_skip: cfg.motion.max_skip,
            hold: cfg.motion.hold,
            post_roll: cfg.clip.post_roll,
            near: threshold * cfg.motion.near_decision,
            last_run: None,
            last_motion: None,
            hot_until: None,
        }
    }

    /// Looks at the frame (a 1/8 luma decode and the motion detector) and decides.
    pub fn judge(&mut self, pts: Duration, jpeg: &[u8], m: &DetectorMetrics) -> Verdict {
        let (w, h) = match self.decoder.decode_into(jpeg, GRAY_MIN.0, GRAY_MIN.1, Pixels::Gray, &mut self.gray) {
            Ok(wh) => wh,
            // The full decode will fail too and count it; never skip a frame we could not see.
            Err(_) => return Verdict::Run("undecodable"),
        };
        let seen = self.motion.observe(Gray { width: w, height: h, data: &self.gray });
        m.motion_active.set(seen.active as i64);
        if seen.rebaselined {
            m.motion_rebaselines.inc();
        }
        if seen.active {
            self.last_motion = Some(pts);
        }
        let since = |t: Option<Duration>| t.map(|t| pts.saturating_sub(t));
        if seen.rebaselined {
            Verdict::Run("rebaseline")
        } else if seen.active {
            Verdict::Run("motion")
        } else if self.hot_until.is_some_and(|t| pts <= t) {
            Verdict::Run("score")
        } else if since(self.last_motion).is_some_and(|d| d <= self.hold) {
            Verdict::Run("hold")
        } else if since(self.last_run).is_none_or(|d| d >= self.max_skip) {
            Verdict::Run("max-skip")
        } else {
            Verdict::Skip
        }
    }

    /// The backbone ran on the frame at `pts`.
    pub fn ran(&mut self, pts: Duration) {
        self.last_run = Some(pts);
    }

    /// The head scored the frame at `pts`: near a decision, keep the gate open.
    pub fn scored(&mut self, pts: Duration, score: f32) {
        if score >= self.near {
            self.hot_until = Some(pts + self.post_roll);
        }
    }

    /// The camera was reopened: the background and the history are stale.
    pub fn reset(&mut self) {
        self.motion.reset();
        self.last_run = None;
        self.last_motion = None;
        self.hot_until = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn still_frames() -> (Vec<u8>, DetectorMetrics) {
        let mut avi = crate::source::AviReader::new(std::io::Cursor::new(crate::demo::DEMO_VIDEO)).unwrap();
        let jpeg = avi.next_frame().unwrap().unwrap();
        (jpeg, DetectorMetrics::register(&mut prometheus_client::registry::Registry::default()))
    }

    /// The same frame again is still; a score near the threshold holds the gate open, and
    /// `motion.near-decision` says how near.
    #[test]
    fn a_score_near_the_threshold_holds_the_gate_open_by_near_decision() {
        let (jpeg, m) = still_frames();
        let ms = Duration::from_millis;
        for (near, score, want) in
            [(0.5, 0.3, Verdict::Run("score")), (0.5, 0.2, Verdict::Skip), (1.0, 0.45, Verdict::Skip)]
        {
            let mut cfg = crate::config::Config::default();
            cfg.motion.near_decision = near;
            let mut g = Gate::new(&cfg, 0.5);
            assert_eq!(g.judge(ms(0), &jpeg, &m), Verdict::Run("max-skip"), "the first frame always runs");
            g.ran(ms(0));
            assert_eq!(g.judge(ms(200), &jpeg, &m), Verdict::Skip, "the same frame again is still");
            g.scored(ms(200), score);
            assert_eq!(g.judge(ms(400), &jpeg, &m), want, "near-decision {near}, score {score}");
            // Past the post-roll, a still scene runs again only once max-skip has passed.
            let skip = cfg.motion.max_skip;
            assert_eq!(g.judge(skip - ms(200), &jpeg, &m), Verdict::Skip, "before max-skip");
            assert_eq!(g.judge(skip, &jpeg, &m), Verdict::Run("max-skip"), "at max-skip");
        }
    }
}
