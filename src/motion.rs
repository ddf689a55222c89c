//! Motion detection on a small grayscale image, so the backbone can skip still scenes (issue #26).
//!
//! Modelled on Frigate's motion detector, written from scratch: a 3x3 box blur, a running-average
//! background, a per-pixel threshold, a 3x3 dilation and the largest 8-connected blob. A change of
//! most of the frame at once (lights, IR switching) re-learns the background instead of counting
//! as motion. Meant for a 1/8-scale decode (80x60 of a 640x480 frame): buffers are kept between
//! calls, so `observe` allocates only when the image size changes.

/// 8-bit grayscale image, row-major, `data.len() == width * height`.
#[derive(Clone, Copy, Debug)]
pub struct Gray<'a> {
    pub width: u32,
    pub height: u32,
    pub data: &'a [u8],
}

/// Sensor noise of sigma 4 becomes about 1.3 after the 3x3 blur, far below 25 grey levels.
pub const DEFAULT_THRESHOLD: u8 = 25;
/// 0.5 % of the frame: a person at about 10 m in a 640x480 wide-angle view.
pub const DEFAULT_MIN_AREA: f32 = 0.005;
/// Frigate's `lightning_threshold`: 80 % of the frame changing at once is light, not motion.
pub const DEFAULT_LIGHTING: f32 = 0.8;
/// Per sampled frame; at 5 fps a time constant of about 4 s.
pub const DEFAULT_ALPHA: f32 = 0.05;

/// What counts as motion.
#[derive(Clone, Debug, PartialEq)]
pub struct MotionParams {
    /// A blurred pixel differing from the background by more than this many grey levels changed.
    pub threshold: u8,
    /// Motion when the largest blob covers at least this fraction of the frame.
    pub min_area: f32,
    /// When at least this fraction of the unmasked pixels changed, re-learn the background.
    pub lighting: f32,
    /// Weight of each observation in the running-average background.
    pub alpha: f32,
    /// Polygons (at least 3 points each, fewer are ignored) in frame coordinates whose pixels never count.
    pub mask: Vec<Vec<[f32; 2]>>,
}

impl Default for MotionParams {
    fn default() -> Self {
        MotionParams {
            threshold: DEFAULT_THRESHOLD,
            min_area: DEFAULT_MIN_AREA,
            lighting: DEFAULT_LIGHTING,
            alpha: DEFAULT_ALPHA,
            mask: Vec::new(),
        }
    }
}

/// One observation's verdict.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Motion {
    /// The largest blob is at least `min_area`.
    pub active: bool,
    /// Fraction of the unmasked pixels that changed.
    pub changed: f32,
    /// The largest blob's changed pixels as a fraction of the frame (0 when rebaselined).
    pub largest: f32,
    /// Most of the frame changed at once, so the background was replaced by this image.
    pub rebaselined: bool,
}

impl Motion {
    const QUIET: Motion = Motion { active: false, changed: 0.0, largest: 0.0, rebaselined: false };
}

/// Running-average background subtraction with a lighting guard and masks.
pub struct MotionDetector {
    threshold: f32,
    min_area: f32,
    lighting: f32,
    alpha: f32,
    polygons: Vec<Vec<[f32; 2]>>,
    frame: (u32, u32),
    /// The image size the buffers below are for.
    size: Option<(u32, u32)>,
    has_background: bool,
    masked: Vec<bool>,
    unmasked: usize,
    /// Horizontal 3-sums of the input, the first half of the separable blur.
    hsum: Vec<u16>,
    /// The blurred image.
    blurred: Vec<f32>,
    background: Vec<f32>,
    changed: Vec<u8>,
    dilate_tmp: Vec<u8>,
    /// The dilated changed map; cleared as blobs are walked.
    grown: Vec<u8>,
    stack: Vec<u32>,
}

impl MotionDetector {
    /// frame_width/height: the camera frame's size (mask coordinates are in it); the gray images
    /// may be any size (scaled by the same factor both ways).
    pub fn new(params: &MotionParams, frame_width: u32, frame_height: u32) -> MotionDetector {
        MotionDetector {
            threshold: f32::from(params.threshold),
            min_area: params.min_area,
            lighting: params.lighting,
            alpha: params.alpha,
            polygons: params.mask.iter().filter(|p| p.len() >= 3).cloned().collect(),
            frame: (frame_width.max(1), frame_height.max(1)),
            size: None,
            has_background: false,
            masked: Vec::new(),
            unmasked: 0,
            hsum: Vec::new(),
            blurred: Vec::new(),
            background: Vec::new(),
            changed: Vec::new(),
            dilate_tmp: Vec::new(),
            grown: Vec::new(),
            stack: Vec::new(),
        }
    }

    /// Compares `gray` with the background, then blends it in. The first image (after `new`,
    /// `reset` or a size change) only sets the background. A malformed image (empty, or data not
    /// `width * height` long) is reported active: a failing gate must not hide an event.
    pub fn observe(&mut self, gray: Gray<'_>) -> Motion {
        let (w, h) = (gray.width as usize, gray.height as usize);
        if w == 0 || h == 0 || w.checked_mul(h) != Some(gray.data.len()) {
            return Motion { active: true, ..Motion::QUIET };
        }
        if self.size != Some((gray.width, gray.height)) {
            self.resize(w, h);
            self.size = Some((gray.width, gray.height));
            self.has_background = false;
        }
        self.blur(gray.data, w, h);
        if !self.has_background {
            self.background.copy_from_slice(&self.blurred);
            self.has_background = true;
            return Motion::QUIET;
        }

        // Compare with the old background and blend in one pass: a rebaseline overwrites the
        // blend anyway. Changed pixels blend too, so whatever stops moving fades in.
        let (thr, alpha) = (self.threshold, self.alpha);
        let mut n = 0usize;
        for (((bg, &cur), &masked), ch) in
            self.background.iter_mut().zip(&self.blurred).zip(&self.masked).zip(self.changed.iter_mut())
        {
            let d = cur - *bg;
            let c = !masked && d.abs() > thr;
            *ch = c as u8;
            n += c as usize;
            *bg += alpha * d;
        }
        let changed = if self.unmasked == 0 { 0.0 } else { n as f32 / self.unmasked as f32 };
        if n > 0 && changed >= self.lighting {
            self.background.copy_from_slice(&self.blurred);
            return Motion { changed, rebaselined: true, ..Motion::QUIET };
        }
        let largest = if n == 0 { 0.0 } else { self.largest_blob(w, h) as f32 / (w * h) as f32 };
        Motion { active: n > 0 && largest >= self.min_area, changed, largest, rebaselined: false }
    }

    /// Forget the background (camera reopened): the next image sets it.
    pub fn reset(&mut self) {
        self.has_background = false;
    }

    fn resize(&mut self, w: usize, h: usize) {
        let n = w * h;
        self.hsum = vec![0; n];
        self.blurred = vec![0.0; n];
        self.background = vec![0.0; n];
        self.changed = vec![0; n];
        self.dilate_tmp = vec![0; n];
        self.grown = vec![0; n];
        // Each pixel is pushed at most once per blob walk, so this never grows.
        self.stack = Vec::with_capacity(n);
        rasterise(&self.polygons, self.frame, w, h, &mut self.masked);
        self.unmasked = self.masked.iter().filter(|m| !**m).count();
    }

    /// 3x3 box blur, separable, edges replicated: cuts sensor noise before the threshold.
    fn blur(&mut self, src: &[u8], w: usize, h: usize) {
        for (row, out) in src.chunks_exact(w).zip(self.hsum.chunks_exact_mut(w)) {
            if w == 1 {
                out[0] = 3 * u16::from(row[0]);
                continue;
            }
            out[0] = 2 * u16::from(row[0]) + u16::from(row[1]);
            for (o, t) in out[1..w - 1].iter_mut().zip(row.windows(3)) {
                *o = u16::from(t[0]) + u16::from(t[1]) + u16::from(t[2]);
            }
            out[w - 1] = u16::from(row[w - 2]) + 2 * u16::from(row[w - 1]);
        }
        for y in 0..h {
            let (up, down) = (y.saturating_sub(1) * w, (y + 1).min(h - 1) * w);
            let rows = self.hsum[up..up + w].iter().zip(&self.hsum[y * w..y * w + w]).zip(&self.hsum[down..down + w]);
            for (o, ((a, b), c)) in self.blurred[y * w..y * w + w].iter_mut().zip(rows) {
                *o = f32::from(a + b + c) * (1.0 / 9.0);
            }
        }
    }

    /// The changed pixels of the largest blob. Blobs are 8-connected components of the changed
    /// map dilated by 3x3 (so a walking person's parts are one blob), but only changed pixels
    /// are counted: the dilation's padding would make a few noise specks look like an object.
    fn largest_blob(&mut self, w: usize, h: usize) -> usize {
        for (row, out) in self.changed.chunks_exact(w).zip(self.dilate_tmp.chunks_exact_mut(w)) {
            for (x, o) in out.iter_mut().enumerate() {
                *o = row[x.saturating_sub(1)] | row[x] | row[(x + 1).min(w - 1)];
            }
        }
        for y in 0..h {
            let (up, down) = (y.saturating_sub(1) * w, (y + 1).min(h - 1) * w);
            for x in 0..w {
                let t = &self.dilate_tmp;
                self.grown[y * w + x] = t[up + x] | t[y * w + x] | t[down + x];
            }
        }
        let mut best = 0;
        for start in 0..w * h {
            if self.grown[start] == 0 {
                continue;
            }
            self.grown[start] = 0;
            self.stack.push(start as u32);
            let mut area = 0;
            while let Some(i) = self.stack.pop() {
                let i = i as usize;
                area += usize::from(self.changed[i]);
                let (x, y) = (i % w, i / w);
                for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                    for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                        let j = ny * w + nx;
                        if self.grown[j] != 0 {
                            self.grown[j] = 0;
                            self.stack.push(j as u32);
                        }
                    }
                }
            }
            best = best.max(area);
        }
        best
    }
}

/// `out[y * w + x]` = whether pixel (x, y) of a `w`x`h` image has its centre inside one of the
/// polygons (even-odd rule), the polygons being in `frame` coordinates.
fn rasterise(polygons: &[Vec<[f32; 2]>], frame: (u32, u32), w: usize, h: usize, out: &mut Vec<bool>) {
    out.clear();
    out.resize(w * h, false);
    let (sx, sy) = (frame.0 as f32 / w as f32, frame.1 as f32 / h as f32);
    for y in 0..h {
        let py = (y as f32 + 0.5) * sy;
        for x in 0..w {
            let px = (x as f32 + 0.5) * sx;
            out[y * w + x] = polygons.iter().any(|p| inside(p, px, py));
        }
    }
}

/// Even-odd crossing test of the point (px, py) against `poly`.
fn inside(poly: &[[f32; 2]], px: f32, py: f32) -> bool {
    let mut inside = false;
    let mut j = poly.len() - 1;
    for (i, &[xi, yi]) in poly.iter().enumerate() {
        let [xj, yj] = poly[j];
        if (yi > py) != (yj > py) && px < (xj - xi) * (py - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const W: usize = 80;
    const H: usize = 60;
    /// The camera frame the 80x60 images are an eighth of.
    const FW: u32 = 640;
    const FH: u32 = 480;

    /// Gaussian noise: Box-Muller on rand's uniforms (1 - u keeps ln away from 0).
    fn gauss(r: &mut StdRng, sigma: f32) -> f32 {
        let (u, v) = (1.0 - r.random::<f32>(), r.random::<f32>());
        sigma * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }

    /// A still scene with per-pixel texture (70..150), the same for every seed.
    fn scene() -> Vec<f32> {
        let mut r = StdRng::seed_from_u64(0x5eed);
        (0..W * H).map(|_| 70.0 + r.random_range(0..80) as f32).collect()
    }

    /// A 6x12 bright blob, its left edge at `x` (may be partly or wholly outside), top at `y`.
    fn with_blob(scene: &[f32], x: i32, y: i32) -> Vec<f32> {
        let mut s = scene.to_vec();
        for by in y..y + 12 {
            for bx in x..x + 6 {
                if (0..W as i32).contains(&bx) && (0..H as i32).contains(&by) {
                    s[by as usize * W + bx as usize] = 230.0;
                }
            }
        }
        s
    }

    /// `scene` plus Gaussian noise of sigma 4, as 8-bit pixels.
    fn noisy(scene: &[f32], r: &mut StdRng) -> Vec<u8> {
        scene.iter().map(|v| (v + gauss(r, 4.0)).round().clamp(0.0, 255.0) as u8).collect()
    }

    fn gray(data: &[u8]) -> Gray<'_> {
        Gray { width: W as u32, height: H as u32, data }
    }

    /// The blob's left edge on frame `i` of a walk at 2 px per frame, entering from the left.
    fn walk_x(i: usize) -> i32 {
        -6 + 2 * i as i32
    }

    /// Frames before the walk starts; the walk then lasts until the blob is 20 frames past the
    /// right edge.
    const STILL: usize = 10;
    const WALK: usize = (W + 6) / 2 + 20;

    /// Runs the walk (`STILL` still frames, then `WALK` frames) and returns each frame's verdict
    /// with the blob's left edge (None before it starts).
    fn walk(params: &MotionParams) -> Vec<(Option<i32>, Motion)> {
        let (base, mut r) = (scene(), StdRng::seed_from_u64(42));
        let mut d = MotionDetector::new(params, FW, FH);
        let mut out = Vec::new();
        for i in 0..STILL + WALK {
            let x = (i >= STILL).then(|| walk_x(i - STILL));
            let img = match x {
                Some(x) => noisy(&with_blob(&base, x, 24), &mut r),
                None => noisy(&base, &mut r),
            };
            out.push((x, d.observe(gray(&img))));
        }
        out
    }

    #[test]
    fn a_still_noisy_scene_is_never_active() {
        let (base, mut r) = (scene(), StdRng::seed_from_u64(1));
        let mut d = MotionDetector::new(&MotionParams::default(), FW, FH);
        for i in 0..200 {
            let m = d.observe(gray(&noisy(&base, &mut r)));
            assert!(!m.active && !m.rebaselined, "frame {i}: {m:?}");
            assert_eq!(m.changed, 0.0, "frame {i}: no pixel crosses 25 grey levels");
        }
    }

    #[test]
    fn a_walking_blob_is_active_while_it_moves_and_not_after_it_left() {
        let frames = walk(&MotionParams::default());
        for (i, (x, m)) in frames.iter().enumerate() {
            match *x {
                None => assert!(!m.active, "frame {i}, before the walk: {m:?}"),
                // Wholly inside the frame: 72 px of 4800 = 1.5 %, above 0.5 %.
                Some(x) if (0..=(W as i32 - 6)).contains(&x) => {
                    assert!(m.active, "frame {i}, blob at x = {x}: {m:?}");
                    assert!(m.largest >= 0.01, "frame {i}: {m:?}");
                }
                // Gone: the trail it left in the background (3 frames of blending, about 15 % of
                // the difference) is below the threshold at once.
                Some(x) if x >= W as i32 => assert!(!m.active, "frame {i}, blob gone (x = {x}): {m:?}"),
                Some(_) => {}
            }
            assert!(!m.rebaselined, "frame {i}: {m:?}");
        }
    }

    #[test]
    fn a_blob_that_stops_fades_into_the_background() {
        let (base, mut r) = (scene(), StdRng::seed_from_u64(7));
        let mut d = MotionDetector::new(&MotionParams::default(), FW, FH);
        d.observe(gray(&noisy(&base, &mut r)));
        let parked = with_blob(&base, 30, 24);
        let verdicts: Vec<Motion> = (0..100).map(|_| d.observe(gray(&noisy(&parked, &mut r)))).collect();
        assert!(verdicts[0].active, "{:?}", verdicts[0]);
        // A difference of about 120 decays by 0.95 a frame: under 25 within about 31 frames.
        assert!(verdicts[40..].iter().all(|m| !m.active), "{verdicts:?}");
    }

    #[test]
    fn lights_on_rebaselines_within_one_frame_and_is_not_motion() {
        let (base, mut r) = (scene(), StdRng::seed_from_u64(3));
        let bright: Vec<f32> = base.iter().map(|v| v + 60.0).collect();
        let mut d = MotionDetector::new(&MotionParams::default(), FW, FH);
        for _ in 0..10 {
            assert!(!d.observe(gray(&noisy(&base, &mut r))).active);
        }
        let step = d.observe(gray(&noisy(&bright, &mut r)));
        assert!(step.rebaselined && !step.active, "{step:?}");
        assert!(step.changed >= 0.8, "{step:?}");
        for i in 0..50 {
            let m = d.observe(gray(&noisy(&bright, &mut r)));
            assert!(!m.active && !m.rebaselined, "frame {i} after the step: {m:?}");
        }
    }

    #[test]
    fn a_walk_inside_a_mask_is_never_active_and_outside_it_is() {
        // The band the blob walks in (rows 24..36 of 60) and more, in 640x480 frame coordinates.
        let band = vec![[0.0, 128.0], [640.0, 128.0], [640.0, 352.0], [0.0, 352.0]];
        let frames = walk(&MotionParams { mask: vec![band], ..MotionParams::default() });
        assert!(frames.iter().all(|(_, m)| !m.active && m.changed == 0.0), "{frames:?}");

        // Only the left half masked: the blob counts once it is out of it.
        let left = vec![[0.0, 0.0], [320.0, 0.0], [320.0, 480.0], [0.0, 480.0]];
        let frames = walk(&MotionParams { mask: vec![left], ..MotionParams::default() });
        for (i, (x, m)) in frames.iter().enumerate() {
            match *x {
                // Its blurred edge, one pixel wide, stays in the mask too.
                Some(x) if x + 6 < 40 => assert!(!m.active, "frame {i}, blob in the mask at x = {x}: {m:?}"),
                Some(x) if (40..=(W as i32 - 6)).contains(&x) => {
                    assert!(m.active, "frame {i}, blob outside the mask at x = {x}: {m:?}")
                }
                _ => {}
            }
        }
    }

    #[test]
    fn masked_pixels_do_not_count_towards_the_lighting_fraction() {
        // The left three quarters masked; light changes in the right quarter only.
        let mask = vec![vec![[0.0, 0.0], [480.0, 0.0], [480.0, 480.0], [0.0, 480.0]]];
        let (base, mut r) = (scene(), StdRng::seed_from_u64(5));
        let right_lit: Vec<f32> =
            base.iter().enumerate().map(|(i, v)| v + if i % W >= 60 { 60.0 } else { 0.0 }).collect();
        let mut d = MotionDetector::new(&MotionParams { mask: mask.clone(), ..MotionParams::default() }, FW, FH);
        d.observe(gray(&noisy(&base, &mut r)));
        let m = d.observe(gray(&noisy(&right_lit, &mut r)));
        // The blur spreads the step into column 59, masked; every unmasked pixel changed.
        assert!(m.rebaselined && !m.active && m.changed == 1.0, "{m:?}");

        // The same step in the masked part is nothing at all.
        let left_lit: Vec<f32> =
            base.iter().enumerate().map(|(i, v)| v + if i % W < 59 { 60.0 } else { 0.0 }).collect();
        let mut d = MotionDetector::new(&MotionParams { mask, ..MotionParams::default() }, FW, FH);
        d.observe(gray(&noisy(&base, &mut r)));
        assert_eq!(d.observe(gray(&noisy(&left_lit, &mut r))), Motion::QUIET);
    }

    #[test]
    fn a_mask_rectangle_in_frame_coordinates_scales_to_any_image_size() {
        // 640x480 frame: x 80..240, y 80..160, i.e. x 10..30, y 10..20 at 80x60.
        let rect = vec![vec![[80.0, 80.0], [240.0, 80.0], [240.0, 160.0], [80.0, 160.0]]];
        let expect = |w: usize, h: usize, xs: std::ops::Range<usize>, ys: std::ops::Range<usize>| {
            let mut got = Vec::new();
            rasterise(&rect, (FW, FH), w, h, &mut got);
            for y in 0..h {
                for x in 0..w {
                    assert_eq!(got[y * w + x], xs.contains(&x) && ys.contains(&y), "{w}x{h}: pixel ({x}, {y})");
                }
            }
        };
        expect(80, 60, 10..30, 10..20);
        expect(160, 120, 20..60, 20..40);
        // And the detector rasterises for the size it is given, once per size.
        let mut d = MotionDetector::new(&MotionParams { mask: rect.clone(), ..MotionParams::default() }, FW, FH);
        d.observe(Gray { width: 160, height: 120, data: &[100; 160 * 120] });
        assert_eq!(d.unmasked, 160 * 120 - 40 * 20);
        // A triangle (even-odd, pixel centres): the half of a 80x60 image below its diagonal.
        let tri = vec![vec![[0.0, 0.0], [640.0, 480.0], [0.0, 480.0]]];
        let mut got = Vec::new();
        rasterise(&tri, (FW, FH), W, H, &mut got);
        assert!(got[59 * W] && !got[W - 1] && got[30 * W + 10] && !got[10 * W + 30]);
    }

    #[test]
    fn reset_and_a_new_image_size_set_the_background_again() {
        let (base, mut r) = (scene(), StdRng::seed_from_u64(9));
        let mut d = MotionDetector::new(&MotionParams::default(), FW, FH);
        d.observe(gray(&noisy(&base, &mut r)));
        // Every pixel 80 grey levels brighter after the reset: only the new background.
        let other: Vec<f32> = base.iter().map(|v| v + 80.0).collect();
        d.reset();
        assert_eq!(d.observe(gray(&noisy(&other, &mut r))), Motion::QUIET);
        assert!(!d.observe(gray(&noisy(&other, &mut r))).active, "the background is the new scene");
        // Without a reset the same change is a rebaseline, not a fresh background.
        assert!(d.observe(gray(&noisy(&base, &mut r))).rebaselined);
        // A new size starts over too.
        assert_eq!(d.observe(Gray { width: 160, height: 120, data: &[200; 160 * 120] }), Motion::QUIET);
        assert_eq!(d.observe(Gray { width: 160, height: 120, data: &[200; 160 * 120] }).changed, 0.0);
    }

    #[test]
    fn a_malformed_image_is_reported_active() {
        let mut d = MotionDetector::new(&MotionParams::default(), FW, FH);
        let m = d.observe(Gray { width: 80, height: 60, data: &[0; 100] });
        assert!(m.active, "a failing gate must not hide an event: {m:?}");
        assert!(d.observe(Gray { width: 0, height: 0, data: &[] }).active);
    }
}
