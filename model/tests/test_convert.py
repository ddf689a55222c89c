"""convert: fused TimeDistributed CNN + RNN models -> the contract, streaming == fused."""

import os

import numpy as np
import onnx
import pytest

from edgewatch_model import onnx_build
from edgewatch_model.contract import Contract, fused_runner, sample_inputs, verify_equivalence
from edgewatch_model.convert import ConvertError, convert


def quiet(*_a):
    pass


def test_reshape_style_model(fused_examples, tmp_path):
    r = convert(fused_examples["reshape"], str(tmp_path / "m"), "ex", 5.0, log=quiet)
    assert r["feature_dim"] == 16 and r["window"] == 6
    c = Contract(str(tmp_path / "m"))
    assert (c.m.width, c.m.height, c.m.window, c.m.feature_dim) == (32, 32, 6, 16)
    assert set(r["ops"]) <= onnx_build.TRACT_OPS
    assert "Reshape" in r["ops"] and "LSTM" in r["ops"]


def test_tf_style_model_nhwc_dynamic_shapes_softmax(fused_examples, tmp_path):
    out = str(tmp_path / "m")
    r = convert(fused_examples["tf"], out, "ex", 5.0, window=None, mean=(0, 0, 0), std=(1 / 255,) * 3,
                class_index=1, log=quiet)
    bb = onnx.load(os.path.join(out, "backbone.onnx"))
    hd = onnx.load(os.path.join(out, "head.onnx"))
    # the Shape-computed reshapes were folded for batch 1 (backbone) and [1,T,F] (head)
    assert "Shape" not in onnx_build.ops_used(bb) and "Shape" not in onnx_build.ops_used(hd)
    assert "ConstantOfShape" not in onnx_build.ops_used(hd)


def test_bgr_model(fused_examples, tmp_path):
    r = convert(fused_examples["reshape"], str(tmp_path / "m"), "ex", 5.0, bgr=True, log=quiet)
    c = Contract(str(tmp_path / "m"))
    # BGR: the converted backbone sees reversed channels, so it differs from an RGB conversion
    rgb = convert(fused_examples["reshape"], str(tmp_path / "rgb"), "ex", 5.0, log=quiet)
    w = sample_inputs(c.m)[0]
    assert not np.allclose(c.feature(w[:1]), Contract(str(tmp_path / "rgb")).feature(w[:1]))


def test_composed_fused_model_matches_its_contract(fused_examples, tmp_path):
    """fuse(backbone, head) of a converted model == the original model (same graph shape)."""
    out = str(tmp_path / "m")
    convert(fused_examples["reshape"], out, "ex", 5.0, log=quiet)
    c = Contract(out)
    for mode in ("batch", "unroll"):
        fused = onnx_build.fuse(c.models["backbone"], c.models["head"], 32, 32, 6, 16, mode=mode)
        verify_equivalence(c, fused_runner(fused), sample_inputs(c.m), log=quiet)  # raises above 1e-4


@pytest.mark.parametrize("variant,message", [
    ("loop", r"is a Loop: .*not supported"),
    ("conv3d", r"feeds Transpose .*expected a Reshape merging batch and time"),
])
def test_unsupported_graphs(fused_examples, tmp_path, variant, message):
    with pytest.raises(ConvertError, match=message):
        convert(fused_examples[variant], str(tmp_path / "m"), "ex", 5.0, log=quiet)
    assert not os.path.exists(tmp_path / "m" / "manifest.toml")


def test_softmax_output_needs_class_index(fused_examples, tmp_path):
    with pytest.raises(ConvertError, match=r"outputs \[1, 2\].*--class-index"):
        convert(fused_examples["tf"], str(tmp_path / "m"), "ex", 5.0, log=quiet)


def test_image_model_is_rejected(tmp_path):
    demo = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test-brightness", "backbone.onnx")
    with pytest.raises(ConvertError, match=r"rank 4 .*\[1,T,3,H,W\]"):
        convert(demo, str(tmp_path / "m"), "ex", 5.0, log=quiet)


def test_not_onnx(tmp_path):
    p = tmp_path / "x.onnx"
    p.write_bytes(b"this is not protobuf")
    with pytest.raises(ConvertError, match="not a loadable ONNX file"):
        convert(str(p), str(tmp_path / "m"), "ex", 5.0, log=quiet)
