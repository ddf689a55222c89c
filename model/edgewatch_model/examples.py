"""Small fused clip models built with onnx.helper, shaped the way papers' models
are exported, for `convert`'s tests and for trying it out:

- `reshape`: PyTorch style. clip [1,T,3,H,W] -> Reshape [-1,3,H,W] -> Conv +
  BatchNormalization + Relu, depthwise Conv, 1x1 Conv, GlobalAveragePool,
  Flatten -> Reshape [1,T,F] -> bidirectional LSTM -> Gemm -> Sigmoid -> [1,1].
- `tf`: tf2onnx/Keras style. input_1 [N,T,H,W,3] (NHWC, symbolic batch, raw
  0..255 pixels) -> Mul 1/255 -> Reshape by a Shape-computed shape -> Transpose to
  NCHW -> Conv/Relu/GlobalAveragePool -> Shape-computed Reshape to [N*T,F] and
  [N,T,F] -> LSTM whose initial state is ConstantOfShape(Shape) -> MatMul -> Softmax
  -> [N,2] (class 1 = Fight: convert with --class-index 1).
- `loop`: the CNN inside a Loop over time (not supported: tract has no Loop).
- `conv3d`: a 3-D convolution over the clip (not supported: frames are mixed).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from .onnx_build import GraphBuilder

VARIANTS = ("reshape", "tf", "loop", "conv3d")


def _model(g: GraphBuilder, inputs, outputs, opset: int = 13, name: str = "fused",
           full_check: bool = True) -> onnx.ModelProto:
    graph = helper.make_graph(g.nodes, name, inputs, outputs, initializer=g.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgewatch-example")
    m.ir_version = 7
    onnx.checker.check_model(m, full_check=full_check)
    return m


def _w(rng, *shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    s = scale if scale is not None else np.sqrt(2.0 / max(1, fan_in))
    return (rng.standard_normal(shape) * s).astype(np.float32)


def build(variant: str, window: int = 8, size: int = 32, seed: int = 0, hidden: int | None = None) -> onnx.ModelProto:
    """`hidden` overrides the LSTM's hidden size (the default keeps 4 x hidden >= F, so the
    head's input projection is not worth hoisting; below F/4 it is)."""
    rng = np.random.default_rng(seed)
    T, H, W = window, size, size
    g = GraphBuilder()
    if variant == "reshape":
        x = g.node("Reshape", ["clip", g.const("shape", np.array([-1, 3, H, W], np.int64))])[0]
        x = g.node("Conv", [x, g.const("w", _w(rng, 8, 3, 3, 3)), g.const("b", _w(rng, 8, scale=0.1))],
                   kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])[0]
        x = g.node("BatchNormalization", [x, g.const("gamma", rng.uniform(0.5, 1.5, 8).astype(np.float32)),
                                          g.const("beta", _w(rng, 8, scale=0.1)),
                                          g.const("mean", _w(rng, 8, scale=0.1)),
                                          g.const("var", rng.uniform(0.5, 1.5, 8).astype(np.float32))])[0]
        x = g.node("Relu", [x])[0]
        x = g.node("Conv", [x, g.const("w", _w(rng, 8, 1, 3, 3)), g.const("b", _w(rng, 8, scale=0.1))],
                   kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8)[0]
        x = g.node("Relu", [x])[0]
        x = g.node("Conv", [x, g.const("w", _w(rng, 16, 8, 1, 1)), g.const("b", _w(rng, 16, scale=0.1))],
                   kernel_shape=[1, 1])[0]
        x = g.node("Relu", [x])[0]
        x = g.node("GlobalAveragePool", [x])[0]
        x = g.node("Flatten", [x], axis=1)[0]  # [T,16]
        F, Hd = 16, hidden or 8
        x = g.node("Reshape", [x, g.const("shape", np.array([1, T, F], np.int64))])[0]
        x = g.node("Transpose", [x], perm=[1, 0, 2])[0]
        _y, yh, _c = g.node("LSTM", [x, g.const("W", _w(rng, 2, 4 * Hd, F, scale=0.3)),
                                     g.const("R", _w(rng, 2, 4 * Hd, Hd, scale=0.3)),
                                     g.const("B", _w(rng, 2, 8 * Hd, scale=0.1))],
                            n_out=3, hidden_size=Hd, direction="bidirectional")
        y = g.node("Transpose", [yh], perm=[1, 0, 2])[0]
        y = g.node("Reshape", [y, g.const("shape", np.array([1, 2 * Hd], np.int64))])[0]
        y = g.node("Gemm", [y, g.const("dense", _w(rng, 2 * Hd, 1, scale=1.0)), g.const("bias", np.zeros(1, np.float32))])[0]
        g.node("Sigmoid", [y], out="prob")
        return _model(g, [helper.make_tensor_value_info("clip", TensorProto.FLOAT, [1, T, 3, H, W])],
                      [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1])])
    if variant == "tf":
        x0 = g.node("Mul", ["input_1", g.const("scale", np.array(1 / 255, np.float32))])[0]
        shp = g.node("Shape", ["input_1"])[0]
        hw3 = g.node("Slice", [shp, g.const("s", np.array([2], np.int64)), g.const("e", np.array([5], np.int64))])[0]
        merged_shape = g.node("Concat", [g.const("m1", np.array([-1], np.int64)), hw3], axis=0)[0]
        x = g.node("Reshape", [x0, merged_shape])[0]  # [N*T,H,W,3]
        x = g.node("Transpose", [x], perm=[0, 3, 1, 2])[0]
        x = g.node("Conv", [x, g.const("w", _w(rng, 12, 3, 3, 3)), g.const("b", _w(rng, 12, scale=0.1))],
                   kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])[0]
        x = g.node("Relu", [x])[0]
        x = g.node("Conv", [x, g.const("w", _w(rng, 12, 12, 3, 3)), g.const("b", _w(rng, 12, scale=0.1))],
                   kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])[0]
        x = g.node("Relu", [x])[0]
        x = g.node("GlobalAveragePool", [x])[0]  # [N*T,12,1,1]
        # flatten with a Shape-computed shape (batch-dependent inside the CNN)
        xs = g.node("Shape", [x])[0]
        b0 = g.node("Slice", [xs, g.const("s", np.array([0], np.int64)), g.const("e", np.array([1], np.int64))])[0]
        flat_shape = g.node("Concat", [b0, g.const("m1", np.array([-1], np.int64))], axis=0)[0]
        x = g.node("Reshape", [x, flat_shape])[0]  # [N*T,12]
        F, Hd = 12, hidden or 6
        nt = g.node("Slice", [shp, g.const("s", np.array([0], np.int64)), g.const("e", np.array([2], np.int64))])[0]
        split_shape = g.node("Concat", [nt, g.const("f", np.array([F], np.int64))], axis=0)[0]
        x = g.node("Reshape", [x, split_shape])[0]  # [N,T,F]
        seq = g.node("Transpose", [x], perm=[1, 0, 2])[0]
        n = g.node("Slice", [shp, g.const("s", np.array([0], np.int64)), g.const("e", np.array([1], np.int64))])[0]
        h0_shape = g.node("Concat", [g.const("one", np.array([1], np.int64)), n,
                                     g.const("h", np.array([Hd], np.int64))], axis=0)[0]
        h0 = g.node("ConstantOfShape", [h0_shape], value=helper.make_tensor("z", TensorProto.FLOAT, [1], [0.0]))[0]
        _y, yh, _c = g.node("LSTM", [seq, g.const("W", _w(rng, 1, 4 * Hd, F, scale=0.4)),
                                     g.const("R", _w(rng, 1, 4 * Hd, Hd, scale=0.4)),
                                     g.const("B", _w(rng, 1, 8 * Hd, scale=0.1)), "", h0, h0],
                            n_out=3, hidden_size=Hd)
        y = g.node("Squeeze", [yh, g.const("ax", np.array([0], np.int64))])[0]  # [N,Hd]
        y = g.node("MatMul", [y, g.const("dense", _w(rng, Hd, 2, scale=1.5))])[0]
        y = g.node("Add", [y, g.const("bias", np.array([0.1, -0.1], np.float32))])[0]
        g.node("Softmax", [y], axis=1, out="output_1")
        return _model(g, [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["N", T, H, W, 3])],
                      [helper.make_tensor_value_info("output_1", TensorProto.FLOAT, ["N", 2])])
    if variant == "loop":
        body = GraphBuilder("body/")
        frame = body.node("Gather", ["clip", "iter"], axis=1)[0]  # [1,3,H,W]
        m = body.node("ReduceMean", [frame], axes=[1, 2, 3], keepdims=0)[0]  # [1]
        body.node("Identity", ["cond_in"], out="cond_out")
        body.node("Identity", [m], out="scan_out")
        body_graph = helper.make_graph(
            body.nodes, "loop_body",
            [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
             helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info("scan_out", TensorProto.FLOAT, [1])], initializer=body.inits)
        trip = g.const("trip", np.array(T, np.int64))
        cond = g.const("cond", np.array(True))
        scans = g.node("Loop", [trip, cond], body=body_graph)[0]  # [T,1]
        m = g.node("ReduceMean", [scans], axes=[0, 1], keepdims=1)[0]
        m = g.node("Reshape", [m, g.const("shape", np.array([1, 1], np.int64))])[0]
        g.node("Sigmoid", [m], out="prob")
        return _model(g, [helper.make_tensor_value_info("clip", TensorProto.FLOAT, [1, T, 3, H, W])],
                      [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1])], full_check=False)
    if variant == "conv3d":
        x = g.node("Transpose", ["clip"], perm=[0, 2, 1, 3, 4])[0]  # [1,3,T,H,W]
        x = g.node("Conv", [x, g.const("w", _w(rng, 4, 3, 3, 3, 3))], kernel_shape=[3, 3, 3],
                   pads=[1, 1, 1, 1, 1, 1])[0]
        x = g.node("GlobalAveragePool", [x])[0]
        x = g.node("Flatten", [x], axis=1)[0]
        x = g.node("Gemm", [x, g.const("dense", _w(rng, 4, 1))])[0]
        g.node("Sigmoid", [x], out="prob")
        return _model(g, [helper.make_tensor_value_info("clip", TensorProto.FLOAT, [1, T, 3, H, W])],
                      [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1])])
    raise ValueError(f"unknown variant {variant!r} (one of {', '.join(VARIANTS)})")
