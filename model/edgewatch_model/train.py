"""Training: MobileNetV2 + BiLSTM on the detector's sampled frames, in three stages.

Backpropagating through the backbone for all T frames of a window is costly on a
CPU and the T frames of one clip are nearly the same picture, so training goes
in stages (each optional, run in this order):

1. `frames`: the backbone (plus a temporary linear classifier on the pooled
   features of two consecutive sampled frames: the first one and the absolute
   change, i.e. appearance and motion) learns from pairs of frames labelled
   with their clip's class, `frames_per_clip / 2` random pairs per clip and
   epoch, in batches of pairs from many clips.
2. `head`: the backbone is frozen; the features of every sampled frame are
   computed once (for `head_passes` differently augmented copies of each
   training clip) and the BiLSTM head learns from all windows of T features.
3. `joint`: both are fine-tuned end to end on windows of T frames.

Every window is T consecutive frames of the detector's sampling (see video.py).
Augmentation: a random flip, shift, saturation/contrast/brightness/colour change
and flicker shared by the frames of a clip (or window), and fresh sensor noise
per frame. The loss is binary cross-entropy weighted so both classes count
equally. After every epoch, validation runs the way the detector does: the
backbone once per sampled frame (BatchNorm running statistics) and the head over
every window of T features; it prints accuracy, precision, recall, F1, ROC-AUC
and the confusion matrix. `last.ckpt.npz` is written after every epoch and
`best.ckpt.npz` whenever the window F1 (then the loss) improves in the head or
joint stage; `resume` continues from `last.ckpt.npz` exactly as an
uninterrupted run would, since every random draw derives from (seed, stage,
epoch, step).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import checkpoint, dataset, net
from .metrics import confusion, format_confusion, roc_auc, summary_line
from .video import ClipError

STAGES = ("frames", "head", "joint")
STAGE_IDS = {s: i for i, s in enumerate(STAGES)}


@dataclass
class TrainOptions:
    data: str
    out: str
    frame_epochs: int = 8
    head_epochs: int = 30
    joint_epochs: int = 0
    frame_batch: int = 64  # frames per step in stage 1
    batch: int = 16  # windows per step in stage 3
    head_batch: int = 128  # windows per step in stage 2
    frames_per_clip: int = 4
    head_passes: int = 3  # augmented feature passes over the training clips in stage 2
    windows_per_clip: int = 1  # stage 3
    lr: float = 3e-3
    head_lr: float = 3e-3
    joint_lr: float = 3e-4
    weight_decay: float = 1e-4
    dropout: float = 0.3
    seed: int = 0
    augment: bool = True
    val_stride: int = 1  # validation windows start every val_stride sampled frames
    skip_bad: bool = False
    cache: str | None = None  # decoded-frame cache dir (default OUT/cache)
    resume: bool = False
    init: str | None = None  # fine-tune from this checkpoint's weights
    log_every: int = 10
    stop_after: int | None = None  # end this run after N epochs, as if interrupted (resume continues)


# ---------------------------------------------------------------------------
# optimizer (AdamW with global-norm clipping)
# ---------------------------------------------------------------------------

def adam_init(params):
    zeros = jax.tree_util.tree_map(lambda a: jnp.zeros_like(jnp.asarray(a)), params)
    return {"m": zeros, "v": jax.tree_util.tree_map(jnp.zeros_like, zeros), "t": jnp.zeros((), jnp.int32)}


def adamw(params, grads, opt, lr, weight_decay, mask, clip_norm=5.0):
    gnorm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree_util.tree_leaves(grads)))
    scale = jnp.minimum(1.0, clip_norm / (gnorm + 1e-6))
    grads = jax.tree_util.tree_map(lambda g: g * scale, grads)
    t = opt["t"] + 1
    b1, b2, eps = 0.9, 0.999, 1e-8
    m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, opt["m"], grads)
    v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, opt["v"], grads)
    c1 = 1 - b1 ** t.astype(jnp.float32)
    c2 = 1 - b2 ** t.astype(jnp.float32)

    def upd(p, m, v, decay):
        u = (m / c1) / (jnp.sqrt(v / c2) + eps)
        return p - lr * (u + (weight_decay * p if decay else 0.0))

    return jax.tree_util.tree_map(upd, params, m, v, mask), {"m": m, "v": v, "t": t}, gnorm


def _bce(logits, y, w):
    return jnp.sum(w * (jnp.logaddexp(0.0, logits) - y * logits)) / jnp.sum(w)


def _dropout(x, rng, rate):
    keep = 1.0 - rate
    return x * jax.random.bernoulli(rng, keep, x.shape) / keep


BACKBONE_KEYS = ("stem", "blocks", "last")


def pair_logits(aux, fa, fb, rng=None, dropout: float = 0.0):
    """Stage 1's temporary classifier on two consecutive frames' features: what
    the first frame shows, and how much the features change (motion)."""
    if rng is not None and dropout > 0:
        r1, r2 = jax.random.split(rng)
        fa = _dropout(fa, r1, dropout)
        fb = _dropout(fb, r2, dropout)
    return fa @ aux["w"] + jnp.abs(fb - fa) @ aux["d"] + aux["b"]


def make_steps(cfg: net.ModelConfig, opt: "TrainOptions", params):
    """The three jitted training steps; `trainable` is the stage's parameter subset."""
    wd = opt.weight_decay

    def frame_loss(tr, state, x, y, w, rng):
        # x: [2N,H,W,3], the first frames of N pairs of consecutive sampled frames, then the second ones
        f, new_state = net.backbone(cfg, tr, state, net.normalise(cfg, x), True)
        logits = pair_logits(tr["aux"], f[:len(y)], f[len(y):], rng, opt.dropout)
        return _bce(logits, y, w), (new_state, logits)

    frame_mask = net.decay_mask({k: params[k] for k in BACKBONE_KEYS} | {"aux": {"w": 0, "d": 0, "b": 0}})

    @jax.jit
    def frame_step(tr, state, adam, x, y, w, rng, lr):
        (loss, (ns, logits)), g = jax.value_and_grad(frame_loss, has_aux=True)(tr, state, x, y, w, rng)
        tr, adam, gn = adamw(tr, g, adam, lr, wd, frame_mask)
        return tr, ns, adam, loss, logits, gn

    def head_loss(hp, feats, y, w, rng):
        logits = net.head_logit({"head": hp}, feats, True, rng, opt.dropout)
        return _bce(logits, y, w), logits

    head_mask = net.decay_mask({"head": params["head"]})["head"]

    @jax.jit
    def head_step(hp, adam, feats, y, w, rng, lr):
        (loss, logits), g = jax.value_and_grad(head_loss, has_aux=True)(hp, feats, y, w, rng)
        hp, adam, gn = adamw(hp, g, adam, lr, wd, head_mask)
        return hp, adam, loss, logits, gn

    def joint_loss(p, state, x, y, w, rng):
        logits, ns = net.forward(cfg, p, state, x, True, rng, opt.dropout)
        return _bce(logits, y, w), (ns, logits)

    joint_mask = net.decay_mask(params)

    @jax.jit
    def joint_step(p, state, adam, x, y, w, rng, lr):
        (loss, (ns, logits)), g = jax.value_and_grad(joint_loss, has_aux=True)(p, state, x, y, w, rng)
        p, adam, gn = adamw(p, g, adam, lr, wd, joint_mask)
        return p, ns, adam, loss, logits, gn

    return frame_step, head_step, joint_step


def make_eval(cfg: net.ModelConfig):
    @jax.jit
    def features(params, state, frames):  # [N,H,W,3] pixels -> [N,F]
        return net.backbone(cfg, params, state, net.normalise(cfg, frames), False)[0]

    @jax.jit
    def scores(params, feats):  # [B,T,F] -> [B]
        return jax.nn.sigmoid(net.head_logit(params, feats, False))

    return features, scores


def _chunked(fn, arr: np.ndarray, chunk: int) -> np.ndarray:
    """fn over fixed-size chunks of arr (zero-padded: one compilation)."""
    out = []
    for i in range(0, len(arr), chunk):
        part = arr[i:i + chunk]
        n = len(part)
        if n < chunk:
            part = np.concatenate([part, np.zeros((chunk - n,) + part.shape[1:], part.dtype)])
        out.append(np.asarray(fn(part))[:n])
    return np.concatenate(out) if out else np.zeros((0,))


def all_features(feat_fn, params, state, frames: np.ndarray, chunk: int = 64) -> np.ndarray:
    return _chunked(lambda x: feat_fn(params, state, jnp.asarray(x, jnp.float32)), frames, chunk)


def window_scores(score_fn, params, feats: np.ndarray, window: int, stride: int = 1, chunk: int = 32):
    """Head scores of every window of `feats` [N,F]; returns (starts, scores)."""
    starts = dataset.window_starts(len(feats), window, stride)
    wins = np.stack([feats[s:s + window] for s in starts])
    return starts, _chunked(lambda x: score_fn(params, jnp.asarray(x)), wins, chunk)


# ---------------------------------------------------------------------------
# augmentation
# ---------------------------------------------------------------------------

def augment(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N,H,W,3] -> float32 pixels: one geometric and colour change for all
    N frames (a clip or a window), flicker and sensor noise per frame."""
    x = frames.astype(np.float32)
    N, H, W, _ = x.shape
    if rng.random() < 0.5:
        x = x[:, :, ::-1]
    sy, sx = int(0.08 * H), int(0.08 * W)
    dy, dx = int(rng.integers(-sy, sy + 1)), int(rng.integers(-sx, sx + 1))
    if dy or dx:
        x = np.pad(x, ((0, 0), (sy, sy), (sx, sx), (0, 0)), mode="edge")[:, sy + dy:sy + dy + H, sx + dx:sx + dx + W]
    gray = x.mean(axis=-1, keepdims=True)
    x = gray + np.float32(rng.uniform(0.7, 1.3)) * (x - gray)  # saturation
    m = x.mean()
    x = (x - m) * np.float32(rng.uniform(0.75, 1.25)) + m  # contrast
    x = x * (rng.uniform(0.7, 1.3) * rng.uniform(0.94, 1.06, 3)).astype(np.float32)  # brightness, colour cast
    x = x * (1 + rng.normal(0, 0.02, (N, 1, 1, 1))).astype(np.float32)  # flicker
    sigma = rng.uniform(0, 5)
    if sigma > 0.5:
        x = x + rng.normal(0, sigma, x.shape).astype(np.float32)
    return np.clip(x, 0, 255)


def lr_at(step: int, total: int, base: float) -> float:
    """Linear warm-up (10 %, at most 50 steps), then cosine decay to 2 %."""
    warm = max(1, min(50, total // 10))
    if step < warm:
        return base * (step + 1) / warm
    p = (step - warm) / max(1, total - warm)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------

def _bce_np(y, s):
    eps = 1e-7
    return float(np.mean(-(y * np.log(s + eps) + (1 - y) * np.log(1 - s + eps))))


def validate(cfg, feat_fn, score_fn, params, state, frames_list, labels, stride, aux=None) -> dict:
    """Streaming validation: backbone once per sampled frame, head over every window.
    Clip score: the mean of its windows. With `aux`, also the frame classifier's results."""
    feats = all_features(feat_fn, params, state, np.concatenate(frames_list))
    out: dict = {}
    if aux is not None:
        at, fs, fy = 0, [], []
        for f, y in zip(frames_list, labels):
            cf = feats[at:at + len(f)]
            at += len(f)
            z = cf[:-1] @ np.asarray(aux["w"]) + np.abs(cf[1:] - cf[:-1]) @ np.asarray(aux["d"]) + float(aux["b"])
            fs.append(1 / (1 + np.exp(-z)))
            fy.append(np.full(len(f) - 1, y))
        fs, fy = np.concatenate(fs), np.concatenate(fy)
        out["frame"] = confusion(fy, fs, 0.5)
        out["frame_auc"] = roc_auc(fy, fs)
        out["frame_loss"] = _bce_np(fy, fs)
    win_scores, win_labels, clip_scores = [], [], []
    at = 0
    for frames, y in zip(frames_list, labels):
        _, s = window_scores(score_fn, params, feats[at:at + len(frames)], cfg.window, stride)
        at += len(frames)
        win_scores.append(s)
        win_labels.append(np.full(len(s), y))
        clip_scores.append(float(np.mean(s)))
    s = np.concatenate(win_scores)
    y = np.concatenate(win_labels)
    out.update({"window": confusion(y, s, 0.5), "window_auc": roc_auc(y, s), "loss": _bce_np(y, s),
                "clip": confusion(labels, np.array(clip_scores), 0.5), "scores": s, "labels": y})
    return out


def _fmt_auc(a):
    return "n/a" if a is None else f"{a:.4f}"


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------

class Trainer:
    def __init__(self, cfg: net.ModelConfig, opt: TrainOptions, log=print):
        self.cfg, self.opt, self.log = cfg, opt, log
        os.makedirs(opt.out, exist_ok=True)
        self.last_path = os.path.join(opt.out, "last.ckpt.npz")
        self.best_path = os.path.join(opt.out, "best.ckpt.npz")
        self.history: list = []
        self.best = None
        self.step = 0
        self.done = (-1, -1)  # (stage id, epoch) of the last finished epoch
        self.ran = 0  # epochs run by this invocation

    # -- state --------------------------------------------------------------

    def _templates(self, stage: str | None):
        params, state = net.init(self.cfg, self.opt.seed)
        F = self.cfg.feature_dim
        aux = {"w": jnp.zeros((F,), jnp.float32), "d": jnp.zeros((F,), jnp.float32), "b": jnp.zeros((), jnp.float32)}
        t = {"params": params, "state": state, "aux": aux}
        if stage is not None:
            t["adam"] = adam_init(self._trainable(stage, params, aux))
        return t

    @staticmethod
    def _trainable(stage, params, aux):
        if stage == "frames":
            return {k: params[k] for k in BACKBONE_KEYS} | {"aux": aux}
        if stage == "head":
            return params["head"]
        return params

    def setup(self):
        opt, log = self.opt, self.log
        t = self._templates(None)
        self.params, self.state, self.aux = t["params"], t["state"], t["aux"]
        self.adam = None
        if opt.resume:
            if not os.path.exists(self.last_path):
                raise FileNotFoundError(f"--resume: {self.last_path} does not exist (nothing to resume)")
            meta = checkpoint.load_meta(self.last_path)
            ck_cfg = net.ModelConfig.from_json(meta["config"])
            if ck_cfg != self.cfg:
                log(f"note: resuming with the checkpoint's model config {ck_cfg} (the command line's is ignored)")
                self.cfg = ck_cfg
            meta, trees = checkpoint.load(self.last_path, self._templates(meta["stage"]))
            self.params, self.state, self.aux, self.adam = trees["params"], trees["state"], trees["aux"], trees["adam"]
            self.step, self.history, self.best = meta["step"], meta["history"], meta.get("best")
            self.done = (STAGE_IDS[meta["stage"]], meta["epoch"])
            log(f"resuming from {self.last_path}: stage {meta['stage']}, epoch {meta['epoch'] + 1} done")
        elif opt.init:
            meta, trees = checkpoint.load(opt.init, {"params": self.params, "state": self.state})
            self.params, self.state = trees["params"], trees["state"]
            log(f"fine-tuning from {opt.init}")
        to_j = lambda tr: jax.tree_util.tree_map(jnp.asarray, tr)  # noqa: E731
        self.params, self.state, self.aux = to_j(self.params), to_j(self.state), to_j(self.aux)
        if self.adam is not None:
            self.adam = to_j(self.adam)

    def load_data(self):
        cfg, opt, log = self.cfg, self.opt, self.log
        cache = opt.cache or os.path.join(opt.out, "cache")
        splits = dataset.scan(opt.data, ("train", "val"), log)
        log(f"data {opt.data}: train {len(splits['train'])} clips, val {len(splits['val'])} clips; sampling "
            f"{cfg.sample_fps:g} frames/s, window T={cfg.window}, input {cfg.width}x{cfg.height}")
        t0 = time.time()
        self.tr_frames, self.tr_labels, _ = dataset.load_clips(
            splits["train"], cfg.sample_fps, cfg.width, cfg.height, cfg.window, cache, opt.skip_bad, log)
        self.va_frames, self.va_labels, _ = dataset.load_clips(
            splits["val"], cfg.sample_fps, cfg.width, cfg.height, cfg.window, cache, opt.skip_bad, log)
        # Frame-rate jitter: the training clips again at each lower rate the detector may pick, so
        # each window the model learns from has one of the spacings it will see. Validation stays
        # at the manifest's rate (`evaluate --rates` measures the others).
        for rate in cfg.jitter_rates()[1:]:
            frames, labels, short = [], [], 0
            for clip in splits["train"]:
                try:
                    f, lab, _ = dataset.load_clips([clip], rate, cfg.width, cfg.height, cfg.window, cache, False,
                                                   log)
                except ClipError:
                    short += 1  # shorter than T / rate (or unreadable, already reported above)
                    continue
                frames += f
                labels.append(lab)
            if not frames:
                raise ValueError(f"no training clip is long enough for a window at {rate:g} frames/s "
                                 f"(T={cfg.window} needs {cfg.window / rate:.1f} s); lower --sample-fps-min")
            self.tr_frames = list(self.tr_frames) + frames
            self.tr_labels = np.concatenate([self.tr_labels, *labels])
            log(f"frame-rate jitter: {len(frames)} training clips also at {rate:g} frames/s"
                + (f" ({short} too short for a window)" if short else ""))
        n_pos = int(self.tr_labels.sum())
        n_neg = len(self.tr_labels) - n_pos
        if n_pos == 0 or n_neg == 0:
            raise ValueError("the training split needs clips of both classes")
        if self.va_labels.min() == self.va_labels.max():
            log("note: the validation split has one class only; precision/recall/AUC are partial")
        n = len(self.tr_labels)
        self.class_w = {1: n / (2 * n_pos), 0: n / (2 * n_neg)}
        log(f"decoded in {time.time() - t0:.1f} s: train {n_pos} Fight / {n_neg} NonFight (loss weights "
            f"{self.class_w[1]:.2f} / {self.class_w[0]:.2f}), val {int(self.va_labels.sum())} Fight / "
            f"{len(self.va_labels) - int(self.va_labels.sum())} NonFight")

    def run(self) -> dict:
        self.setup()
        self.load_data()
        self.frame_step, self.head_step, self.joint_step = make_steps(self.cfg, self.opt, self.params)
        self.feat_fn, self.score_fn = make_eval(self.cfg)
        epochs = {"frames": self.opt.frame_epochs, "head": self.opt.head_epochs, "joint": self.opt.joint_epochs}
        for stage in STAGES:
            sid = STAGE_IDS[stage]
            if sid < self.done[0] or epochs[stage] <= 0:
                continue
            first = self.done[1] + 1 if sid == self.done[0] else 0
            if first >= epochs[stage] or self._stop():
                continue
            if sid != self.done[0] or self.adam is None:
                self.adam = jax.tree_util.tree_map(
                    jnp.asarray, adam_init(self._trainable(stage, self.params, self.aux)))
            getattr(self, f"_stage_{stage}")(first, epochs[stage])
        return {"history": self.history, "best": self.best, "last": self.last_path, "best_path": self.best_path,
                "config": self.cfg}

    # -- stages -------------------------------------------------------------

    def _stop(self) -> bool:
        return self.opt.stop_after is not None and self.ran >= self.opt.stop_after

    def _weights(self, ys):
        return np.array([self.class_w[int(y)] for y in ys], np.float32)

    def _stage_frames(self, first: int, epochs: int):
        opt = self.opt
        P = max(1, opt.frame_batch // 2)  # pairs per step
        pairs_per_clip = max(1, opt.frames_per_clip // 2)
        per_epoch = math.ceil(len(self.tr_frames) * pairs_per_clip / P)
        total = per_epoch * epochs
        key = jax.random.PRNGKey(opt.seed * 1000 + 1)
        self.log(f"stage frames: backbone on pairs of consecutive sampled frames, {epochs} epochs x {per_epoch} "
                 f"steps of {P} pairs")
        for epoch in range(first, epochs):
            if self._stop():
                return
            t0, c0 = time.time(), time.process_time()
            rng = np.random.default_rng([opt.seed, 1, epoch])
            items = []
            for ci, fr in enumerate(self.tr_frames):
                starts = rng.choice(len(fr) - 1, size=min(pairs_per_clip, len(fr) - 1), replace=False)
                idx = np.concatenate([starts, starts + 1])
                # one augmentation per clip and epoch, shared by its frames
                x = np.round(augment(fr[idx], rng)).astype(np.uint8) if opt.augment else fr[idx]
                n = len(starts)
                items += [(x[i], x[n + i], self.tr_labels[ci]) for i in range(n)]
            order = rng.permutation(len(items))
            items = [items[i] for i in order]
            items += items[:(-len(items)) % P]
            tr = self._trainable("frames", self.params, self.aux)
            losses, correct, seen = [], 0, 0
            for bi in range(0, len(items), P):
                batch = items[bi:bi + P]
                xs = np.stack([b[0] for b in batch] + [b[1] for b in batch]).astype(np.float32)
                ys = np.array([b[2] for b in batch], np.float32)
                s = epoch * per_epoch + bi // P
                lr = lr_at(s, total, opt.lr)
                tr, self.state, self.adam, loss, logits, gn = self.frame_step(
                    tr, self.state, self.adam, jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(self._weights(ys)),
                    jax.random.fold_in(key, s), jnp.float32(lr))
                losses.append(self._check(loss))
                correct += int(np.sum((np.asarray(logits) > 0) == (ys > 0.5)))
                seen += len(ys)
                self._progress(losses, lr, gn)
            self.params = dict(self.params, **{k: tr[k] for k in BACKBONE_KEYS})
            self.aux = tr["aux"]
            self._end_epoch("frames", epoch, epochs, losses, correct / max(1, seen), t0, c0, aux=self.aux)

    def _stage_head(self, first: int, epochs: int):
        opt, cfg = self.opt, self.cfg
        t0 = time.time()
        # features of the frozen backbone: pass 0 unaugmented, then augmented copies
        clips = []
        for p in range(max(1, opt.head_passes)):
            rng = np.random.default_rng([opt.seed, 2, p])
            for ci, fr in enumerate(self.tr_frames):
                x = fr if (p == 0 or not opt.augment) else augment(fr, rng)
                clips.append((x, self.tr_labels[ci]))
        lens = [len(c[0]) for c in clips]
        feats = all_features(self.feat_fn, self.params, self.state, np.concatenate([c[0] for c in clips]))
        offsets = np.cumsum([0] + lens)
        windows = [(offsets[i] + s, clips[i][1]) for i in range(len(clips))
                   for s in dataset.window_starts(lens[i], cfg.window)]
        B = opt.head_batch
        per_epoch = math.ceil(len(windows) / B)
        total = per_epoch * epochs
        self.log(f"stage head: BiLSTM on frozen features ({len(clips)} clip passes, {len(windows)} windows, "
                 f"features in {time.time() - t0:.0f} s), {epochs} epochs x {per_epoch} steps of {B} windows")
        key = jax.random.PRNGKey(opt.seed * 1000 + 2)
        hp = self.params["head"]
        for epoch in range(first, epochs):
            if self._stop():
                return
            t0, c0 = time.time(), time.process_time()
            rng = np.random.default_rng([opt.seed, 3, epoch])
            order = list(rng.permutation(len(windows)))
            order += order[:(-len(order)) % B]
            losses, correct, seen = [], 0, 0
            for bi in range(0, len(order), B):
                idx = order[bi:bi + B]
                xs = np.stack([feats[windows[i][0]:windows[i][0] + cfg.window] for i in idx])
                ys = np.array([windows[i][1] for i in idx], np.float32)
                s = epoch * per_epoch + bi // B
                lr = lr_at(s, total, opt.head_lr)
                hp, self.adam, loss, logits, gn = self.head_step(
                    hp, self.adam, jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(self._weights(ys)),
                    jax.random.fold_in(key, s), jnp.float32(lr))
                losses.append(self._check(loss))
                correct += int(np.sum((np.asarray(logits) > 0) == (ys > 0.5)))
                seen += len(ys)
            self.params = dict(self.params, head=hp)
            self._end_epoch("head", epoch, epochs, losses, correct / max(1, seen), t0, c0, quiet_steps=True)

    def _stage_joint(self, first: int, epochs: int):
        opt, cfg = self.opt, self.cfg
        B = opt.batch
        per_epoch = math.ceil(len(self.tr_frames) * opt.windows_per_clip / B)
        total = per_epoch * epochs
        key = jax.random.PRNGKey(opt.seed * 1000 + 3)
        self.log(f"stage joint: end to end on windows, {epochs} epochs x {per_epoch} steps of {B} windows")
        for epoch in range(first, epochs):
            if self._stop():
                return
            t0, c0 = time.time(), time.process_time()
            rng = np.random.default_rng([opt.seed, 4, epoch])
            items = [(ci, int(rng.integers(0, len(self.tr_frames[ci]) - cfg.window + 1)))
                     for ci in range(len(self.tr_frames)) for _ in range(opt.windows_per_clip)]
            order = rng.permutation(len(items))
            items = [items[i] for i in order]
            items += items[:(-len(items)) % B]
            losses, correct, seen = [], 0, 0
            for bi in range(0, len(items), B):
                batch = items[bi:bi + B]
                xs = np.stack([augment(self.tr_frames[ci][s:s + cfg.window], rng) if opt.augment
                               else self.tr_frames[ci][s:s + cfg.window].astype(np.float32) for ci, s in batch])
                ys = np.array([self.tr_labels[ci] for ci, _ in batch], np.float32)
                s = epoch * per_epoch + bi // B
                lr = lr_at(s, total, opt.joint_lr)
                self.params, self.state, self.adam, loss, logits, gn = self.joint_step(
                    self.params, self.state, self.adam, jnp.asarray(xs), jnp.asarray(ys),
                    jnp.asarray(self._weights(ys)), jax.random.fold_in(key, s), jnp.float32(lr))
                losses.append(self._check(loss))
                correct += int(np.sum((np.asarray(logits) > 0) == (ys > 0.5)))
                seen += len(ys)
                self._progress(losses, lr, gn)
            self._end_epoch("joint", epoch, epochs, losses, correct / max(1, seen), t0, c0)

    # -- helpers ------------------------------------------------------------

    def _check(self, loss) -> float:
        loss = float(loss)
        if not np.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {self.step}; lower the learning rate")
        self.step += 1
        return loss

    def _progress(self, losses, lr, gn):
        n = self.opt.log_every
        if n and len(losses) % n == 0:
            self.log(f"  step {len(losses)}  loss {np.mean(losses[-n:]):.4f}  lr {lr:.2e}  grad-norm {float(gn):.2f}")

    def _end_epoch(self, stage, epoch, epochs, losses, train_acc, t0, c0, aux=None, quiet_steps=False):
        ev = validate(self.cfg, self.feat_fn, self.score_fn, self.params, self.state, self.va_frames,
                      self.va_labels, self.opt.val_stride, aux=aux)
        train_loss = float(np.mean(losses)) if losses else float("nan")
        rec = {"stage": stage, "epoch": epoch + 1, "epochs": epochs, "step": self.step, "train_loss": train_loss,
               "train_acc": train_acc, "seconds": round(time.time() - t0, 1),
               "cpu_seconds": round(time.process_time() - c0, 1)}
        head = f"{stage} epoch {epoch + 1}/{epochs}: train loss {train_loss:.4f} acc {train_acc:.3f}"
        if stage == "frames":
            f = ev["frame"]
            rec.update(val_frame=f, val_frame_auc=ev["frame_auc"], val_frame_loss=ev["frame_loss"])
            self.log(f"{head} | val frames loss {ev['frame_loss']:.4f} {summary_line(f)} AUC "
                     f"{_fmt_auc(ev['frame_auc'])} | {rec['seconds']:.0f} s ({rec['cpu_seconds']:.0f} CPU s)")
            self.log(format_confusion(f))
        else:
            w = ev["window"]
            rec.update(val_loss=ev["loss"], val_window=w, val_window_auc=ev["window_auc"], val_clip=ev["clip"])
            self.log(f"{head} | val windows loss {ev['loss']:.4f} {summary_line(w)} AUC "
                     f"{_fmt_auc(ev['window_auc'])} | clips acc {ev['clip']['accuracy']:.3f} | "
                     f"{rec['seconds']:.0f} s ({rec['cpu_seconds']:.0f} CPU s)")
            if not quiet_steps or epoch + 1 == epochs or (epoch + 1) % 5 == 0:
                self.log(format_confusion(w))
        self.history.append(rec)
        is_best = False
        if stage != "frames":
            key = [w["f1"], -ev["loss"]]
            is_best = self.best is None or key > self.best["key"]
            if is_best:
                self.best = {"key": key, "stage": stage, "epoch": epoch + 1, "val_window": w,
                             "val_window_auc": ev["window_auc"], "val_clip": ev["clip"]}
        meta = {"config": self.cfg.to_json(), "options": asdict(self.opt), "stage": stage, "epoch": epoch,
                "step": self.step, "history": self.history, "best": self.best}
        trees = {"params": net.to_numpy(self.params), "state": net.to_numpy(self.state),
                 "aux": net.to_numpy(self.aux), "adam": net.to_numpy(self.adam)}
        checkpoint.save(self.last_path, meta, **trees)
        if is_best:
            checkpoint.save(self.best_path, meta, params=trees["params"], state=trees["state"], aux=trees["aux"])
        with open(os.path.join(self.opt.out, "train-log.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.done = (STAGE_IDS[stage], epoch)
        self.ran += 1


def train(cfg: net.ModelConfig, opt: TrainOptions, log=print) -> dict:
    return Trainer(cfg, opt, log).run()
