"""OrdinalCLIP: rank embeddings interpolated from a few learned base ranks.

Paper: Li et al., "OrdinalCLIP: Learning Rank Prompts for Language-Guided Ordinal Regression"
(NeurIPS'22), github.com/xk-huang/OrdinalCLIP (`RankPromptLearner`, `Runner.compute_losses`).

B base rank embeddings [B, T, D] live in the word-embedding space; rank r's tokens are
Σ_b W[r, b]·base_b with W from `interpolation_weights` (golden O1). Sentences are the CoOp layout
with a learned context. Losses (golden O3): cross-entropy image→text plus the text→image KL whose
target, per rank present in the batch, is softmax(10·onehot) over the images.

Differs from the original:
* open_clip text tower of any CLIP-style model (`encode_prompts`).
* Issue #9 (a rank-name file must list `num_base_ranks` names, else a crash): the base ranks may be
  initialised from B names, or from the R class names / an R-line file by taking the names at the
  base positions linspace(0, R-1, B); any other length is a clear error. Names may be given inline
  (`rank_names`); a file is read into `rank_names`, so saved configs do not need the file.
* With names, T defaults to the longest base name; shorter ones are padded with the embedding of id 0
  (the original's padding), and `tokens_per_rank` truncates.
* Numeric targets and pairwise labels train it too (see `base.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_method
from .base import OrdinalHead, rank_names
from .coop import PromptConfig, make_learner
from .prompts import name_embeddings, text_tower

INTERPOLATIONS = {
    "linear": lambda d, num_ranks: 1.0 - d / (num_ranks - 1),  # global: every base contributes
    "inv_prop": lambda d, num_ranks: 1.0 / (d + 1e-5),
    "normal": lambda d, num_ranks: torch.exp(-d ** 2),
}
BASE_INITS = ("random", "names")


def interpolation_weights(num_base_ranks: int, num_ranks: int, kind: str = "linear",
                          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[R, B] row-normalised weights of the base ranks, as `create_interpolation_weights` (golden O1).

    Bases sit at linspace(0, R-1, B); a single base sits at the middle. Weights depend on the distance
    d = |r - position_b| through `INTERPOLATIONS[kind]`.
    """
    if kind not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {tuple(INTERPOLATIONS)}, got {kind!r}.")
    if num_base_ranks < 1 or num_ranks < 2:
        raise ValueError(f"Need at least 1 base rank and 2 ranks, got {num_base_ranks} and {num_ranks}.")
    if num_base_ranks == 1:
        positions = torch.linspace(0, num_ranks - 1, 3, dtype=dtype)[1:2]
    else:
        positions = torch.linspace(0, num_ranks - 1, num_base_ranks, dtype=dtype)
    targets = torch.arange(num_ranks, dtype=dtype)
    distance = (targets[:, None] - positions[None, :]).abs()  # [R, B]
    weights = INTERPOLATIONS[kind](distance, num_ranks)
    return weights / weights.sum(dim=-1, keepdim=True)


def text_to_image_kl(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """OrdinalCLIP's `compute_kl_loss`; with `weights` [R, N], NumCLIP's KL-FCRC on the same target.

    Per rank present in the batch the target over images is softmax(10·onehot); absent ranks get a
    zero target; summed KL over the number of present ranks.
    """
    num_ranks = logits.shape[1]
    onehot = F.one_hot(labels, num_ranks).T.to(logits.dtype)  # [R, N]
    present = onehot.sum(dim=-1) > 0
    target = (onehot * 10.0).softmax(dim=-1) * present[:, None].to(logits.dtype)
    logits_t = logits.T if weights is None else logits.T * weights
    return F.kl_div(F.log_softmax(logits_t, dim=-1), target, reduction="sum") / present.sum()


def ordinalclip_losses(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """`Runner.compute_losses`: image→text cross-entropy and text→image KL (golden O3)."""
    return {"ce_loss": F.cross_entropy(logits, labels), "kl_loss": text_to_image_kl(logits, labels)}


def ordinal_metrics(logits: torch.Tensor, labels: torch.Tensor, kind: str = "exp") -> dict[str, torch.Tensor]:
    """`compute_per_example_metrics`: "exp" predicts Σ p·k, "max" the argmax; MAE and rounded accuracy."""
    probs = logits.softmax(dim=-1)
    if kind == "exp":
        predict = probs @ torch.arange(logits.shape[1], dtype=logits.dtype, device=logits.device)
    elif kind == "max":
        predict = probs.argmax(dim=-1).to(logits.dtype)
    else:
        raise ValueError(f"kind must be 'exp' or 'max', got {kind!r}.")
    target = labels.to(logits.dtype)
    return {"predict_y": predict, f"mae_{kind}_metric": (predict - target).abs(),
            f"acc_{kind}_metric": (predict.round() == target).to(logits.dtype)}


@dataclass
class OrdinalCLIPConfig(PromptConfig):
    num_base_ranks: int = 3  # B learned base ranks (the MORPH recipe: 3 for 101 ranks)
    interpolation: str = "linear"  # "linear" (global), "inv_prop" or "normal"
    tokens_per_rank: int | None = None  # T; default 1 with random init, the longest base name with names
    base_init: str = "random"  # "random": N(0, 0.02); "names": class names (or the file) at the base positions
    rank_names: tuple[str, ...] | str | None = None  # B names, or R names (picked at the base positions)
    rank_names_file: str | None = None  # the same from a file, one name per line (read into rank_names)
    ce_weight: float = 1.0
    kl_weight: float = 1.0


@register_method("ordinalclip")
class OrdinalCLIP(OrdinalHead):
    """Interpolated rank prompts (RankPromptLearner), CE + text→image KL."""

    Config = OrdinalCLIPConfig

    def __init__(self, backbone, config: OrdinalCLIPConfig):
        super().__init__(backbone, config)
        num_ranks, num_base = self.num_classes, config.num_base_ranks
        if not 1 <= num_base <= num_ranks:
            raise ValueError(f"num_base_ranks must be between 1 and the number of classes ({num_ranks}), "
                             f"got {num_base}.")
        if config.base_init not in BASE_INITS:
            raise ValueError(f"base_init must be one of {BASE_INITS}, got {config.base_init!r}.")
        self.register_buffer("interpolation", interpolation_weights(num_base, num_ranks, config.interpolation),
                             persistent=False)
        names = rank_names(config, (num_base, num_ranks),
                           f"'{self.name}' with {num_base} base ranks and {num_ranks} classes")
        if names is not None or config.base_init == "names":
            names = names or list(self.classes)
            if len(names) != num_base:  # R names: take the ones at the base positions
                picks = torch.linspace(0, num_ranks - 1, num_base).round().long().tolist()
                names = [names[i] for i in picks] if num_base > 1 else [names[(num_ranks - 1) // 2]]
            base, _ = name_embeddings(backbone, names, config.tokens_per_rank)
        else:
            dim = text_tower(backbone)["embedding"].embedding_dim
            base = torch.randn(num_base, config.tokens_per_rank or 1, dim, device=backbone.device) * 0.02
        self.base_rank_embeds = nn.Parameter(base)  # [B, T, D]
        self.prompt = make_learner(backbone, config, [base.shape[1]] * num_ranks)

    def rank_embeds(self) -> torch.Tensor:
        """[R, T, D] interpolated rank token embeddings."""
        weights = self.interpolation.to(self.base_rank_embeds.dtype)
        return torch.einsum("rb,btd->rtd", weights, self.base_rank_embeds)

    def text_features(self) -> torch.Tensor:
        return F.normalize(self.prompt.encode(self.rank_embeds()), dim=-1)

    def class_logits(self, images, classes, instruction: str = ""):
        text = self.text_features()
        image = self.image_embedding(images)
        return self.scale() * image @ text.to(image.dtype).T, {"text_features": text}

    def class_losses(self, out, labels, batch):
        losses = ordinalclip_losses(out.extras["logits"], labels)
        return {"ce": (self.config.ce_weight, losses["ce_loss"]), "kl": (self.config.kl_weight, losses["kl_loss"])}
