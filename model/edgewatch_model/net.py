"""MobileNetV2 backbone + bidirectional LSTM head in JAX, laid out so that the
weights map one to one onto the ONNX graphs that `onnx_build` writes.

- Images are NHWC inside JAX (XLA's native CPU layout); ONNX gets NCHW.
- Convolutions pad symmetrically (k // 2), like the ONNX builder and torchvision,
  so the exported `Conv` nodes use `pads = [p, p, p, p]`.
- Every convolution is followed by BatchNorm (batch statistics while training,
  running statistics otherwise); the export folds BatchNorm into the conv.
- The LSTM uses ONNX's gate order (i, o, f, c) and weight layout
  (W [2, 4H, F], R [2, 4H, H]), with one bias per direction (ONNX `Wb`; `Rb` = 0).
- The head's output is `sigmoid(dense([h_forward_last, h_backward_first]))`,
  the same summary ONNX's `Y_h` gives for a bidirectional LSTM.

Import this module only after `runtime.configure_threads()`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# MobileNetV2 inverted residual settings: t (expansion), c, n, s
MBV2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

BN_EPS = 1e-3
BN_MOMENTUM = 0.9  # running = momentum * running + (1 - momentum) * batch


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Standard MobileNet channel rounding (as in torchvision / TF slim)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the network's shapes and its run-time contract."""

    width_mult: float = 0.35
    width: int = 112  # input width W in pixels
    height: int = 112  # input height H in pixels
    window: int = 16  # T
    sample_fps: float = 5.0
    hidden: int = 32  # LSTM hidden size per direction
    mean: tuple = MEAN
    std: tuple = STD
    # The lowest sampling rate the model is trained to accept (frame-rate jitter in training, and
    # `temporal.sample-fps-min` in the manifest: the detector's adaptive rate); None: fixed rate.
    sample_fps_min: float | None = None
    # The camera rate the jitter's rates divide (the detector samples camera_fps / k).
    camera_fps: float = 15.0

    def jitter_rates(self) -> list[float]:
        """The rates training samples at: the manifest's, then camera_fps / k down to sample_fps_min
        (the rates the detector's controller picks from, for a camera at camera_fps)."""
        rates = [self.sample_fps]
        if self.sample_fps_min is not None:
            k = int(self.camera_fps // self.sample_fps) + 1
            while self.camera_fps / k >= self.sample_fps_min - 1e-9:
                if self.camera_fps / k < self.sample_fps - 1e-9:
                    rates.append(self.camera_fps / k)
                k += 1
        return rates

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "ModelConfig":
        d = json.loads(text)
        d["mean"] = tuple(d["mean"])
        d["std"] = tuple(d["std"])
        return ModelConfig(**d)

    @property
    def first_channels(self) -> int:
        return make_divisible(32 * self.width_mult)

    @property
    def feature_dim(self) -> int:
        return make_divisible(1280 * max(1.0, self.width_mult))


@dataclass(frozen=True)
class Block:
    cin: int
    hidden: int
    cout: int
    stride: int
    expand: bool
    residual: bool


def blocks(cfg: ModelConfig) -> list[Block]:
    out = []
    cin = cfg.first_channels
    for t, c, n, s in MBV2_SETTINGS:
        cout = make_divisible(c * cfg.width_mult)
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = int(round(cin * t))
            out.append(Block(cin, hidden, cout, stride, t != 1, stride == 1 and cin == cout))
            cin = cout
    return out


# ---------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------

def _conv_init(rng: np.random.Generator, k: int, cin_per_group: int, cout: int, gain: float = 2.0):
    fan_in = cin_per_group * k * k
    w = (rng.standard_normal((k, k, cin_per_group, cout)) * np.sqrt(gain / fan_in)).astype(np.float32)
    p = {"w": w, "gamma": np.ones((cout,), np.float32), "beta": np.zeros((cout,), np.float32)}
    s = {"mean": np.zeros((cout,), np.float32), "var": np.ones((cout,), np.float32)}
    return p, s


def init(cfg: ModelConfig, seed: int):
    """Returns (params, state) as numpy arrays: trainable weights and BatchNorm
    running statistics (numpy's seeded generator: fast and platform-independent)."""
    rng = np.random.default_rng([seed, 17])
    params: dict = {}
    state: dict = {}
    params["stem"], state["stem"] = _conv_init(rng, 3, 3, cfg.first_channels)
    pb, sb = [], []
    for b in blocks(cfg):
        p, s = {}, {}
        if b.expand:
            p["expand"], s["expand"] = _conv_init(rng, 1, b.cin, b.hidden)
        p["dw"], s["dw"] = _conv_init(rng, 3, 1, b.hidden)
        p["project"], s["project"] = _conv_init(rng, 1, b.hidden, b.cout, gain=1.0)
        pb.append(p)
        sb.append(s)
    params["blocks"], state["blocks"] = pb, sb
    last_in = blocks(cfg)[-1].cout
    params["last"], state["last"] = _conv_init(rng, 1, last_in, cfg.feature_dim)

    H, F = cfg.hidden, cfg.feature_dim
    k = 1.0 / np.sqrt(H)
    kw = np.sqrt(6.0 / (F + 4 * H))  # Glorot: F is large, the gates must not start saturated
    W = rng.uniform(-kw, kw, (2, 4 * H, F)).astype(np.float32)
    R = rng.uniform(-k, k, (2, 4 * H, H)).astype(np.float32)
    b = np.zeros((2, 4 * H), np.float32)
    b[:, 2 * H:3 * H] = 1.0  # forget gate bias 1
    dense_w = (rng.standard_normal(2 * H) * 0.01).astype(np.float32)
    params["head"] = {"W": W, "R": R, "b": b, "dense_w": dense_w, "dense_b": np.zeros((), np.float32)}
    return params, state


DECAYED = {"w", "W", "R", "dense_w"}


def decay_mask(tree, key: str = ""):
    """Same structure as `tree`: True for the weights that get weight decay
    (conv, LSTM and dense weights; not BatchNorm or biases)."""
    if isinstance(tree, dict):
        return {k: decay_mask(v, k) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [decay_mask(v, key) for v in tree]
    return key in DECAYED


# ---------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------

def _depthwise(x, w, stride: int):
    """3x3 depthwise conv as 9 shifted multiply-adds: XLA's CPU grouped convolution
    (and its gradient) is several times slower than this elementwise form."""
    k = w.shape[0]
    pad = k // 2
    N, H, W, C = x.shape
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    Ho = (H + 2 * pad - k) // stride + 1
    Wo = (W + 2 * pad - k) // stride + 1
    y = None
    for dy in range(k):
        for dx in range(k):
            patch = jax.lax.slice(xp, (0, dy, dx, 0),
                                  (N, dy + (Ho - 1) * stride + 1, dx + (Wo - 1) * stride + 1, C),
                                  (1, stride, stride, 1))
            term = patch * w[dy, dx, 0]
            y = term if y is None else y + term
    return y


def _conv_bn(p, s, x, stride: int, groups: int, train: bool, act: bool):
    w = p["w"]
    k = w.shape[0]
    pad = k // 2
    if groups > 1:
        assert groups == x.shape[-1] == w.shape[-1] and w.shape[2] == 1, "only depthwise grouping"
        y = _depthwise(x, w, stride)
    elif k == 1 and stride == 1:
        y = jnp.einsum("nhwc,cd->nhwd", x, w[0, 0])
    else:
        y = jax.lax.conv_general_dilated(
            x, w, window_strides=(stride, stride), padding=((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if train:
        mean = jnp.mean(y, axis=(0, 1, 2))
        var = jnp.mean(jnp.square(y - mean), axis=(0, 1, 2))
        new_s = {"mean": BN_MOMENTUM * s["mean"] + (1 - BN_MOMENTUM) * jax.lax.stop_gradient(mean),
                 "var": BN_MOMENTUM * s["var"] + (1 - BN_MOMENTUM) * jax.lax.stop_gradient(var)}
    else:
        mean, var, new_s = s["mean"], s["var"], s
    y = (y - mean) * (p["gamma"] * jax.lax.rsqrt(var + BN_EPS)) + p["beta"]
    if act:
        y = jnp.clip(y, 0.0, 6.0)
    return y, new_s


def backbone(cfg: ModelConfig, params, state, x, train: bool):
    """x: [N,H,W,3] normalised -> features [N,F], new state."""
    new: dict = {}
    x, new["stem"] = _conv_bn(params["stem"], state["stem"], x, 2, 1, train, True)
    nb = []
    for b, p, s in zip(blocks(cfg), params["blocks"], state["blocks"]):
        ns = {}
        h = x
        if b.expand:
            h, ns["expand"] = _conv_bn(p["expand"], s["expand"], h, 1, 1, train, True)
        h, ns["dw"] = _conv_bn(p["dw"], s["dw"], h, b.stride, b.hidden, train, True)
        h, ns["project"] = _conv_bn(p["project"], s["project"], h, 1, 1, train, False)
        x = x + h if b.residual else h
        nb.append(ns)
    new["blocks"] = nb
    x, new["last"] = _conv_bn(params["last"], state["last"], x, 1, 1, train, True)
    return jnp.mean(x, axis=(1, 2)), new


def _lstm_direction(x, W, R, b, reverse: bool):
    """x [B,T,F]; ONNX gate order i, o, f, c. Returns the final hidden state [B,H]."""
    H = R.shape[1]
    xw = jnp.einsum("btf,gf->tbg", x, W) + b  # [T,B,4H]
    if reverse:
        xw = xw[::-1]

    def step(carry, z_x):
        h, c = carry
        z = z_x + h @ R.T
        i = jax.nn.sigmoid(z[:, :H])
        o = jax.nn.sigmoid(z[:, H:2 * H])
        f = jax.nn.sigmoid(z[:, 2 * H:3 * H])
        g = jnp.tanh(z[:, 3 * H:])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), None

    B = x.shape[0]
    zeros = jnp.zeros((B, H), x.dtype)
    (h, _), _ = jax.lax.scan(step, (zeros, zeros), xw)
    return h


def head_logit(params, feats, train: bool, rng=None, dropout: float = 0.0):
    """feats [B,T,F] -> logit [B]."""
    hp = params["head"]
    if train and dropout > 0:
        r1, r2 = jax.random.split(rng)
        keep = 1.0 - dropout
        feats = feats * jax.random.bernoulli(r1, keep, feats.shape) / keep
    hf = _lstm_direction(feats, hp["W"][0], hp["R"][0], hp["b"][0], False)
    hb = _lstm_direction(feats, hp["W"][1], hp["R"][1], hp["b"][1], True)
    summary = jnp.concatenate([hf, hb], axis=-1)
    if train and dropout > 0:
        summary = summary * jax.random.bernoulli(r2, keep, summary.shape) / keep
    return summary @ hp["dense_w"] + hp["dense_b"]


def normalise(cfg: ModelConfig, frames_u8):
    """uint8/float RGB pixels [...,H,W,3] in 0..255 -> contract-normalised float32."""
    mean = jnp.asarray(cfg.mean, jnp.float32)
    std = jnp.asarray(cfg.std, jnp.float32)
    return (frames_u8.astype(jnp.float32) / 255.0 - mean) / std


def forward(cfg: ModelConfig, params, state, windows, train: bool, rng=None, dropout: float = 0.0):
    """windows: pixels [B,T,H,W,3] (0..255) -> (logits [B], new state)."""
    B, T = windows.shape[:2]
    x = normalise(cfg, windows.reshape((B * T,) + windows.shape[2:]))
    f, new_state = backbone(cfg, params, state, x, train)
    logits = head_logit(params, f.reshape(B, T, -1), train, rng, dropout)
    return logits, new_state


def to_numpy(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a), tree)
