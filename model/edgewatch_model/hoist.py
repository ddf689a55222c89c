"""Hoisting the head's input projection into the backbone.

An LSTM step computes gates = W·x_t + R·h + b. The W·x_t term depends on one frame only,
yet a head run over a sliding window of T features recomputes it for all T frames at every
step, for both directions: with F = 1280 and hidden 32 that is 16 × 2 × 128 × 1280 MACs per
step, most of the head's work, and tract runs it as T separate matrix-vector products.

`hoist` moves W·x + b_W to the end of the backbone, so it runs once per frame: the contract's
feature becomes the projected one (num_directions × 4H values instead of F), and the head's
LSTM gets input weights that only select each direction's slice of it (identity blocks). The
model computes the same function up to float summation order; `export` and `convert` verify
the result against the fused model as before.

One LSTM node keeps both directions: split into a forward and a reverse LSTM (a 4H × 4H
identity each instead of 4H × 8H), tract 0.23.9 scores the reverse one wrongly.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


class NotHoistable(Exception):
    """The head does not have the shape this rewrite handles (it is then left as it is)."""


def _consumers(g: onnx.GraphProto, name: str) -> list[onnx.NodeProto]:
    return [n for n in g.node if name in n.input]


def _attrs(n: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in n.attribute}


def is_reverse_only(n: onnx.NodeProto) -> bool:
    """An LSTM with direction="reverse" (tract 0.23.9 runs those forwards)."""
    return n.op_type == "LSTM" and any(a.name == "direction" and a.s == b"reverse" for a in n.attribute)


def _find_lstm(head: onnx.GraphProto, hd_in: str, inits: dict) -> onnx.NodeProto:
    """The LSTM that reads the features, through a [1,0,2] Transpose (or directly, layout=1)."""
    if any(n.name.startswith("hoist/") for n in head.node):
        raise NotHoistable("its input projection is hoisted already")
    users = _consumers(head, hd_in)
    if len(users) != 1:
        raise NotHoistable(f"`{hd_in}` feeds {len(users)} nodes, not one LSTM")
    n = users[0]
    between = []
    if n.op_type == "Transpose" and list(_attrs(n).get("perm", [])) == [1, 0, 2]:
        after = _consumers(head, n.output[0])
        if len(after) != 1 or head.output and n.output[0] in [o.name for o in head.output]:
            raise NotHoistable("the transposed features feed more than the LSTM")
        between, n = [n], after[0]
        if _attrs(n).get("layout", 0) != 0:
            raise NotHoistable("an LSTM with layout=1 after a transpose")
    elif n.op_type != "LSTM" or _attrs(n).get("layout", 0) != 1:
        raise NotHoistable(f"the features go to {n.op_type}, not (via a [1,0,2] transpose) an LSTM")
    if n.op_type != "LSTM" or n.input[0] != (between[0].output[0] if between else hd_in):
        raise NotHoistable("the features are not the LSTM's input sequence")
    ins = list(n.input) + [""] * (8 - len(n.input))
    if ins[1] not in inits or (ins[3] and ins[3] not in inits):
        raise NotHoistable("the LSTM's weights are not constants")
    for k, t in ((1, ins[1]), (3, ins[3])):
        if t and sum(t in m.input for m in head.node) > 1:
            raise NotHoistable(f"the LSTM's input {k} is shared with other nodes")
    return n


def hoist(backbone: onnx.ModelProto, head: onnx.ModelProto, bb_out: str = "feature",
          hd_in: str = "features") -> tuple[onnx.ModelProto, onnx.ModelProto, int]:
    """Returns (backbone, head, new feature dim); raises NotHoistable unless the features go
    (through a [1,0,2] transpose) straight into an LSTM with constant input weights and bias.
    Everything else about the LSTM (R, peepholes, initial states, activations) stays as it is:
    only its W·x + b_W term moves."""
    bg, hg = backbone.graph, head.graph
    inits = {t.name: t for t in hg.initializer}
    lstm = _find_lstm(hg, hd_in, inits)
    ins = list(lstm.input) + [""] * (8 - len(lstm.input))
    W = numpy_helper.to_array(inits[ins[1]]).astype(np.float32)  # [D, 4H, F]
    D, G, F = W.shape
    H = G // 4
    B = numpy_helper.to_array(inits[ins[3]]).astype(np.float32) if ins[3] else np.zeros((D, 2 * G), np.float32)
    if D * G >= F:
        # Each step would then multiply by a selection matrix at least as large as W: nothing gained.
        raise NotHoistable(f"the LSTM's gates ({D} x 4 x {H}) are not narrower than its input (F={F})")
    if is_reverse_only(lstm):
        # tract 0.23 runs a reverse-only LSTM forwards (its bidirectional LSTM is right).
        raise NotHoistable("a reverse-only LSTM: tract 0.23 gets those wrong, so it is left for the checks to flag")

    # Backbone: feature_raw [1,F] · Wt [F, D·4H] + b_W → feature [1, D·4H].
    out = bg.output[0]
    raw = bb_out + "/unprojected"
    nb = onnx.ModelProto()
    nb.CopyFrom(backbone)
    for n in nb.graph.node:
        for k, t in enumerate(n.output):
            if t == bb_out:
                n.output[k] = raw
    wt = np.concatenate([W[d].T for d in range(D)], axis=1)  # [F, D·G]
    bw = np.concatenate([B[d, :G] for d in range(D)])  # [D·G]
    nb.graph.initializer.extend([numpy_helper.from_array(wt, "hoist/W_t"), numpy_helper.from_array(bw, "hoist/b_W")])
    proj = bb_out + "/projected"
    nb.graph.node.extend([helper.make_node("MatMul", [raw, "hoist/W_t"], [proj], name="hoist/matmul"),
                          helper.make_node("Add", [proj, "hoist/b_W"], [bb_out], name="hoist/add")])
    del nb.graph.output[:]
    nb.graph.output.append(helper.make_tensor_value_info(bb_out, out.type.tensor_type.elem_type,
                                                         [d.dim_value or d.dim_param for d in
                                                          out.type.tensor_type.shape.dim[:-1]] + [D * G]))

    # Head: the same LSTM node, its input weights selecting each direction's 4H slice of the
    # projected feature (an identity block), its input bias already added by the backbone.
    nh = onnx.ModelProto()
    nh.CopyFrom(head)
    g = nh.graph
    keep = [t for t in g.initializer if t.name not in {ins[1], ins[3]}]
    del g.initializer[:]
    g.initializer.extend(keep)
    sel = np.zeros((D, G, D * G), np.float32)
    for d in range(D):
        sel[d, :, d * G:(d + 1) * G] = np.eye(G, dtype=np.float32)
    rb = np.concatenate([np.zeros((D, G), np.float32), B[:, G:]], axis=1)
    g.initializer.extend([numpy_helper.from_array(sel, "hoist/W"), numpy_helper.from_array(rb, "hoist/B")])
    node = [n for n in g.node if n.op_type == "LSTM" and list(n.output) == list(lstm.output)][0]
    while len(node.input) < 4:
        node.input.append("")
    node.input[1], node.input[3] = "hoist/W", "hoist/B"
    node.name = "hoist/lstm"
    shape = [d.dim_value or d.dim_param for d in g.input[0].type.tensor_type.shape.dim]
    g.input[0].CopyFrom(helper.make_tensor_value_info(hd_in, g.input[0].type.tensor_type.elem_type,
                                                      shape[:-1] + [D * G]))
    del g.value_info[:]
    for m in (nb, nh):
        onnx.checker.check_model(m)
    return nb, nh, D * G


def hoist_or_keep(backbone: onnx.ModelProto, head: onnx.ModelProto, feature_dim: int, log=print,
                  enabled: bool = True) -> tuple[onnx.ModelProto, onnx.ModelProto, int]:
    """`hoist` for export and convert: the graphs as they are, with a note, when it does not apply
    (or unchanged and silent when not `enabled`, i.e. --no-hoist)."""
    if not enabled:
        return backbone, head, feature_dim
    try:
        bb, hd, f = hoist(backbone, head)
    except NotHoistable as e:
        log(f"note: the head keeps its input projection: {e}")
        return backbone, head, feature_dim
    log(f"hoisted the LSTM's input projection into the backbone: F {feature_dim} -> {f}")
    return bb, hd, f


def hoist_dir(src: str, out: str, log=print, tol: float = 1e-4) -> dict:
    """Rewrites the contract in `src` into `out` (the same folder is fine) and checks that the
    new contract scores sample windows as the old one did, streaming, within `tol`."""
    from .contract import Contract, ContractError, manifest_text, sample_inputs, write_model_dir

    old = Contract(src)
    m = old.m
    bb, hd, f = hoist(old.models["backbone"], old.models["head"], m.backbone["output"], m.head["input"])
    bb_sha, bb_n, hd_sha, hd_n = write_model_dir(out, bb, hd, lambda bs, hs: manifest_text(
        m.name, m.description, m.width, m.height, m.mean, m.std, m.window, m.sample_fps, f, m.threshold, bs, hs,
        (m.backbone["input"], m.backbone["output"]), (m.head["input"], m.head["output"])))
    log(f"wrote {out}: backbone.onnx {bb_n} bytes, head.onnx {hd_n} bytes, F {m.feature_dim} -> {f}")
    new = Contract(out)
    worst = 0.0
    for k, w in enumerate(sample_inputs(m)):
        a, b = old.window_score(w), new.window_score(w)
        worst = max(worst, abs(a - b))
        log(f"  window {k}: before {a:.6f}  after {b:.6f}  |diff| {abs(a - b):.2e}")
    if not worst <= tol:
        raise ContractError(f"the hoisted contract scores differ from the original by {worst:.3e} (> {tol:g})")
    log(f"verify OK: max |hoisted - original| = {worst:.2e} (<= {tol:g})")
    return {"dir": out, "feature_dim": f, "max_diff": worst, "backbone_sha256": bb_sha, "head_sha256": hd_sha}


__all__ = ["hoist", "hoist_or_keep", "hoist_dir", "NotHoistable"]
