"""The bundled models against the contract, the command line, and the Python reference bench."""

import os
import subprocess
import sys

import numpy as np
import pytest

from edgewatch_model import onnx_build
from edgewatch_model.contract import Contract, fused_runner, sample_inputs, verify_equivalence

MODEL_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(MODEL_DIR)
TRAINED = os.path.join(MODEL_DIR, "demo")  # the shipped, trained demo model
TEST_MODEL = os.path.join(MODEL_DIR, "test-brightness")  # seeded weights, known response
DEMO_VIDEO = os.path.join(REPO, "demo", "demo.avi")


def cli(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=MODEL_DIR)
    return subprocess.run([sys.executable, "-m", "edgewatch_model", *args], capture_output=True, text=True,
                          env=env, cwd=MODEL_DIR, timeout=timeout)


def quiet(*_a):
    pass


def test_bundled_test_model_fits_the_contract():
    c = Contract(TEST_MODEL, strict_ops=True)
    fused = onnx_build.fuse(c.models["backbone"], c.models["head"], c.m.width, c.m.height, c.m.window,
                            c.m.feature_dim)
    verify_equivalence(c, fused_runner(fused), sample_inputs(c.m), log=quiet)  # raises above 1e-4


def test_trained_demo_model():
    c = Contract(TRAINED, strict_ops=True)
    assert (c.m.width, c.m.height, c.m.window, c.m.sample_fps) == (112, 112, 16, 5.0)
    size = sum(os.path.getsize(os.path.join(TRAINED, f)) for f in ("backbone.onnx", "head.onnx"))
    assert size < 4 * 1024 * 1024
    fused = onnx_build.fuse(c.models["backbone"], c.models["head"], 112, 112, 16, c.m.feature_dim)
    verify_equivalence(c, fused_runner(fused), sample_inputs(c.m), log=quiet)  # raises above 1e-4


def test_trained_demo_model_on_the_demo_video():
    """Windows inside the burst (9-15 s) score above the threshold; windows that end
    before it, or start a second after it (once the figures have separated), below."""
    c = Contract(TRAINED)
    burst, calm = [], []
    for end, s in c.stream_video(DEMO_VIDEO):
        start = end - (c.m.window - 1) / c.m.sample_fps  # media time of the window's first frame
        if start >= 9.0 and end < 15.0:
            burst.append(s)
        elif end < 9.0 or start >= 16.0:
            calm.append(s)
    assert len(burst) == 15 and len(calm) == 55, (len(burst), len(calm))
    assert min(burst) >= c.m.threshold, burst
    assert max(calm) < c.m.threshold, calm


def test_cli(tmp_path):
    r = cli("--help")
    assert r.returncode == 0 and "synth" in r.stdout and "convert" in r.stdout
    r = cli("synth", str(tmp_path / "d"), "--train", "1", "--val", "1", "--size", "64x48", "--seconds", "1")
    assert r.returncode == 0, r.stderr
    assert len(os.listdir(tmp_path / "d" / "val" / "Fight")) == 1
    r = cli("verify", TEST_MODEL)
    assert r.returncode == 0 and "verify OK" in r.stdout, r.stderr
    r = cli("scores", TEST_MODEL, str(tmp_path / "d" / "val" / "Fight" / "fight_0000.avi"))
    assert r.returncode == 0 and "0 window(s)" in r.stdout  # 1 s: shorter than one window
    r = cli("fuse", TEST_MODEL, str(tmp_path / "f.onnx"))
    assert r.returncode == 0 and os.path.getsize(tmp_path / "f.onnx") > 1_000_000
    r = cli("verify", TEST_MODEL, "--fused", str(tmp_path / "f.onnx"))
    assert r.returncode == 0, r.stderr
    r = cli("convert", str(tmp_path / "f.onnx"), str(tmp_path / "conv"), "--sample-fps", "5")
    assert r.returncode == 0 and "verify OK" in r.stdout, r.stdout + r.stderr
    r = cli("convert", os.path.join(TEST_MODEL, "head.onnx"), str(tmp_path / "x"), "--sample-fps", "5")
    assert r.returncode == 2 and r.stderr.startswith("error: input `features` has rank 3")


def test_python_reference_bench(tmp_path):
    from edgewatch_model.synth import render_clip
    from edgewatch_model.video import write_video

    frames, _ = render_clip(np.random.default_rng(1), True, 160, 120, 15, 4.0)
    video = str(tmp_path / "v.avi")
    write_video(video, frames, 15)
    r = subprocess.run([sys.executable, os.path.join(REPO, "bench", "python_reference.py"), video,
                        TEST_MODEL], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "(a) fused model" in r.stdout and "(b) streaming" in r.stdout and "peak RSS" in r.stdout
    diff = float(r.stdout.split("max |score (a) - score (b)|")[1].split()[0])
    assert diff <= 1e-4


def test_the_equivalence_check_bites():
    """`verify_equivalence` is what export, convert and hoist rely on (the tests above call it
    rather than re-check its bound): it must refuse a fused model that scores differently."""
    from edgewatch_model.contract import ContractError
    c = Contract(TEST_MODEL, strict_ops=True)
    fused = onnx_build.fuse(c.models["backbone"], c.models["head"], c.m.width, c.m.height, c.m.window,
                            c.m.feature_dim)
    run = fused_runner(fused)
    windows = sample_inputs(c.m)
    verify_equivalence(c, run, windows, log=quiet)  # the real pair passes
    with pytest.raises(ContractError, match="differ by"):
        verify_equivalence(c, lambda w: run(w) + 2e-4, windows, log=quiet)
