"""hoist: the head LSTM's input projection moved into the backbone, same scores."""

import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgewatch_model import examples, hoist, onnx_build
from edgewatch_model.contract import Contract, fused_runner, sample_inputs, verify_equivalence
from edgewatch_model.convert import convert

MODEL_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quiet(*_a):
    pass


def stream_scores(c: Contract) -> list:
    return [c.window_score(w) for w in sample_inputs(c.m)]


@pytest.mark.parametrize("variant,hidden,kw,feature_dim", [
    # bidirectional, Transpose -> LSTM: F 16 -> 2 x 4 x 1
    ("reshape", 1, {}, 8),
    # unidirectional, initial states from ConstantOfShape (folded to zeros), NHWC, softmax
    ("tf", 2, dict(mean=(0, 0, 0), std=(1 / 255,) * 3, class_index=1), 8),
])
def test_convert_hoists_and_still_matches_the_fused_model(tmp_path, variant, hidden, kw, feature_dim):
    fused = str(tmp_path / "fused.onnx")
    onnx_build.save(examples.build(variant, window=6, size=32, seed=1, hidden=hidden), fused)
    lines = []
    r = convert(fused, str(tmp_path / "m"), "ex", 5.0, log=lines.append, **kw)
    # convert's own check: streaming over the hoisted contract vs the original fused graph
    assert r["feature_dim"] == feature_dim
    assert any("hoisted the LSTM's input projection" in s for s in lines), lines
    c = Contract(str(tmp_path / "m"))
    head = c.models["head"]
    # the head's LSTM reads the projected features through input weights that only select
    # its direction's block: identity blocks, zeros elsewhere
    (w,) = [numpy_helper.to_array(t) for t in head.graph.initializer if t.name == "hoist/W"]
    D, G, _ = w.shape
    assert np.array_equal(w, np.stack([np.eye(G, D * G, d * G, dtype=np.float32) for d in range(D)]))
    assert c.m.feature_dim == feature_dim
    plain = convert(fused, str(tmp_path / "plain"), "ex", 5.0, log=quiet, hoist_projection=False, **kw)
    assert plain["feature_dim"] in (16, 12)
    assert np.allclose(stream_scores(c), stream_scores(Contract(str(tmp_path / "plain"))), atol=1e-5)


def test_convert_leaves_a_head_whose_gates_are_wider_than_its_input(fused_examples, tmp_path):
    lines = []
    r = convert(fused_examples["reshape"], str(tmp_path / "m"), "ex", 5.0, log=lines.append)
    assert r["feature_dim"] == 16
    assert any("keeps its input projection" in s and "not narrower" in s for s in lines), lines


def test_hoist_dir_in_place_then_refuses_twice(fused_examples, tmp_path):
    fused = str(tmp_path / "fused.onnx")
    onnx_build.save(examples.build("reshape", window=6, size=32, seed=1, hidden=1), fused)
    d = str(tmp_path / "m")
    convert(fused, d, "ex", 5.0, log=quiet, hoist_projection=False)
    before = stream_scores(Contract(d))
    r = hoist.hoist_dir(d, d, log=quiet)
    assert r["feature_dim"] == 8
    c = Contract(d, strict_ops=False)
    assert np.allclose(stream_scores(c), before, atol=1e-5)
    # streaming == the two hoisted graphs fused into one
    fusedh = onnx_build.fuse(c.models["backbone"], c.models["head"], 32, 32, 6, 8)
    verify_equivalence(c, fused_runner(fusedh), sample_inputs(c.m), log=quiet)  # raises above 1e-4
    with pytest.raises(hoist.NotHoistable, match="hoisted already"):
        hoist.hoist_dir(d, d, log=quiet)


def test_not_hoistable_heads(tmp_path):
    # test-brightness: the features also feed the brightness slice
    with pytest.raises(hoist.NotHoistable, match=r"`features` feeds 2 nodes"):
        hoist.hoist_dir(os.path.join(MODEL_DIR, "test-brightness"), str(tmp_path / "x"), log=quiet)
    # a head that is no LSTM at all
    from onnx import TensorProto, helper
    g = onnx_build.GraphBuilder()
    m = g.node("ReduceMean", ["features"], axes=[1, 2], keepdims=0)[0]
    g.node("Reshape", [m, g.const("s", np.array([1, 1], np.int64))], out="score")
    graph = helper.make_graph(g.nodes, "h", [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 4, 8])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])], initializer=g.inits)
    head = onnx_build.finish(graph, "mean head")
    bb = onnx.ModelProto()
    with pytest.raises(hoist.NotHoistable, match="go to ReduceMean, not"):
        hoist.hoist(bb, head)
    # a reverse-only LSTM: tract 0.23 runs it forwards, so it is not multiplied by a rewrite
    g = onnx_build.GraphBuilder()
    x = g.node("Transpose", ["features"], perm=[1, 0, 2])[0]
    rng = np.random.default_rng(0)
    _y, yh = g.node("LSTM", [x, g.const("W", rng.standard_normal((1, 8, 32)).astype(np.float32)),
                             g.const("R", rng.standard_normal((1, 8, 2)).astype(np.float32))], n_out=2,
                    hidden_size=2, direction="reverse")
    g.node("ReduceMean", [yh], axes=[0, 2], keepdims=0, out="score")
    graph = helper.make_graph(g.nodes, "h", [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 4, 32])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1])], initializer=g.inits)
    with pytest.raises(hoist.NotHoistable, match="reverse-only LSTM"):
        hoist.hoist(bb, onnx_build.finish(graph, "reverse head"))


def test_the_demo_model_is_hoisted_and_cli_refuses_again(tmp_path):
    d = str(tmp_path / "demo")
    shutil.copytree(os.path.join(MODEL_DIR, "demo"), d)
    c = Contract(d, strict_ops=True)
    assert c.m.feature_dim == 256 and any(n.name.startswith("hoist/") for n in c.models["head"].graph.node)
    r = subprocess.run([sys.executable, "-m", "edgewatch_model", "hoist", d], cwd=MODEL_DIR, capture_output=True,
                       text=True)
    assert r.returncode == 2 and "not hoistable: its input projection is hoisted already" in r.stderr, r.stderr


def test_convert_warns_about_a_reverse_only_lstm(tmp_path):
    """tract 0.23.9 runs `direction="reverse"` LSTMs forwards (onnxruntime does not): convert says so."""
    m = examples.build("tf", window=6, size=32, seed=1)
    for n in m.graph.node:
        if n.op_type == "LSTM":
            n.attribute.append(onnx.helper.make_attribute("direction", "reverse"))
    fused = str(tmp_path / "rev.onnx")
    onnx_build.save(m, fused)
    lines = []
    r = convert(fused, str(tmp_path / "m"), "ex", 5.0, mean=(0, 0, 0), std=(1 / 255,) * 3, class_index=1,
                log=lines.append)
    assert r["reverse_lstm"] and any("reverse-only LSTM, which tract 0.23 computes wrongly" in s for s in lines), lines
