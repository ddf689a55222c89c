"""`quantize`: an int8 (QDQ, static calibration) variant of a model's backbone."""

import json
import os
import subprocess
import sys

import numpy as np

from edgewatch_model import net
from edgewatch_model.contract import Contract, sample_inputs, sha256_file
from edgewatch_model.export import init_model
from edgewatch_model.quantize import quantize_model

MODEL_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quiet(*_a):
    pass


def tiny(path):
    cfg = net.ModelConfig(width_mult=0.35, width=32, height=32, window=4, sample_fps=5.0, hidden=8)
    init_model(str(path), cfg, seed=3, log=quiet, verify=False)
    return str(path)


def test_quantize_writes_an_int8_backbone_in_the_contract(tmp_path):
    src = tiny(tmp_path / "float")
    out = str(tmp_path / "int8")
    r = quantize_model(src, out, n_frames=24, seed=0, log=quiet)
    c, q = Contract(src), Contract(out)
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(r["ops"])
    assert r["calibration_frames"] == 24
    assert r["backbone_bytes"] < os.path.getsize(os.path.join(src, "backbone.onnx"))
    # the head is the float model's, byte for byte; the shapes and the sampling are unchanged
    assert sha256_file(os.path.join(src, "head.onnx")) == sha256_file(os.path.join(out, "head.onnx"))
    assert (q.m.width, q.m.height, q.m.window, q.m.sample_fps, q.m.feature_dim, q.m.threshold) == (
        c.m.width, c.m.height, c.m.window, c.m.sample_fps, c.m.feature_dim, c.m.threshold)
    assert q.m.name.endswith("-int8") and "int8" in q.m.description
    # the reported score change is the one the two models give
    diffs = [abs(c.window_score(w) - q.window_score(w)) for w in sample_inputs(c.m)]
    assert np.isclose(max(diffs), r["max_sample_diff"], atol=1e-6)
    assert all(0.0 <= q.window_score(w) <= 1.0 for w in sample_inputs(q.m))


def test_quantize_cli_with_evaluation(tmp_path):
    src = tiny(tmp_path / "float")
    data = str(tmp_path / "data")
    r = subprocess.run([sys.executable, "-m", "edgewatch_model", "synth", data, "--train", "0", "--val", "2",
                        "--seed", "1"], capture_output=True, text=True, cwd=MODEL_DIR, timeout=300,
                       env=dict(os.environ, PYTHONPATH=MODEL_DIR))
    assert r.returncode == 0, r.stdout + r.stderr
    out, report = str(tmp_path / "int8"), str(tmp_path / "q.json")
    r = subprocess.run([sys.executable, "-m", "edgewatch_model", "quantize", src, out, "--frames", "16",
                        "--eval", data, "--json", report], capture_output=True, text=True, cwd=MODEL_DIR,
                       timeout=300, env=dict(os.environ, PYTHONPATH=MODEL_DIR))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "evaluation" in r.stdout and "accuracy" in r.stdout
    j = json.load(open(report))
    ev = j["eval"]
    assert len(ev["float"]["per_clip"]) == len(ev["int8"]["per_clip"]) == 4
    assert ev["int8"]["threshold"] == ev["float"]["threshold"]
    Contract(out)
