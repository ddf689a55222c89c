"""Malformed inputs give clear errors (naming the file and the problem)."""

import os
import shutil
import subprocess
import sys

import pytest

from edgewatch_model import dataset
from edgewatch_model.contract import Contract, ContractError
from edgewatch_model.video import ClipError, VideoReader, write_video

MODEL_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=MODEL_DIR)
    return subprocess.run([sys.executable, "-m", "edgewatch_model", *args], capture_output=True, text=True,
                          env=env, cwd=MODEL_DIR, timeout=300)


def test_missing_split(tmp_path):
    (tmp_path / "training").mkdir()
    with pytest.raises(dataset.LayoutError, match=r"no `train/` folder \(found: training\).*RWF-2000"):
        dataset.scan(str(tmp_path))


def test_missing_class_folder(tmp_path):
    (tmp_path / "train" / "Fight").mkdir(parents=True)
    (tmp_path / "train" / "Fight" / "a.avi").write_bytes(b"x")
    with pytest.raises(dataset.LayoutError, match="missing class folder.*NonFight"):
        dataset.scan_split(str(tmp_path), "train")


def test_empty_class_folder(tmp_path):
    for c in ("Fight", "NonFight"):
        (tmp_path / "val" / c).mkdir(parents=True)
    (tmp_path / "val" / "Fight" / "a.avi").write_bytes(b"x")
    (tmp_path / "val" / "NonFight" / "notes.txt").write_text("no videos here")
    with pytest.raises(dataset.LayoutError, match="NonFight: no video files"):
        dataset.scan_split(str(tmp_path), "val")


def test_unreadable_clip(tmp_path):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 10)
    with pytest.raises(ClipError, match="broken.avi"):
        list(VideoReader(str(bad)))


def test_too_short_clip(tmp_path):
    import numpy as np

    p = str(tmp_path / "short.avi")
    write_video(p, [np.zeros((32, 32, 3), np.uint8)] * 10, 10.0)  # 1 s: 5 sampled frames
    with pytest.raises(ClipError, match=r"only 5 frames .* needs 16 .*at least 3.20 s"):
        dataset.load_clip(p, 5.0, 32, 32, 16)


def test_cli_train_reports_a_bad_clip(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "train" / "Fight" / "zz_broken.avi").write_bytes(b"not a video at all")
    r = run_cli("train", str(data), str(tmp_path / "run"), "--size", "48", "--window", "4")
    assert r.returncode == 2, r.stderr
    assert "error:" in r.stderr and "zz_broken.avi" in r.stderr
    r = run_cli("train", str(tmp_path / "nothing"), str(tmp_path / "run"))
    assert r.returncode == 2 and "no such directory" in r.stderr


def test_contract_errors(tmp_path):
    demo = os.path.join(MODEL_DIR, "test-brightness")
    d = tmp_path / "m"
    shutil.copytree(demo, d)
    Contract(str(d))  # the bundled test model is fine
    text = (d / "manifest.toml").read_text()
    (d / "manifest.toml").write_text(text.replace("window = 16", "window = 16\nwindw = 3"))
    with pytest.raises(ContractError, match="unknown key"):
        Contract(str(d))
    (d / "manifest.toml").write_text(text.replace("threshold = 0.5", "threshold = 1.5"))
    with pytest.raises(ContractError, match="threshold 1.5 must be within"):
        Contract(str(d))
    (d / "manifest.toml").write_text(text.replace("feature-dim = 1281", "feature-dim = 1280"))
    with pytest.raises(ContractError, match=r"backbone.*output shape is \[1, 1281\], the contract needs \[1, 1280\]"):
        Contract(str(d))
    (d / "manifest.toml").write_text(text)
    with open(d / "head.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ContractError, match="head.*sha256 is"):
        Contract(str(d))


def test_sample_fps_min_is_optional_and_checked_as_the_detector_does():
    # Same rule as src/model.rs (Manifest::parse): optional, above 0, at most sample-fps.
    from edgewatch_model.contract import parse_manifest
    with open(os.path.join(MODEL_DIR, "test-brightness", "manifest.toml")) as f:
        text = f.read()
    assert parse_manifest(text).sample_fps_min is None
    ranged = text.replace("sample-fps = 5.0", "sample-fps = 5.0\nsample-fps-min = 2.5")
    assert parse_manifest(ranged).sample_fps_min == 2.5
    for bad in ("0.0", "7.5"):
        with pytest.raises(ContractError, match="temporal.sample-fps-min"):
            parse_manifest(text.replace("sample-fps = 5.0", f"sample-fps = 5.0\nsample-fps-min = {bad}"))
