"""The ranking-aware adapter of RankingAwareCLIP (RAC).

Paper: Yu, Lin, Yang, Tsai, "Ranking-aware adapter for text-driven image ordering with CLIP",
ICLR 2025 (arXiv 2412.06760). Original code: github.com/uynaes/RankingAwareCLIP @ 05fc5c5,
`RankAdapterV2` in `libs/open_clip/src/open_clip/clip_model_adapter.py`.

Pipeline on frozen CLIP tokens: learnable text tokens are prepended to the instruction's tokens;
image tokens cross-attend to them (2 fusion layers) and pass a post-fusion encoder; a regression
head sums (or averages) the tokens into one score per image; 16 relational queries attend jointly
over a pair's tokens and a pair head gives the logit that image i ranks above image j.

Two modes (`RACConfig.mode`):

* `faithful`: the original's names, shapes and behaviour, so released checkpoints load with
  `strict=True` (after `convert_rac_state_dict`) and goldens R1-R3, R5 match to 1e-9:
  32 scalar learnable text tokens broadcast over channels (the key/value LayerNorm maps them to its
  bias, so they get no gradient), no text padding mask, sum pooling, rank loss over all N² pairs
  including the diagonal.
* `fixed` (default for new training), one decision per quirk of METHODS §2.10:
  1. learnable text tokens are vectors [K, D];
  2. the fusion `projection` is initialised normal(std D^-0.5) (the original's is `torch.empty`;
     we use that init in faithful mode too, since uninitialised memory is no behaviour to keep);
  3. text padding positions are masked out of the cross-attention keys;
  4. the score head averages over tokens, so the score scale does not depend on P;
  5. the rank loss skips self-pairs and gives ties the target 0.5 instead of 0;
  6. text tokens of another width than the image tokens get a linear `text_proj` (faithful
     requires equal widths, as the original configs have);
  7. the backbone stays wholly frozen (the original's `--lock-text` left the token embedding,
     positional embedding and `ln_final` trainable) and the ConvNeXt 1x1 token conv is seeded
     (see `trainer/backbone.py`); dropout 0.1 stays in training, and scoring always runs in eval mode.

Scores are per image (no cross-image mixing) and computed in chunks; pair logits are computed only
for the pairs asked for (`pairs="all"` reproduces the original's N² output).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from .backbone import Backbone, ImageFeatures
from .layers import CrossModalFusion, PairHead, RankAwareAttention, ScoreHead, all_pairs
from .losses import nonzero_bce_loss, order_targets, pair_bce_loss, rac_adapter_loss, ranknet_loss, \
    regression_loss, RAC_LOSS_WEIGHTS
from .method import RankBatch, RankingMethod, RankOutput
from .registry import register_method

MODES = ("faithful", "fixed")


@dataclass
class RACConfig:
    mode: str = "fixed"  # "faithful" (original behaviour) or "fixed" (quirks resolved)
    d_model: int = 0  # image-token width; 0 = the backbone's token width
    text_dim: int = 0  # text-token width; 0 = the backbone's (must equal d_model in faithful mode)
    layers: int = 2  # cross-modal fusion layers
    fusion_heads: int = 8  # hard-coded 8 in the original
    mlp_ratio: float = 4.0
    post_fuse_layers: int = 2
    post_fuse_heads: int = 8
    dropout: float = 0.1  # post-fusion encoder dropout (original: 0.1)
    num_learnable_text_tokens: int = 32
    n_reg_tokens: int = 16  # relational queries of the ranking-aware attention
    rank_heads: int = 8
    loss_components: tuple[str, ...] = ("regression", "rank")  # with numeric targets; "bce" optional
    loss_weights: dict[str, float] = field(default_factory=dict)  # overrides of RAC_LOSS_WEIGHTS
    pairwise_weight: float = 1.0  # pairwise labels: weight of pair-head BCE and of RankNet on scores
    score_chunk: int = 256  # images per chunk when scoring (bounds peak memory)
    text_cache_size: int = 64  # instructions whose frozen text tokens are kept

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"RAC mode must be one of {MODES}, got {self.mode!r}")
        self.loss_components = tuple(self.loss_components)
        unknown = set(self.loss_components) - set(RAC_LOSS_WEIGHTS)
        if unknown:
            raise ValueError(f"Unknown loss components {sorted(unknown)}; known: {sorted(RAC_LOSS_WEIGHTS)}")


@register_method("rac")
class RankingAwareAdapter(RankingMethod):
    """RAC adapter: scores per image and logits for explicit pairs, from frozen CLIP tokens."""

    Config = RACConfig

    def __init__(self, config: RACConfig, backbone: Backbone | None = None):
        super().__init__(backbone)
        self.config = config
        d = config.d_model or (backbone.token_dim if backbone is not None else 0)
        text_dim = config.text_dim or (backbone.text_dim if backbone is not None else d)
        if not d:
            raise ValueError("RACConfig.d_model is 0 and no backbone was given to take it from.")
        if config.mode == "faithful" and text_dim != d:
            raise ValueError(f"Faithful RAC needs text width == image-token width (got {text_dim} and {d}); "
                             f"use mode='fixed', which projects the text tokens.")
        config.d_model, config.text_dim = d, text_dim
        self.d_model, self.faithful = d, config.mode == "faithful"
        k = config.num_learnable_text_tokens
        # Direct parameters first: their order is the original's (learnable_text_tokens, reg_tokens).
        shape = (1, k) if self.faithful else (k, d)
        self.learnable_text_tokens = nn.Parameter(torch.randn(shape) * shape[-1] ** -0.5)
        self.reg_tokens = nn.Parameter(torch.randn(config.n_reg_tokens, d) * d ** -0.5)
        self.crossmodal_block = CrossModalFusion(d, config.layers, config.fusion_heads, config.mlp_ratio)
        layer = nn.TransformerEncoderLayer(d, config.post_fuse_heads, dim_feedforward=d, dropout=config.dropout,
                                           batch_first=True)
        self.post_fuse_block = nn.TransformerEncoder(layer, config.post_fuse_layers, enable_nested_tensor=False)
        self.reg_token_pooler = RankAwareAttention(d, config.rank_heads)
        self.pair_regressor = PairHead(d)
        self.reg_ln = nn.LayerNorm(d)
        self.regressor = ScoreHead(d)
        self.text_proj = nn.Linear(text_dim, d) if text_dim != d else None
        self._text_cache: OrderedDict = OrderedDict()

    @classmethod
    def from_config(cls, backbone: Backbone | None = None, **overrides) -> "RankingAwareAdapter":
        known = {f.name for f in fields(RACConfig)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"Unknown RAC options {sorted(unknown)}; known: {sorted(known)}")
        return cls(RACConfig(**overrides), backbone)

    # ------------------------------------------------------------------------------ core maths
    def fuse(self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor | None = None,
             return_attention: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Text-conditioned image tokens [N, P, D] from image tokens [N, P, D] and text [1|N, T, Dt]."""
        n, k = image_tokens.shape[0], self.config.num_learnable_text_tokens
        text = text_tokens.expand(n, -1, -1) if text_tokens.shape[0] == 1 else text_tokens
        if self.text_proj is not None:
            text = self.text_proj(text)
        if self.faithful:  # 32 scalars, each broadcast across all channels (the original's layout)
            learned = self.learnable_text_tokens.view(1, k, 1).expand(n, k, self.d_model)
        else:
            learned = self.learnable_text_tokens[None].expand(n, -1, -1)
        text = torch.cat([learned.to(text.dtype), text], dim=1)  # [N, K + T, D]
        padding = None
        if not self.faithful and text_mask is not None:
            mask = text_mask.expand(n, -1) if text_mask.shape[0] == 1 else text_mask
            padding = torch.cat([torch.zeros(n, k, dtype=torch.bool, device=mask.device), ~mask.bool()], dim=1)
        x, maps = self.crossmodal_block(image_tokens, text, padding, return_attention)
        return self.post_fuse_block(x), maps

    def scores_from_fused(self, x: torch.Tensor) -> torch.Tensor:
        h = self.reg_ln(x)
        pooled = h.sum(dim=1) if self.faithful else h.mean(dim=1)  # original: sum over P tokens
        return self.regressor(pooled)[:, 0]

    def pair_logits_from_fused(self, x: torch.Tensor, pairs: torch.Tensor | str,
                               return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        pairs = all_pairs(x.shape[0], x.device) if isinstance(pairs, str) else pairs
        out, attention = self.reg_token_pooler(self.reg_tokens, x, pairs.to(x.device), return_attention)
        return self.pair_regressor(out.sum(dim=1))[:, 0], attention  # sum over the relational queries

    def forward_tokens(self, image_tokens: torch.Tensor, text_tokens: torch.Tensor,
                       text_mask: torch.Tensor | None = None, pairs: torch.Tensor | str | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores [N] and pair logits [k] (pairs="all": the original's N² in order i*N + j)."""
        x, _ = self.fuse(image_tokens, text_tokens, text_mask)
        paired = None if pairs is None else self.pair_logits_from_fused(x, pairs)[0]
        return self.scores_from_fused(x), paired

    # --------------------------------------------------------------------- method interface
    def text_tokens(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The instruction's frozen text tokens [1, T, Dt] and mask [1, T], cached per instruction."""
        dtype, device = self.reg_tokens.dtype, self.reg_tokens.device
        key = (text, dtype, str(device))
        if key in self._text_cache:
            self._text_cache.move_to_end(key)
            return self._text_cache[key]
        if self.backbone is None:
            raise RuntimeError("This adapter has no backbone to encode the instruction with.")
        with torch.no_grad():
            features = self.backbone.encode_text([text])
        value = (features.tokens.to(device=device, dtype=dtype), features.mask.to(device))
        self._text_cache[key] = value
        while len(self._text_cache) > self.config.text_cache_size:
            self._text_cache.popitem(last=False)
        return value

    def _tokens(self, images: ImageFeatures) -> torch.Tensor:
        return images.tokens.to(device=self.reg_tokens.device, dtype=self.reg_tokens.dtype)

    def forward(self, batch: RankBatch) -> RankOutput:
        text, mask = self.text_tokens(batch.text)
        x, _ = self.fuse(self._tokens(batch.images), text, mask)
        scores = self.scores_from_fused(x)
        paired = None if batch.pairs is None else self.pair_logits_from_fused(x, batch.pairs)[0]
        return RankOutput(scores=scores, pair_logits=paired, extras={"fused": x})

    @torch.no_grad()
    def score(self, images: ImageFeatures, text: str = "", classes: list[str] | None = None) -> torch.Tensor:
        """[N] scores in eval mode, in chunks: each image's score is independent of the others.

        Inference only (no autograd graph); training goes through `loss()`.
        """
        text_tokens, mask = self.text_tokens(text)
        tokens = self._tokens(images)
        was_training = self.training
        self.eval()
        try:
            chunks = [self.scores_from_fused(self.fuse(part, text_tokens, mask)[0])
                      for part in tokens.split(self.config.score_chunk)]
        finally:
            self.train(was_training)
        return torch.cat(chunks) if chunks else tokens.new_zeros(0)

    @torch.no_grad()
    def pair_logits(self, images: ImageFeatures, text: str, pairs: torch.Tensor | str,
                    classes: list[str] | None = None) -> torch.Tensor:
        """Pair-head logits [k] for the pairs asked for, computed in O(k) beyond the per-image work."""
        text_tokens, mask = self.text_tokens(text)
        was_training = self.training
        self.eval()
        try:
            x, _ = self.fuse(self._tokens(images), text_tokens, mask)
            return self.pair_logits_from_fused(x, pairs)[0]
        finally:
            self.train(was_training)

    @torch.no_grad()
    def attention(self, images: ImageFeatures, text: str = "", classes: list[str] | None = None,
                  pairs: torch.Tensor | None = None) -> dict:
        """Cross-modal maps per layer [N, P, K+T] and, for `pairs`, relational maps [k, H, Q, 2P].

        Keys 0..K-1 of the cross maps are the learnable tokens; key K is SOT, then the words.
        Outputs (scores, pair logits) are the same as without attention.
        """
        text_tokens, mask = self.text_tokens(text)
        was_training = self.training
        self.eval()
        try:
            x, cross = self.fuse(self._tokens(images), text_tokens, mask, return_attention=True)
            result = {"cross": cross, "text_offset": self.config.num_learnable_text_tokens,
                      "text_mask": mask[0], "scores": self.scores_from_fused(x)}
            if pairs is not None:
                result["pair_logits"], result["pair"] = self.pair_logits_from_fused(x, pairs, return_attention=True)
        finally:
            self.train(was_training)
        return result

    def loss(self, batch: RankBatch) -> dict[str, torch.Tensor]:
        """Numeric targets: RAC's regression + rank terms; pairwise labels: pair BCE + RankNet."""
        text, mask = self.text_tokens(batch.text)
        x, _ = self.fuse(self._tokens(batch.images), text, mask)
        scores = self.scores_from_fused(x)
        terms: dict[str, torch.Tensor] = {}
        targets = batch.targets if batch.targets is not None else batch.labels
        if targets is not None:
            targets = targets.to(device=scores.device, dtype=scores.dtype)
            terms.update(self._target_terms(x, scores, targets))
        if batch.pairs is not None:
            pairs = batch.pairs.to(scores.device)
            wanted = batch.pair_targets.to(device=scores.device, dtype=scores.dtype)
            paired, _ = self.pair_logits_from_fused(x, pairs)
            terms["pair"] = self.config.pairwise_weight * pair_bce_loss(paired, wanted)
            terms["ranknet"] = self.config.pairwise_weight * ranknet_loss(scores, pairs, wanted)
        if not terms:
            raise ValueError("A training batch needs numeric targets, class labels or labelled pairs.")
        terms["loss"] = sum(v for k, v in terms.items() if k != "loss")
        return terms

    def _target_terms(self, x: torch.Tensor, scores: torch.Tensor, targets: torch.Tensor) -> dict:
        components, weights = self.config.loss_components, {**RAC_LOSS_WEIGHTS, **self.config.loss_weights}
        if self.faithful:
            paired = self.pair_logits_from_fused(x, "all")[0] if "rank" in components else None
            terms = rac_adapter_loss(scores[:, None], targets, None if paired is None else paired[:, None],
                                     components, weights)
            terms.pop("loss")
            return terms
        terms = {}
        if "regression" in components:
            terms["regression"] = weights["regression"] * regression_loss(scores, targets)
        if "rank" in components and len(targets) > 1:
            pairs = all_pairs(len(targets), scores.device)
            pairs = pairs[pairs[:, 0] != pairs[:, 1]]
            paired, _ = self.pair_logits_from_fused(x, pairs)
            terms["rank"] = weights["rank"] * pair_bce_loss(paired, order_targets(targets, pairs, ties=0.5))
        if "bce" in components:
            terms["bce"] = weights["bce"] * nonzero_bce_loss(scores, targets)
        return terms


def convert_rac_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a released RAC checkpoint into (adapter state dict, ConvNeXt token-conv weights).

    The adapter keys are found by their original names (e.g. `module.adapter.learnable_text_tokens`)
    and the prefix before them is stripped; `visual.trunk.head.fc.*` (the random, frozen 1x1 conv
    the original used for ConvNeXt tokens) is returned as `weight`/`bias` for `Backbone.token_proj`.
    """
    state = state.get("state_dict", state)
    anchors = [k for k in state if k.endswith("learnable_text_tokens")]
    if len(anchors) != 1:
        raise ValueError(f"Not a RAC checkpoint: expected one '*learnable_text_tokens' key, found {len(anchors)}.")
    prefix = anchors[0][: -len("learnable_text_tokens")]
    adapter = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    conv = {k.rsplit(".", 1)[-1]: v for k, v in state.items() if "visual.trunk.head.fc." in k}
    return adapter, conv
