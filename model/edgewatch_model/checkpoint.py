"""Checkpoints: one .npz with the parameters, BatchNorm statistics, optimizer
moments and a JSON `meta` entry (model config, epoch, step, history)."""

from __future__ import annotations

import json
import os

import numpy as np


def _flatten(prefix: str, tree, out: dict) -> None:
    if isinstance(tree, dict):
        for k in sorted(tree):
            _flatten(f"{prefix}/{k}", tree[k], out)
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            _flatten(f"{prefix}/{i}", v, out)
    else:
        out[prefix] = np.asarray(tree)


def _unflatten(prefix: str, template, arrays: dict, path: str):
    if isinstance(template, dict):
        return {k: _unflatten(f"{prefix}/{k}", v, arrays, path) for k, v in template.items()}
    if isinstance(template, (list, tuple)):
        return [_unflatten(f"{prefix}/{i}", v, arrays, path) for i, v in enumerate(template)]
    if prefix not in arrays:
        raise ValueError(f"checkpoint {path}: missing tensor {prefix} (different model?)")
    a = arrays[prefix]
    if tuple(a.shape) != tuple(np.shape(template)):
        raise ValueError(f"checkpoint {path}: tensor {prefix} has shape {tuple(a.shape)}, "
                         f"the model needs {tuple(np.shape(template))} (different width, size or hidden?)")
    return a


def save(path: str, meta: dict, **trees) -> None:
    arrays: dict = {}
    for name, tree in trees.items():
        _flatten(name, tree, arrays)
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_meta(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["meta"]))


def load(path: str, templates: dict) -> tuple[dict, dict]:
    """Returns (meta, {name: tree}) for the trees named in `templates` (shape templates)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    trees = {name: _unflatten(name, t, arrays, path) for name, t in templates.items()}
    return meta, trees
