"""Export a training checkpoint to the contract and verify it.

Verification:
1. the manifest and graphs load as the detector loads them (names, shapes, sha256s);
2. every op is in the contract's op set (the ops model/gen_contract_model.py
   uses, which tract 0.23 runs in edgewatch's tests);
3. the ONNX backbone + head reproduce the JAX model (eval mode) on sample
   windows within 1e-3 (catches layout or BatchNorm-folding mistakes);
4. the streaming pipeline (backbone per frame, head over the window) equals the
   fused model (backbone over a batch of T frames + head, one graph) within 1e-4.
"""

from __future__ import annotations

import numpy as np

from . import checkpoint, hoist, net, onnx_build
from .contract import (Contract, ContractError, fused_runner, manifest_text, sample_inputs, verify_equivalence,
                       write_model_dir)


def load_checkpoint(path: str):
    meta = checkpoint.load_meta(path)
    cfg = net.ModelConfig.from_json(meta["config"])
    params, state = net.init(cfg, 0)
    _, trees = checkpoint.load(path, {"params": params, "state": state})
    return cfg, trees["params"], trees["state"], meta


def export(ckpt: str, out: str, name: str, description: str, threshold: float = 0.5, log=print,
           verify: bool = True, hoist_projection: bool = True) -> dict:
    cfg, params, state, meta = load_checkpoint(ckpt)
    return export_params(cfg, params, state, out, name, description, threshold, log, verify, hoist_projection,
                         source=ckpt)


def init_model(out: str, cfg, seed: int, name: str | None = None, description: str | None = None,
               threshold: float = 0.5, log=print, verify: bool = True, hoist_projection: bool = True) -> dict:
    """An untrained model folder: `net.init`'s seeded random weights (He-initialised convolutions,
    BatchNorm at its initial statistics, Glorot LSTM), exported and verified exactly as a trained
    checkpoint is. Same arguments, same bytes. For benchmarks: its scores mean nothing."""
    params, state = net.init(cfg, seed)
    name = name or f"edgewatch-untrained-mbv2-{cfg.width_mult:g}-{cfg.width}x{cfg.height}-seed{seed}"
    description = description if description is not None else (
        f"UNTRAINED: MobileNetV2 width {cfg.width_mult:g} + BiLSTM (hidden {cfg.hidden}) with random weights "
        f"(seed {seed}), made by `edgewatch_model init` for benchmarks; not a detector")
    return export_params(cfg, params, state, out, name, description, threshold, log, verify, hoist_projection,
                         source=f"random weights (seed {seed})")


def export_params(cfg, params, state, out: str, name: str, description: str, threshold: float = 0.5, log=print,
                  verify: bool = True, hoist_projection: bool = True, source: str = "parameters") -> dict:
    bb = onnx_build.backbone_graph(cfg, params, state)
    hd = onnx_build.head_graph(cfg, params)
    bb, hd, feature_dim = hoist.hoist_or_keep(bb, hd, cfg.feature_dim, log, hoist_projection)
    bb_sha, bb_n, hd_sha, hd_n = write_model_dir(out, bb, hd, lambda bs, hs: manifest_text(
        name, description, cfg.width, cfg.height, cfg.mean, cfg.std, cfg.window, cfg.sample_fps, feature_dim,
        threshold, bs, hs, sample_fps_min=cfg.sample_fps_min))
    log(f"exported {source} -> {out}")
    log(f"  backbone.onnx {bb_n:>9d} bytes  sha256 {bb_sha}")
    log(f"  head.onnx     {hd_n:>9d} bytes  sha256 {hd_sha}")
    log(f"  input {cfg.width}x{cfg.height}, T={cfg.window}, sample-fps {cfg.sample_fps:g}, F={feature_dim}, "
        f"width {cfg.width_mult}, hidden {cfg.hidden}, threshold {threshold}")
    result = {"dir": out, "backbone_sha256": bb_sha, "head_sha256": hd_sha, "config": cfg}
    if verify:
        result.update(verify_export(out, cfg, params, state, log))
    return result


def verify_export(out: str, cfg, params, state, log=print) -> dict:
    c = Contract(out, strict_ops=True)
    ops = sorted(set(onnx_build.ops_used(c.models["backbone"])) | set(onnx_build.ops_used(c.models["head"])))
    log(f"verify: manifest, sha256s, names and shapes OK; ops {', '.join(ops)} (all in the contract's op set)")
    windows = sample_inputs(c.m)

    # ONNX vs JAX (eval mode)
    import jax
    import jax.numpy as jnp

    feat_fn = jax.jit(lambda p, s, x: net.backbone(cfg, p, s, x, False)[0])
    logit_fn = jax.jit(lambda p, f: net.head_logit(p, f, False))
    worst_jax = 0.0
    for w in windows:
        feats = np.asarray(feat_fn(params, state, jnp.asarray(w.transpose(0, 2, 3, 1))))
        ref = float(1 / (1 + np.exp(-float(logit_fn(params, jnp.asarray(feats[None]))[0]))))
        onnx_feats = np.stack([c.feature(w[t:t + 1]) for t in range(len(w))])
        got = c.score(onnx_feats)
        if c.m.feature_dim != cfg.feature_dim:  # hoisted: compare the projected features
            hw, hb = np.asarray(params["head"]["W"], np.float32), np.asarray(params["head"]["b"], np.float32)
            feats = np.concatenate([feats @ hw[d].T + hb[d] for d in range(len(hw))], axis=1)
        worst_jax = max(worst_jax, abs(ref - got))
        log(f"  ONNX vs JAX: score {got:.6f} vs {ref:.6f} (|diff| {abs(ref - got):.1e}), features max |diff| "
            f"{float(np.max(np.abs(feats - onnx_feats))):.1e}")
    if worst_jax > 1e-3:
        raise ContractError(f"the exported graphs differ from the trained model by {worst_jax:.3e} (> 1e-3)")

    fused = onnx_build.fuse(c.models["backbone"], c.models["head"], c.m.width, c.m.height, c.m.window,
                            c.m.feature_dim)
    log("verify: streaming (backbone per frame + head) vs fused (one graph over T frames), onnxruntime:")
    worst = verify_equivalence(c, fused_runner(fused), windows, 1e-4, log)
    log(f"verify OK: max |streaming - fused| = {worst:.2e} (<= 1e-4), max |ONNX - JAX| = {worst_jax:.2e}")
    return {"ops": ops, "max_diff_fused": worst, "max_diff_jax": worst_jax}
