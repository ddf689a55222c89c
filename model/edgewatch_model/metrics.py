"""Binary classification metrics (label 1 = Fight), without scikit-learn."""

from __future__ import annotations

import numpy as np


def confusion(labels, scores, threshold: float) -> dict:
    """A window counts as positive when score >= threshold (as in the detector)."""
    y = np.asarray(labels).astype(bool)
    p = np.asarray(scores) >= threshold
    tp = int(np.sum(p & y))
    fp = int(np.sum(p & ~y))
    fn = int(np.sum(~p & y))
    tn = int(np.sum(~p & ~y))
    n = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": float(threshold), "n": n, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "accuracy": (tp + tn) / n if n else 0.0, "precision": precision, "recall": recall, "f1": f1,
            "fpr": fp / (fp + tn) if fp + tn else 0.0}


def roc_auc(labels, scores) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tied ranks); None with one class only."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def threshold_for_fpr(labels, scores, target_fpr: float) -> dict:
    """The lowest threshold whose false-positive rate (score >= threshold among
    negatives) is at most `target_fpr`: it gives the highest recall at that FPR.

    The threshold is placed just above the highest negative score that must be
    excluded (halfway to the next distinct score, at most 1.0)."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, np.float64)
    neg = np.sort(s[~y])[::-1]  # descending
    if len(neg) == 0:
        raise ValueError("no negative samples: cannot choose a threshold for a false-positive rate")
    allowed = int(np.floor(target_fpr * len(neg) + 1e-9))  # negatives allowed at or above threshold
    if allowed >= len(neg):
        thr = float(min(s.min(), 1.0))
    else:
        cut = neg[allowed]  # this negative (and all below) must fall below the threshold
        above = s[s > cut]
        nxt = float(above.min()) if len(above) else 1.0
        thr = float(min(1.0, cut + (nxt - cut) / 2 if nxt > cut else np.nextafter(cut, 2.0)))
        # keep the float32 rounding of the detector on the safe side
        while np.float32(thr) <= np.float32(cut):
            thr = float(np.nextafter(np.float32(thr), np.float32(2.0)))
    out = confusion(labels, scores, thr)
    out["target_fpr"] = float(target_fpr)
    return out


def format_confusion(c: dict) -> str:
    return (f"            pred NonFight  pred Fight\n"
            f"  NonFight  {c['tn']:>13d}  {c['fp']:>10d}\n"
            f"  Fight     {c['fn']:>13d}  {c['tp']:>10d}")


def summary_line(c: dict) -> str:
    return (f"acc {c['accuracy']:.3f}  precision {c['precision']:.3f}  recall {c['recall']:.3f}  "
            f"F1 {c['f1']:.3f}  (threshold {c['threshold']:.4f}, n={c['n']})")
