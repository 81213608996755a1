"""Losses of the ranking-aware adapter (RAC `ClipAdapterLossV2`, "dual-head") and RankNet.

`rac_adapter_loss` reproduces the original to 1e-9 (golden R5): regression 0.2·log(1 + SmoothL1),
rank = BCE over ALL N² pair logits including the diagonal with target 1[y_i - y_j > 0], and the
optional "bce" term BCE(s, 1[y != 0]). The CLIP contrastive term of the original is always 0 and
is left out. The helpers below are what the fixed mode and the pairwise trainer use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RAC_LOSS_WEIGHTS = {"regression": 0.2, "rank": 1.0, "bce": 1.0}


def regression_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log(1 + SmoothL1(s, y)), beta 1, mean: robust to the scale of counts and MOS."""
    return torch.log1p(F.smooth_l1_loss(scores.reshape(-1), targets.reshape(-1).to(scores.dtype), beta=1.0))


def order_targets(targets: torch.Tensor, pairs: torch.Tensor, ties: float | None = None) -> torch.Tensor:
    """Pair targets from numeric targets: 1 if y_i > y_j, else 0; `ties` (e.g. 0.5) for y_i == y_j."""
    yi, yj = targets[pairs[:, 0]], targets[pairs[:, 1]]
    out = (yi - yj > 0).to(torch.get_default_dtype() if not targets.is_floating_point() else targets.dtype)
    if ties is not None:
        out = torch.where(yi == yj, torch.full_like(out, ties), out)
    return out


def pair_bce_loss(pair_logits: torch.Tensor, pair_targets: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits of pair logits against P(i above j)."""
    logits = pair_logits.reshape(-1)
    return F.binary_cross_entropy_with_logits(logits, pair_targets.reshape(-1).to(logits.dtype))


def nonzero_bce_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """RAC's optional "bce" term: is the count non-zero (meant for zero-count negatives)."""
    logits = scores.reshape(-1)
    return F.binary_cross_entropy_with_logits(logits, (targets.reshape(-1) != 0).to(logits.dtype))


def ranknet_loss(scores: torch.Tensor, pairs: torch.Tensor, pair_targets: torch.Tensor) -> torch.Tensor:
    """BCE on score differences s_i - s_j: how every method learns its scores from pairwise labels."""
    scores = scores.reshape(-1)
    return pair_bce_loss(scores[pairs[:, 0]] - scores[pairs[:, 1]], pair_targets)


def rac_adapter_loss(adapter_logits: torch.Tensor, adapter_targets: torch.Tensor, paired_logits: torch.Tensor,
                     components: tuple[str, ...] = ("regression", "rank"),
                     weights: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """The original's `adapter_loss` for logits [N, 1], targets [N] and all-pairs logits [N², 1]."""
    weights = {**RAC_LOSS_WEIGHTS, **(weights or {})}
    unknown = set(components) - set(RAC_LOSS_WEIGHTS)
    if unknown:
        raise ValueError(f"Unknown loss components {sorted(unknown)}; known: {sorted(RAC_LOSS_WEIGHTS)}")
    n = adapter_targets.shape[0]
    terms: dict[str, torch.Tensor] = {}
    if "regression" in components:
        terms["regression"] = weights["regression"] * regression_loss(adapter_logits, adapter_targets)
    if "rank" in components:
        diff = adapter_targets[:, None] - adapter_targets[None, :]  # row-major: pair i*N + j
        target = (diff > 0).reshape(n * n).to(paired_logits.dtype)
        terms["rank"] = weights["rank"] * pair_bce_loss(paired_logits, target)
    if "bce" in components:
        terms["bce"] = weights["bce"] * nonzero_bce_loss(adapter_logits, adapter_targets)
    terms["loss"] = sum(terms.values())
    return terms
