//! Adaptive sampling rate (issue 23): the detector keeps its inference within
//! `model.cpu-budget` cores and backs off when the board throttles, within the sampling range the
//! model declares (`temporal.sample-fps-min` to `temporal.sample-fps`).
//!
//! The inference thread measures its own CPU time per second of media time (so a skipped
//! backbone, motion gating's saving, counts as the little it costs: one place decides what runs)
//! and decides here; the capture thread's [`crate::source::Sampler`] reads the rate through a
//! [`SharedRate`]. Rates are the camera's rate divided by a whole number (15 fps: 5, 3.75, 3,
//! 2.5, ...), so sampled frames stay evenly spaced and the head sees the spacing the model was
//! trained with for that rate; the ring holds frames as they came, never padded.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The sampling rate, written by the inference thread and read by the capture thread.
#[derive(Clone, Debug)]
pub struct SharedRate(Arc<AtomicU64>);

impl SharedRate {
    pub fn new(fps: f64) -> Self {
        SharedRate(Arc::new(AtomicU64::new(fps.to_bits())))
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, fps: f64) {
        self.0.store(fps.to_bits(), Ordering::Relaxed);
    }
}

/// Why the rate changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Inference used more CPU per second than `model.cpu-budget`.
    Budget,
    /// Sampled frames found inference still busy with the previous one (a real-time source).
    Backlog,
    /// The Pi firmware reports throttling, a capped ARM clock or its soft temperature limit.
    Throttled,
    /// The CPU's thermal zone is at or above [`HOT_MILLI_C`].
    Hot,
    /// The next rate up fits the budget with room to spare, two periods running.
    Headroom,
}

impl Reason {
    pub const ALL: [Reason; 5] = [Reason::Budget, Reason::Backlog, Reason::Throttled, Reason::Hot, Reason::Headroom];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Budget => "budget",
            Reason::Backlog => "backlog",
            Reason::Throttled => "throttled",
            Reason::Hot => "hot",
            Reason::Headroom => "headroom",
        }
    }
}

/// What one period's measurement decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub from: f64,
    pub to: f64,
    pub reason: Reason,
    /// Inference CPU (cores) over the period that decided it.
    pub cores: f64,
    /// Already at the lowest rate the model allows and still over budget, backlogged or
    /// throttled (`from == to`). Reported once until the pressure goes.
    pub floor: bool,
}

/// A Pi's CPU is throttled by its firmware at 85 °C (80 °C with a soft limit on newer firmware):
/// back off before that.
pub const HOT_MILLI_C: i64 = 80_000;

/// Reads the board's throttling state from sysfs (a fake tree in tests).
#[derive(Clone, Debug)]
pub struct Pressure {
    root: PathBuf,
}

impl Pressure {
    pub fn new(sysfs: impl Into<PathBuf>) -> Self {
        Pressure { root: sysfs.into() }
    }

    /// `Throttled` when the Pi firmware's `get_throttled` has a "now" flag set for a capped ARM
    /// clock (bit 1), throttling (bit 2) or the soft temperature limit (bit 3), or when CPU 0 runs
    /// the `performance` governor (as the node image sets it) below 95 % of its maximum clock; else
    /// `Hot` at or above [`HOT_MILLI_C`] in thermal zone 0. Under-voltage alone (bit 0) slows
    /// nothing here; other governors scale the clock on purpose. Files that do not exist (not a
    /// Pi, a VM) say nothing.
    pub fn read(&self) -> Option<Reason> {
        let read = |p: &str| std::fs::read_to_string(self.root.join(p)).ok();
        let number = |p: &str| read(p).and_then(|t| t.trim().parse::<i64>().ok());
        if let Some(raw) = read("devices/platform/soc/soc:firmware/get_throttled") {
            let raw = raw.trim();
            let hex = raw.strip_prefix("0x").unwrap_or(raw);
            if u32::from_str_radix(hex, 16).is_ok_and(|flags| flags & 0b1110 != 0) {
                return Some(Reason::Throttled);
            }
        }
        let cpufreq = "devices/system/cpu/cpu0/cpufreq";
        if read(&format!("{cpufreq}/scaling_governor")).is_some_and(|g| g.trim() == "performance") {
            let cur = number(&format!("{cpufreq}/scaling_cur_freq"));
            let max = number(&format!("{cpufreq}/cpuinfo_max_freq"));
            if let (Some(cur), Some(max)) = (cur, max) {
                if cur * 100 < max * 95 {
                    return Some(Reason::Throttled);
                }
            }
        }
        number("class/thermal/thermal_zone0/temp").is_some_and(|t| t >= HOT_MILLI_C).then_some(Reason::Hot)
    }
}

/// One measurement, taken after each sampled frame.
#[derive(Clone, Copy, Debug)]
pub struct Observation {
    /// Media time of the frame.
    pub pts: Duration,
    /// The inference thread's CPU time so far.
    pub cpu: Duration,
    /// Sampled frames dropped because inference was busy, so far.
    pub backlog: u64,
}

/// Picks the sampling rate, once per `period` of media time.
pub struct Controller {
    /// Allowed rates, highest first: the manifest's rate, then the camera's rate over each whole
    /// number down to the manifest's minimum.
    rates: Vec<f64>,
    idx: usize,
    budget: f64,
    period: Duration,
    start: Option<Observation>,
    /// Periods in a row with headroom for the next rate up.
    calm: u32,
    floor: bool,
    pressure: Box<dyn FnMut() -> Option<Reason> + Send>,
    shared: SharedRate,
}

/// Measured over two seconds: a few seconds to react, and enough frames at the lowest rates.
pub const PERIOD: Duration = Duration::from_secs(2);
/// Up only when the next rate would use at most this share of the budget.
const HEADROOM: f64 = 0.9;
/// ... for this many periods in a row (hysteresis: down at once, up slowly).
const CALM_PERIODS: u32 = 2;

impl Controller {
    /// `max` and `min` from the manifest (equal: a fixed rate), `camera_fps` the source's rate.
    pub fn new(
        max: f64,
        min: f64,
        camera_fps: f64,
        budget: f64,
        pressure: Box<dyn FnMut() -> Option<Reason> + Send>,
    ) -> Self {
        let mut rates = vec![max];
        if camera_fps > 0.0 {
            // Every k past camera/max gives a rate below max; the bound keeps it at or above min
            // (1e-9: 7.5/3 should not miss 2.5 by rounding).
            let first = (camera_fps / max).floor().max(1.0) as u32 + 1;
            let last = (camera_fps / min + 1e-9).floor() as u32;
            rates.extend((first..=last).map(|k| camera_fps / k as f64));
        }
        Controller {
            shared: SharedRate::new(max),
            rates,
            idx: 0,
            budget,
            period: PERIOD,
            start: None,
            calm: 0,
            floor: false,
            pressure,
        }
    }

    /// Publishes the rate through `shared` (the one the capture thread's sampler reads).
    pub fn sharing(mut self, shared: SharedRate) -> Self {
        shared.set(self.fps());
        self.shared = shared;
        self
    }

    /// The handle the sampler reads.
    pub fn shared(&self) -> SharedRate {
        self.shared.clone()
    }

    pub fn fps(&self) -> f64 {
        self.rates[self.idx]
    }

    /// Over budget, backlogged or throttled at the lowest rate, as of the last period.
    pub fn at_floor(&self) -> bool {
        self.floor
    }

    /// The rates this model and camera allow, highest first.
    pub fn rates(&self) -> &[f64] {
        &self.rates
    }

    /// Restarts the measurement (the camera reconnected: its clock restarted).
    pub fn reset(&mut self) {
        self.start = None;
        self.calm = 0;
    }

    /// Takes one measurement; at the end of a period, may change the rate.
    pub fn observe(&mut self, now: Observation) -> Option<Change> {
        let Some(start) = self.start else {
            self.start = Some(now);
            return None;
        };
        let span = now.pts.saturating_sub(start.pts);
        if span < self.period {
            return None;
        }
        self.start = Some(now);
        let cores = now.cpu.saturating_sub(start.cpu).as_secs_f64() / span.as_secs_f64();
        let backlog = now.backlog > start.backlog;
        let pressure = (self.pressure)();
        let from = self.fps();
        let lowest = self.rates.len() - 1;
        let step = (self.idx + 1).min(lowest);
        // Every signal names the rate it asks for; the lowest wins. Over budget goes straight to the
        // highest rate the measurement says fits; a backlog or throttling steps down one rate.
        let budget = (cores > self.budget).then(|| {
            let target = from * self.budget / cores;
            let fits = self.rates.iter().position(|r| *r <= target + 1e-9).unwrap_or(lowest);
            (fits.max(step), Reason::Budget)
        });
        let over = [pressure.map(|r| (step, r)), backlog.then_some((step, Reason::Backlog)), budget]
            .into_iter()
            .flatten()
            .reduce(|a, b| if b.0 > a.0 { b } else { a });
        if let Some((to_idx, reason)) = over {
            self.calm = 0;
            if to_idx == self.idx {
                let first = !self.floor;
                self.floor = true;
                return first.then_some(Change { from, to: from, reason, cores, floor: true });
            }
            self.idx = to_idx;
            self.shared.set(self.fps());
            return Some(Change { from, to: self.fps(), reason, cores, floor: false });
        }
        self.floor = false;
        if self.idx == 0 {
            return None;
        }
        let up = self.rates[self.idx - 1];
        if cores * up / from <= self.budget * HEADROOM {
            self.calm += 1;
        } else {
            self.calm = 0;
        }
        if self.calm < CALM_PERIODS {
            return None;
        }
        self.calm = 0;
        self.idx -= 1;
        self.shared.set(self.fps());
        Some(Change { from, to: self.fps(), reason: Reason::Headroom, cores, floor: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> Box<dyn FnMut() -> Option<Reason> + Send> {
        Box::new(|| None)
    }

    /// Feeds `secs` of media time at the controller's current rate, each sampled frame costing
    /// `cost(fps)` CPU-seconds; returns the changes.
    fn run(c: &mut Controller, t: &mut f64, cpu: &mut f64, secs: f64, cost: impl Fn(f64) -> f64) -> Vec<Change> {
        let end = *t + secs;
        let mut changes = Vec::new();
        while *t < end {
            let fps = c.fps();
            *t += 1.0 / fps;
            *cpu += cost(fps);
            let o = Observation { pts: Duration::from_secs_f64(*t), cpu: Duration::from_secs_f64(*cpu), backlog: 0 };
            changes.extend(c.observe(o));
        }
        changes
    }

    #[test]
    fn rates_are_the_camera_rate_over_whole_numbers_within_the_range() {
        let c = Controller::new(5.0, 2.5, 15.0, 0.5, quiet());
        assert_eq!(c.rates(), &[5.0, 3.75, 3.0, 2.5]);
        let fixed = Controller::new(5.0, 5.0, 15.0, 0.5, quiet());
        assert_eq!(fixed.rates(), &[5.0]);
        // A rate that is not a divisor of the camera's keeps its own value first.
        assert_eq!(Controller::new(4.0, 2.0, 15.0, 0.5, quiet()).rates(), &[4.0, 3.75, 3.0, 2.5, 15.0 / 7.0]);
    }

    #[test]
    fn over_budget_it_lowers_the_rate_within_one_period_and_raises_it_after() {
        let mut c = Controller::new(5.0, 2.5, 15.0, 0.5, quiet());
        let shared = c.shared();
        let (mut t, mut cpu) = (0.0, 0.0);
        // 0.15 CPU-s per frame: 0.75 cores at 5 fps, over a 0.5 budget; 3 fps gives 0.45.
        let lowered = run(&mut c, &mut t, &mut cpu, 2.5, |_| 0.15);
        assert_eq!(lowered.len(), 1, "{lowered:?}");
        assert_eq!((lowered[0].from, lowered[0].to, lowered[0].reason), (5.0, 3.0, Reason::Budget));
        assert!((lowered[0].cores - 0.75).abs() < 0.05, "{lowered:?}");
        assert_eq!(shared.get(), 3.0);
        // It holds there: 0.45 cores fits, 3.75 fps would need 0.56.
        assert!(run(&mut c, &mut t, &mut cpu, 20.0, |_| 0.15).is_empty());
        // The load goes (frames cost a third): up one rate every two calm periods, to the top.
        let raised = run(&mut c, &mut t, &mut cpu, 30.0, |_| 0.05);
        let tos: Vec<f64> = raised.iter().map(|c| c.to).collect();
        assert_eq!(tos, vec![3.75, 5.0]);
        assert!(raised.iter().all(|c| c.reason == Reason::Headroom));
        assert_eq!(shared.get(), 5.0);
    }

    #[test]
    fn within_budget_nothing_changes() {
        let mut c = Controller::new(5.0, 2.5, 15.0, 0.5, quiet());
        let (mut t, mut cpu) = (0.0, 0.0);
        assert!(run(&mut c, &mut t, &mut cpu, 60.0, |_| 0.09).is_empty());
        assert_eq!(c.fps(), 5.0);
    }

    #[test]
    fn at_the_floor_it_says_so_once() {
        let mut c = Controller::new(5.0, 2.5, 15.0, 0.1, quiet());
        let (mut t, mut cpu) = (0.0, 0.0);
        let changes = run(&mut c, &mut t, &mut cpu, 30.0, |_| 0.15);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!((changes[0].to, changes[0].floor), (2.5, false));
        assert_eq!((changes[1].from, changes[1].to, changes[1].floor), (2.5, 2.5, true));
        // A fixed-rate model (no range) cannot go lower: only the floor report.
        let mut fixed = Controller::new(5.0, 5.0, 15.0, 0.1, quiet());
        let changes = run(&mut fixed, &mut t, &mut cpu, 30.0, |_| 0.15);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(changes[0].floor && changes[0].to == 5.0);
    }

    #[test]
    fn a_backlog_steps_the_rate_down() {
        // At `s` media seconds, having used `cores` all along, with `backlog` frames dropped.
        let at = |s: f64, cores: f64, backlog| Observation {
            pts: Duration::from_secs_f64(s),
            cpu: Duration::from_secs_f64(s * cores),
            backlog,
        };
        let mut c = Controller::new(5.0, 2.5, 15.0, 0.5, quiet());
        assert_eq!(c.observe(at(0.0, 0.1, 0)), None);
        let change = c.observe(at(2.0, 0.1, 3)).expect("a change");
        assert_eq!((change.from, change.to, change.reason), (5.0, 3.75, Reason::Backlog));
        // Backlogged and over budget at once: the budget's rate is lower, so it wins.
        let mut c = Controller::new(5.0, 2.5, 15.0, 0.5, quiet());
        assert_eq!(c.observe(at(0.0, 0.75, 0)), None);
        let change = c.observe(at(2.0, 0.75, 3)).expect("a change");
        assert_eq!((change.from, change.to, change.reason), (5.0, 3.0, Reason::Budget));
    }

    #[test]
    fn a_fake_sysfs_drives_the_throttling_path() {
        let dir = tempfile::tempdir().unwrap();
        let pressure = Pressure::new(dir.path());
        assert_eq!(pressure.read(), None, "no files: not a Pi, nothing to say");
        let fw = dir.path().join("devices/platform/soc/soc:firmware");
        std::fs::create_dir_all(&fw).unwrap();
        let zone = dir.path().join("class/thermal/thermal_zone0");
        std::fs::create_dir_all(&zone).unwrap();
        std::fs::write(fw.join("get_throttled"), "0x50000\n").unwrap();
        std::fs::write(zone.join("temp"), "61000\n").unwrap();
        assert_eq!(pressure.read(), None, "only 'has happened' flags and 61 °C");
        std::fs::write(fw.join("get_throttled"), "0x1\n").unwrap();
        assert_eq!(pressure.read(), None, "under-voltage now slows nothing by itself");
        std::fs::write(fw.join("get_throttled"), "0x50005\n").unwrap();
        assert_eq!(pressure.read(), Some(Reason::Throttled));
        std::fs::write(fw.join("get_throttled"), "0x0\n").unwrap();
        // cpufreq: the performance governor held below its maximum is a capped clock.
        let freq = dir.path().join("devices/system/cpu/cpu0/cpufreq");
        std::fs::create_dir_all(&freq).unwrap();
        std::fs::write(freq.join("cpuinfo_max_freq"), "1800000\n").unwrap();
        std::fs::write(freq.join("scaling_cur_freq"), "1500000\n").unwrap();
        std::fs::write(freq.join("scaling_governor"), "ondemand\n").unwrap();
        assert_eq!(pressure.read(), None, "ondemand lowers the clock on purpose");
        std::fs::write(freq.join("scaling_governor"), "performance\n").unwrap();
        assert_eq!(pressure.read(), Some(Reason::Throttled));
        std::fs::write(freq.join("scaling_cur_freq"), "1800000\n").unwrap();
        assert_eq!(pressure.read(), None, "performance at its maximum");
        std::fs::write(zone.join("temp"), "82300\n").unwrap();
        assert_eq!(pressure.read(), Some(Reason::Hot));

        // Through the controller: throttled steps down although the budget holds, then back up.
        let p = pressure.clone();
        let mut c = Controller::new(5.0, 2.5, 15.0, 0.5, Box::new(move || p.read()));
        let (mut t, mut cpu) = (0.0, 0.0);
        let changes = run(&mut c, &mut t, &mut cpu, 2.5, |_| 0.02);
        assert_eq!(changes.iter().map(|c| (c.to, c.reason)).collect::<Vec<_>>(), vec![(3.75, Reason::Hot)]);
        std::fs::write(zone.join("temp"), "70000\n").unwrap();
        let changes = run(&mut c, &mut t, &mut cpu, 10.0, |_| 0.02);
        assert_eq!(changes.iter().map(|c| (c.to, c.reason)).collect::<Vec<_>>(), vec![(5.0, Reason::Headroom)]);
    }
}
