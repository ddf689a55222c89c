"""Labelled clips in the RWF-2000 layout:

    ROOT/train/Fight/*.avi|mp4     ROOT/train/NonFight/*.avi|mp4
    ROOT/val/Fight/...             ROOT/val/NonFight/...

Class folder names are matched case-insensitively; other files are ignored with
a note. Each clip is turned into the detector's sampled, resized frames once and
cached as .npy under a cache directory (keyed by path, size, mtime and the
sampling parameters)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from .video import VIDEO_EXTS, ClipError, sampled_frames

CLASS_DIRS = {"fight": 1, "nonfight": 0}


class LayoutError(Exception):
    """The folder is not in the RWF-2000 layout."""


@dataclass
class Clip:
    path: str
    label: int  # 1 = Fight, 0 = NonFight


def _class_dirs(split_dir: str) -> dict[int, str]:
    found: dict[int, str] = {}
    for name in sorted(os.listdir(split_dir)):
        p = os.path.join(split_dir, name)
        if os.path.isdir(p) and name.lower() in CLASS_DIRS:
            found[CLASS_DIRS[name.lower()]] = p
    return found


def scan_split(root: str, split: str, log=print) -> list[Clip]:
    """The clips of ROOT/SPLIT/{Fight,NonFight}; raises LayoutError naming what is missing."""
    if not os.path.isdir(root):
        raise LayoutError(f"{root}: no such directory")
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        present = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        raise LayoutError(
            f"{root}: no `{split}/` folder (found: {', '.join(present) or 'nothing'}); expected the RWF-2000 "
            f"layout ROOT/{{train,val}}/{{Fight,NonFight}}/*.avi")
    dirs = _class_dirs(split_dir)
    missing = [n for n, lab in (("Fight", 1), ("NonFight", 0)) if lab not in dirs]
    if missing:
        raise LayoutError(
            f"{split_dir}: missing class folder(s) {', '.join(missing)}; expected {split}/Fight and "
            f"{split}/NonFight (RWF-2000 layout)")
    clips: list[Clip] = []
    for label in (1, 0):
        d = dirs[label]
        ignored = 0
        n = 0
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if os.path.isfile(p) and name.lower().endswith(VIDEO_EXTS):
                clips.append(Clip(p, label))
                n += 1
            else:
                ignored += 1
        if n == 0:
            raise LayoutError(f"{d}: no video files ({', '.join(VIDEO_EXTS)})")
        if ignored:
            log(f"note: {d}: ignored {ignored} entries that are not video files")
    return clips


def scan(root: str, splits=("train", "val"), log=print) -> dict[str, list[Clip]]:
    return {s: scan_split(root, s, log) for s in splits}


def _cache_key(path: str, sample_fps: float, width: int, height: int) -> str:
    st = os.stat(path)
    ident = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{sample_fps!r}|{width}x{height}|v1"
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def load_clip(path: str, sample_fps: float, width: int, height: int, window: int,
              cache_dir: str | None = None) -> np.ndarray:
    """Sampled, resized frames uint8 [N,H,W,3] with N >= window, else ClipError."""
    cached = None
    if cache_dir:
        cached = os.path.join(cache_dir, _cache_key(path, sample_fps, width, height) + ".npy")
        if os.path.exists(cached):
            frames = np.load(cached)
            return _check_len(path, frames, sample_fps, window)
    frames = sampled_frames(path, sample_fps, width, height)
    if cached:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = cached + f".{os.getpid()}.tmp.npy"
        np.save(tmp, frames)
        os.replace(tmp, cached)
    return _check_len(path, frames, sample_fps, window)


def _check_len(path, frames, sample_fps, window):
    if len(frames) < window:
        raise ClipError(
            f"{path}: only {len(frames)} frames at {sample_fps:g} sampled frames/s, a window needs {window} "
            f"(clips must last at least {window / sample_fps:.2f} s)")
    return frames


def load_clips(clips: list[Clip], sample_fps: float, width: int, height: int, window: int,
               cache_dir: str | None, skip_bad: bool = False, log=print):
    """Returns (frames list, labels array, kept clips); a bad clip raises ClipError
    unless `skip_bad`, which logs and skips it."""
    frames, labels, kept = [], [], []
    for c in clips:
        try:
            f = load_clip(c.path, sample_fps, width, height, window, cache_dir)
        except ClipError as e:
            if not skip_bad:
                raise
            log(f"warning: skipping {e}")
            continue
        frames.append(f)
        labels.append(c.label)
        kept.append(c)
    if not frames:
        raise ClipError("no usable clips")
    return frames, np.array(labels, np.int32), kept


def window_starts(n_frames: int, window: int, stride: int = 1) -> list[int]:
    return list(range(0, n_frames - window + 1, stride))
