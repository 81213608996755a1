"""One interface for every ranking method, so the app, the trainer and the CLI never special-case one.

A method turns image features (from the frozen backbone, usually cached) plus an instruction or an
ordered list of class names into one score per image (higher ranks higher), optional class
probabilities, and logits for explicit pairs. Every method trains from the same `RankBatch`:
numeric targets, class labels and/or pairwise labels, and `loss()` returns a dict with `"loss"`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from .backbone import Backbone, ImageFeatures
from .losses import ranknet_loss  # noqa: F401  (re-exported: the pairwise term every method uses)


@dataclass
class RankBatch:
    images: ImageFeatures  # N images' tokens and pooled embeddings
    text: str = ""  # the ordering instruction (also the prompt context for ordinal heads)
    classes: list[str] | None = None  # ordered class names, lowest rank first (ordinal heads)
    targets: torch.Tensor | None = None  # [N] float numeric targets
    labels: torch.Tensor | None = None  # [N] long class indices
    pairs: torch.Tensor | None = None  # [k, 2] long (i, j) indices into images
    pair_targets: torch.Tensor | None = None  # [k] float P(i ranks above j): 1, 0, or 0.5 for a tie


@dataclass
class RankOutput:
    scores: torch.Tensor  # [N] one score per image; higher ranks higher
    probs: torch.Tensor | None = None  # [N, C] class probabilities, where the method has classes
    predicted: torch.Tensor | None = None  # [N] predicted class index
    pair_logits: torch.Tensor | None = None  # [k] logit that pairs[:, 0] ranks above pairs[:, 1]
    extras: dict = field(default_factory=dict)


class RankingMethod(nn.Module):
    """Base class. The backbone is held, not registered: checkpoints carry only the head's weights."""

    name: ClassVar[str] = ""
    needs_classes: ClassVar[bool] = False  # True for ordinal heads that rank over class names

    def __init__(self, backbone: Backbone | None):
        super().__init__()
        object.__setattr__(self, "backbone", backbone)  # not a submodule: frozen and shared

    def forward(self, batch: RankBatch) -> RankOutput:
        raise NotImplementedError

    def score(self, images: ImageFeatures, text: str = "", classes: list[str] | None = None) -> torch.Tensor:
        """[N] scores; per image, independent of which other images are in the batch."""
        return self(RankBatch(images=images, text=text, classes=classes)).scores

    def pair_logits(self, images: ImageFeatures, text: str, pairs: torch.Tensor,
                    classes: list[str] | None = None) -> torch.Tensor:
        """[k] logits that pairs[:, 0] ranks above pairs[:, 1]; default: score differences."""
        scores = self.score(images, text, classes)
        return scores[pairs[:, 0]] - scores[pairs[:, 1]]

    def attention(self, images: ImageFeatures, text: str = "", classes: list[str] | None = None,
                  pairs: torch.Tensor | None = None) -> dict:
        """Attention maps the method can explain itself with; empty where it has none."""
        return {}

    def loss(self, batch: RankBatch) -> dict[str, torch.Tensor]:
        """Training contract: a dict with "loss" plus named terms for logging."""
        raise NotImplementedError

    def check_classes(self, classes: list[str] | None) -> list[str]:
        if self.needs_classes:
            names = [c.strip() for c in (classes or []) if c and c.strip()]
            if len(names) < 2:
                raise ValueError(f"The '{self.name}' method ranks over ordered class names and needs at "
                                 f"least two, lowest rank first (got {len(names)}).")
            return names
        return list(classes or [])
