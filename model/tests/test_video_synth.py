"""Frame sampling, preprocessing and the synthetic clips."""

import os

import numpy as np

from edgewatch_model import dataset, synth
from edgewatch_model.video import Sampler, normalise_nchw, pts_ns, sampled_frames


def test_sampler_matches_the_detector():
    # src/source/mod.rs: sampler_takes_every_third_frame_at_15_fps
    s = Sampler(5.0)
    taken = [i for i in range(30) if s.take(pts_ns(i, 15.0))]
    assert taken == list(range(0, 30, 3))
    # 30 fps: every sixth frame; 12.5 fps: 0, 3 (240 ms), 5 (400 ms), 8, 10 ...
    s = Sampler(5.0)
    assert [i for i in range(30) if s.take(pts_ns(i, 30.0))] == list(range(0, 30, 6))
    s = Sampler(5.0)
    assert [i for i in range(11) if s.take(pts_ns(i, 12.5))] == [0, 3, 5, 8, 10]
    # after a gap the grid restarts instead of bursting
    s = Sampler(5.0)
    assert s.take(0) and s.take(200_000_000) and s.take(2_000_000_000)
    assert not s.take(2_100_000_000) and s.take(2_200_000_000)


def test_normalise_like_the_detector():
    px = np.array([[[[0, 128, 255]]]], np.uint8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    x = normalise_nchw(px, mean, std)
    assert x.shape == (1, 3, 1, 1) and x.dtype == np.float32
    want = (np.array([0, 128, 255]) / 255 - np.array(mean)) / np.array(std)
    assert np.allclose(x[0, :, 0, 0], want, atol=1e-6)


def test_synth_is_deterministic_and_labelled():
    a, da = synth.render_clip(np.random.default_rng([3, 0, 1, 0]), True, 80, 60, 10, 0.5)
    b, db = synth.render_clip(np.random.default_rng([3, 0, 1, 0]), True, 80, 60, 10, 0.5)
    c, _ = synth.render_clip(np.random.default_rng([3, 0, 1, 1]), True, 80, 60, 10, 0.5)
    assert da == db and da.startswith("fight")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    calm, desc = synth.render_clip(np.random.default_rng([3, 0, 0, 0]), False, 80, 60, 10, 0.5)
    assert not desc.startswith("fight") and calm[0].shape == (60, 80, 3)


def test_fight_clips_move_more_than_calm_ones():
    def motion(fight):
        m = []
        for i in range(6):
            fr, _ = synth.render_clip(np.random.default_rng([9, 0, int(fight), i]), fight, 80, 60, 10, 1.0, 0.0)
            f = np.stack(fr).astype(np.float32)
            m.append(np.abs(np.diff(f, axis=0)).mean())
        return np.mean(m)

    assert motion(True) > 1.5 * motion(False)


def test_synth_writes_the_rwf2000_layout(tiny_data):
    clips = dataset.scan(tiny_data)
    assert len(clips["train"]) == 48 and len(clips["val"]) == 16
    assert {c.label for c in clips["train"]} == {0, 1}
    for split in ("train", "val"):
        for cls in ("Fight", "NonFight"):
            assert os.path.isdir(os.path.join(tiny_data, split, cls))
    frames, times = sampled_frames(clips["val"][0].path, 5.0, 48, 48, with_pts=True)
    assert frames.shape == (8, 48, 48, 3) and frames.dtype == np.uint8  # 1.6 s at 10 fps, every other frame
    assert np.allclose(times, np.arange(8) * 0.2)
