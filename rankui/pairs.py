"""Which pair to ask next: expected information gain (BALD) on a Bayesian Bradley-Terry posterior.

The latent quality of each image has a Gaussian prior centred on the model's (standardised)
scores; the labels so far update it through a probit (Thurstone) likelihood, P(i above j) =
Phi(s_i - s_j), with ties counted as half a win each way. The posterior is the Laplace
approximation (Newton's method on the exact gradient and Hessian). For each candidate pair the
BALD closed form for a probit likelihood (Houlsby et al. 2011) gives the expected information gain
    I = h(Phi(mu / sqrt(1 + var))) - C / sqrt(var + C^2) * exp(-mu^2 / (2 (var + C^2))),
C = sqrt(pi ln 2 / 2), with mu, var the posterior mean and variance of s_i - s_j. Pairs an
annotator has already judged are skipped; near-equal gains prefer neighbours in the ranking. The
left/right placement is randomised and returned, so it can be recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr, ndtr

C = math.sqrt(math.pi * math.log(2) / 2)


@dataclass
class Suggestion:
    left: int  # index of the image to show on the left
    right: int
    gain: float  # expected information gain, in bits
    p_left_above: float  # posterior predictive P(left ranks above right)
    swapped: bool  # True when the higher-scored image was put on the right


def bt_posterior(prior_mean: np.ndarray, comparisons: list[tuple[int, int, float]], prior_var: float = 1.0,
                 iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Laplace posterior (mean, covariance) of latent scores given (i, j, P(i above j)) labels."""
    n = len(prior_mean)
    mean = np.array(prior_mean, dtype=np.float64)
    precision_prior = np.eye(n) / prior_var
    if not comparisons:
        return mean, np.eye(n) * prior_var
    i = np.array([c[0] for c in comparisons])
    j = np.array([c[1] for c in comparisons])
    y = np.array([c[2] for c in comparisons], dtype=np.float64)  # weight of "i above j"
    for _ in range(iterations):
        d = mean[i] - mean[j]
        # d/dd of y*log Phi(d) + (1-y)*log Phi(-d), and its second derivative (both closed form)
        r_pos, r_neg = np.exp(_log_pdf(d) - log_ndtr(d)), np.exp(_log_pdf(d) - log_ndtr(-d))
        g = y * r_pos - (1 - y) * r_neg
        h = y * r_pos * (d + r_pos) + (1 - y) * r_neg * (r_neg - d)  # minus the second derivative
        grad = -(mean - prior_mean) / prior_var
        np.add.at(grad, i, g)
        np.add.at(grad, j, -g)
        hess = precision_prior.copy()
        np.add.at(hess, (i, i), h)
        np.add.at(hess, (j, j), h)
        np.add.at(hess, (i, j), -h)
        np.add.at(hess, (j, i), -h)
        step = np.linalg.solve(hess, grad)
        mean = mean + step
        if np.abs(step).max() < 1e-9:
            break
    return mean, np.linalg.inv(hess)


def _log_pdf(x: np.ndarray) -> np.ndarray:
    return -0.5 * x * x - 0.5 * math.log(2 * math.pi)


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def information_gain(mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """BALD for a probit likelihood, in bits."""
    predictive = ndtr(mu / np.sqrt(1 + var))
    expected = C / np.sqrt(var + C * C) * np.exp(-mu * mu / (2 * (var + C * C)))
    return _entropy_bits(predictive) - expected


def standardise(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    spread = scores.std()
    return (scores - scores.mean()) / spread if spread > 0 else np.zeros_like(scores)


def suggest_pair(model_scores, comparisons: list[tuple[int, int, float]], asked: set[frozenset[int]] = frozenset(),
                 rng: np.random.Generator | None = None) -> Suggestion | None:
    """The most informative pair not yet asked; None when fewer than two images or all pairs asked."""
    n = len(model_scores)
    if n < 2:
        return None
    rng = rng or np.random.default_rng()
    prior = standardise(model_scores)
    mean, cov = bt_posterior(prior, comparisons)
    i, j = np.triu_indices(n, k=1)
    keep = np.array([frozenset((a, b)) not in asked for a, b in zip(i.tolist(), j.tolist())], dtype=bool)
    if not keep.any():
        return None
    i, j = i[keep], j[keep]
    mu = mean[i] - mean[j]
    var = np.maximum(cov[i, i] + cov[j, j] - 2 * cov[i, j], 0.0)
    gain = information_gain(mu, var)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-mean)] = np.arange(n)
    adjacency_bonus = 1e-6 * (np.abs(rank[i] - rank[j]) == 1)  # breaks near-ties toward neighbours
    best = int(np.argmax(gain + adjacency_bonus))
    a, b = (int(i[best]), int(j[best])) if mean[i[best]] >= mean[j[best]] else (int(j[best]), int(i[best]))
    swapped = bool(rng.random() < 0.5)
    left, right = (b, a) if swapped else (a, b)
    p_left = float(ndtr((mean[left] - mean[right]) / math.sqrt(1 + var[best])))
    return Suggestion(left, right, float(gain[best]), p_left, swapped)
