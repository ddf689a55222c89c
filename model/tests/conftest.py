"""Shared fixtures. Everything runs on one CPU thread and is seeded."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edgewatch_model.runtime import configure_threads  # noqa: E402

configure_threads(1)

import pytest  # noqa: E402

from edgewatch_model import examples, onnx_build, synth  # noqa: E402

MODEL_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The tiny training configuration: small frames, short windows, few clips.
TINY = dict(size=(48, 48), window=4, sample_fps=5.0, hidden=8)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Synthetic clips in the RWF-2000 layout: 24+8 per class, 80x60, 10 fps, 1.6 s,
    all in one room (one fixed camera), so that a few clips are enough to learn from."""
    root = tmp_path_factory.mktemp("data")
    synth.synth_dataset(str(root), 24, 8, 80, 60, 10.0, 1.6, seed=5, quality=90, hard_negatives=0.0, room=7,
                        log=lambda *a: None)
    return str(root)


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory):
    """One tiny training run, shared by the training, export and evaluate tests."""
    from edgewatch_model import net
    from edgewatch_model.train import TrainOptions, train

    out = str(tmp_path_factory.mktemp("run"))
    cfg = net.ModelConfig(width=TINY["size"][0], height=TINY["size"][1], window=TINY["window"],
                          sample_fps=TINY["sample_fps"], hidden=TINY["hidden"])
    opt = TrainOptions(data=tiny_data, out=out, frame_epochs=4, head_epochs=40, frame_batch=32, batch=16,
                       frames_per_clip=8, head_passes=2, lr=1e-2, head_lr=1e-2, seed=0, log_every=0)
    lines = []
    result = train(cfg, opt, log=lines.append)
    result["log"] = lines
    result["cfg"] = cfg
    result["opt"] = opt
    return result


@pytest.fixture(scope="session")
def fused_examples(tmp_path_factory):
    d = tmp_path_factory.mktemp("fused")
    paths = {}
    for v in examples.VARIANTS:
        p = str(d / f"{v}.onnx")
        onnx_build.save(examples.build(v, window=6, size=32, seed=1), p)
        paths[v] = p
    return paths
