//! Cost of `MotionDetector::observe` per 80x60 grayscale frame (the 1/8 decode of a 640x480
//! frame), the motion gate in front of the backbone (issue #26).
//!
//! A synthetic textured scene with Gaussian noise (sigma 4) and a 6x12 bright blob walking across
//! it, 2 px a frame, with a mask polygon over a quarter of the frame; also the same scene with no
//! blob (the common case: no blob to walk). The frames are made first, so only `observe` is timed.
//! After a warm-up pass, `ROUNDS` rounds of `FRAMES` frames each; the median round's per-frame
//! time is printed with the fastest and slowest rounds'.
//!
//! `cargo bench --bench motion`; `BENCH_FRAMES` (default 5000) frames per round.

use std::hint::black_box;
use std::time::Instant;

use edgewatch::infer::{Pixels, ScaledDecoder};
use edgewatch::motion::{Gray, MotionDetector, MotionParams};
use edgewatch::source::AviReader;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const W: usize = 80;
const H: usize = 60;
const ROUNDS: usize = 9;

/// Gaussian noise: Box-Muller on rand's uniforms (1 - u keeps ln away from 0).
fn gauss(r: &mut StdRng, sigma: f32) -> f32 {
    let (u, v) = (1.0 - r.random::<f32>(), r.random::<f32>());
    sigma * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

/// One walk across the frame (the blob's left edge from -6 to 80), or the scene alone.
fn frames(blob: bool) -> Vec<Vec<u8>> {
    let mut r = StdRng::seed_from_u64(0x5eed);
    let scene: Vec<f32> = (0..W * H).map(|_| 70.0 + r.random_range(0..80) as f32).collect();
    (0..(W + 6) / 2 + 1)
        .map(|i| {
            let mut s = scene.clone();
            let x0 = -6 + 2 * i as i32;
            for y in (24..36).filter(|_| blob) {
                for x in x0.max(0)..(x0 + 6).min(W as i32) {
                    s[y * W + x as usize] = 230.0;
                }
            }
            s.iter().map(|v| (v + gauss(&mut r, 4.0)).round().clamp(0.0, 255.0) as u8).collect()
        })
        .collect()
}

fn gray(data: &[u8]) -> Gray<'_> {
    Gray { width: W as u32, height: H as u32, data }
}

/// Per-frame microseconds of each round, sorted, and the share of frames reported active.
fn time(frames: &[Vec<u8>], per_round: usize) -> (Vec<f64>, f64) {
    let params = MotionParams {
        mask: vec![vec![[0.0, 0.0], [320.0, 0.0], [320.0, 240.0], [0.0, 240.0]]],
        ..MotionParams::default()
    };
    let mut d = MotionDetector::new(&params, 640, 480);
    let mut active = 0;
    for f in frames.iter().cycle().take(per_round) {
        active += usize::from(d.observe(gray(f)).active);
    }
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t0 = Instant::now();
            for f in frames.iter().cycle().take(per_round) {
                black_box(d.observe(black_box(gray(f))));
            }
            t0.elapsed().as_secs_f64() * 1e6 / per_round as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    (rounds, active as f64 / per_round as f64)
}

/// The whole gate per camera frame as the detector runs it: the 1/8 luma decode of a real
/// 640x480 JPEG (the demo video's) and `observe`. Per-frame microseconds per round, sorted.
fn time_with_decode(per_round: usize) -> Vec<f64> {
    let mut avi = AviReader::new(std::io::Cursor::new(edgewatch::demo::DEMO_VIDEO)).unwrap();
    let mut jpegs = Vec::new();
    while let Some(f) = avi.next_frame().unwrap() {
        jpegs.push(f);
    }
    let mut dec = ScaledDecoder::new();
    let mut buf = Vec::new();
    let mut d = MotionDetector::new(&MotionParams::default(), 640, 480);
    let mut step = |j: &[u8]| {
        let (w, h) = dec.decode_into(j, 1, 1, Pixels::Gray, &mut buf).unwrap();
        black_box(d.observe(Gray { width: w, height: h, data: &buf }));
    };
    jpegs.iter().for_each(|j| step(j));
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t0 = Instant::now();
            for j in jpegs.iter().cycle().take(per_round) {
                step(j);
            }
            t0.elapsed().as_secs_f64() * 1e6 / per_round as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds
}

fn main() {
    let per_round: usize = std::env::var("BENCH_FRAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let rounds = time_with_decode(per_round / 5);
    println!(
        "motion gate per 640x480 frame (1/8 luma decode of the demo video's JPEGs + observe): {:6.1} us median (range {:.1}-{:.1}, {ROUNDS} rounds of {} frames; goal <= 500 us)",
        rounds[ROUNDS / 2],
        rounds[0],
        rounds[ROUNDS - 1],
        per_round / 5
    );
    println!("motion benchmark: MotionDetector::observe on {W}x{H} gray, noise sigma 4, a quarter of the frame masked");
    for (name, blob) in [("walking blob", true), ("still scene ", false)] {
        let (rounds, active) = time(&frames(blob), per_round);
        println!(
            "  {name}: {:6.2} us/frame median (range {:.2}-{:.2}, {ROUNDS} rounds of {per_round} frames; {:.0} % active)",
            rounds[ROUNDS / 2],
            rounds[0],
            rounds[ROUNDS - 1],
            active * 100.0
        );
    }
}
