"""L2RCLIP: RankFormer prompt blending plus the cross-modal ordinal pairwise loss (COPL).

Paper: Wang et al., "Learning-to-Rank Meets Language: Boosting Language-Driven Ordering Alignment for
Ordinal Classification" (NeurIPS'23), github.com/raywang335/L2RCLIP (`loss/ordinal_ce.py`,
`loss/ordinal_ce_stage1.py`; the repo has no model, RankFormer or training code).

The losses are the official functions: `copl_loss` is `ordinal_entropy` (golden L1: tightness to the
own-rank text minus the ordinally weighted distance to every rank text) and `copl_batch_loss` is
`ordinal_entropy_stage1` (golden L2: the upper-triangle batch-pair form). Both build their label
weights in float32 with the clamped-sqrt distance, as the original does (`float32_weights`).

RankFormer is specified from the abstract only ("token-level attention with residual-style prompt
blending in the word-embedding space", METHODS §3.2, §3.6). The reading implemented, with every
choice and the option that changes it:
* Input: the rank token embeddings [R, T, D] in the word-embedding space, before the context is
  added. `rank_prompts="plain"` (default): per-rank learned tokens initialised from the class names
  (the repo's number-word vocabulary suggests name-initialised per-rank prompts); "ordinal":
  OrdinalCLIP's interpolated base ranks.
* Token-level attention, `attention_axis="ranks"` (default): at each token position the R rank tokens
  attend to each other (a sequence of R, batch of T), so ranks exchange information token by token;
  "all": all R·T tokens attend jointly. Padding slots of shorter names are masked as keys.
* Order information: a sinusoidal rank-index embedding scaled to the token-embedding std is added
  before the blocks and subtracted after (`rank_position`: "sinusoidal", "learned" or "none"), so it
  steers attention without shifting the prompts.
* Blocks: `depth` (1) pre-norm blocks, multi-head self-attention (`heads`, 8) and an MLP (`ffn`,
  ratio 4, GELU); softmax through the named `softmax` module so attention can be hooked and shown.
  Their output layers start at zero, so the untrained RankFormer is the identity and L2RCLIP starts
  exactly where CoOp with learned rank tokens starts (random outputs of LayerNorm'd features would
  otherwise swamp word embeddings ~50x smaller).
* Blending: `blend="convex"` (default), R' = (1 - α)·R + α·RankFormer(R), or "residual",
  R' = R + α·RankFormer(R); α learned (`learn_alpha`) from `alpha_init` 0.1.
* Training: one stage, CE over the rank texts + `copl_weight`·COPL (0.1: the repo gives no weight,
  and 1.0 pulled all rank texts onto the near-identical image features of the tiny test backbone,
  held-out accuracy 0.16 vs 0.43 at 0.1 after 100 steps) (+ `batch_pair_weight`·the
  stage-1 form, off by default, whose "global" text is the un-blended prompt of the sample's label),
  on the L2-normalised features the logits use. The original's two-stage CLIP-ReID schedule (SupCon
  stage 1, then the image encoder) is not reproduced; the image side trains when the trainer runs
  the backbone with grad. Prediction: argmax; score: the expectation over ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_method
from .base import OrdinalHead
from .coop import PromptConfig, make_learner
from .ordinalclip import interpolation_weights
from .prompts import name_embeddings, text_tower

AXES, BLENDS, POSITIONS, RANK_PROMPTS = ("ranks", "all"), ("convex", "residual"), \
    ("sinusoidal", "learned", "none"), ("plain", "ordinal")


def clamped_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[N, K] Euclidean distances as the original `euclidean_dist`: sqrt(clamp(|x|²+|y|²-2xy, 1e-12))."""
    square = (x ** 2).sum(1, keepdim=True) + (y ** 2).sum(1, keepdim=True).T - 2 * x @ y.T
    return square.clamp(min=1e-12).sqrt()


def _normalised(weights: torch.Tensor) -> torch.Tensor:
    return (weights - weights.min()) / weights.max()  # the original divides by max, not max - min


def copl_loss(image: torch.Tensor, text: torch.Tensor, labels: torch.Tensor, rank_min: int = 0,
              float32_weights: bool = True) -> dict[str, torch.Tensor]:
    """`ordinal_entropy` (golden L1): image features [N, D], all rank texts [K, D], ranks `labels` [N].

    Text k stands for rank `rank_min + k`. Returns the loss and its two terms.
    """
    ranks = torch.arange(text.shape[0], device=labels.device) + rank_min
    if float32_weights:
        weights = _normalised(clamped_distance(labels.float()[:, None], ranks.float()[:, None]))
    else:
        weights = _normalised((labels[:, None] - ranks[None, :]).abs().to(image.dtype))
    distance = -(weights.to(image.dtype) * clamped_distance(image, text)).mean()
    tightness = ((image - text[labels - rank_min]) ** 2).sum(dim=1).mean()
    return {"loss": tightness + distance, "tightness": tightness, "distance": distance}


def copl_batch_loss(image: torch.Tensor, text: torch.Tensor, global_text: torch.Tensor, labels: torch.Tensor,
                    float32_weights: bool = True) -> dict[str, torch.Tensor]:
    """`ordinal_entropy_stage1` (golden L2): per-sample text [N, D] and "global" text [N, D].

    Over the pairs i < j with weights |y_i - y_j| normalised as above:
    L_d = -mean(w·|v_i - t_j|), L_center = -mean(w·|t_i - t_j|), L_t = mean |v_i - g_i|²,
    loss = L_d + 0.5·L_t + 0.5·L_center.
    """
    rows, cols = torch.triu_indices(len(labels), len(labels), offset=1, device=labels.device)
    y = labels.float() if float32_weights else labels.to(image.dtype)
    weights = _normalised(torch.cdist(y[:, None], y[:, None])[rows, cols]).to(image.dtype)
    l_d = -(weights * torch.cdist(image, text)[rows, cols]).mean()
    l_center = -(weights * torch.cdist(text, text)[rows, cols]).mean()
    l_t = ((image - global_text) ** 2).sum(dim=1).mean()
    return {"loss": l_d + 0.5 * l_t + 0.5 * l_center, "L_d": l_d, "L_t": l_t, "L_center": l_center}


class RankFormerBlock(nn.Module):
    """Pre-norm self-attention (+ MLP) block with a hookable softmax."""

    def __init__(self, dim: int, heads: int, ffn: bool, mlp_ratio: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"RankFormer heads ({heads}) must divide the word-embedding width ({dim}).")
        self.heads = heads
        self.norm1, self.qkv, self.proj = nn.LayerNorm(dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.softmax = nn.Softmax(dim=-1)
        self.norm2 = nn.LayerNorm(dim) if ffn else None
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(),
                                 nn.Linear(int(dim * mlp_ratio), dim)) if ffn else None
        # Zero-initialised output layers: each block starts as the identity, so an untrained RankFormer
        # returns the rank prompts unchanged (LN'd features are O(1), ~50x the word-embedding scale).
        for layer in (self.proj, self.mlp[-1] if ffn else None):
            if layer is not None:
                nn.init.zeros_(layer.weight), nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, S, D], key_mask [B, S] (True = valid) -> (x, attention [B, H, S, S])."""
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)  # [B, H, S, S]
        attn = self.softmax(scores.masked_fill(~key_mask[:, None, None, :], float("-inf")))
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, s, d))
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x, attn


class RankFormer(nn.Module):
    """Token-level attention over rank prompts, blended back into them (see the module docstring)."""

    def __init__(self, dim: int, num_ranks: int, depth: int = 1, heads: int = 8, axis: str = "ranks",
                 ffn: bool = True, mlp_ratio: float = 4.0, blend: str = "convex", alpha_init: float = 0.1,
                 learn_alpha: bool = True, rank_position: str = "sinusoidal", position_scale: float = 0.02):
        super().__init__()
        for value, options, what in ((axis, AXES, "attention_axis"), (blend, BLENDS, "blend"),
                                     (rank_position, POSITIONS, "rank_position")):
            if value not in options:
                raise ValueError(f"{what} must be one of {options}, got {value!r}.")
        self.axis, self.blend = axis, blend
        self.blocks = nn.ModuleList(RankFormerBlock(dim, heads, ffn, mlp_ratio) for _ in range(depth))
        alpha = torch.tensor(float(alpha_init))
        self.alpha = nn.Parameter(alpha) if learn_alpha else None
        if not learn_alpha:
            self.register_buffer("alpha_fixed", alpha)
        position = torch.zeros(num_ranks, dim)
        if rank_position == "sinusoidal":
            index = torch.arange(num_ranks, dtype=torch.float32)[:, None]
            freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
            position[:, 0::2], position[:, 1::2] = torch.sin(index * freq), torch.cos(index * freq)
            position = position * position_scale
        if rank_position == "learned":
            self.position = nn.Parameter(torch.randn(num_ranks, dim) * position_scale)
        else:
            self.register_buffer("position", position, persistent=False)
        self.last_attention: list[torch.Tensor] = []

    def forward(self, ranks: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Rank token embeddings [R, T, D] and token counts [R] -> blended embeddings [R, T, D]."""
        r, t, d = ranks.shape
        valid = torch.arange(t, device=ranks.device)[None, :] < lengths[:, None]  # [R, T]
        x = ranks + self.position.to(ranks.dtype)[:, None, :]
        if self.axis == "ranks":
            x, mask = x.transpose(0, 1), valid.T  # [T, R, D]: per token position, ranks attend
        else:
            x, mask = x.reshape(1, r * t, d), valid.reshape(1, r * t)
        self.last_attention = []
        for block in self.blocks:
            x, attn = block(x, mask)
            self.last_attention.append(attn.detach())
        x = (x.transpose(0, 1) if self.axis == "ranks" else x.reshape(r, t, d)) - self.position.to(ranks.dtype)[:, None]
        alpha = self.alpha if self.alpha is not None else self.alpha_fixed
        return (1 - alpha) * ranks + alpha * x if self.blend == "convex" else ranks + alpha * x


@dataclass
class L2RCLIPConfig(PromptConfig):
    rank_prompts: str = "plain"  # "plain": per-rank tokens from the names; "ordinal": OrdinalCLIP interpolation
    num_base_ranks: int = 3  # "ordinal" only
    interpolation: str = "linear"  # "ordinal" only
    depth: int = 1
    heads: int = 8
    attention_axis: str = "ranks"  # "ranks" (per token position, across ranks) or "all" (R·T tokens)
    ffn: bool = True
    mlp_ratio: float = 4.0
    blend: str = "convex"  # "convex": (1-α)R + αF(R); "residual": R + αF(R)
    alpha_init: float = 0.1
    learn_alpha: bool = True
    rank_position: str = "sinusoidal"  # rank-index embedding inside RankFormer: "sinusoidal", "learned", "none"
    ce_weight: float = 1.0
    copl_weight: float = 0.1  # golden L1 form over all rank texts (weight not in the repo; see docstring)
    batch_pair_weight: float = 0.0  # golden L2 form over batch pairs
    float32_weights: bool = True  # build COPL label weights as the original (float32, clamped sqrt)


@register_method("l2rclip")
class L2RCLIP(OrdinalHead):
    """Rank prompts -> RankFormer blending -> CLIP text tower; CE + COPL."""

    Config = L2RCLIPConfig

    def __init__(self, backbone, config: L2RCLIPConfig):
        super().__init__(backbone, config)
        if config.rank_prompts not in RANK_PROMPTS:
            raise ValueError(f"rank_prompts must be one of {RANK_PROMPTS}, got {config.rank_prompts!r}.")
        num = self.num_classes
        embeds, lengths = name_embeddings(backbone, list(self.classes))
        if config.rank_prompts == "ordinal":
            if not 1 <= config.num_base_ranks <= num:
                raise ValueError(f"num_base_ranks must be between 1 and {num}, got {config.num_base_ranks}.")
            self.register_buffer("interpolation", interpolation_weights(config.num_base_ranks, num,
                                                                        config.interpolation), persistent=False)
            picks = torch.linspace(0, num - 1, config.num_base_ranks).round().long()
            embeds, lengths = embeds[picks].clone(), [max(lengths)] * num
        self.rank_embeds = nn.Parameter(embeds)  # plain: [R, T, D]; ordinal: [B, T, D] base ranks
        self.register_buffer("lengths", torch.tensor(lengths, device=backbone.device), persistent=False)
        table = text_tower(backbone)["embedding"]
        self.rankformer = RankFormer(table.embedding_dim, num, config.depth, config.heads, config.attention_axis,
                                     config.ffn, config.mlp_ratio, config.blend, config.alpha_init,
                                     config.learn_alpha, config.rank_position,
                                     position_scale=float(table.weight.std())).to(backbone.device)
        self.prompt = make_learner(backbone, config, lengths)

    def base_rank_embeds(self) -> torch.Tensor:
        """[R, T, D] rank tokens before RankFormer."""
        if self.config.rank_prompts == "ordinal":
            return torch.einsum("rb,btd->rtd", self.interpolation.to(self.rank_embeds.dtype), self.rank_embeds)
        return self.rank_embeds

    def class_logits(self, images, classes, instruction: str = ""):
        base = self.base_rank_embeds()
        text = F.normalize(self.prompt.encode(self.rankformer(base, self.lengths)), dim=-1)
        image = self.image_embedding(images)
        return self.scale() * image @ text.to(image.dtype).T, {"text_features": text, "image_features": image}

    def class_losses(self, out, labels, batch):
        cfg, image, text = self.config, out.extras["image_features"], out.extras["text_features"]
        terms = {"ce": (cfg.ce_weight, F.cross_entropy(out.extras["logits"], labels))}
        if cfg.copl_weight:
            terms["copl"] = (cfg.copl_weight, copl_loss(image, text, labels, 0, cfg.float32_weights)["loss"])
        if cfg.batch_pair_weight and labels.unique().numel() > 1:  # else all weights are 0/0
            global_text = F.normalize(self.prompt.encode(self.base_rank_embeds()), dim=-1)
            terms["copl_batch"] = (cfg.batch_pair_weight,
                                   copl_batch_loss(image, text[labels], global_text[labels], labels,
                                                   cfg.float32_weights)["loss"])
        return terms

    def attention(self, images=None, text: str = "", classes=None, pairs=None) -> dict:
        """RankFormer attention per block: [T, H, R, R] ("ranks") or [1, H, R·T, R·T] ("all")."""
        with torch.no_grad():
            self.rankformer(self.base_rank_embeds(), self.lengths)
        return {"rankformer": list(self.rankformer.last_attention), "classes": list(self.classes)}
