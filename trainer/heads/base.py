"""What every ordinal head shares: class handling, logits -> probabilities, expected rank, the loss.

A head only says how it turns images and class names into class logits (`class_logits`) and which
class losses it trains with (`class_losses`). This base turns the logits into the `RankOutput` of
`trainer.method` (probabilities, expected rank as the score, predicted class, pair logits), and
assembles `loss(batch)` from whatever the batch has: class labels, numeric targets (rounded to
labels, plus an L1 term on the expected rank) and pairwise labels (RankNet on the scores).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..backbone import ImageFeatures
from ..method import RankBatch, RankingMethod, RankOutput, ranknet_loss
from .prompts import read_rank_names

PREDICTIONS = ("argmax", "expectation")


@dataclass
class OrdinalConfig:
    classes: tuple[str, ...] | str | None = None  # ordered class names, lowest first; "a, b, c" also works
    logit_scale: float | None = None  # None: the backbone's exp(logit_scale), frozen as in all three papers
    predict: str = "argmax"  # predicted class: "argmax" (OrdinalCLIP "max") or "expectation" (round E[rank])
    numeric_weight: float = 1.0  # L1 between expected rank and numeric targets, when the batch has them
    ranknet_weight: float = 1.0  # RankNet BCE on score differences, when the batch has pairs


def parse_classes(value) -> tuple[str, ...] | None:
    """Class names from a list, or from one comma-separated string."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    return tuple(str(v).strip() for v in value if str(v).strip())


def rank_names(config, expected: tuple[int, ...], what: str) -> list[str] | None:
    """Rank names from `config.rank_names` or `config.rank_names_file`, checked against `expected` lengths.

    A file is read once and its names stored in `config.rank_names` (the file is then dropped), so a
    saved config rebuilds the head without the file. A length that fits none of `expected` is a clear
    error: the OrdinalCLIP issue #9 crash (a file listing R names while B base ranks are built).
    """
    source = f"Rank-name file '{config.rank_names_file}'" if config.rank_names_file else "rank_names"
    if config.rank_names_file:
        config.rank_names, config.rank_names_file = tuple(read_rank_names(config.rank_names_file)), None
    names = parse_classes(config.rank_names)
    if names is None:
        return None
    if len(names) not in expected:
        options = " or ".join(str(n) for n in sorted(set(expected)))
        raise ValueError(f"{source} lists {len(names)} names, but {what} needs {options} "
                         f"(one name per line, lowest rank first).")
    config.rank_names = names
    return list(names)


class OrdinalHead(RankingMethod):
    """Base of the heads that rank over an ordered list of class names."""

    needs_classes: ClassVar[bool] = True
    Config: ClassVar[type] = OrdinalConfig
    fixed_classes: ClassVar[bool] = True  # learned per-class parameters: classes are set at construction

    def __init__(self, backbone, config: OrdinalConfig):
        super().__init__(backbone)
        if config.predict not in PREDICTIONS:
            raise ValueError(f"predict must be one of {PREDICTIONS}, got {config.predict!r}.")
        config.classes = parse_classes(config.classes)
        self.config = config
        if self.fixed_classes or config.classes is not None:
            self.classes = tuple(self.check_classes(list(config.classes or ())))
        else:
            self.classes = None

    @classmethod
    def from_config(cls, backbone, **overrides) -> "OrdinalHead":
        known = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"Unknown option(s) {', '.join(unknown)} for method '{cls.name}'; "
                             f"known: {', '.join(sorted(known))}.")
        if backbone is None:
            raise ValueError(f"The '{cls.name}' method needs a backbone (its CLIP text tower builds the prompts).")
        return cls(backbone, cls.Config(**overrides))

    # -------------------------------------------------------------------------- pieces
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def resolve_classes(self, classes: list[str] | None) -> tuple[str, ...]:
        """The batch's class names, checked against the ones the head was built for."""
        if classes is None or len(classes) == 0:
            if self.classes is None:
                self.check_classes(classes)  # raises the "needs at least two" error
            return self.classes
        names = tuple(self.check_classes(list(classes)))
        if self.fixed_classes and names != self.classes:
            raise ValueError(f"This '{self.name}' head was built for the classes {list(self.classes)}; the batch "
                             f"has {list(names)}. Build a new head for other class names.")
        return names

    def scale(self) -> float:
        if self.config.logit_scale is not None:
            return float(self.config.logit_scale)
        return float(self.backbone.model.logit_scale.detach().exp())

    def image_embedding(self, images: ImageFeatures) -> torch.Tensor:
        """[N, E] L2-normalised image features (NumCLIP overrides this with its adapter mix)."""
        return F.normalize(images.pooled, dim=-1)

    def class_logits(self, images: ImageFeatures, classes: tuple[str, ...], instruction: str = ""
                     ) -> tuple[torch.Tensor, dict]:
        """[N, C] logits and extras (e.g. the text features) for the given class names."""
        raise NotImplementedError

    def class_losses(self, out: RankOutput, labels: torch.Tensor, batch: RankBatch) -> dict:
        """Named (weight, value) class-label terms; default: cross-entropy over the class texts."""
        return {"ce": (1.0, F.cross_entropy(out.extras["logits"], labels))}

    def numeric_losses(self, out: RankOutput, batch: RankBatch) -> dict:
        """Numeric targets in class-index units: L1 on the expected rank."""
        return {"numeric": (self.config.numeric_weight,
                            F.l1_loss(out.extras["expected"], batch.targets.to(out.probs.dtype)))}

    def labels_for(self, batch: RankBatch, num_classes: int) -> torch.Tensor | None:
        """Class labels from the batch, or numeric targets (class-index units) rounded into classes."""
        if batch.labels is not None:
            labels = batch.labels.long()
        elif batch.targets is not None:
            labels = batch.targets.round().long()
        else:
            return None
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"Class labels must lie in [0, {num_classes - 1}], got {labels.min()}..{labels.max()}.")
        return labels

    # ------------------------------------------------------------------------ interface
    def forward(self, batch: RankBatch) -> RankOutput:
        classes = self.resolve_classes(batch.classes)
        logits, extras = self.class_logits(batch.images, classes, batch.text)
        probs = logits.softmax(dim=-1)  # [N, C]
        ranks = torch.arange(len(classes), device=logits.device, dtype=probs.dtype)
        expected = probs @ ranks  # [N] OrdinalCLIP's "exp" prediction
        if self.config.predict == "argmax":
            predicted = probs.argmax(dim=-1)
        else:
            predicted = expected.round().long().clamp(0, len(classes) - 1)
        scores = extras.pop("score", expected)
        pair_logits = None
        if batch.pairs is not None:
            pair_logits = scores[batch.pairs[:, 0]] - scores[batch.pairs[:, 1]]
        extras.update(logits=logits, expected=expected)
        return RankOutput(scores=scores, probs=probs, predicted=predicted, pair_logits=pair_logits, extras=extras)

    def loss(self, batch: RankBatch) -> dict[str, torch.Tensor]:
        out = self(batch)
        terms: dict[str, tuple[float, torch.Tensor]] = {}
        labels = self.labels_for(batch, out.probs.shape[1])
        if labels is not None:
            terms.update(self.class_losses(out, labels, batch))
        if batch.targets is not None:
            terms.update(self.numeric_losses(out, batch))
        if batch.pairs is not None and batch.pair_targets is not None and self.config.ranknet_weight:
            terms["ranknet"] = (self.config.ranknet_weight, ranknet_loss(out.scores, batch.pairs, batch.pair_targets))
        if not terms:
            raise ValueError(f"The '{self.name}' method trains from class labels, numeric targets or pairs; "
                             "the batch has none.")
        total = sum(weight * value for weight, value in terms.values() if weight)
        return {"loss": total, **{name: value.detach() for name, (_, value) in terms.items()}}
