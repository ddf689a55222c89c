"""ONNX graphs in edgewatch's contract, built with onnx.helper like
model/gen_contract_model.py (same topology and conventions: opset 13, IR 7,
BatchNorm folded into the convolutions, ReLU6 as Clip, bidirectional LSTM).

Also: composing a contract's two graphs into one fused [1,T,3,H,W] -> [1,1]
model (`fuse`), the model that published deployments re-run at every step.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import net

OPSET = 13
IR_VERSION = 7

# The ops model/gen_contract_model.py's demo model uses: every one is loaded and
# run by tract 0.23 in edgewatch's own tests. `export` emits only these.
CONTRACT_OPS = frozenset({
    "Add", "Clip", "Concat", "Conv", "Flatten", "GlobalAveragePool", "LSTM", "MatMul", "Mul",
    "ReduceMean", "Reshape", "Sigmoid", "Slice", "Sub", "Transpose",
})

# ONNX ops that tract-onnx 0.23 registers (tract-onnx-0.23.x/src/ops). A converted
# model may use these; tract parses them, but only CONTRACT_OPS are exercised by
# edgewatch's tests, so `convert` names any others it finds.
TRACT_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil
Celu Clip Compress Concat Constant ConstantLike ConstantOfShape Conv ConvInteger ConvTranspose Cos Cosh CumSum
DepthToSpace DequantizeLinear Div Dropout DynamicQuantizeLinear Einsum Elu Equal Erf Exp Expand EyeLike Flatten
Floor GRU Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater
GreaterOrEqual GroupNormalization HardSigmoid HardSwish Hardmax Identity If InstanceNormalization IsInf IsNaN
LRN LSTM LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax LpNormalization MatMul MatMulInteger Max
MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonZero Not OneHot Or PRelu Pad Pow QLinearConv
QLinearMatMul QuantizeLinear RNN Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize Round Rsqrt Scan Scatter
ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Where Xor
""".split())


class GraphBuilder:
    """Tiny helper around onnx.helper that keeps node/initializer order stable."""

    def __init__(self, prefix: str = ""):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.counter = 0
        self.prefix = prefix

    def name(self, p: str) -> str:
        self.counter += 1
        return f"{self.prefix}{p}_{self.counter}"

    def const(self, p: str, arr: np.ndarray) -> str:
        n = self.name(p)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def node(self, op: str, inputs: list[str], n_out: int = 1, out: str | None = None, **attrs) -> list[str]:
        base = self.name(op.lower())
        if out is not None:
            outs = [out]
        else:
            outs = [f"{base}_out{i}" if n_out > 1 else f"{base}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=base, **attrs))
        return outs

    def relu6(self, x: str) -> str:
        if not hasattr(self, "_clip"):
            self._clip = (self.const("clip_min", np.array(0.0, np.float32)),
                          self.const("clip_max", np.array(6.0, np.float32)))
        return self.node("Clip", [x, *self._clip])[0]


def fold_bn(conv_p: dict, bn_s: dict) -> tuple[np.ndarray, np.ndarray]:
    """HWIO conv weight + BatchNorm -> ONNX OIHW weight and bias."""
    w = np.asarray(conv_p["w"], np.float64)
    gamma = np.asarray(conv_p["gamma"], np.float64)
    beta = np.asarray(conv_p["beta"], np.float64)
    mean = np.asarray(bn_s["mean"], np.float64)
    var = np.asarray(bn_s["var"], np.float64)
    scale = gamma / np.sqrt(var + net.BN_EPS)
    w = w * scale  # per output channel (last axis of HWIO)
    b = beta - mean * scale
    return w.transpose(3, 2, 0, 1).astype(np.float32), b.astype(np.float32)


def _conv(g: GraphBuilder, x: str, p, s, stride: int, groups: int) -> str:
    w, b = fold_bn(p, s)
    k = w.shape[2]
    pad = k // 2
    return g.node("Conv", [x, g.const("w", w), g.const("b", b)], kernel_shape=[k, k], strides=[stride, stride],
                  pads=[pad, pad, pad, pad], group=groups, dilations=[1, 1])[0]


def backbone_graph(cfg: net.ModelConfig, params, state, batch: int | str = 1) -> onnx.ModelProto:
    """image [batch,3,H,W] -> feature [batch,F]."""
    g = GraphBuilder()
    x = g.relu6(_conv(g, "image", params["stem"], state["stem"], 2, 1))
    for b, p, s in zip(net.blocks(cfg), params["blocks"], state["blocks"]):
        h = x
        if b.expand:
            h = g.relu6(_conv(g, h, p["expand"], s["expand"], 1, 1))
        h = g.relu6(_conv(g, h, p["dw"], s["dw"], b.stride, b.hidden))
        h = _conv(g, h, p["project"], s["project"], 1, 1)
        x = g.node("Add", [x, h])[0] if b.residual else h
    x = g.relu6(_conv(g, x, params["last"], state["last"], 1, 1))
    x = g.node("GlobalAveragePool", [x])[0]
    g.node("Flatten", [x], axis=1, out="feature")
    graph = helper.make_graph(
        g.nodes, "edgewatch_backbone",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, cfg.height, cfg.width])],
        [helper.make_tensor_value_info("feature", TensorProto.FLOAT, [batch, cfg.feature_dim])],
        initializer=g.inits)
    return finish(graph, f"MobileNetV2 x{cfg.width_mult} @ {cfg.width}x{cfg.height}, BatchNorm folded")


def head_graph(cfg: net.ModelConfig, params) -> onnx.ModelProto:
    """features [1,T,F] -> score [1,1] = sigmoid(dense([h_fwd, h_bwd]))."""
    hp = params["head"]
    H, F, T = cfg.hidden, cfg.feature_dim, cfg.window
    g = GraphBuilder()
    W = np.asarray(hp["W"], np.float32)
    R = np.asarray(hp["R"], np.float32)
    Bias = np.concatenate([np.asarray(hp["b"], np.float32), np.zeros((2, 4 * H), np.float32)], axis=1)
    seq = g.node("Transpose", ["features"], perm=[1, 0, 2])[0]  # [T,1,F]
    _y, yh, _yc = g.node("LSTM", [seq, g.const("lstm_W", W), g.const("lstm_R", R), g.const("lstm_B", Bias)],
                         n_out=3, hidden_size=H, direction="bidirectional")
    yh_t = g.node("Transpose", [yh], perm=[1, 0, 2])[0]  # [1,2,H]
    summary = g.node("Reshape", [yh_t, g.const("shape_1x2h", np.array([1, 2 * H], np.int64))])[0]
    dense_w = np.asarray(hp["dense_w"], np.float32).reshape(2 * H, 1)
    logit = g.node("MatMul", [summary, g.const("dense_w", dense_w)])[0]
    logit = g.node("Add", [logit, g.const("dense_b", np.asarray(hp["dense_b"], np.float32).reshape(1))])[0]
    g.nodes.append(helper.make_node("Sigmoid", [logit], ["score"], name="sigmoid_score"))
    graph = helper.make_graph(
        g.nodes, "edgewatch_head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, T, F])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])],
        initializer=g.inits)
    return finish(graph, f"BiLSTM(h={H}) over T={T} features + dense + sigmoid")


def finish(graph: onnx.GraphProto, doc: str, opset: int = OPSET, ir_version: int = IR_VERSION) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="edgewatch-model", producer_version="1", doc_string=doc)
    model.ir_version = ir_version
    onnx.checker.check_model(model, full_check=True)
    return model


def save(model: onnx.ModelProto, path: str) -> tuple[str, int]:
    """Deterministic serialisation; returns (sha256, size)."""
    data = model.SerializeToString(deterministic=True)
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest(), len(data)


def ops_used(model: onnx.ModelProto) -> list[str]:
    ops = set()

    def walk(g):
        for n in g.node:
            ops.add(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}")
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                for sg in a.graphs:
                    walk(sg)

    walk(model.graph)
    return sorted(ops)


# ---------------------------------------------------------------------------
# fusing a contract into one [1,T,3,H,W] -> [1,1] model
# ---------------------------------------------------------------------------

def _prefixed(graph: onnx.GraphProto, prefix: str, rename: dict[str, str]) -> tuple[list, list]:
    """Copies of graph's nodes and initializers with every tensor name prefixed,
    except those in `rename` (mapped to the given names)."""
    def nm(n: str) -> str:
        if n == "":
            return n
        return rename.get(n, prefix + n)

    nodes = []
    for n in graph.node:
        m = onnx.NodeProto()
        m.CopyFrom(n)
        del m.input[:]
        del m.output[:]
        m.input.extend(nm(i) for i in n.input)
        m.output.extend(nm(o) for o in n.output)
        m.name = prefix + n.name
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
            raise ValueError(f"cannot fuse: node {n.name} ({n.op_type}) has a subgraph")
        nodes.append(m)
    inits = []
    for t in graph.initializer:
        u = onnx.TensorProto()
        u.CopyFrom(t)
        u.name = nm(t.name)
        inits.append(u)
    return nodes, inits


def _opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return OPSET


def fuse(backbone: onnx.ModelProto, head: onnx.ModelProto, width: int, height: int, window: int,
         feature_dim: int, bb_in="image", bb_out="feature", hd_in="features", hd_out="score",
         mode: str = "batch") -> onnx.ModelProto:
    """frames [1,T,3,H,W] -> score [1,1]: the backbone over the T frames (`batch`: as one
    batch of T images, the way TimeDistributed is exported; `unroll`: T copies of the
    backbone on single frames, for backbones that only take batch 1), then the head."""
    T, F = window, feature_dim
    g = GraphBuilder("fuse/")
    nodes: list = []
    inits: list = []
    if mode == "batch":
        frames = g.node("Reshape", ["frames", g.const("shape_t3hw", np.array([T, 3, height, width], np.int64))])[0]
        n, i = _prefixed(backbone.graph, "bb/", {bb_in: frames, bb_out: "fuse/feats_tf"})
        nodes += g.nodes + n
        inits += g.inits + i
        g.nodes, g.inits = [], []
        feats = g.node("Reshape", ["fuse/feats_tf", g.const("shape_1tf", np.array([1, T, F], np.int64))])[0]
    elif mode == "unroll":
        per = []
        axes = g.const("axis1", np.array([1], np.int64))
        shape1 = g.const("shape_13hw", np.array([1, 3, height, width], np.int64))
        shape1f = g.const("shape_11f", np.array([1, 1, F], np.int64))
        _n0, shared = _prefixed(backbone.graph, "bb/", {})
        inits += shared
        for t in range(T):
            sl = g.node("Slice", ["frames", g.const("s", np.array([t], np.int64)),
                                  g.const("e", np.array([t + 1], np.int64)), axes])[0]
            img = g.node("Reshape", [sl, shape1])[0]
            nodes += g.nodes
            g.nodes = []
            n, _ = _prefixed(backbone.graph, f"bb{t}/", {bb_in: img, bb_out: f"fuse/feat_{t}"}
                             | {x.name: "bb/" + x.name for x in backbone.graph.initializer})
            nodes += n
            per.append(g.node("Reshape", [f"fuse/feat_{t}", shape1f])[0])
        feats = g.node("Concat", per, axis=1)[0]
        inits += g.inits
        g.inits = []
    else:
        raise ValueError(f"unknown fuse mode {mode!r}")
    nodes += g.nodes
    inits += g.inits
    n, i = _prefixed(head.graph, "hd/", {hd_in: feats, hd_out: "score"})
    nodes += n
    inits += i
    graph = helper.make_graph(
        nodes, "edgewatch_fused",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, [1, T, 3, height, width])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(_opset(backbone), _opset(head)))],
                              producer_name="edgewatch-model-fuse", producer_version="1",
                              doc_string=f"fused ({mode}) backbone over T={T} frames + head")
    model.ir_version = max(backbone.ir_version, head.ir_version)
    onnx.checker.check_model(model)
    return model
