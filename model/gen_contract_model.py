#!/usr/bin/env python3
"""Generate a contract-conforming edgewatch test/demo model with seeded random
weights and a *known* response.

Writes into --out DIR:

  backbone.onnx  image [1,3,H,W] (ImageNet-normalised RGB) -> feature [1,F]
                 A real MobileNetV2 topology (stem, 17 inverted residual blocks,
                 last 1x1 conv, global average pool) with seeded random weights.
                 F = last_channel + 1; the LAST element is the mean pixel
                 intensity in [0,1] of the frame (un-normalised inside the graph).
  head.onnx      features [1,T,F] -> score [1,1]
                 score = sigmoid(gain * (m - pivot) + 0.01 * dot(w, Y_h))
                 m   = mean over the T steps of the last feature element
                 Y_h = final hidden states of a bidirectional ONNX LSTM run over
                       the whole [T,F] sequence (concatenated, 2*hidden values)
  manifest.toml  edgewatch model manifest (format 1) with sha256s.

The output is byte-deterministic for identical arguments (and identical pinned
package versions, see model/requirements-gen.txt).

This is NOT a violence detector. It exists so the pipeline can be tested
end-to-end with a model whose output is predictable from the input video.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 7  # IR version matching opset 13; widely supported (tract, ORT)

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]

# MobileNetV2 inverted residual settings: t (expansion), c, n, s
MBV2_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Standard MobileNet channel rounding (as in torchvision / TF slim)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class GraphBuilder:
    """Tiny helper around onnx.helper that keeps node/initializer order stable."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.counter = 0
        self.n_params = 0

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.counter}"

    def const(self, prefix: str, arr: np.ndarray, count: bool = False) -> str:
        n = self.name(prefix)
        arr = np.ascontiguousarray(arr)
        self.inits.append(numpy_helper.from_array(arr, n))
        if count:
            self.n_params += int(arr.size)
        return n

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> list[str]:
        base = self.name(op.lower())
        outs = [f"{base}_out{i}" if n_out > 1 else f"{base}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=base, **attrs))
        return outs

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int, groups: int,
             gain: float) -> str:
        """Conv with He-style init: std = gain / sqrt(fan_in). BN folded (bias)."""
        fan_in = (cin // groups) * k * k
        w = (self.rng.standard_normal((cout, cin // groups, k, k)) * (gain / np.sqrt(fan_in)))
        b = self.rng.standard_normal(cout) * 0.01
        wn = self.const("w", w.astype(np.float32), count=True)
        bn = self.const("b", b.astype(np.float32), count=True)
        pad = k // 2
        return self.node("Conv", [x, wn, bn], kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad, pad, pad, pad], group=groups, dilations=[1, 1])[0]

    def relu6(self, x: str) -> str:
        # opset >= 11: Clip takes min/max as inputs
        if not hasattr(self, "_clip_min"):
            self._clip_min = self.const("clip_min", np.array(0.0, dtype=np.float32))
            self._clip_max = self.const("clip_max", np.array(6.0, dtype=np.float32))
        return self.node("Clip", [x, self._clip_min, self._clip_max])[0]


def build_backbone(size: int, width_mult: float, seed: int) -> tuple[onnx.ModelProto, int, int]:
    rng = np.random.default_rng(seed)
    g = GraphBuilder(rng)
    relu_gain = np.sqrt(2.0)  # He gain for (clipped) ReLU
    lin_gain = 1.0            # linear projection layers

    in_ch = make_divisible(32 * width_mult)
    last_ch = make_divisible(1280 * max(1.0, width_mult))

    x = g.relu6(g.conv("image", 3, in_ch, 3, 2, 1, relu_gain))
    cin = in_ch
    n_blocks = 0
    for t, c, n, s in MBV2_SETTINGS:
        cout = make_divisible(c * width_mult)
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = int(round(cin * t))
            h = x
            if t != 1:
                h = g.relu6(g.conv(h, cin, hidden, 1, 1, 1, relu_gain))
            h = g.relu6(g.conv(h, hidden, hidden, 3, stride, hidden, relu_gain))
            h = g.conv(h, hidden, cout, 1, 1, 1, lin_gain)
            if stride == 1 and cin == cout:
                h = g.node("Add", [x, h])[0]
            x = h
            cin = cout
            n_blocks += 1
    assert n_blocks == 17, n_blocks
    x = g.relu6(g.conv(x, cin, last_ch, 1, 1, 1, relu_gain))
    x = g.node("GlobalAveragePool", [x])[0]          # [1,last,1,1]
    feat = g.node("Flatten", [x], axis=1)[0]          # [1,last]

    # Known response: mean pixel intensity in [0,1] of the un-normalised frame.
    std_c = g.const("std", np.array(STD, dtype=np.float32).reshape(1, 3, 1, 1))
    mean_c = g.const("mean", np.array(MEAN, dtype=np.float32).reshape(1, 3, 1, 1))
    u = g.node("Mul", ["image", std_c])[0]
    u = g.node("Add", [u, mean_c])[0]
    br = g.node("ReduceMean", [u], axes=[1, 2, 3], keepdims=1)[0]   # [1,1,1,1]
    br = g.node("Flatten", [br], axis=1)[0]                          # [1,1]
    g.nodes.append(helper.make_node("Concat", [feat, br], ["feature"], name="concat_feature", axis=1))

    F = last_ch + 1
    graph = helper.make_graph(
        g.nodes, "edgewatch_backbone",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("feature", TensorProto.FLOAT, [1, F])],
        initializer=g.inits,
    )
    model = finish_model(graph, f"seeded random MobileNetV2 x{width_mult} @ {size}px, seed {seed}")
    return model, F, g.n_params


def build_head(window: int, F: int, hidden: int, gain: float, pivot: float,
               seed: int) -> tuple[onnx.ModelProto, int, dict]:
    # Separate stream from the backbone so changing backbone args doesn't alter the head.
    rng = np.random.default_rng([seed, 1])
    g = GraphBuilder(rng)
    H = hidden
    k = 1.0 / np.sqrt(H)
    # ONNX LSTM layout: W [dirs, 4H, F], R [dirs, 4H, H], B [dirs, 8H]; gate order i,o,f,c
    W = rng.uniform(-k, k, (2, 4 * H, F)).astype(np.float32)
    R = rng.uniform(-k, k, (2, 4 * H, H)).astype(np.float32)
    B = rng.uniform(-k, k, (2, 8 * H)).astype(np.float32)
    w = rng.uniform(-1.0, 1.0, (2 * H, 1)).astype(np.float32)
    Wn = g.const("lstm_W", W, count=True)
    Rn = g.const("lstm_R", R, count=True)
    Bn = g.const("lstm_B", B, count=True)
    wn = g.const("summary_w", (w * np.float32(0.01)).astype(np.float32), count=True)

    # features [1,T,F] -> [T,1,F] (seq-major)
    seq = g.node("Transpose", ["features"], perm=[1, 0, 2])[0]
    _y, yh, _yc = g.node("LSTM", [seq, Wn, Rn, Bn], n_out=3,
                         hidden_size=H, direction="bidirectional")
    # Y_h [2,1,H] -> [1,2H]  (forward final state, then backward final state)
    yh_t = g.node("Transpose", [yh], perm=[1, 0, 2])[0]
    shape = g.const("shape_1x2h", np.array([1, 2 * H], dtype=np.int64))
    summary = g.node("Reshape", [yh_t, shape])[0]
    lstm_term = g.node("MatMul", [summary, wn])[0]                     # [1,1]

    # m = mean over T of the last feature element
    starts = g.const("slice_start", np.array([F - 1], dtype=np.int64))
    ends = g.const("slice_end", np.array([F], dtype=np.int64))
    axes = g.const("slice_axes", np.array([2], dtype=np.int64))
    last = g.node("Slice", ["features", starts, ends, axes])[0]        # [1,T,1]
    m = g.node("ReduceMean", [last], axes=[1], keepdims=0)[0]          # [1,1]
    pivot_c = g.const("pivot", np.array(pivot, dtype=np.float32))
    gain_c = g.const("gain", np.array(gain, dtype=np.float32))
    d = g.node("Sub", [m, pivot_c])[0]
    d = g.node("Mul", [d, gain_c])[0]
    logit = g.node("Add", [d, lstm_term])[0]
    g.nodes.append(helper.make_node("Sigmoid", [logit], ["score"], name="sigmoid_score"))

    graph = helper.make_graph(
        g.nodes, "edgewatch_head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, window, F])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])],
        initializer=g.inits,
    )
    model = finish_model(graph, f"BiLSTM(h={H}) head, known brightness response, seed {seed}")
    params = {"W": W, "R": R, "B": B, "w": w, "H": H, "gain": gain, "pivot": pivot}
    return model, g.n_params, params


def finish_model(graph: onnx.GraphProto, doc: str) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="edgewatch-gen-contract-model",
        producer_version="1",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def save(model: onnx.ModelProto, path: str) -> tuple[str, int]:
    data = model.SerializeToString(deterministic=True)
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest(), len(data)


def write_manifest(path: str, size: int, window: int, sample_fps: float, F: int,
                   bb_sha: str, head_sha: str) -> None:
    def fl(xs):
        return "[" + ", ".join(repr(float(v)) for v in xs) + "]"

    text = f"""# edgewatch model manifest (format 1)
format = 1
name = "edgewatch-test-brightness"
description = "Seeded random MobileNetV2 + BiLSTM with a known response: score = sigmoid(gain * (mean brightness over the window - pivot)). Not a violence detector."

[input]
width = {size}
height = {size}
mean = {fl(MEAN)}
std = {fl(STD)}

[temporal]
window = {window}          # T: features per head evaluation
sample-fps = {float(sample_fps)!r}     # frames per second fed to the backbone
feature-dim = {F}   # F

[decision]
threshold = 0.5

[backbone]
file = "backbone.onnx"
sha256 = "{bb_sha}"
input = "image"
output = "feature"

[head]
file = "head.onnx"
sha256 = "{head_sha}"
input = "features"
output = "score"
"""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


# ----------------------------------------------------------------------------
# verification (onnxruntime + numpy reference)
# ----------------------------------------------------------------------------

def normalise(pixels_u8: np.ndarray) -> np.ndarray:
    """HWC uint8 RGB -> [1,3,H,W] float32 normalised exactly as the contract says."""
    x = pixels_u8.astype(np.float32) / np.float32(255.0)
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def synthetic_frames(size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    grad = ((xx + yy) / (2 * (size - 1)) * 255).astype(np.uint8)
    return {
        "black": np.zeros((size, size, 3), np.uint8),
        "white": np.full((size, size, 3), 255, np.uint8),
        "gray128": np.full((size, size, 3), 128, np.uint8),
        "gradient": np.stack([grad, 255 - grad, grad // 2], axis=-1),
        "noise": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "dark_noise": rng.integers(40, 100, (size, size, 3), dtype=np.uint8),
        "bright_noise": rng.integers(190, 256, (size, size, 3), dtype=np.uint8),
    }


def frames_with_brightness(size: int, target: float, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        base = rng.normal(target * 255, 25, (size, size, 3))
        out.append(np.clip(np.round(base), 0, 255).astype(np.uint8))
    return out


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_ref(X: np.ndarray, W, R, B, H) -> np.ndarray:
    """numpy reference of ONNX LSTM (default activations, no peepholes), returns Y_h [2,H]."""
    T = X.shape[0]
    hs = []
    for d in range(2):
        Wd, Rd = W[d].astype(np.float64), R[d].astype(np.float64)
        bd = B[d, :4 * H].astype(np.float64) + B[d, 4 * H:].astype(np.float64)
        h = np.zeros(H)
        c = np.zeros(H)
        steps = range(T) if d == 0 else range(T - 1, -1, -1)
        for t in steps:
            z = Wd @ X[t].astype(np.float64) + Rd @ h + bd
            i, o, f, cc = z[:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:]
            i, o, f, cc = sigmoid(i), sigmoid(o), sigmoid(f), np.tanh(cc)
            c = f * c + i * cc
            h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs)


def verify(outdir: str, size: int, window: int, F: int, hp: dict, dump_io: str | None) -> None:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    bb = ort.InferenceSession(os.path.join(outdir, "backbone.onnx"), so, providers=["CPUExecutionProvider"])
    hd = ort.InferenceSession(os.path.join(outdir, "head.onnx"), so, providers=["CPUExecutionProvider"])
    assert [i.name for i in bb.get_inputs()] == ["image"]
    assert [o.name for o in bb.get_outputs()] == ["feature"]
    assert [i.name for i in hd.get_inputs()] == ["features"]
    assert [o.name for o in hd.get_outputs()] == ["score"]

    rng = np.random.default_rng(12345)

    def feature(img_u8):
        x = normalise(img_u8)
        f = bb.run(["feature"], {"image": x})[0]
        assert f.shape == (1, F) and f.dtype == np.float32, f.shape
        return x, f

    print("backbone check (brightness feature vs true pixel mean, feature stats):")
    max_br_err = 0.0
    io_cases = []
    for name, img in synthetic_frames(size, rng).items():
        x, f = feature(img)
        true_m = float(img.astype(np.float64).mean() / 255.0)
        err = abs(float(f[0, -1]) - true_m)
        max_br_err = max(max_br_err, err)
        body = f[0, :-1]
        print(f"  {name:13s} brightness={f[0, -1]:.6f} true={true_m:.6f} err={err:.1e}  "
              f"feat mean={body.mean():.4f} std={body.std():.4f} min={body.min():.3f} max={body.max():.3f}")
        assert err < 1e-4, f"brightness feature off by {err} on {name}"
        assert np.isfinite(body).all()
        if name in ("noise", "gradient", "dark_noise"):
            s = float(body.std())
            assert 0.01 < s < 10.0, f"feature std {s} out of sane range on {name}"
        io_cases.append((name, x, f))

    print("head check (score vs sigmoid(gain*(m-pivot) + 0.01*w.Y_h), numpy LSTM reference):")
    gain, pivot, H = hp["gain"], hp["pivot"], hp["H"]
    bound = 0.01 * float(np.abs(hp["w"]).sum())  # |Y_h| < 1  =>  |lstm term| < bound
    head_cases = []
    summary_scores = {}
    for label, target in (("dark 0.5", 0.5), ("pivot 0.6", 0.6), ("bright 0.7", 0.7), ("calm 0.3", 0.3), ("burst 0.88", 0.88)):
        feats = np.concatenate([feature(fr)[1] for fr in frames_with_brightness(size, target, window, rng)], 0)
        seq = feats[None].astype(np.float32)  # [1,T,F]
        score = hd.run(["score"], {"features": seq})[0]
        assert score.shape == (1, 1) and score.dtype == np.float32
        m = float(seq[0, :, -1].astype(np.float64).mean())
        yh = lstm_ref(seq[0], hp["W"], hp["R"], hp["B"], H)
        lstm_term = 0.01 * float(np.concatenate([yh[0], yh[1]]) @ hp["w"][:, 0].astype(np.float64))
        expect = float(sigmoid(gain * (m - pivot) + lstm_term))
        known = float(sigmoid(gain * (m - pivot)))
        err = abs(float(score[0, 0]) - expect)
        logit = float(np.log(score[0, 0] / (1 - score[0, 0])))
        resid = logit - gain * (m - pivot)
        print(f"  {label:11s} m={m:.4f} score={score[0, 0]:.6f} ref={expect:.6f} err={err:.1e} "
              f"sigmoid(gain*(m-pivot))={known:.6f} lstm_term={lstm_term:+.4f} (|.|<={bound:.3f})")
        assert err < 1e-3, f"head score off by {err}"
        assert abs(lstm_term) <= bound, f"lstm term {lstm_term} exceeds bound {bound}"
        if 1e-4 < score[0, 0] < 1 - 1e-4:  # logit is only well-conditioned away from 0/1 in f32
            assert abs(resid) <= bound + 1e-3, f"logit residual {resid} exceeds bound {bound}"
        summary_scores[label] = float(score[0, 0])
        head_cases.append((label.split()[0], seq, score))
    assert summary_scores["dark 0.5"] < 0.05 and summary_scores["bright 0.7"] > 0.95
    print(f"  => dark(0.5) window score {summary_scores['dark 0.5']:.4f}, "
          f"bright(0.7) window score {summary_scores['bright 0.7']:.4f}")

    if dump_io:
        os.makedirs(dump_io, exist_ok=True)
        with open(os.path.join(dump_io, "cases.txt"), "w") as lst:
            for name, x, f in io_cases:
                x.astype("<f4").tofile(os.path.join(dump_io, f"bb_{name}.in.f32"))
                f.astype("<f4").tofile(os.path.join(dump_io, f"bb_{name}.out.f32"))
                lst.write(f"backbone bb_{name} {' '.join(map(str, x.shape))} {' '.join(map(str, f.shape))}\n")
            for name, seq, s in head_cases:
                seq.astype("<f4").tofile(os.path.join(dump_io, f"head_{name}.in.f32"))
                s.astype("<f4").tofile(os.path.join(dump_io, f"head_{name}.out.f32"))
                lst.write(f"head head_{name} {' '.join(map(str, seq.shape))} {' '.join(map(str, s.shape))}\n")
        print(f"wrote onnxruntime inputs/outputs (raw little-endian f32) to {dump_io}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--width-mult", type=float, default=0.35, help="MobileNetV2 width multiplier")
    ap.add_argument("--size", type=int, default=112, help="input width = height in pixels")
    ap.add_argument("--window", type=int, default=16, help="T: features per head evaluation")
    ap.add_argument("--sample-fps", type=float, default=5.0, help="frames/s fed to the backbone (manifest)")
    ap.add_argument("--seed", type=int, default=7, help="weight RNG seed")
    ap.add_argument("--hidden", type=int, default=32, help="LSTM hidden size per direction")
    ap.add_argument("--gain", type=float, default=40.0, help="score logit gain on brightness")
    ap.add_argument("--pivot", type=float, default=0.6, help="brightness giving score 0.5")
    vg = ap.add_mutually_exclusive_group()
    vg.add_argument("--verify", dest="verify", action="store_true", default=None,
                    help="verify with onnxruntime (default: on when onnxruntime is importable)")
    vg.add_argument("--no-verify", dest="verify", action="store_false")
    ap.add_argument("--dump-io", metavar="DIR",
                    help="with verification: also write the test inputs and onnxruntime outputs "
                         "as raw little-endian f32 files plus DIR/cases.txt (for cross-checking other runtimes)")
    args = ap.parse_args(argv)

    if args.verify is None:
        try:
            import onnxruntime  # noqa: F401
            args.verify = True
        except ImportError:
            print("onnxruntime not importable: skipping verification", file=sys.stderr)
            args.verify = False

    os.makedirs(args.out, exist_ok=True)
    bb, F, bb_params = build_backbone(args.size, args.width_mult, args.seed)
    head, head_params, hp = build_head(args.window, F, args.hidden, args.gain, args.pivot, args.seed)
    bb_sha, bb_bytes = save(bb, os.path.join(args.out, "backbone.onnx"))
    hd_sha, hd_bytes = save(head, os.path.join(args.out, "head.onnx"))
    write_manifest(os.path.join(args.out, "manifest.toml"), args.size, args.window,
                   args.sample_fps, F, bb_sha, hd_sha)

    print(f"edgewatch contract model -> {args.out}")
    print(f"  backbone.onnx  {bb_bytes:>9d} bytes  {bb_params:>8d} params  nodes={len(bb.graph.node)}  sha256={bb_sha}")
    print(f"  head.onnx      {hd_bytes:>9d} bytes  {head_params:>8d} params  nodes={len(head.graph.node)}  sha256={hd_sha}")
    print(f"  input {args.size}x{args.size}, window T={args.window}, sample-fps {args.sample_fps}, "
          f"feature-dim F={F}, width-mult {args.width_mult}, seed {args.seed}, hidden {args.hidden}, "
          f"gain {args.gain}, pivot {args.pivot}")

    if args.verify:
        verify(args.out, args.size, args.window, F, hp, args.dump_io)
        print("verification OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
