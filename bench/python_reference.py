#!/usr/bin/env python3
"""Python reference pipelines for the edgewatch detector benchmark (issue 4).

  (a) fused    what published violence-detection deployments do: decode frames with
               OpenCV, keep the last T preprocessed frames and re-run the whole fused
               model ([1,T,3,H,W] -> score, the CNN over all T frames + the LSTM) with
               onnxruntime at every sampled frame (a sliding window recomputed each step).
  (b) stream   the best a Python user would build: the backbone once per sampled frame,
               a ring of the last T features, the head over the ring (onnxruntime).

Both decode every frame of the video with OpenCV (as a camera loop would), sample
frames at the model's sample-fps on the media-time grid the detector uses (every
1/sample-fps s, 1 ms tolerance), resize the whole sampled frame to the model's W x H
with Pillow's BILINEAR filter and normalise as the manifest says.

The resize is the detector's: edgewatch resizes the whole decoded RGB frame with
fast_image_resize's Convolution(Bilinear) (src/infer.rs), a separable convolution
with a triangle filter whose support grows with the downscale factor, which is
Pillow's BILINEAR algorithm (not cv2.INTER_LINEAR, which samples 2x2 pixels, nor
INTER_AREA). bench/resize-check.sh runs edgewatch's own resize code and Pillow on
the same decoded pixels and checks that they agree within 1 grey level. Pillow
resizes the BGR frame (a per-channel filter does not care about the order) and the
small result is flipped to RGB.

Everything runs on one thread: onnxruntime (intra_op_num_threads = 1), OpenCV
(setNumThreads(1)) and its FFmpeg decoder (OPENCV_FFMPEG_CAPTURE_OPTIONS=threads;1),
Pillow (single-threaded). Each pipeline runs in its own process and prints:

  frames per CPU-second   decoded frames / process CPU time of the loop (user + system,
                          time.process_time: imports and model load not counted), also
                          per sampled (inferred) frame
  peak RSS                resource.getrusage(RUSAGE_SELF).ru_maxrss of that process
                          (bench/detect-vs-python.sh takes the kernel's figure for the
                          whole process from /usr/bin/time instead)

Usage:
  python3 bench/python_reference.py VIDEO MODEL_DIR [--fused FUSED.onnx] [--mode both|fused|stream]

Without --fused, the fused model is composed from MODEL_DIR's two graphs (the backbone
run over a batch of T frames, then the head: how TimeDistributed models are exported),
with `edgewatch_model` from model/ (`python -m edgewatch_model fuse MODEL_DIR OUT.onnx`
writes it to a file). Needs: numpy, onnx, onnxruntime, opencv-python-headless,
pillow (model/requirements.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tomllib
from collections import deque

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_PKG = os.path.join(os.path.dirname(HERE), "model")


class Sampler:
    """The detector's frame sampler (src/source/mod.rs), on integer nanoseconds."""

    def __init__(self, sample_fps: float):
        self.interval = int(round(1e9 / sample_fps))
        self.next = 0

    def take(self, pts_ns: int) -> bool:
        if pts_ns + 1_000_000 < self.next:
            return False
        self.next = pts_ns + self.interval if pts_ns > self.next + self.interval else self.next + self.interval
        return True


def session(model, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def load_manifest(model_dir: str) -> dict:
    with open(os.path.join(model_dir, "manifest.toml"), "rb") as f:
        return tomllib.load(f)


def build_fused(model_dir: str, m: dict) -> bytes:
    sys.path.insert(0, MODEL_PKG)
    import onnx
    from edgewatch_model import onnx_build

    bb = onnx.load(os.path.join(model_dir, m["backbone"]["file"]))
    hd = onnx.load(os.path.join(model_dir, m["head"]["file"]))
    fused = onnx_build.fuse(bb, hd, m["input"]["width"], m["input"]["height"], m["temporal"]["window"],
                            m["temporal"]["feature-dim"], m["backbone"]["input"], m["backbone"]["output"],
                            m["head"]["input"], m["head"]["output"])
    return fused.SerializeToString()


RESIZE = ("whole frame to the model's WxH, bilinear convolution (triangle filter, support scaled by the "
          "downscale factor): Pillow BILINEAR here, fast_image_resize Convolution(Bilinear) in edgewatch")


def resize_bgr_to_rgb(bgr, width: int, height: int):
    """The detector's resize (see the module's docstring), on OpenCV's BGR frame; returns RGB."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.fromarray(bgr).resize((width, height), Image.Resampling.BILINEAR))[:, :, ::-1]


def run(mode: str, video: str, model_dir: str, fused_path: str | None) -> dict:
    # one thread everywhere: FFmpeg's decoder inside OpenCV, OpenCV itself, onnxruntime
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "threads;1")
    import cv2
    import numpy as np

    cv2.setNumThreads(1)

    m = load_manifest(model_dir)
    W, H = m["input"]["width"], m["input"]["height"]
    T = m["temporal"]["window"]
    mean = np.asarray(m["input"]["mean"], np.float32)
    std = np.asarray(m["input"]["std"], np.float32)
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    offset = (-mean / std).astype(np.float32)

    t_setup = time.process_time()
    if mode == "fused":
        fused = session(fused_path if fused_path else build_fused(model_dir, m))
        f_in, f_out = fused.get_inputs()[0].name, fused.get_outputs()[0].name
    else:
        bb = session(os.path.join(model_dir, m["backbone"]["file"]))
        hd = session(os.path.join(model_dir, m["head"]["file"]))
        bb_in, bb_out = m["backbone"]["input"], m["backbone"]["output"]
        hd_in, hd_out = m["head"]["input"], m["head"]["output"]
    setup_cpu = time.process_time() - t_setup

    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise SystemExit(f"error: cannot open {video}")
    fps = cap.get(cv2.CAP_PROP_FPS)
    sampler = Sampler(m["temporal"]["sample-fps"])
    ring: deque = deque(maxlen=T)
    scores, times = [], []
    decoded = sampled = 0
    infer_cpu = 0.0
    c0, w0 = time.process_time(), time.perf_counter()
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        pts = int(round(decoded * 1e9 / fps))
        decoded += 1
        if not sampler.take(pts):
            continue
        sampled += 1
        rgb = resize_bgr_to_rgb(bgr, W, H)
        x = (rgb.astype(np.float32) * scale + offset).transpose(2, 0, 1)[None]  # [1,3,H,W]
        i0 = time.process_time()
        if mode == "fused":
            ring.append(x[0])
            if len(ring) == T:
                clip = np.ascontiguousarray(np.stack(ring)[None])  # [1,T,3,H,W]: all T frames again
                scores.append(float(fused.run([f_out], {f_in: clip})[0].reshape(-1)[0]))
                times.append(pts / 1e9)
        else:
            ring.append(bb.run([bb_out], {bb_in: x})[0].reshape(-1))
            if len(ring) == T:
                feats = np.stack(ring)[None].astype(np.float32)  # [1,T,F]
                scores.append(float(hd.run([hd_out], {hd_in: feats})[0].reshape(-1)[0]))
                times.append(pts / 1e9)
        infer_cpu += time.process_time() - i0
    cpu = time.process_time() - c0
    wall = time.perf_counter() - w0
    cap.release()
    return {"mode": mode, "video": video, "fps": fps, "decoded": decoded, "sampled": sampled,
            "windows": len(scores), "cpu_s": cpu, "wall_s": wall, "infer_cpu_s": infer_cpu, "setup_cpu_s": setup_cpu,
            "resize": RESIZE, "frames_per_cpu_s": decoded / cpu if cpu else 0.0, "sampled_per_cpu_s": sampled / cpu if cpu else 0.0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "scores": scores, "times": times}


LABELS = {"fused": "(a) fused model, sliding window recomputed per step",
          "stream": "(b) streaming: backbone per frame + head per window"}


def report(r: dict) -> None:
    print(f"{LABELS[r['mode']]}")
    print(f"  frames: {r['decoded']} decoded ({r['fps']:g} fps), {r['sampled']} sampled, {r['windows']} windows scored")
    print(f"  CPU {r['cpu_s']:.2f} s (inference {r['infer_cpu_s']:.2f} s; model load {r['setup_cpu_s']:.2f} s "
          f"not counted), wall {r['wall_s']:.2f} s")
    print(f"  frames per CPU-second: {r['frames_per_cpu_s']:.1f} decoded, {r['sampled_per_cpu_s']:.2f} sampled")
    print(f"  peak RSS: {r['peak_rss_mb']:.1f} MB")
    if r["scores"]:
        s = r["scores"]
        print(f"  scores: min {min(s):.4f} max {max(s):.4f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video")
    ap.add_argument("model_dir")
    ap.add_argument("--fused", help="fused ONNX model for (a); default: composed from MODEL_DIR's two graphs")
    ap.add_argument("--mode", choices=("both", "fused", "stream"), default="both")
    ap.add_argument("--json", action="store_true", help="(internal) print one JSON result")
    ap.add_argument("--scores", action="store_true", help="print every window's score")
    a = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if a.mode != "both":
        r = run(a.mode, a.video, a.model_dir, a.fused)
        if a.json:
            print(json.dumps(r))
        else:
            report(r)
        return 0
    results = {}
    for mode in ("fused", "stream"):  # separate processes: separate peak RSS
        cmd = [sys.executable, os.path.abspath(__file__), a.video, a.model_dir, "--mode", mode, "--json"]
        if a.fused:
            cmd += ["--fused", a.fused]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
    m = load_manifest(a.model_dir)
    print(f"video {a.video}; model {a.model_dir} ({m['name']}: {m['input']['width']}x{m['input']['height']}, "
          f"T={m['temporal']['window']}, {m['temporal']['sample-fps']:g} sampled frames/s); onnxruntime, 1 thread")
    for mode in ("fused", "stream"):
        report(results[mode])
    fa, st = results["fused"], results["stream"]
    diff = max((abs(x - y) for x, y in zip(fa["scores"], st["scores"])), default=0.0)
    print(f"summary: frames per CPU-second (a) {fa['frames_per_cpu_s']:.1f}, (b) {st['frames_per_cpu_s']:.1f} "
          f"(b/a {st['frames_per_cpu_s'] / max(fa['frames_per_cpu_s'], 1e-9):.1f}x); peak RSS (a) "
          f"{fa['peak_rss_mb']:.0f} MB, (b) {st['peak_rss_mb']:.0f} MB; max |score (a) - score (b)| {diff:.2e}")
    if a.scores:
        for t, x, y in zip(st["times"], fa["scores"], st["scores"]):
            print(f"  {t:6.2f} s  (a) {x:.4f}  (b) {y:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
