//! Events and clips: the K-of-N decision, the pre-roll ring of compressed frames, and the
//! recorder that cuts `pre-roll + event + post-roll` out of the stream.
//!
//! Scores arrive after their frames (inference runs beside capture), so the recorder works in
//! media time: a clip is finished once every decision up to its end is known, or once frames
//! are `LAG_GRACE` past its end (inference stalled or far behind).

pub mod encode;
pub mod journal;

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::source::Frame;

/// How long the recorder waits for late scores before finishing a clip without them.
pub const LAG_GRACE: Duration = Duration::from_secs(2);

/// "K of the last N evaluations at or above the threshold".
#[derive(Debug, Clone)]
pub struct Decider {
    k: usize,
    n: usize,
    threshold: f32,
    history: VecDeque<bool>,
}

impl Decider {
    pub fn new(k: usize, n: usize, threshold: f32) -> Self {
        Decider { k, n, threshold, history: VecDeque::with_capacity(n) }
    }

    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Records one evaluation; true when it is at or above the threshold and K of the last N
    /// are. After a cooldown, K of N can still hold on the previous event's falling tail while
    /// the scene is calm again: an event opened there would show (and alert with) a calm frame.
    pub fn update(&mut self, score: f32) -> bool {
        if self.history.len() == self.n {
            self.history.pop_front();
        }
        let above = score >= self.threshold;
        self.history.push_back(above);
        above && self.history.iter().filter(|a| **a).count() >= self.k
    }
}

#[derive(Debug, Clone)]
pub struct RecorderConfig {
    pub pre_roll: Duration,
    pub post_roll: Duration,
    pub max_length: Duration,
    pub cooldown: Duration,
}

/// A finished event with the frames of its clip.
#[derive(Debug, Clone)]
pub struct FinishedClip {
    /// Media time and wall time at which the decision fired.
    pub trigger_pts: Duration,
    pub trigger_wall: DateTime<Utc>,
    /// Planned end of the clip in media time (after extensions).
    pub end_pts: Duration,
    pub frames: Vec<Frame>,
    /// Scores (media time, score) within the clip.
    pub scores: Vec<(Duration, f32)>,
    pub peak: f32,
    /// True when finished early by shutdown or end of input.
    pub truncated: bool,
}

#[derive(Debug)]
struct Active {
    trigger_pts: Duration,
    trigger_wall: DateTime<Utc>,
    start_pts: Duration,
    end_pts: Duration,
    frames: Vec<Frame>,
    scores: Vec<(Duration, f32)>,
    peak: f32,
}

/// What an evaluation did.
#[derive(Debug, Default)]
pub struct ScoreOutcome {
    /// An event started at this evaluation.
    pub started: bool,
    pub finished: Option<FinishedClip>,
}

pub struct Recorder {
    cfg: RecorderConfig,
    decider: Decider,
    ring: VecDeque<Frame>,
    recent_scores: VecDeque<(Duration, f32)>,
    active: Option<Active>,
    cooldown_until: Duration,
    last_frame_pts: Option<Duration>,
    last_score_pts: Option<Duration>,
}

impl Recorder {
    pub fn new(cfg: RecorderConfig, decider: Decider) -> Self {
        Recorder {
            cfg,
            decider,
            ring: VecDeque::new(),
            recent_scores: VecDeque::new(),
            active: None,
            cooldown_until: Duration::ZERO,
            last_frame_pts: None,
            last_score_pts: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// The open event's frames so far (its pre-roll, then each frame since), oldest first.
    pub fn active_frames(&self) -> &[Frame] {
        self.active.as_ref().map_or(&[], |a| &a.frames)
    }

    /// Frames held in memory (pre-roll ring plus an active clip).
    pub fn frames_held(&self) -> usize {
        self.ring.len() + self.active.as_ref().map_or(0, |a| a.frames.len())
    }

    pub fn threshold(&self) -> f32 {
        self.decider.threshold()
    }

    fn retention(&self) -> Duration {
        self.cfg.pre_roll + LAG_GRACE
    }

    pub fn on_frame(&mut self, frame: Frame) -> Option<FinishedClip> {
        let pts = frame.pts;
        self.last_frame_pts = Some(pts);
        match &mut self.active {
            Some(a) => a.frames.push(frame),
            None => {
                self.ring.push_back(frame);
                let keep_from = pts.saturating_sub(self.retention());
                while self.ring.front().is_some_and(|f| f.pts < keep_from) {
                    self.ring.pop_front();
                }
            }
        }
        self.maybe_finish()
    }

    pub fn on_score(&mut self, pts: Duration, wall: DateTime<Utc>, score: f32) -> ScoreOutcome {
        self.last_score_pts = Some(self.last_score_pts.map_or(pts, |p| p.max(pts)));
        let triggered = self.decider.update(score);
        let mut out = ScoreOutcome::default();
        match &mut self.active {
            Some(a) => {
                if pts >= a.start_pts && pts <= a.end_pts {
                    a.scores.push((pts, score));
                    a.peak = a.peak.max(score);
                    // A continuing event extends the post-roll, up to the maximum clip length.
                    if score >= self.decider.threshold {
                        a.end_pts = a.end_pts.max((pts + self.cfg.post_roll).min(a.start_pts + self.cfg.max_length));
                    }
                }
            }
            None => {
                self.recent_scores.push_back((pts, score));
                let keep_from = pts.saturating_sub(self.retention());
                while self.recent_scores.front().is_some_and(|(p, _)| *p < keep_from) {
                    self.recent_scores.pop_front();
                }
                if triggered && pts >= self.cooldown_until {
                    let start_pts = pts.saturating_sub(self.cfg.pre_roll);
                    let end_pts = (pts + self.cfg.post_roll).min(start_pts + self.cfg.max_length);
                    let frames: Vec<Frame> = self.ring.drain(..).filter(|f| f.pts >= start_pts).collect();
                    let scores: Vec<(Duration, f32)> =
                        self.recent_scores.drain(..).filter(|(p, _)| *p >= start_pts).collect();
                    let peak = scores.iter().map(|(_, s)| *s).fold(score, f32::max);
                    self.active =
                        Some(Active { trigger_pts: pts, trigger_wall: wall, start_pts, end_pts, frames, scores, peak });
                    out.started = true;
                }
            }
        }
        out.finished = self.maybe_finish();
        out
    }

    fn maybe_finish(&mut self) -> Option<FinishedClip> {
        let a = self.active.as_ref()?;
        let frame_pts = self.last_frame_pts?;
        let decided = self.last_score_pts.is_some_and(|p| p >= a.end_pts) && frame_pts >= a.end_pts;
        let stalled = frame_pts > a.end_pts + LAG_GRACE;
        (decided || stalled).then(|| self.finish(false))
    }

    /// Ends the active event now (shutdown, end of input); its clip is shorter than planned.
    pub fn flush(&mut self) -> Option<FinishedClip> {
        self.active.as_ref()?;
        Some(self.finish(true))
    }

    fn finish(&mut self, truncated: bool) -> FinishedClip {
        let mut a = self.active.take().expect("checked by callers");
        let end = a.end_pts;
        // Frames past the end go back to the ring: they are the next event's pre-roll.
        let split = a.frames.partition_point(|f| f.pts <= end);
        let rest = a.frames.split_off(split);
        self.ring.extend(rest);
        self.cooldown_until = end + self.cfg.cooldown;
        FinishedClip {
            trigger_pts: a.trigger_pts,
            trigger_wall: a.trigger_wall,
            end_pts: end,
            frames: a.frames,
            scores: a.scores,
            peak: a.peak,
            truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(i: u64, fps: u64) -> Frame {
        let pts = Duration::from_millis(i * 1000 / fps);
        Frame {
            seq: i,
            pts,
            wall: DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::from_std(pts).unwrap(),
            jpeg: Bytes::from_static(b"x"),
        }
    }

    fn cfg() -> RecorderConfig {
        RecorderConfig {
            pre_roll: Duration::from_secs(5),
            post_roll: Duration::from_secs(5),
            max_length: Duration::from_secs(14),
            cooldown: Duration::from_secs(3),
        }
    }

    /// Drives 10 fps frames with a score every 2nd frame from `score(t)`; returns clips and trigger times.
    fn run(seconds: u64, score: impl Fn(f64) -> f32) -> Vec<FinishedClip> {
        let mut r = Recorder::new(cfg(), Decider::new(2, 3, 0.5));
        let mut clips = Vec::new();
        for i in 0..seconds * 10 {
            let f = frame(i, 10);
            let (pts, wall) = (f.pts, f.wall);
            clips.extend(r.on_frame(f));
            if i % 2 == 0 {
                clips.extend(r.on_score(pts, wall, score(pts.as_secs_f64())).finished);
            }
        }
        clips.extend(r.flush());
        clips
    }

    #[test]
    fn k_of_n() {
        let mut d = Decider::new(2, 3, 0.5);
        assert!(!d.update(0.9));
        assert!(!d.update(0.1));
        assert!(d.update(0.7));
        assert!(!d.update(0.1)); // window now 0.1, 0.7, 0.1
        let mut d = Decider::new(2, 3, 0.5);
        assert!(!d.update(0.9));
        assert!(d.update(0.9));
        assert!(!d.update(0.1), "2 of 3 are high, but the newest is calm");
    }

    #[test]
    fn clip_spans_pre_and_post_roll_around_the_trigger() {
        let clips = run(40, |t| if (20.0..20.5).contains(&t) { 0.9 } else { 0.1 });
        assert_eq!(clips.len(), 1);
        let c = &clips[0];
        // Scores at 20.0, 20.2 and 20.4 are above; K=2 fires at 20.2, and 20.4 extends the end.
        assert_eq!(c.trigger_pts, Duration::from_millis(20200));
        assert_eq!(c.frames.first().unwrap().pts, Duration::from_millis(15200));
        assert_eq!(c.frames.last().unwrap().pts, Duration::from_millis(25400));
        assert_eq!(c.frames.len(), 103);
        assert!(!c.truncated);
        assert!((c.peak - 0.9).abs() < 1e-6);
    }

    #[test]
    fn continuing_event_extends_up_to_max_length_then_cools_down() {
        let clips = run(60, |t| if (20.0..40.0).contains(&t) { 0.9 } else { 0.1 });
        let c = &clips[0];
        assert_eq!(c.trigger_pts, Duration::from_millis(20200));
        let len = c.frames.last().unwrap().pts - c.frames.first().unwrap().pts;
        assert_eq!(len, Duration::from_secs(14), "capped at max-length");
        // Next event only after the cooldown (end 29.2 + 3 s), while the score is still high.
        assert_eq!(clips.len(), 2);
        assert!(clips[1].trigger_pts >= Duration::from_millis(32200));
    }

    /// The cooldown ends on the previous event's falling tail, while K of the last N are still
    /// high but the newest is not: no event opens on that calm frame.
    #[test]
    fn no_event_opens_after_a_cooldown_on_a_calm_score() {
        // K=2 of N=3 fires at 20.2; max-length ends the clip at 29.2, the cooldown at 32.2.
        let tail = |t: f64| if (20.0..33.3).contains(&t) { 0.9 } else { 0.1 };
        assert_eq!(run(60, tail).len(), 2, "still high when the cooldown ends: a second event");
        // High up to 32.0: at 32.2, 31.8 and 32.0 are 2 of the last 3, but 32.2 itself is calm.
        let gone = |t: f64| if (20.0..32.1).contains(&t) { 0.9 } else { 0.1 };
        let clips = run(60, gone);
        assert_eq!(
            clips.len(),
            1,
            "only the tail of the first event is left: {:?}",
            clips.iter().map(|c| c.trigger_pts).collect::<Vec<_>>()
        );
    }

    #[test]
    fn shutdown_flushes_a_truncated_clip() {
        let clips = run(22, |t| if t >= 20.0 { 0.9 } else { 0.1 });
        assert_eq!(clips.len(), 1);
        assert!(clips[0].truncated);
    }

    #[test]
    fn stalled_inference_still_finishes_the_clip() {
        let mut r = Recorder::new(cfg(), Decider::new(1, 1, 0.5));
        for i in 0..100 {
            assert!(r.on_frame(frame(i, 10)).is_none());
        }
        let f = frame(100, 10);
        let out = r.on_score(f.pts, f.wall, 0.9);
        assert!(out.started);
        let mut done = None;
        for i in 100..200 {
            if let Some(c) = r.on_frame(frame(i, 10)) {
                done = Some((i, c));
                break;
            }
        }
        let (i, c) = done.expect("finished without further scores");
        assert_eq!(i, 171, "end 15 s + 2 s grace");
        assert_eq!(c.frames.last().unwrap().pts, Duration::from_secs(15));
        assert!(r.frames_held() < 80, "ring bounded: {}", r.frames_held());
    }
}
