"""A tiny seeded training run converges past chance; its export and evaluation."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgewatch_model import onnx_build
from edgewatch_model.contract import MANIFEST, Contract, parse_manifest, sample_inputs
from edgewatch_model.evaluate import evaluate
from edgewatch_model.export import export
from edgewatch_model.metrics import roc_auc, threshold_for_fpr


def quiet(*_a):
    pass


def test_tiny_training_converges_past_chance(tiny_run):
    hist = tiny_run["history"]
    frames = [h for h in hist if h["stage"] == "frames"]
    heads = [h for h in hist if h["stage"] == "head"]
    assert len(frames) == 4 and len(heads) == 40
    # the head learns: training loss falls well below chance (ln 2 = 0.693)
    assert heads[-1]["train_loss"] < 0.6 and heads[-1]["train_loss"] < heads[0]["train_loss"]
    # ... and generalises: validation windows (streaming, as the detector) beat chance
    best = tiny_run["best"]
    assert best is not None
    assert best["val_window_auc"] > 0.75, best
    assert best["val_window"]["accuracy"] > 0.65, best
    log = "\n".join(tiny_run["log"])
    assert "pred NonFight  pred Fight" in log and "AUC" in log  # per-epoch confusion matrix and metrics
    assert os.path.exists(tiny_run["best_path"]) and os.path.exists(tiny_run["last"])


def test_resume_continues_exactly(tiny_data, tiny_run, tmp_path):
    """Stopping after some epochs and resuming gives the same weights as one run."""
    from edgewatch_model import checkpoint, net
    from edgewatch_model.train import TrainOptions, train

    cfg, opt = tiny_run["cfg"], tiny_run["opt"]
    common = dict(data=tiny_data, frame_epochs=0, head_epochs=4, frame_batch=opt.frame_batch, batch=opt.batch,
                  head_passes=1, head_lr=opt.head_lr, seed=0, log_every=0, init=tiny_run["best_path"],
                  cache=os.path.join(os.path.dirname(tiny_run["last"]), "cache"))
    one = train(cfg, TrainOptions(out=str(tmp_path / "one"), **common), log=quiet)
    two = str(tmp_path / "two")
    train(cfg, TrainOptions(out=two, stop_after=2, **common), log=quiet)
    assert checkpoint.load_meta(os.path.join(two, "last.ckpt.npz"))["epoch"] == 1
    common.pop("init")
    resumed = train(cfg, TrainOptions(out=two, resume=True, **common), log=quiet)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    p0, s0 = net.init(cfg, 0)
    _, a = checkpoint.load(one["last"], {"params": p0})
    _, b = checkpoint.load(resumed["last"], {"params": p0})
    for x, y in zip(np.asarray(a["params"]["head"]["W"]).ravel()[:1000], np.asarray(b["params"]["head"]["W"]).ravel()):
        assert abs(x - y) < 1e-6


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("model"))
    r = export(tiny_run["best_path"], out, "tiny", "tiny test model", log=quiet)
    return out, r


def test_export_is_verified(exported):
    out, r = exported
    assert set(r["ops"]) <= onnx_build.CONTRACT_OPS
    c = Contract(out, strict_ops=True)
    # The LSTM's input projection is hoisted into the backbone: F is 2 directions x 4 gates x hidden.
    hidden = r["config"].hidden
    assert (c.m.width, c.m.height, c.m.window, c.m.sample_fps, c.m.feature_dim) == (48, 48, 4, 5.0, 8 * hidden)
    assert r["config"].feature_dim == 1280 and 8 * hidden < 1280


def test_export_without_hoist_matches_the_hoisted_export(tiny_run, exported, tmp_path):
    out, _ = exported
    plain = export(tiny_run["best_path"], str(tmp_path), "tiny", "tiny test model", log=quiet,
                   hoist_projection=False)
    a, b = Contract(str(tmp_path)), Contract(out)
    assert a.m.feature_dim == 1280 and b.m.feature_dim < 1280
    for w in sample_inputs(a.m):
        sa, sb = a.window_score(w), b.window_score(w)
        assert abs(sa - sb) <= 1e-5, (sa, sb)


def test_export_is_deterministic(tiny_run, exported, tmp_path):
    out, r = exported
    again = export(tiny_run["best_path"], str(tmp_path), "tiny", "tiny test model", log=quiet, verify=False)
    assert again["backbone_sha256"] == r["backbone_sha256"] and again["head_sha256"] == r["head_sha256"]


def test_evaluate_and_write_threshold(exported, tiny_data, tmp_path):
    out, _ = exported
    d = str(tmp_path / "m")
    shutil.copytree(out, d)
    before = open(os.path.join(d, MANIFEST)).read()
    r = evaluate(d, tiny_data, "val", target_fpr=0.1, write=True, log=quiet)
    assert r["windows"]["n"] == 16 * 5 and r["clips"]["n"] == 16
    assert r["windows_auc"] > 0.75
    assert r["suggested"]["fpr"] <= 0.1
    after = open(os.path.join(d, MANIFEST)).read()
    changed = [(a, b) for a, b in zip(before.split("\n"), after.split("\n")) if a != b]
    assert len(changed) == 1 and changed[0][1].startswith("threshold = ")
    assert parse_manifest(after).threshold == pytest.approx(r["suggested"]["threshold"])
    Contract(d)  # still verifies


def test_metrics():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    labels = [0] * 10 + [1] * 5
    scores = list(np.linspace(0, 0.9, 10)) + [0.5, 0.85, 0.95, 0.97, 0.99]
    t = threshold_for_fpr(labels, scores, 0.1)  # one negative (0.9) may pass
    assert t["fp"] <= 1 and t["fpr"] <= 0.1 and 0.8 < t["threshold"] <= 0.85
    t0 = threshold_for_fpr(labels, scores, 0.0)
    assert t0["fp"] == 0 and t0["threshold"] > 0.9


def test_evaluate_per_rate(exported, tiny_data):
    # Streams the same clips at each rate: at the manifest's 5/s the main figures again; at
    # 2.5/s fewer windows (the 1.6 s clips hold 4 sampled frames, one window of T = 4).
    out, _ = exported
    lines = []
    r = evaluate(out, tiny_data, "val", log=lines.append, rates=[5.0, 2.5])
    rows = {row["rate"]: row for row in r["per_rate"]}
    assert rows[5.0]["windows"] == r["windows"] and rows[5.0]["clips"] == r["clips"]
    assert rows[2.5]["windows"]["n"] == 16 and rows[2.5]["clips"]["n"] == 16
    assert not rows[2.5]["in_range"]  # the tiny model declares no range
    assert any("declares no lower rate" in line for line in lines)
    assert sum(line.strip().startswith(("5 ", "2.5 ")) for line in lines) == 2, lines


def test_evaluate_cli_rates(exported, tiny_data, tmp_path):
    out, _ = exported
    j = tmp_path / "r.json"
    model_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "edgewatch_model", "evaluate", out, tiny_data, *args],
                              capture_output=True, text=True, cwd=model_dir,
                              env=dict(os.environ, PYTHONPATH=model_dir))

    p = cli("--rates", "5,2.5", "--json", str(j))
    assert p.returncode == 0, p.stderr
    assert [row["rate"] for row in json.load(open(j))["per_rate"]] == [5.0, 2.5]
    bad = cli("--rates", "5,0")
    assert bad.returncode == 2 and "each rate must be above 0" in bad.stderr


def test_training_with_frame_rate_jitter_declares_the_range(tiny_data, tmp_path):
    # tiny_data is 10 fps, 1.6 s: at T = 4 the jitter rates are 5 and 10/3 and 2.5 (10 / k down to
    # 2.5), and each clip holds one window even at 2.5 fps. The export carries the range.
    from edgewatch_model import net
    from edgewatch_model.train import TrainOptions, train

    # conftest's TINY model, with a range.
    cfg = net.ModelConfig(width=48, height=48, window=4, sample_fps=5.0, hidden=8, sample_fps_min=2.5, camera_fps=10.0)
    assert cfg.jitter_rates() == [5.0, 10.0 / 3, 2.5]
    opt = TrainOptions(data=tiny_data, out=str(tmp_path / "run"), frame_epochs=1, head_epochs=2, frame_batch=32,
                       batch=16, frames_per_clip=4, head_passes=1, seed=0, log_every=0)
    lines = []
    r = train(cfg, opt, log=lines.append)
    jitter = [line for line in lines if line.startswith("frame-rate jitter:")]
    assert len(jitter) == 2 and "48 training clips also at 2.5 frames/s" in jitter[1], jitter
    out = str(tmp_path / "model")
    export(r["best_path"], out, "tiny-jitter", "tiny test model with a rate range", log=quiet)
    m = parse_manifest(open(os.path.join(out, MANIFEST)).read())
    assert (m.sample_fps, m.sample_fps_min) == (5.0, 2.5)
    Contract(out)
