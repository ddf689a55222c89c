"""An int8 variant of a contract model: the backbone quantised with onnxruntime's static
quantisation in QDQ form (QuantizeLinear/DequantizeLinear pairs around int8 weights and
activations), calibrated on sampled frames of synthetic clips (or of a folder of clips).

Only the backbone is quantised: it is nearly all of the arithmetic (the head runs once per
window over T small features), and the head's LSTM has no int8 kernel in either engine.
Weights are int8 per output channel, activations int8 per tensor (onnxruntime's defaults
for QDQ on the CPU), ranges from MinMax calibration unless `method` says otherwise.

The result is an optional lever for speed, not a drop-in: its scores differ from the float
model's. `quantize_model` prints that difference on sample windows; with `eval_data`, the
change in accuracy, F1 and ROC-AUC on an evaluation set (`evaluate`)."""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np
import onnx

from . import onnx_build
from .contract import Contract, ContractError, manifest_text, sample_inputs, write_model_dir
from .video import normalise_nchw, resize_rgb, sampled_frames


def calibration_frames(c: Contract, n_frames: int, seed: int, data: str | None = None, log=print) -> np.ndarray:
    """Normalised frames [N,3,H,W] for calibration: sampled frames of `data`'s train split (an
    RWF-2000 layout folder, as `train` reads it), or of synthetic clips (calm and fight
    alternating, 160x120 like `synth`'s, sampled at the model's rate)."""
    m = c.m
    frames: list[np.ndarray] = []
    if data:
        from . import dataset

        clips = dataset.scan_split(data, "train", log=lambda *_a: None)
        rng = np.random.default_rng(seed)
        for i in rng.permutation(len(clips)):
            f = sampled_frames(clips[i].path, m.sample_fps, m.width, m.height)
            frames.extend(f)
            if len(frames) >= n_frames:
                break
        src = f"{data}/train"
    else:
        from .synth import render_clip

        seconds = max(2.0, 16 / m.sample_fps)
        k = 0
        while len(frames) < n_frames:
            rgb, _ = render_clip(np.random.default_rng([seed, 23, k]), bool(k % 2), 160, 120, m.sample_fps, seconds)
            frames.extend(resize_rgb(f, m.width, m.height) for f in rgb)
            k += 1
        src = f"{k} synthetic clips (seed {seed})"
    if not frames:
        raise ContractError(f"no calibration frames from {data}")
    u8 = np.stack(frames[:n_frames])
    log(f"calibration: {len(u8)} frames from {src}")
    return normalise_nchw(u8, m.mean, m.std)


def quantize_model(model_dir: str, out: str, n_frames: int = 200, seed: int = 0, data: str | None = None,
                   method: str = "minmax", per_channel: bool = True, eval_data: str | None = None,
                   eval_split: str = "val", log=print) -> dict:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    c = Contract(model_dir)
    m = c.m
    x = calibration_frames(c, n_frames, seed, data, log)
    name_in = m.backbone["input"]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(x[i:i + 1] for i in range(len(x)))

        def get_next(self):
            v = next(self.it, None)
            return None if v is None else {name_in: np.ascontiguousarray(v, np.float32)}

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ValueError(f"calibration method {method!r}: one of {', '.join(methods)}")
    logging.getLogger().setLevel(logging.ERROR)  # the quantiser's advice to pre-process (shape inference and
    # ORT's fusions, which add opset domains and turn MatMul + Add into Gemm): not needed for these graphs
    with tempfile.TemporaryDirectory() as tmp:
        q_path = os.path.join(tmp, "backbone.int8.onnx")
        quantize_static(os.path.join(model_dir, m.backbone["file"]), q_path, Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                        calibrate_method=methods[method])
        q = onnx.load(q_path)
    head = c.models["head"]
    opsets = {o.domain or "ai.onnx": o.version for o in q.opset_import}
    bb_sha, bb_n, hd_sha, hd_n = write_model_dir(out, q, head, lambda bs, hs: manifest_text(
        f"{m.name}-int8", f"int8 (QDQ, static {method} calibration, {len(x)} frames) of {m.name}. {m.description}",
        m.width, m.height, m.mean, m.std, m.window, m.sample_fps, m.feature_dim, m.threshold, bs, hs,
        (m.backbone["input"], m.backbone["output"]), (m.head["input"], m.head["output"])))
    qc = Contract(out)  # the contract: names, shapes, sha256s, ops tract parses
    ops = sorted(set(onnx_build.ops_used(qc.models["backbone"])))
    log(f"wrote {out}: backbone.onnx {bb_n} bytes (float: {os.path.getsize(os.path.join(model_dir, m.backbone['file']))}"
        f"), opset {opsets.get('ai.onnx')}, ops {', '.join(ops)}; head.onnx unchanged")
    worst = []
    for w in sample_inputs(m):
        a, b = c.window_score(w), qc.window_score(w)
        worst.append(abs(a - b))
        log(f"  sample window: float {a:.6f}  int8 {b:.6f}  |diff| {abs(a - b):.2e}")
    result = {"dir": out, "backbone_bytes": bb_n, "ops": ops, "opset": opsets.get("ai.onnx"),
              "calibration_frames": len(x), "max_sample_diff": max(worst)}
    if eval_data:
        from .evaluate import evaluate

        quiet = lambda *_a: None  # noqa: E731
        ef = evaluate(model_dir, eval_data, eval_split, log=quiet)
        ei = evaluate(out, eval_data, eval_split, threshold=ef["threshold"], log=quiet)
        diffs = [abs(p["max"] - q_["max"]) for p, q_ in zip(ef["per_clip"], ei["per_clip"])]
        result["eval"] = {"float": ef, "int8": ei}
        for what, key in (("windows", "windows"), ("clips", "clips")):
            f, i = ef[key], ei[key]
            log(f"evaluation ({eval_data}, {len(ef['per_clip'])} clips, threshold {ef['threshold']:g}), {what}: accuracy "
                f"{f['accuracy']:.4f} -> {i['accuracy']:.4f} ({i['accuracy'] - f['accuracy']:+.4f}), F1 {f['f1']:.4f} "
                f"-> {i['f1']:.4f} ({i['f1'] - f['f1']:+.4f}), ROC-AUC {_auc(ef[key + '_auc'])} -> "
                f"{_auc(ei[key + '_auc'])}")
        log(f"  per clip, |max window score float - int8|: mean {np.mean(diffs):.4f}, max {np.max(diffs):.4f}")
    return result


def _auc(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"
