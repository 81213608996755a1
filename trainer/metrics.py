"""Ranking and ordinal metrics: PLCC, SRCC, Kendall tau, MAE, accuracy, pairwise order accuracy.

`evaluate_clip_on_count` reproduces RAC's `learn_to_compare/utils.py` (golden R7), whose pairwise
"accuracy" runs over `np.tril_indices(n, k=1)`: the diagonal (always correct) and the first
super-diagonal are included. `ranking_metrics` reports that figure under its own name next to the
strict pairwise accuracy (all i < j with y_i != y_j) that this project uses.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats


def _as_array(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _corr(fn, a: np.ndarray, b: np.ndarray) -> float:
    """A correlation, NaN (without warnings) where it is undefined: fewer than 2 items or a constant."""
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(a, b)[0])


def tril_k1_pair_accuracy(y_true, y_pred) -> float:
    """RAC's pairwise "accuracy": sign agreement over np.tril_indices(n, k=1), diagonal included."""
    t, p = _as_array(y_true), _as_array(y_pred)
    rows, cols = np.tril_indices(t.size, k=1)
    return float(np.mean((t[rows] - t[cols] >= 0) == (p[rows] - p[cols] >= 0)))


def strict_pair_accuracy(y_true, y_pred) -> float:
    """Share of pairs i < j with y_i != y_j that the prediction orders the same way (ties count 1/2)."""
    t, p = _as_array(y_true), _as_array(y_pred)
    rows, cols = np.triu_indices(t.size, k=1)
    dt, dp = np.sign(t[rows] - t[cols]), np.sign(p[rows] - p[cols])
    keep = dt != 0
    if not keep.any():
        return float("nan")
    return float(np.mean(np.where(dp[keep] == 0, 0.5, (dt[keep] == dp[keep]).astype(float))))


def evaluate_clip_on_count(y_trues, y_preds) -> dict[str, float]:
    """The original's metrics, names and quirks included."""
    t, p = _as_array(y_trues), _as_array(y_preds)
    return {"PLCC": _corr(stats.pearsonr, t, p), "SRCC": _corr(stats.spearmanr, t, p),
            "MAE": float(np.mean(np.abs(t - p))), "accuracy": tril_k1_pair_accuracy(t, p)}


def ranking_metrics(y_true, y_pred, num_classes: int | None = None) -> dict[str, float]:
    """All metrics for numeric targets; `accuracy` rounds predictions to the nearest class index."""
    t, p = _as_array(y_true), _as_array(y_pred)
    rounded = np.rint(p)
    if num_classes is not None:
        rounded = np.clip(rounded, 0, num_classes - 1)
    return {
        "plcc": _corr(stats.pearsonr, t, p),
        "srcc": _corr(stats.spearmanr, t, p),
        "kendall": _corr(stats.kendalltau, t, p),
        "mae": float(np.mean(np.abs(t - p))) if t.size else float("nan"),
        "accuracy": float(np.mean(rounded == t)) if t.size else float("nan"),
        "pair_accuracy": strict_pair_accuracy(t, p),
        "pair_accuracy_tril_k1": tril_k1_pair_accuracy(t, p) if t.size else float("nan"),
    }


def pairwise_label_accuracy(scores, pairs, pair_targets) -> float:
    """Share of labelled, non-tie pairs (i, j, P(i above j)) whose order the scores agree with."""
    s = _as_array(scores)
    pairs = np.asarray(pairs.detach().cpu() if hasattr(pairs, "detach") else pairs, dtype=np.int64).reshape(-1, 2)
    target = _as_array(pair_targets)
    keep = target != 0.5
    if not keep.any():
        return float("nan")
    diff = s[pairs[keep, 0]] - s[pairs[keep, 1]]
    want = np.where(target[keep] > 0.5, 1.0, -1.0)
    return float(np.mean(np.where(diff == 0, 0.5, (np.sign(diff) == want).astype(float))))
