"""Evaluate a contract model on labelled clips, streaming exactly as the detector:
sampled frames (Sampler), whole-frame bilinear resize, backbone once per frame,
head over the ring of the last T features once it is full.

Metrics are per window (each window carries its clip's label; that is what the
threshold decides on) and per clip (a clip alerts when any window is at or above
the threshold, as the detector would with K = N = 1; its score is its highest
window score for the ROC-AUC).

With `rates`, the same clips are also streamed at each of those sampling rates (the
detector's adaptive rate, issue 23, samples below the manifest's rate under CPU
pressure, down to `temporal.sample-fps-min`) and the metrics are printed per rate,
at the same threshold: what a range in the manifest costs in accuracy."""

from __future__ import annotations

import os
import time

import numpy as np

from . import dataset
from .contract import MANIFEST, Contract, sha256_file, write_threshold
from .metrics import confusion, format_confusion, roc_auc, summary_line, threshold_for_fpr
from .video import ClipError


def _clips(data: str, split: str, log):
    names = {n.lower() for n in os.listdir(data)} if os.path.isdir(data) else set()
    if {"fight", "nonfight"} <= names:
        parent, leaf = os.path.split(os.path.abspath(data))
        return dataset.scan_split(parent, leaf, log)
    return dataset.scan_split(data, split, log)


def _score(c: Contract, clips, rate: float, skip_bad: bool, log):
    """Streams every clip at `rate`: window scores and labels, clip scores and labels, per-clip
    rows and the number of sampled frames."""
    ws, wl, cs, cl, per_clip = [], [], [], [], []
    n_frames = 0
    for clip in clips:
        try:
            scores = [s for _t, s in c.stream_video(clip.path, rate)]
        except ClipError as e:
            if not skip_bad:
                raise
            log(f"warning: skipping {e}")
            continue
        if not scores:
            msg = (f"{clip.path}: shorter than one window (T={c.m.window} frames at {rate:g}/s = "
                   f"{c.m.window / rate:.2f} s)")
            if not skip_bad:
                raise ClipError(msg)
            log(f"warning: skipping {msg}")
            continue
        n_frames += len(scores) + c.m.window - 1
        ws += scores
        wl += [clip.label] * len(scores)
        cs.append(max(scores))
        cl.append(clip.label)
        per_clip.append({"path": clip.path, "label": clip.label, "max": max(scores),
                         "mean": float(np.mean(scores)), "windows": len(scores)})
    if not ws:
        raise ClipError(f"no clip could be evaluated at {rate:g} frames/s")
    return ws, wl, cs, cl, per_clip, n_frames


def evaluate(model_dir: str, data: str, split: str = "val", threshold: float | None = None,
             target_fpr: float = 0.05, write: bool = False, skip_bad: bool = False, log=print,
             rates: list[float] | None = None) -> dict:
    c = Contract(model_dir)
    thr = c.m.threshold if threshold is None else threshold
    clips = _clips(data, split, log)
    log(f"evaluate {model_dir} ({c.m.name}) on {len(clips)} clips from {data}: {c.m.sample_fps:g} frames/s, "
        f"T={c.m.window}, {c.m.width}x{c.m.height}, threshold {thr}")
    t0, cpu0 = time.time(), time.process_time()
    ws, wl, cs, cl, per_clip, n_frames = _score(c, clips, c.m.sample_fps, skip_bad, log)
    wall, cpu = time.time() - t0, time.process_time() - cpu0
    win = confusion(wl, ws, thr)
    clip = confusion(cl, cs, thr)
    auc_w, auc_c = roc_auc(wl, ws), roc_auc(cl, cs)
    log(f"{len(cl)} clips, {len(ws)} windows, {n_frames} sampled frames in {wall:.1f} s "
        f"({n_frames / max(cpu, 1e-9):.0f} frames per CPU-second)")
    log(f"windows: {summary_line(win)}  ROC-AUC {'n/a' if auc_w is None else f'{auc_w:.4f}'}")
    log(format_confusion(win))
    log(f"clips (alert = any window >= threshold): {summary_line(clip)}  ROC-AUC (max window score) "
        f"{'n/a' if auc_c is None else f'{auc_c:.4f}'}")
    log(format_confusion(clip))
    result = {"model": model_dir, "data": data, "threshold": thr, "windows": win, "windows_auc": auc_w,
              "clips": clip, "clips_auc": auc_c, "per_clip": per_clip}
    if 0 in wl:
        best = threshold_for_fpr(wl, ws, target_fpr)
        log(f"threshold for a window false-positive rate <= {target_fpr:g}: {best['threshold']:.6f} "
            f"(FPR {best['fpr']:.4f}, recall {best['recall']:.3f}, precision {best['precision']:.3f})")
        result["suggested"] = best
        if write:
            before = sha256_file(os.path.join(model_dir, MANIFEST))
            write_threshold(model_dir, best["threshold"])
            c2 = Contract(model_dir)  # re-verify: manifest, sha256s, graphs
            after = sha256_file(os.path.join(model_dir, MANIFEST))
            log(f"wrote threshold {c2.m.threshold!r} into {os.path.join(model_dir, MANIFEST)} and re-verified it; "
                f"manifest sha256 {before[:12]}... -> {after}")
            result["manifest_sha256"] = after
    elif write:
        raise ValueError("--write-threshold needs NonFight clips to measure the false-positive rate")
    if rates:
        result["per_rate"] = per_rate(c, clips, rates, thr, skip_bad, log, {c.m.sample_fps: (wl, ws, cl, cs)})
    return result


def per_rate(c: Contract, clips, rates: list[float], thr: float, skip_bad: bool, log, known=None) -> list[dict]:
    """Window and clip metrics at each sampling rate, at threshold `thr`, printed as a table."""
    known = dict(known or {})
    lo = c.m.sample_fps_min
    log(f"per sampling rate (threshold {thr}; the manifest samples at {c.m.sample_fps:g}/s"
        + (f", and allows down to {lo:g}/s" if lo else ", and declares no lower rate") + "):")
    log(f"  {'rate':>6}  {'windows':>7}  {'window acc':>10}  {'F1':>6}  {'ROC-AUC':>7}  "
        f"{'clip acc':>8}  {'F1':>6}  {'ROC-AUC':>7}")
    rows = []
    for rate in rates:
        if rate not in known:
            ws, wl, cs, cl, _, _ = _score(c, clips, rate, skip_bad, log)
            known[rate] = (wl, ws, cl, cs)
        wl, ws, cl, cs = known[rate]
        win, clip = confusion(wl, ws, thr), confusion(cl, cs, thr)
        auc_w, auc_c = roc_auc(wl, ws), roc_auc(cl, cs)
        row = {"rate": rate, "windows": win, "windows_auc": auc_w, "clips": clip, "clips_auc": auc_c,
               "in_range": bool(lo is not None and lo - 1e-9 <= rate <= c.m.sample_fps + 1e-9)}
        rows.append(row)
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        log(f"  {rate:>6.3g}  {win['n']:>7}  {win['accuracy']:>10.4f}  {win['f1']:>6.4f}  {fmt(auc_w):>7}  "
            f"{clip['accuracy']:>8.4f}  {clip['f1']:>6.4f}  {fmt(auc_c):>7}")
    return rows
