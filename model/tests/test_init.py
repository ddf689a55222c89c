"""`init`: an untrained model folder (seeded random weights) that passes the contract."""

import os
import subprocess
import sys

from edgewatch_model import net, onnx_build
from edgewatch_model.contract import Contract, fused_runner, sample_inputs, sha256_file, verify_equivalence
from edgewatch_model.export import init_model

MODEL_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quiet(*_a):
    pass


def test_init_writes_a_verified_deterministic_model(tmp_path):
    cfg = net.ModelConfig(width_mult=0.35, width=32, height=32, window=4, sample_fps=5.0, hidden=8)
    r = init_model(str(tmp_path / "a"), cfg, seed=3, log=quiet)
    assert r["max_diff_fused"] <= 1e-4 and r["max_diff_jax"] <= 1e-3
    c = Contract(str(tmp_path / "a"), strict_ops=True)
    assert (c.m.width, c.m.height, c.m.window, c.m.sample_fps, c.m.feature_dim) == (32, 32, 4, 5.0, 8 * 8)
    assert "UNTRAINED" in c.m.description and "seed 3" in c.m.description
    fused = onnx_build.fuse(c.models["backbone"], c.models["head"], 32, 32, 4, c.m.feature_dim)
    verify_equivalence(c, fused_runner(fused), sample_inputs(c.m), log=quiet)
    # same arguments, same bytes; another seed, other weights
    init_model(str(tmp_path / "b"), cfg, seed=3, log=quiet, verify=False)
    init_model(str(tmp_path / "c"), cfg, seed=4, log=quiet, verify=False)
    for f in ("backbone.onnx", "head.onnx", "manifest.toml"):
        assert sha256_file(str(tmp_path / "a" / f)) == sha256_file(str(tmp_path / "b" / f))
    assert sha256_file(str(tmp_path / "a" / "backbone.onnx")) != sha256_file(str(tmp_path / "c" / "backbone.onnx"))


def test_init_cli(tmp_path):
    out = str(tmp_path / "m")
    r = subprocess.run([sys.executable, "-m", "edgewatch_model", "init", out, "--width-mult", "0.5", "--size", "48x32",
                        "--window", "3", "--sample-fps", "15", "--hidden", "4", "--seed", "1", "--no-hoist"],
                       capture_output=True, text=True, cwd=MODEL_DIR, timeout=300,
                       env=dict(os.environ, PYTHONPATH=MODEL_DIR))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verify OK" in r.stdout
    c = Contract(out, strict_ops=True)
    assert (c.m.width, c.m.height, c.m.window, c.m.sample_fps) == (48, 32, 3, 15.0)
    assert c.m.feature_dim == 1280  # --no-hoist: the pooled features
