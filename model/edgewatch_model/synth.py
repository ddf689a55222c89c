"""Synthetic labelled clips: stick figures in a room, drawn with OpenCV.

- Fight (positive): 2-5 figures in a cluster, moving fast and erratically,
  colliding, punching and kicking (limbs snapping to new angles), leaning and
  falling, with camera shake and motion blur.
- NonFight (negative): an empty or static scene, figures standing and gesturing
  slowly, figures walking calmly, and (as hard negatives) a figure jogging
  straight across or the light being switched.
- Both: lighting flicker and colour cast, sensor noise, JPEG compression.

Everything is drawn in units of the frame size, so a 640x480 clip looks like a
160x120 one after both are resized to the model's input. Each clip has its own
random stream derived from (seed, split, class, index): the same arguments
always give the same pixels (the AVI bytes depend on the JPEG encoder build).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from .video import write_video

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
CLASSES = ("NonFight", "Fight")

SUBSTEPS = 2  # sub-frames averaged per frame (motion blur)


@dataclass
class Figure:
    x: float  # feet position, fraction of frame width
    y: float  # feet position, fraction of frame height (depth: larger is nearer)
    vx: float = 0.0
    vy: float = 0.0
    height: float = 0.4  # fraction of frame height at y
    body: tuple = (90, 90, 160)
    legs_color: tuple = (50, 50, 70)
    skin: tuple = (200, 160, 130)
    phase: float = 0.0
    lean: float = 0.0
    lean_target: float = 0.0
    # shoulder L, R, elbow L, R, hip L, R, knee L, R (radians, 0 = hanging down)
    limbs: np.ndarray = field(default_factory=lambda: np.array([0.15, -0.15, 0.1, 0.1, 0.05, -0.05, 0.0, 0.0]))
    limb_target: np.ndarray = field(default_factory=lambda: np.zeros(8))
    retarget_in: float = 0.0
    mode: str = "idle"  # idle | walk | jog | fight
    fallen_for: float = 0.0
    gesture: float = 1.0  # how much an idle figure gestures


class Scene:
    """A room with figures. `step(dt)` advances the motion, `render()` draws a frame."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, room: int | None = None):
        self.rng = rng
        self.W, self.H = width, height
        self.figures: list[Figure] = []
        # the room (background, furniture, base lighting) comes from its own stream when fixed
        self.room_rng = np.random.default_rng([room, 5]) if room is not None else rng
        self.bg = self._background()
        self.shake = 0.0  # camera shake amplitude, fraction of width
        self.cam = np.zeros(2)
        self.cam_v = np.zeros(2)
        self.t = 0.0
        # lighting
        self.gain = self.room_rng.uniform(0.65, 1.15)
        self.cast = self.room_rng.uniform(0.9, 1.1, 3)
        self.flicker_amp = rng.uniform(0.0, 0.08)
        self.flicker_hz = rng.uniform(0.3, 3.0)
        self.flicker_phase = rng.uniform(0, 2 * math.pi)
        self.frame_jitter = rng.uniform(0.0, 0.03)
        self.noise_sigma = rng.uniform(1.0, 6.0)
        self.switch_at: float | None = None
        self.switch_gain = 1.0
        self.cluster = np.array([rng.uniform(0.35, 0.65), rng.uniform(0.65, 0.85)])

    # -- scene ---------------------------------------------------------------

    def _background(self) -> np.ndarray:
        rng, W, H = self.room_rng, self.W, self.H
        wall = rng.uniform(60, 200, 3)
        floor = rng.uniform(40, 160, 3)
        horizon = rng.uniform(0.45, 0.6)
        img = np.zeros((H, W, 3), np.float32)
        yy = np.linspace(0, 1, H, dtype=np.float32)[:, None]
        for c in range(3):
            wall_c = wall[c] * (0.8 + 0.3 * yy)
            floor_c = floor[c] * (0.7 + 0.4 * (yy - horizon))
            img[:, :, c] = np.where(yy < horizon, wall_c, floor_c)
        # furniture, doors, windows
        for _ in range(rng.integers(1, 5)):
            x0, x1 = sorted(rng.uniform(0, 1, 2))
            y0 = rng.uniform(0.1, horizon)
            y1 = rng.uniform(y0 + 0.05, min(1.0, horizon + 0.3))
            col = rng.uniform(30, 230, 3)
            cv2.rectangle(img, (int(x0 * W), int(y0 * H)), (int(x1 * W), int(y1 * H)), col.tolist(), -1)
        # static texture
        tex = cv2.GaussianBlur(rng.normal(0, 12, (H, W, 1)).astype(np.float32), (0, 0), max(1.0, W / 160))
        img += tex if tex.ndim == 3 else tex[:, :, None]
        self.horizon = horizon
        return np.clip(img, 0, 255)

    def add_figure(self, mode: str, x: float | None = None, y: float | None = None) -> Figure:
        rng = self.rng
        x = rng.uniform(0.1, 0.9) if x is None else x
        y = rng.uniform(self.horizon + 0.15, 0.97) if y is None else y
        f = Figure(x=x, y=y, mode=mode,
                   body=tuple(rng.uniform(20, 235, 3).tolist()),
                   legs_color=tuple(rng.uniform(20, 140, 3).tolist()),
                   skin=tuple((np.array([200, 160, 130]) * rng.uniform(0.45, 1.1)).clip(0, 255).tolist()),
                   phase=rng.uniform(0, 2 * math.pi), gesture=float(rng.choice([0.3, 1.0])))
        self.set_mode(f, mode)
        self.figures.append(f)
        return f

    def set_mode(self, f: Figure, mode: str) -> None:
        rng = self.rng
        f.mode = mode
        if mode == "walk":
            speed = rng.uniform(0.03, 0.11)
            ang = rng.uniform(0, 2 * math.pi)
            f.vx, f.vy = speed * math.cos(ang), 0.25 * speed * math.sin(ang)
        elif mode == "jog":
            speed = rng.uniform(0.25, 0.4)
            f.vx, f.vy = speed * (1 if f.x < 0.5 else -1), 0.0
        elif mode == "idle":
            f.vx = f.vy = 0.0
        f.lean_target = 0.0

    # -- motion --------------------------------------------------------------

    def step(self, dt: float) -> None:
        rng = self.rng
        self.t += dt
        figs = self.figures
        for f in figs:
            scale = self._scale(f)
            if f.mode == "walk" or f.mode == "jog":
                speed = math.hypot(f.vx, f.vy)
                f.phase += 2 * math.pi * (1.0 + 6.0 * speed) * dt
                amp = 0.35 if f.mode == "walk" else 0.8
                s = math.sin(f.phase)
                f.limb_target[:] = [-0.4 * amp * s, 0.4 * amp * s, 0.2, 0.2 + (0.9 if f.mode == "jog" else 0.0),
                                    amp * s, -amp * s, max(0.0, -s) * amp, max(0.0, s) * amp]
                f.limb_target[3] = f.limb_target[2]
                if f.mode == "walk" and rng.random() < 0.2 * dt:  # now and then a new direction
                    self.set_mode(f, "walk")
                f.lean_target = 0.15 * math.copysign(1, f.vx) if f.mode == "jog" else 0.0
                rate = 12.0
            elif f.mode == "idle":
                f.phase += 2 * math.pi * 0.3 * dt
                gest = 0.25 * math.sin(f.phase) * f.gesture
                f.limb_target[:] = [0.15 + gest, -0.15, 0.1 + gest, 0.1, 0.05, -0.05, 0.0, 0.0]
                f.lean_target = 0.04 * math.sin(0.7 * f.phase)
                rate = 3.0
            else:  # fight
                f.retarget_in -= dt
                if f.retarget_in <= 0:
                    f.retarget_in = rng.uniform(0.06, 0.3)
                    other = self._nearest(f)
                    toward = math.copysign(1.0, (other.x - f.x) if other is not None else rng.uniform(-1, 1))
                    t = rng.uniform(-2.6, 2.6, 8)
                    if rng.random() < 0.6:  # punch: one arm straight toward the opponent
                        arm = int(rng.integers(0, 2))
                        t[arm] = toward * rng.uniform(1.3, 1.9)
                        t[2 + arm] = rng.uniform(-0.1, 0.1)
                    t[4:6] = rng.uniform(-0.6, 0.6, 2)
                    if rng.random() < 0.25:  # kick
                        t[4 + int(rng.integers(0, 2))] = toward * rng.uniform(0.9, 1.6)
                    t[6:8] = rng.uniform(0.0, 1.2, 2)
                    f.limb_target[:] = t
                    f.lean_target = rng.uniform(-0.5, 0.5)
                    if f.fallen_for <= 0 and rng.random() < 0.03:
                        f.fallen_for = rng.uniform(0.4, 1.2)
                        f.lean_target = math.copysign(rng.uniform(1.1, 1.5), rng.uniform(-1, 1))
                # erratic, attracted to the cluster, pushed apart on contact
                ax = 6.0 * (self.cluster[0] - f.x) + rng.normal(0, 4.0)
                ay = 3.0 * (self.cluster[1] - f.y) + rng.normal(0, 1.5)
                for o in figs:
                    if o is f:
                        continue
                    dx, dy = f.x - o.x, (f.y - o.y) * 2
                    d = math.hypot(dx, dy) + 1e-6
                    if d < 0.08 * scale / 0.4:
                        ax += 30.0 * dx / d
                        ay += 15.0 * dy / d
                f.vx = (f.vx + ax * dt) * (1 - 2.5 * dt)
                f.vy = (f.vy + ay * dt) * (1 - 2.5 * dt)
                if f.fallen_for > 0:
                    f.fallen_for -= dt
                    f.vx *= 0.5
                    f.vy *= 0.5
                rate = 25.0
            f.x += f.vx * dt
            f.y += f.vy * dt
            # stay in the room
            if f.mode != "jog":
                if f.x < 0.05 or f.x > 0.95:
                    f.vx = -f.vx
                    f.x = min(max(f.x, 0.05), 0.95)
            lo = self.horizon + 0.12
            if f.y < lo or f.y > 0.98:
                f.vy = -f.vy
                f.y = min(max(f.y, lo), 0.98)
            k = min(1.0, rate * dt)
            f.limbs += k * (f.limb_target - f.limbs)
            f.lean += min(1.0, (rate * 0.5) * dt) * (f.lean_target - f.lean)
        # camera: shake is a damped random walk plus per-frame jitter
        if self.shake > 0:
            self.cam_v += rng.normal(0, self.shake * 60, 2) * dt
            self.cam_v *= (1 - 8 * dt)
            self.cam += self.cam_v * dt
            self.cam *= (1 - 3 * dt)
        else:
            self.cam *= (1 - 3 * dt)
        # crowd centre drifts a little
        self.cluster += rng.normal(0, 0.02, 2) * dt

    def _scale(self, f: Figure) -> float:
        return 0.22 + 0.5 * (f.y - self.horizon) / max(1e-3, 1 - self.horizon)

    def _nearest(self, f: Figure) -> Figure | None:
        best, bd = None, 1e9
        for o in self.figures:
            if o is not f:
                d = abs(o.x - f.x) + abs(o.y - f.y)
                if d < bd:
                    best, bd = o, d
        return best

    # -- drawing -------------------------------------------------------------

    def _draw_figure(self, img: np.ndarray, f: Figure) -> None:
        W, H = self.W, self.H
        h = self._scale(f) * H
        th = max(1, int(round(h * 0.07)))
        up = np.array([math.sin(f.lean), -math.cos(f.lean)])
        right = np.array([-up[1], up[0]])
        feet = np.array([f.x * W, f.y * H])
        hip = feet + up * 0.46 * h
        neck = hip + up * 0.32 * h
        head = neck + up * 0.1 * h
        shoulder = neck - up * 0.03 * h

        def limb(root, a1, a2, l1, l2, col):
            d1 = -up * math.cos(a1) + right * math.sin(a1)
            j = root + d1 * l1
            a = a1 + a2
            d2 = -up * math.cos(a) + right * math.sin(a)
            e = j + d2 * l2
            cv2.line(img, _pt(root), _pt(j), col, th, cv2.LINE_AA, 3)
            cv2.line(img, _pt(j), _pt(e), col, th, cv2.LINE_AA, 3)

        L = f.limbs
        limb(hip, L[4], L[6], 0.25 * h, 0.23 * h, f.legs_color)
        limb(hip, L[5], -L[7], 0.25 * h, 0.23 * h, f.legs_color)
        cv2.line(img, _pt(hip), _pt(neck), f.body, int(th * 1.8) + 1, cv2.LINE_AA, 3)
        limb(shoulder, L[0], L[2], 0.17 * h, 0.16 * h, f.body)
        limb(shoulder, L[1], -L[3], 0.17 * h, 0.16 * h, f.body)
        cv2.circle(img, _pt(head), max(1, int(round(0.09 * h * 8))), f.skin, -1, cv2.LINE_AA, 3)

    def render_clean(self) -> np.ndarray:
        img = self.bg.copy()
        for f in sorted(self.figures, key=lambda f: f.y):  # far first
            self._draw_figure(img, f)
        if np.any(np.abs(self.cam) > 1e-4):
            M = np.float32([[1, 0, self.cam[0] * self.W], [0, 1, self.cam[1] * self.W]])
            img = cv2.warpAffine(img, M, (self.W, self.H), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT)
        return img

    def light(self, img: np.ndarray) -> np.ndarray:
        rng = self.rng
        g = self.gain * (1 + self.flicker_amp * math.sin(2 * math.pi * self.flicker_hz * self.t + self.flicker_phase))
        g *= 1 + rng.normal(0, self.frame_jitter)
        if self.switch_at is not None and self.t >= self.switch_at:
            g *= self.switch_gain
        out = img * (g * self.cast)[None, None, :].astype(np.float32)
        out += rng.normal(0, self.noise_sigma, out.shape).astype(np.float32)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _pt(p) -> tuple[int, int]:
    # 3 bits of sub-pixel precision (the `shift` argument of the cv2 calls)
    return int(round(p[0] * 8)), int(round(p[1] * 8))


def _frames(scene: Scene, n: int, fps: float, schedule=None) -> list[np.ndarray]:
    out = []
    dt = 1.0 / (fps * SUBSTEPS)
    for i in range(n):
        if schedule is not None:
            schedule(scene, i / fps)
        acc = np.zeros((scene.H, scene.W, 3), np.float32)
        for _ in range(SUBSTEPS):
            scene.step(dt)
            acc += scene.render_clean()
        out.append(scene.light(acc / SUBSTEPS))
    return out


def render_clip(rng: np.random.Generator, fight: bool, width: int, height: int, fps: float,
                seconds: float, hard_negatives: float = 0.15, room: int | None = None
                ) -> tuple[list[np.ndarray], str]:
    """Returns (RGB uint8 frames, a short description of the scenario). With `room`,
    every clip is filmed in the same room (one fixed camera)."""
    scene = Scene(rng, width, height, room)
    n = max(1, int(round(seconds * fps)))
    if fight:
        k = int(rng.integers(2, 6))
        for _ in range(k):
            scene.add_figure("fight", x=scene.cluster[0] + rng.normal(0, 0.08),
                             y=min(0.97, scene.cluster[1] + rng.normal(0, 0.04)))
        # bystanders
        for _ in range(int(rng.integers(0, 2))):
            scene.add_figure(rng.choice(["idle", "walk"]))
        scene.shake = rng.uniform(0.01, 0.03) if rng.random() < 0.8 else 0.0
        desc = f"fight: {k} fighters, shake {scene.shake:.3f}"
    else:
        r = rng.random()
        if r < hard_negatives / 2:
            scene.add_figure("jog", x=rng.choice([0.02, 0.98]))
            for _ in range(int(rng.integers(0, 3))):
                scene.add_figure(rng.choice(["idle", "walk"]))
            desc = "calm: a jogger crossing"
        elif r < hard_negatives:
            for _ in range(int(rng.integers(0, 4))):
                scene.add_figure(rng.choice(["idle", "walk"]))
            scene.switch_at = rng.uniform(0.3, 0.7) * seconds
            scene.switch_gain = rng.choice([rng.uniform(0.4, 0.7), rng.uniform(1.3, 1.7)])
            desc = "calm: light switched"
        elif r < hard_negatives + 0.15:
            desc = "static: empty room"
        elif r < hard_negatives + 0.45:
            k = int(rng.integers(1, 5))
            cx, cy = scene.cluster
            for _ in range(k):  # a group standing and talking
                scene.add_figure("idle", x=cx + rng.normal(0, 0.1), y=min(0.97, cy + rng.normal(0, 0.04)))
            desc = f"static: {k} standing"
        else:
            k = int(rng.integers(1, 5))
            for _ in range(k):
                scene.add_figure(rng.choice(["walk", "walk", "idle"]))
            desc = f"calm: {k} walking/standing"
        if rng.random() < 0.2:
            scene.shake = rng.uniform(0.001, 0.004)  # a hand-held camera, held calmly
    # let the motion settle into its pattern before the first frame
    for _ in range(int(0.5 * fps * SUBSTEPS)):
        scene.step(1.0 / (fps * SUBSTEPS))
    return _frames(scene, n, fps), desc


def synth_dataset(out: str, n_train: int, n_val: int, width: int, height: int, fps: float,
                  seconds: float, seed: int, quality: int = 85, hard_negatives: float = 0.15,
                  room: int | None = None, log=print) -> dict:
    """Writes OUT/{train,val}/{Fight,NonFight}/*.avi; returns counts per split and class."""
    counts = {}
    for split, n in (("train", n_train), ("val", n_val)):
        for label, cls in enumerate(CLASSES):
            d = os.path.join(out, split, cls)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng([seed, SPLIT_IDS[split], label, i])
                frames, desc = render_clip(rng, bool(label), width, height, fps, seconds, hard_negatives, room)
                path = os.path.join(d, f"{cls.lower()}_{i:04d}.avi")
                write_video(path, frames, fps, quality)
            counts[f"{split}/{cls}"] = n
            log(f"  {split}/{cls}: {n} clips")
    return counts


def demo_video(path: str, width: int = 640, height: int = 480, fps: float = 15.0, calm: float = 9.0,
               burst: float = 6.0, after: float = 9.0, seed: int = 3, quality: int = 9,
               n_figures: int = 4) -> dict:
    """Calm walking, then the figures rush together and fight, then they walk away.

    Returns the segment boundaries in seconds. `quality` is ffmpeg's -q:v (2 best .. 31)."""
    rng = np.random.default_rng([seed, 99])
    scene = Scene(rng, width, height)
    scene.flicker_amp = 0.03
    scene.noise_sigma = 1.5
    scene.frame_jitter = 0.005
    scene.gain = 1.0
    # calm: the figures spread over the room, every other one strolling slowly, the others standing
    xs = np.linspace(0.12, 0.88, n_figures) + rng.uniform(-0.04, 0.04, n_figures)
    figs = [scene.add_figure("walk" if i % 2 == 0 else "idle", x=float(x)) for i, x in enumerate(xs)]
    for f in figs:
        f.vx, f.vy = 0.4 * f.vx, 0.4 * f.vy
    start, end = calm, calm + burst
    state = {"phase": "calm"}

    def schedule(sc: Scene, t: float) -> None:
        if t >= start and state["phase"] == "calm":
            state["phase"] = "burst"
            for f in figs:
                sc.set_mode(f, "fight")
            sc.shake = 0.02
        elif t >= end and state["phase"] == "burst":
            state["phase"] = "after"
            for i, f in enumerate(figs):
                sc.set_mode(f, "walk" if i % 2 == 0 else "idle")
                f.lean_target = 0.0
                f.fallen_for = 0.0
            sc.shake = 0.0

    n = int(round((calm + burst + after) * fps))
    frames = _frames(scene, n, fps, schedule)
    write_video(path, frames, fps, quality=quality, ffmpeg_q=True)
    return {"burst_start": start, "burst_end": end, "duration": n / fps, "frames": n}
