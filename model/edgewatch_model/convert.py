"""Split a fused video model ([1,T,3,H,W] -> score, a TimeDistributed CNN + RNN, as
papers and repositories ship them) into edgewatch's streaming contract.

Supported graph shape (the way TimeDistributed is exported to ONNX by tf2onnx
and by PyTorch's `x.view(B*T, ...)`):

    input [N,T,3,H,W] (NCHW) or [N,T,H,W,3] (NHWC), N = 1 or symbolic
      -> optional per-pixel prefix: Cast, Identity, or Add/Sub/Mul/Div by a scalar
      -> Reshape merging N and T                           ("merge", [N*T,...])
      -> the per-frame CNN (any ops tract runs; Shape-based reshapes are fine)
      -> a tensor with N*T rows and F values per row ([N*T,F] or [N*T,F,1,1])
      -> Reshape to [N,T,F]                                 ("split")
      -> the temporal head (LSTM/GRU/...; may use Shape/ConstantOfShape)
      -> output [1,1], [1], [] or [1,C] (with --class-index), a probability
         (or a logit with --sigmoid)

The CNN becomes backbone.onnx (image [1,3,H,W] -> feature [1,F]), everything
after the split becomes head.onnx (features [1,T,F] -> score [1,1]).
Shape computations are folded into constants for the static shapes (values
from an onnxruntime run). Not supported, with an error that says so: Loop or
Scan over time, 3-D convolutions or anything else that mixes frames before the
split, a head that reads CNN tensors other than the split, inputs of another
rank or channel count.
"""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import hoist, onnx_build
from .contract import (Contract, ContractError, fused_runner, manifest_text, sample_inputs, verify_equivalence,
                       write_model_dir)

PREFIX_OPS = {"Cast", "Identity", "Add", "Sub", "Mul", "Div"}
SHAPE_OPS = {"Shape", "Size"}


class ConvertError(Exception):
    """The fused graph does not have a shape `convert` supports."""


# ---------------------------------------------------------------------------
# graph helpers
# ---------------------------------------------------------------------------

def _real_inputs(g: onnx.GraphProto):
    inits = {t.name for t in g.initializer}
    return [i for i in g.input if i.name not in inits]


def _dims(vi):
    return [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]


def _producers(g):
    return {o: n for n in g.node for o in n.output if o}


def _consumers(g):
    c = defaultdict(list)
    for n in g.node:
        for i in n.input:
            if i:
                c[i].append(n)
    return c


def _subgraph_inputs(n: onnx.NodeProto) -> list[str]:
    """Outer-scope names a node's subgraphs (If/Loop/Scan bodies) read."""
    names = []

    def walk(g):
        local = {t.name for t in g.initializer} | {i.name for i in g.input}
        for m in g.node:
            local |= set(m.output)
        for m in g.node:
            names.extend(i for i in m.input if i and i not in local)
            for a in m.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                for sg in a.graphs:
                    walk(sg)

    for a in n.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            walk(a.g)
        for sg in a.graphs:
            walk(sg)
    return names


def _all_inputs(n):
    return [i for i in n.input if i] + _subgraph_inputs(n)


def _value_kinds(g: onnx.GraphProto, source: str) -> tuple[dict, dict]:
    """For every tensor: does it depend on `source` at all (`dep`), and on its
    values rather than only its shape (`data`)? Shape/Size cut data dependence."""
    dep, data = {source: True}, {source: True}
    for t in g.initializer:
        dep[t.name] = data[t.name] = False
    for n in g.node:  # nodes are in topological order in a valid ONNX graph
        ins = _all_inputs(n)
        d = any(dep.get(i, False) for i in ins)
        v = n.op_type not in SHAPE_OPS and any(data.get(i, False) for i in ins)
        for o in n.output:
            if o and o != source:
                dep[o], data[o] = d, v
    return dep, data


def _ancestors(g, names: list[str], stop: set[str] = frozenset()) -> set[int]:
    """Indices of nodes that the tensors `names` depend on (not crossing `stop` tensors)."""
    prod = {o: idx for idx, n in enumerate(g.node) for o in n.output if o}
    seen: set[int] = set()
    todo = [n for n in names if n not in stop]
    while todo:
        t = todo.pop()
        idx = prod.get(t)
        if idx is None or idx in seen:
            continue
        seen.add(idx)
        todo.extend(i for i in _all_inputs(g.node[idx]) if i not in stop)
    return seen


def _static_model(model: onnx.ModelProto, name: str, shape: list[int]) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i in m.graph.input:
        if i.name == name:
            dims = i.type.tensor_type.shape.dim
            for d, v in zip(dims, shape):
                d.Clear()
                d.dim_value = v
    return m


def _run_all(model: onnx.ModelProto, feeds: dict, wanted: set[str]) -> dict:
    """Runs the model in onnxruntime with the `wanted` intermediate tensors exposed."""
    from .contract import session

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(m, data_prop=True)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in
             list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)}
    existing = {o.name for o in m.graph.output}
    names = []
    for t in sorted(wanted):
        if t in existing:
            names.append(t)
        elif types.get(t):
            m.graph.output.append(helper.make_tensor_value_info(t, types[t], None))
            names.append(t)
    try:
        sess = session(m.SerializeToString())
    except Exception as e:  # noqa: BLE001
        raise ConvertError(f"onnxruntime cannot load the model: {e}") from e
    outs = sess.run(names, feeds)
    return dict(zip(names, outs))


def fold_shapes(model: onnx.ModelProto, source: str, feed: np.ndarray) -> onnx.ModelProto:
    """Replaces every tensor that depends on `source` only through its (static)
    shape, or on nothing, by an initializer holding its value; drops dead nodes."""
    g = model.graph
    dep, data = _value_kinds(g, source)
    const_nodes = [n for n in g.node if n.op_type != "Constant" and
                   all(o and not data.get(o, True) for o in n.output) and
                   any(dep.get(i, False) for i in _all_inputs(n))]
    if not const_nodes:
        return model
    wanted = {o for n in const_nodes for o in n.output if o}
    values = _run_all(model, {source: feed}, wanted)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    og = out.graph
    folded = set()
    keep = []
    for n in og.node:
        if all(o in values for o in n.output if o) and any(o in wanted for o in n.output):
            for o in n.output:
                if o:
                    og.initializer.append(numpy_helper.from_array(np.asarray(values[o]), o))
            folded.add(n.name)
        else:
            keep.append(n)
    del og.node[:]
    og.node.extend(keep)
    return prune(out)


def prune(model: onnx.ModelProto) -> onnx.ModelProto:
    """Removes nodes and initializers the outputs do not need."""
    g = model.graph
    needed = _ancestors(g, [o.name for o in g.output])
    nodes = [n for i, n in enumerate(g.node) if i in needed]
    used = {i for n in nodes for i in _all_inputs(n)} | {o.name for o in g.output}
    inits = [t for t in g.initializer if t.name in used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]
    return model


# ---------------------------------------------------------------------------
# analysis
# ---------------------------------------------------------------------------

class Plan:
    """Where the fused graph is cut."""

    def __init__(self):
        self.layout = "nchw"
        self.T = self.H = self.W = self.F = 0
        self.prefix: list[onnx.NodeProto] = []
        self.merge: onnx.NodeProto | None = None
        self.split: onnx.NodeProto | None = None
        self.backbone_idx: set[int] = set()
        self.head_idx: set[int] = set()
        self.feature_tensor = ""
        self.feature_rank = 2
        self.out_shape: list[int] = []


def analyse(model: onnx.ModelProto, window: int | None = None, size: tuple[int, int] | None = None,
            log=print) -> tuple[Plan, onnx.ModelProto, dict]:
    """Finds the merge and split reshapes; returns (plan, static model, tensor shapes)."""
    g = model.graph
    ins = _real_inputs(g)
    if len(ins) != 1:
        raise ConvertError(f"the model has {len(ins)} inputs ({', '.join(i.name for i in ins)}); "
                           "a fused clip model has exactly one, the frames [1,T,3,H,W]")
    if len(g.output) != 1:
        raise ConvertError(f"the model has {len(g.output)} outputs; convert needs exactly one (the score)")
    x = ins[0]
    if x.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ConvertError(f"input `{x.name}` is not float32")
    dims = _dims(x)
    if len(dims) != 5:
        raise ConvertError(f"input `{x.name}` has rank {len(dims)} ({dims}); a fused clip model takes "
                           "[1,T,3,H,W] or [1,T,H,W,3]")
    p = Plan()
    if dims[2] == 3:
        p.layout, h, w = "nchw", dims[3], dims[4]
    elif dims[4] == 3:
        p.layout, h, w = "nhwc", dims[2], dims[3]
    else:
        raise ConvertError(f"input `{x.name}` {dims}: cannot find the 3 colour channels at axis 2 (NCHW) "
                           "or 4 (NHWC)")
    if dims[0] not in (None, 1):
        raise ConvertError(f"input `{x.name}` has batch {dims[0]}; convert needs batch 1 or a symbolic batch")
    T = dims[1] or window
    if window and dims[1] and window != dims[1]:
        raise ConvertError(f"--window {window} contradicts the model's fixed T={dims[1]}")
    if not T:
        raise ConvertError(f"input `{x.name}` has a symbolic time axis: pass --window T")
    if size:
        if (h and h != size[1]) or (w and w != size[0]):
            raise ConvertError(f"--size {size[0]}x{size[1]} contradicts the model's fixed {w}x{h}")
        w, h = size
    if not (h and w):
        raise ConvertError(f"input `{x.name}` has a symbolic height/width: pass --size WxH")
    p.T, p.H, p.W = T, h, w
    shape = [1, T, 3, h, w] if p.layout == "nchw" else [1, T, h, w, 3]
    static = _static_model(model, x.name, shape)
    sg = static.graph

    for n in sg.node:
        if n.op_type in ("Loop", "Scan", "If"):
            raise ConvertError(
                f"node `{n.name}` is a {n.op_type}: per-frame CNNs run inside a {n.op_type} are not supported "
                "(tract has no Loop either); export the TimeDistributed layer as Reshape -> CNN -> Reshape "
                "(e.g. tf2onnx does this, or x.view(B*T, C, H, W) in PyTorch)")

    cons = _consumers(sg)
    # the per-pixel prefix, then the merge Reshape
    cur = x.name
    inits = {t.name: t for t in sg.initializer}
    while True:
        users = [u for u in cons.get(cur, []) if u.op_type not in SHAPE_OPS]  # shape reads are fine
        if len(users) != 1:
            ops = ", ".join(f"{u.op_type} `{u.name}`" for u in users) or "nothing"
            raise ConvertError(f"`{cur}` feeds {ops}; expected exactly one Reshape that merges batch and time "
                               f"([1,T,...] -> [T,...]) before the per-frame CNN")
        u = users[0]
        if u.op_type == "Reshape" and u.input[0] == cur:
            p.merge = u
            break
        if u.op_type in PREFIX_OPS and _scalar_prefix(u, cur, inits):
            p.prefix.append(u)
            cur = u.output[0]
            continue
        if u.op_type == "Conv":
            raise ConvertError(f"`{cur}` feeds Conv `{u.name}` directly: a convolution over the 5-D clip "
                               "(3-D convolution) mixes frames, so there is no per-frame backbone to split off")
        raise ConvertError(f"`{cur}` feeds {u.op_type} `{u.name}`; expected a Reshape merging batch and time "
                           f"(or a scalar Cast/Identity/Add/Sub/Mul/Div before it)")

    # shapes of everything, from a run
    rng = np.random.default_rng(0)
    feed = rng.standard_normal(shape).astype(np.float32)
    all_names = {o for n in sg.node for o in n.output if o}
    values = _run_all(static, {x.name: feed}, all_names)
    shapes = {k: list(np.shape(v)) for k, v in values.items()}
    # keep the values of shape-like tensors only (the head's constants come from them)
    _, data_x = _value_kinds(sg, x.name)
    values = {k: v for k, v in values.items() if not data_x.get(k, True)}
    merged = shapes.get(p.merge.output[0])
    want = [T, 3, h, w] if p.layout == "nchw" else [T, h, w, 3]
    if merged != want:
        raise ConvertError(f"the merge Reshape `{p.merge.name}` gives {merged}, expected {want}")

    # the split Reshape: first Reshape downstream of the merge that gives [1,T,F]
    dep, data = _value_kinds(sg, p.merge.output[0])
    for n in sg.node:
        if n.op_type != "Reshape" or not data.get(n.input[0], False):
            continue
        s_out, s_in = shapes.get(n.output[0]), shapes.get(n.input[0])
        if s_out and len(s_out) == 3 and s_out[:2] == [1, T] and s_in and s_in[0] == T:
            p.split = n
            break
    if p.split is None:
        raise ConvertError(f"no Reshape back to [1,{T},F] after the per-frame CNN: the graph does not have the "
                           "TimeDistributed-CNN -> temporal-head shape convert supports")
    p.F = shapes[p.split.output[0]][2]
    p.feature_tensor = p.split.input[0]
    fin = shapes[p.feature_tensor]
    if int(np.prod(fin[1:])) != p.F:
        raise ConvertError(f"the split Reshape `{p.split.name}` turns {fin} into [1,{T},{p.F}]: rows are not "
                           "one frame each")
    p.feature_rank = len(fin)

    # partition
    merge_out = p.merge.output[0]
    bb = _ancestors(sg, [p.feature_tensor], stop={merge_out})
    dep_x, _ = _value_kinds(sg, x.name)
    bb = {i for i in bb if dep.get(sg.node[i].output[0], False)
          or not any(dep_x.get(o, False) for o in sg.node[i].output)}
    p.backbone_idx = bb
    split_idx = list(sg.node).index(p.split)
    merge_idx = list(sg.node).index(p.merge)
    prefix_idx = {list(sg.node).index(n) for n in p.prefix}
    head = _ancestors(sg, [sg.output[0].name], stop={p.split.output[0]})
    p.head_idx = head - bb - {split_idx, merge_idx} - prefix_idx
    # the head may only see the split output from the CNN side
    bb_tensors = {o for i in bb for o in sg.node[i].output}
    for i in p.head_idx:
        for t in _all_inputs(sg.node[i]):
            if t in bb_tensors and data.get(t, False) and t != p.split.output[0]:
                raise ConvertError(f"head node `{sg.node[i].name}` ({sg.node[i].op_type}) reads `{t}` from inside "
                                   "the per-frame CNN; only the [1,T,F] features may cross the split")
    p.out_shape = shapes.get(sg.output[0].name, [])
    log(f"fused model: input `{x.name}` {shape} ({p.layout.upper()}), prefix "
        f"{[n.op_type for n in p.prefix] or 'none'}, merge `{p.merge.name}` -> {merged}, split `{p.split.name}` "
        f"{fin} -> [1,{T},{p.F}]; backbone {len(bb)} nodes, head {len(p.head_idx)} nodes, output {p.out_shape}")
    return p, static, values


def _scalar_prefix(n: onnx.NodeProto, cur: str, inits: dict) -> bool:
    if n.op_type in ("Cast", "Identity"):
        return True
    others = [i for i in n.input if i != cur]
    if len(others) != 1 or others[0] not in inits:
        return False
    return int(np.prod(inits[others[0]].dims)) == 1


# ---------------------------------------------------------------------------
# building the two graphs
# ---------------------------------------------------------------------------

def _opsets(model):
    return list(model.opset_import)


def _make(model, nodes, inits, inputs, outputs, name) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    m = helper.make_model(graph, opset_imports=_opsets(model), producer_name="edgewatch-model-convert",
                          producer_version="1")
    m.ir_version = model.ir_version
    return m


def _closure_inits(g, nodes, extra_values: dict | None = None, provided: tuple = ()):
    """Initializers the nodes read, plus constant values for other free inputs
    (`provided`: the new graph's input)."""
    produced = {o for n in nodes for o in n.output} | set(provided)
    inits = {t.name: t for t in g.initializer}
    need, missing = [], []
    for n in nodes:
        for i in _all_inputs(n):
            if i in produced or i in need:
                continue
            if i in inits:
                need.append(i)
            else:
                missing.append(i)
    out = [inits[i] for i in need]
    unresolved = []
    for i in dict.fromkeys(missing):
        if extra_values is not None and i in extra_values:
            out.append(numpy_helper.from_array(np.asarray(extra_values[i]), i))
        else:
            unresolved.append(i)
    return out, unresolved


def build_backbone(model: onnx.ModelProto, static: onnx.ModelProto, p: Plan, bgr: bool) -> onnx.ModelProto:
    sg = static.graph
    g = onnx_build.GraphBuilder("convert/")
    x = "image"  # [1,3,H,W] RGB, contract-normalised
    if bgr:
        parts = [g.node("Slice", [x, g.const("s", np.array([c], np.int64)), g.const("e", np.array([c + 1], np.int64)),
                                  g.const("ax", np.array([1], np.int64))])[0] for c in (2, 1, 0)]
        x = g.node("Concat", parts, axis=1)[0]
    if p.layout == "nhwc":
        x = g.node("Transpose", [x], perm=[0, 2, 3, 1])[0]
    # the per-pixel prefix, re-wired onto the single frame
    cur_old = _real_inputs(sg)[0].name
    for n in p.prefix:
        m = onnx.NodeProto()
        m.CopyFrom(n)
        m.input[list(n.input).index(cur_old)] = x
        m.output[0] = g.name("prefix")
        g.nodes.append(m)
        x, cur_old = m.output[0], n.output[0]
    nodes = list(g.nodes)
    rename = {p.merge.output[0]: x}
    body = []
    for i, n in enumerate(sg.node):
        if i in p.backbone_idx:
            m = onnx.NodeProto()
            m.CopyFrom(n)
            for k, t in enumerate(m.input):
                if t in rename:
                    m.input[k] = rename[t]
            body.append(m)
    # the feature: flatten to [1,F] under the contract's name
    if p.feature_rank == 2:
        for m in body:
            for k, t in enumerate(m.output):
                if t == p.feature_tensor:
                    m.output[k] = "feature"
            for k, t in enumerate(m.input):
                if t == p.feature_tensor:
                    m.input[k] = "feature"
        tail = []
    else:
        tail = [helper.make_node("Flatten", [p.feature_tensor], ["feature"], name="convert/flatten_feature", axis=1)]
    nodes += body + tail
    inits, unresolved = _closure_inits(sg, nodes, provided=("image", *[t.name for t in g.inits]))
    inits = list(g.inits) + inits
    if unresolved:
        raise ConvertError(f"the per-frame CNN reads tensor(s) {', '.join(unresolved)} computed from the whole clip "
                           "outside the merge Reshape; convert cannot move them into a single-frame backbone")
    m = _make(model, nodes, inits,
              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, p.H, p.W])],
              [helper.make_tensor_value_info("feature", TensorProto.FLOAT, [1, p.F])], "edgewatch_backbone")
    feed = np.zeros((1, 3, p.H, p.W), np.float32)
    m = fold_shapes(m, "image", feed)
    onnx.checker.check_model(m)
    return m


def build_head(model: onnx.ModelProto, static: onnx.ModelProto, p: Plan, values: dict, class_index: int | None,
               sigmoid: bool) -> onnx.ModelProto:
    sg = static.graph
    body = []
    for i, n in enumerate(sg.node):
        if i in p.head_idx:
            if n.output and all(o in values for o in n.output if o):
                continue  # depends on shapes only: its value comes in as a constant
            m = onnx.NodeProto()
            m.CopyFrom(n)
            for k, t in enumerate(m.input):
                if t == p.split.output[0]:
                    m.input[k] = "features"
            body.append(m)
    out = sg.output[0].name
    g = onnx_build.GraphBuilder("convert/")
    shape = p.out_shape
    n_out = int(np.prod(shape)) if shape else 1
    y = out
    if n_out > 1:
        if class_index is None:
            raise ConvertError(f"the model outputs {shape} ({n_out} values): pass --class-index K to take the "
                               "violence probability from element K")
        if not 0 <= class_index < n_out or len(shape) != 2 or shape[0] != 1:
            raise ConvertError(f"--class-index {class_index} does not fit the output shape {shape}")
        y = g.node("Slice", [y, g.const("s", np.array([class_index], np.int64)),
                             g.const("e", np.array([class_index + 1], np.int64)),
                             g.const("ax", np.array([1], np.int64))])[0]
    elif class_index not in (None, 0):
        raise ConvertError(f"--class-index {class_index}: the model has a single output value")
    if sigmoid:
        y = g.node("Sigmoid", [y])[0]
    if shape != [1, 1] or n_out > 1 or sigmoid:
        g.node("Reshape", [y, g.const("shape_11", np.array([1, 1], np.int64))], out="score")
    else:
        for m in body:
            for k, t in enumerate(m.output):
                if t == out:
                    m.output[k] = "score"
    nodes = body + g.nodes
    if not body and not g.nodes:
        raise ConvertError("the model has no temporal head after the split")
    inits, bad = _closure_inits(sg, nodes, values, provided=("features", *[t.name for t in g.inits]))
    if bad:
        raise ConvertError(f"the head reads tensor(s) {', '.join(bad)} that are neither constants nor the features")
    m = _make(model, nodes, list(g.inits) + inits,
              [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, p.T, p.F])],
              [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])], "edgewatch_head")
    m = fold_shapes(m, "features", np.zeros((1, p.T, p.F), np.float32))
    onnx.checker.check_model(m)
    return m


# ---------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------

def convert(fused_path: str, out: str, name: str, sample_fps: float, description: str = "",
            window: int | None = None, size: tuple[int, int] | None = None, mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225), bgr: bool = False, class_index: int | None = None, sigmoid: bool = False,
            threshold: float = 0.5, log=print, hoist_projection: bool = True) -> dict:
    try:
        model = onnx.load(fused_path)
    except Exception as e:  # noqa: BLE001
        raise ConvertError(f"{fused_path}: not a loadable ONNX file: {e}") from e
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ConvertError(f"{fused_path}: ONNX checker: {e}") from e
    p, static, values = analyse(model, window, size, log)
    bb = build_backbone(model, static, p, bgr)
    hd = build_head(model, static, p, values, class_index, sigmoid)
    bb, hd, feature_dim = hoist.hoist_or_keep(bb, hd, p.F, log, hoist_projection)
    desc = description or f"converted from {os.path.basename(fused_path)} by edgewatch-model convert"
    _, bb_n, _, hd_n = write_model_dir(out, bb, hd, lambda bs, hs: manifest_text(
        name, desc, p.W, p.H, mean, std, p.T, sample_fps, feature_dim, threshold, bs, hs))
    log(f"wrote {out}: backbone.onnx {bb_n} bytes, head.onnx {hd_n} bytes, F={feature_dim}, T={p.T}, {p.W}x{p.H}")
    c = Contract(out)
    ops = sorted(set(onnx_build.ops_used(c.models["backbone"])) | set(onnx_build.ops_used(c.models["head"])))
    extra = [o for o in ops if o not in onnx_build.CONTRACT_OPS]
    log(f"verify: manifest, sha256s, names and shapes OK; ops {', '.join(ops)}")
    if extra:
        log(f"note: {', '.join(extra)} are parsed by tract 0.23 but not exercised by edgewatch's own tests; run the "
            "model through `edgewatch` once before deploying it")
    reverse = [n.name or n.op_type for n in c.models["head"].graph.node if hoist.is_reverse_only(n)]
    if reverse:
        # Found while hoisting: tract 0.23.9 runs a reverse-only LSTM forwards (bidirectional is right).
        log(f"warning: {', '.join(reverse)} is a reverse-only LSTM, which tract 0.23 computes wrongly; run this "
            "model with model.backend = \"onnxruntime\"")
    log("verify: streaming (backbone per frame + head) vs the original fused model, onnxruntime:")
    run = fused_runner(static, layout=p.layout, bgr=bgr, index=class_index or 0)
    if sigmoid:
        def run_sig(w, _r=run):
            return float(1 / (1 + np.exp(-_r(w))))
        ref = run_sig
    else:
        ref = run
    worst = verify_equivalence(c, ref, sample_inputs(c.m), 1e-4, log)
    log(f"verify OK: max |streaming - fused| = {worst:.2e} (<= 1e-4)")
    return {"dir": out, "ops": ops, "extra_ops": extra, "max_diff": worst, "feature_dim": feature_dim, "window": p.T,
            "reverse_lstm": reverse}


__all__ = ["convert", "ConvertError", "ContractError"]
