"""The model contract: manifest (format 1), loading, streaming inference with
onnxruntime, and verification.

Manifest checks mirror src/model.rs (strict keys, value ranges, sha256s, plain
file names); graph checks mirror the detector's loader (one input and one output
with the manifest's names, input shapes [1,3,H,W] and [1,T,F], outputs [1,F]
and [1,1])."""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections import deque
from dataclasses import dataclass

import numpy as np
import onnx

from .onnx_build import CONTRACT_OPS, TRACT_OPS, ops_used, save
from .video import Sampler, VideoReader, normalise_nchw, resize_rgb

MANIFEST = "manifest.toml"


class ContractError(Exception):
    """A model directory that does not satisfy the contract."""


@dataclass
class Manifest:
    name: str
    description: str
    width: int
    height: int
    mean: list
    std: list
    window: int
    sample_fps: float
    feature_dim: int
    threshold: float
    backbone: dict
    head: dict
    # The lowest rate the model accepts (the detector's adaptive rate, issue 23); None: fixed.
    sample_fps_min: float | None = None


_KEYS = {
    "": {"format", "name", "description", "input", "temporal", "decision", "backbone", "head"},
    "input": {"width", "height", "mean", "std"},
    "temporal": {"window", "sample-fps", "sample-fps-min", "feature-dim"},
    "decision": {"threshold"},
    "backbone": {"file", "sha256", "input", "output"},
    "head": {"file", "sha256", "input", "output"},
}
_OPTIONAL = {"": {"description"}, "temporal": {"sample-fps-min"}}
_REQUIRED = {k: v - _OPTIONAL.get(k, set()) for k, v in _KEYS.items()}


def parse_manifest(text: str, path: str = MANIFEST) -> Manifest:
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ContractError(f"{path}: not valid TOML: {e}") from e
    problems = []
    for sect, keys in _KEYS.items():
        tbl = d if sect == "" else d.get(sect)
        if not isinstance(tbl, dict):
            problems.append(f"missing table [{sect}]")
            continue
        unknown = set(tbl) - keys
        missing = _REQUIRED[sect] - set(tbl)
        where = f"[{sect}]" if sect else "top level"
        if unknown:
            problems.append(f"unknown key(s) {', '.join(sorted(unknown))} in {where}")
        if missing:
            problems.append(f"missing key(s) {', '.join(sorted(missing))} in {where}")
    if problems:
        raise ContractError(f"{path}: " + "; ".join(problems))
    try:
        m = Manifest(
            name=str(d["name"]), description=str(d.get("description", "")),
            width=int(d["input"]["width"]), height=int(d["input"]["height"]),
            mean=[float(x) for x in d["input"]["mean"]], std=[float(x) for x in d["input"]["std"]],
            window=int(d["temporal"]["window"]), sample_fps=float(d["temporal"]["sample-fps"]),
            feature_dim=int(d["temporal"]["feature-dim"]), threshold=float(d["decision"]["threshold"]),
            backbone=dict(d["backbone"]), head=dict(d["head"]),
            sample_fps_min=(float(d["temporal"]["sample-fps-min"]) if "sample-fps-min" in d["temporal"] else None))
    except (TypeError, ValueError) as e:
        raise ContractError(f"{path}: a value has the wrong type: {e}") from e
    if d["format"] != 1:
        problems.append(f"format {d['format']} is not supported (expected 1)")
    if not (16 <= m.width <= 4096 and 16 <= m.height <= 4096):
        problems.append(f"input size {m.width}x{m.height} is out of range")
    if len(m.mean) != 3 or len(m.std) != 3:
        problems.append("input.mean and input.std need 3 values (RGB)")
    elif any(not (s > 0 and np.isfinite(s)) for s in m.std):
        problems.append("input.std must be positive")
    if not 1 <= m.window <= 512:
        problems.append(f"temporal.window {m.window} is out of range (1..=512)")
    if not 0 < m.sample_fps <= 120:
        problems.append(f"temporal.sample-fps {m.sample_fps} is out of range")
    if m.sample_fps_min is not None and not 0 < m.sample_fps_min <= m.sample_fps:
        problems.append(f"temporal.sample-fps-min {m.sample_fps_min} must be above 0 and at most sample-fps "
                        f"({m.sample_fps})")
    if m.feature_dim <= 0:
        problems.append("temporal.feature-dim must be positive")
    if not 0.0 <= m.threshold <= 1.0:
        problems.append(f"decision.threshold {m.threshold} must be within 0..=1")
    for what, f in (("backbone", m.backbone), ("head", m.head)):
        if not re.fullmatch(r"[0-9a-fA-F]{64}", str(f["sha256"])):
            problems.append(f"{what}.sha256 must be 64 hex digits")
        fn = str(f["file"])
        if not fn or "/" in fn or "\\" in fn or fn.startswith("."):
            problems.append(f"{what}.file `{fn}` must be a plain file name next to the manifest")
    if problems:
        raise ContractError(f"{path}: " + "; ".join(problems))
    return m


def _fl(xs) -> str:
    return "[" + ", ".join(repr(float(v)) for v in xs) + "]"


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def manifest_text(name: str, description: str, width: int, height: int, mean, std, window: int,
                  sample_fps: float, feature_dim: int, threshold: float, bb_sha: str, head_sha: str,
                  bb_io=("image", "feature"), head_io=("features", "score"), sample_fps_min=None) -> str:
    lowest = "" if sample_fps_min is None else (
        f"sample-fps-min = {float(sample_fps_min)!r}   # the lowest rate it was trained to accept\n")
    return f"""# edgewatch model manifest (format 1)
format = 1
name = {_toml_str(name)}
description = {_toml_str(description)}

[input]
width = {width}
height = {height}
mean = {_fl(mean)}
std = {_fl(std)}

[temporal]
window = {window}          # T: features per head evaluation
sample-fps = {float(sample_fps)!r}     # frames per second fed to the backbone
{lowest}feature-dim = {feature_dim}   # F

[decision]
threshold = {float(threshold)!r}

[backbone]
file = "backbone.onnx"
sha256 = "{bb_sha}"
input = "{bb_io[0]}"
output = "{bb_io[1]}"

[head]
file = "head.onnx"
sha256 = "{head_sha}"
input = "{head_io[0]}"
output = "{head_io[1]}"
"""


def write_model_dir(out: str, backbone: onnx.ModelProto, head: onnx.ModelProto, manifest) -> tuple:
    """Writes backbone.onnx, head.onnx, then manifest.toml with the text `manifest(bb_sha,
    head_sha)` returns; returns (bb_sha, bb_bytes, head_sha, head_bytes). The manifest goes last,
    so a folder left half-written fails its digest check instead of loading."""
    os.makedirs(out, exist_ok=True)
    bb_sha, bb_n = save(backbone, os.path.join(out, "backbone.onnx"))
    hd_sha, hd_n = save(head, os.path.join(out, "head.onnx"))
    with open(os.path.join(out, MANIFEST), "w", encoding="utf-8", newline="\n") as f:
        f.write(manifest(bb_sha, hd_sha))
    return bb_sha, bb_n, hd_sha, hd_n


def write_threshold(model_dir: str, threshold: float) -> str:
    """Rewrites only the `threshold = ...` line of [decision]; returns the new text."""
    path = os.path.join(model_dir, MANIFEST)
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    section, done = "", False
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1].strip()
        elif section == "decision" and re.match(r"threshold\s*=", s) and not done:
            comment = ""
            if "#" in line:
                comment = "  " + line[line.index("#"):]
            lines[i] = f"threshold = {float(threshold)!r}{comment}"
            done = True
    if not done:
        raise ContractError(f"{path}: no `threshold = ...` line in [decision]")
    text = "\n".join(lines)
    parse_manifest(text, path)  # still valid
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)
    return text


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(model_dir: str) -> Manifest:
    path = os.path.join(model_dir, MANIFEST)
    if not os.path.isfile(path):
        if os.path.isfile(os.path.join(model_dir, "manifest.json")):
            raise ContractError(f"{model_dir}: manifest.json is not supported by this tool; use manifest.toml")
        raise ContractError(f"{model_dir}: no {MANIFEST} (is this a model directory?)")
    with open(path, encoding="utf-8") as f:
        return parse_manifest(f.read(), path)


def _dims(vi) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in vi.type.tensor_type.shape.dim]


def check_graph(path: str, what: str, spec: dict, in_shape: list, out_shape: list) -> onnx.ModelProto:
    try:
        model = onnx.load(path)
    except Exception as e:  # noqa: BLE001
        raise ContractError(f"{what} ({path}): not a loadable ONNX file: {e}") from e
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ContractError(f"{what} ({path}): ONNX checker: {e}") from e
    inits = {t.name for t in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    outs = list(model.graph.output)
    if len(ins) != 1 or len(outs) != 1:
        raise ContractError(f"{what} ({path}): needs exactly 1 input and 1 output, has {len(ins)} and {len(outs)}")
    if ins[0].name != spec["input"]:
        raise ContractError(f"{what} ({path}): input is named `{ins[0].name}`, the manifest says `{spec['input']}`")
    if outs[0].name != spec["output"]:
        raise ContractError(f"{what} ({path}): output is named `{outs[0].name}`, the manifest says "
                            f"`{spec['output']}`")
    for label, vi, want in (("input", ins[0], in_shape), ("output", outs[0], out_shape)):
        if vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise ContractError(f"{what} ({path}): {label} is not float32")
        dims = _dims(vi)
        if len(dims) != len(want) or any(isinstance(d, int) and d != 0 and d != w for d, w in zip(dims, want)):
            raise ContractError(f"{what} ({path}): {label} shape is {dims}, the contract needs {want}")
    return model


def check_ops(model: onnx.ModelProto, what: str, strict: bool) -> tuple[list, list]:
    """(ops used, ops outside CONTRACT_OPS); raises when an op is not in TRACT_OPS,
    or (strict) not in CONTRACT_OPS."""
    ops = ops_used(model)
    bad = [o for o in ops if o not in TRACT_OPS]
    if bad:
        raise ContractError(f"{what}: op(s) {', '.join(bad)} are not supported by tract 0.23 (edgewatch's runtime)")
    extra = [o for o in ops if o not in CONTRACT_OPS]
    if strict and extra:
        raise ContractError(f"{what}: op(s) {', '.join(extra)} are outside the contract's op set "
                            f"({', '.join(sorted(CONTRACT_OPS))})")
    return ops, extra


# ---------------------------------------------------------------------------
# onnxruntime inference
# ---------------------------------------------------------------------------

def session(path_or_bytes, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])


class Contract:
    """A verified model directory with onnxruntime sessions for both graphs."""

    def __init__(self, model_dir: str, threads: int = 1, strict_ops: bool = False):
        self.dir = model_dir
        self.m = m = load_manifest(model_dir)
        self.models = {}
        for what, spec, ins, outs in (
                ("backbone", m.backbone, [1, 3, m.height, m.width], [1, m.feature_dim]),
                ("head", m.head, [1, m.window, m.feature_dim], [1, 1])):
            path = os.path.join(model_dir, spec["file"])
            if not os.path.isfile(path):
                raise ContractError(f"{what}: {path} does not exist")
            actual = sha256_file(path)
            if actual.lower() != str(spec["sha256"]).lower():
                raise ContractError(f"{what} ({path}): sha256 is {actual}, the manifest says {spec['sha256']}")
            model = check_graph(path, what, spec, ins, outs)
            check_ops(model, f"{what} ({path})", strict_ops)
            self.models[what] = model
        self.bb = session(os.path.join(model_dir, m.backbone["file"]), threads)
        self.hd = session(os.path.join(model_dir, m.head["file"]), threads)

    def feature(self, image_nchw: np.ndarray) -> np.ndarray:
        f = self.bb.run([self.m.backbone["output"]], {self.m.backbone["input"]: image_nchw})[0]
        return f.reshape(-1)

    def score(self, feats_tf: np.ndarray) -> float:
        s = self.hd.run([self.m.head["output"]], {self.m.head["input"]: feats_tf[None].astype(np.float32)})[0]
        return float(s.reshape(-1)[0])

    def window_score(self, window: np.ndarray) -> float:
        """Streaming score of one normalised window [T,3,H,W]: the backbone per frame, then the head."""
        return self.score(np.stack([self.feature(window[t:t + 1]) for t in range(len(window))]))

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        return normalise_nchw(resize_rgb(rgb, self.m.width, self.m.height)[None], self.m.mean, self.m.std)

    def stream_video(self, path: str, sample_fps: float | None = None):
        """Streaming inference as the detector runs it: yields (end time s, score)
        for every sampled frame once T features are in the ring. `sample_fps` other than
        the manifest's: as the detector's adaptive rate would sample."""
        reader = VideoReader(path)
        sampler = Sampler(sample_fps or self.m.sample_fps)
        ring: deque = deque(maxlen=self.m.window)
        for _i, pts, rgb in reader:
            if not sampler.take(pts):
                continue
            ring.append(self.feature(self.preprocess(rgb)))
            if len(ring) == self.m.window:
                yield pts / 1e9, self.score(np.stack(ring))

    def window_scores_from_frames(self, frames_u8: np.ndarray) -> np.ndarray:
        """Scores of every window of already sampled, resized frames [N,H,W,3]."""
        x = normalise_nchw(frames_u8, self.m.mean, self.m.std)
        feats = np.stack([self.feature(x[i:i + 1]) for i in range(len(x))])
        T = self.m.window
        return np.array([self.score(feats[s:s + T]) for s in range(0, len(feats) - T + 1)])


# ---------------------------------------------------------------------------
# verification: streaming == fused
# ---------------------------------------------------------------------------

def sample_inputs(m: Manifest, n_windows: int = 3, seed: int = 0) -> list[np.ndarray]:
    """Normalised windows [T,3,H,W]: synthetic clips (calm and fight) plus noise."""
    from .synth import render_clip

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_windows):
        if k < 2:
            frames, _ = render_clip(np.random.default_rng([seed, 7, k]), bool(k % 2), 160, 120, m.sample_fps,
                                    m.window / m.sample_fps)
            u8 = np.stack([resize_rgb(f, m.width, m.height) for f in frames[:m.window]])
        else:
            u8 = rng.integers(0, 256, (m.window, m.height, m.width, 3), dtype=np.uint8)
        out.append(normalise_nchw(u8, m.mean, m.std))
    return out


def verify_equivalence(contract: Contract, fused_run, windows: list[np.ndarray], tol: float = 1e-4,
                       log=print) -> float:
    """max |streaming - fused| over `windows`; raises ContractError above `tol`.
    `fused_run(window [T,3,H,W]) -> score` runs the fused model."""
    worst = 0.0
    for k, w in enumerate(windows):
        s_stream = contract.window_score(w)
        s_fused = float(fused_run(w))
        d = abs(s_stream - s_fused)
        worst = max(worst, d)
        log(f"  window {k}: streaming {s_stream:.6f}  fused {s_fused:.6f}  |diff| {d:.2e}")
    if not worst <= tol:
        raise ContractError(f"streaming and fused outputs differ by {worst:.3e} (> {tol:g})")
    return worst


def fused_runner(fused: onnx.ModelProto, threads: int = 1, layout: str = "nchw", bgr: bool = False,
                 index: int = 0):
    """A function window [T,3,H,W] (contract-normalised) -> fused model score
    (element `index` of its flattened output)."""
    sess = session(fused.SerializeToString(), threads)
    name = sess.get_inputs()[0].name
    out = sess.get_outputs()[0].name

    def run(w: np.ndarray) -> float:
        x = w[:, ::-1] if bgr else w
        if layout == "nhwc":
            x = x.transpose(0, 2, 3, 1)
        y = sess.run([out], {name: np.ascontiguousarray(x[None], np.float32)})[0]
        return float(np.asarray(y).reshape(-1)[index])

    return run
