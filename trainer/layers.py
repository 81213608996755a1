"""Building blocks of the ranking-aware adapter (RankingAwareCLIP, ICLR 2025).

Each block keeps the original's submodule names and registration order
(github.com/uynaes/RankingAwareCLIP @ 05fc5c5, `libs/open_clip/src/open_clip/`), so released
checkpoints load with `strict=True`:

* `ResidualAttentionBlock`: open_clip's pre-LN block; with `cross_attention=True` it gains the
  original's `ln_1_kv`, applied to keys/values (`transformer.py`).
* `CrossModalFusion`: `CrossModalQKVFusion` (`coca_model_adapter.py`): per layer, self-attention over
  image tokens, then cross-attention image -> text; `ln_final`; `@ projection`.
* `RankAwareAttention`: `MultiHeadRankawareAttentionV2`: learned queries attend with ONE softmax over
  the tokens of both images of a pair; the output is (attention on i)·V_i - (attention on j)·V_j.
  Here it is computed for an explicit list of pairs in O(k) memory, from per-image partial softmax
  statistics; `rank_attention_dense` is the original all-pairs formulation, kept as the reference.
* `PairHead` (`PairwiseDiffBlockV2`) and `ScoreHead` (`MLPLayer`).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MLP(nn.Sequential):
    """open_clip's transformer MLP: names c_fc / gelu / c_proj."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(hidden, width)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN attention + MLP block; cross-attention normalises keys/values with `ln_1_kv`."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, cross_attention: bool = False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        if cross_attention:  # registered here so the parameter order matches the original
            self.ln_1_kv = nn.LayerNorm(width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = MLP(width, int(width * mlp_ratio))

    def forward(self, x: torch.Tensor, kv: torch.Tensor | None = None, key_padding_mask: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = self.ln_1(x)
        kv = q if kv is None else self.ln_1_kv(kv)
        out, weights = self.attn(q, kv, kv, key_padding_mask=key_padding_mask, need_weights=need_weights)
        x = x + out
        x = x + self.mlp(self.ln_2(x))
        return x, weights  # weights: [N, Lq, Lk], averaged over heads (the original's default)


class CrossModalFusion(nn.Module):
    """Text-conditioned visual tokens: image tokens query the instruction's tokens, layer by layer."""

    def __init__(self, width: int, layers: int = 2, heads: int = 8, mlp_ratio: float = 4.0,
                 init_projection: bool = True):
        super().__init__()
        # The original allocates this with torch.empty and never initialises it; `init_projection`
        # gives the intended normal(std = width^-0.5). Checkpoints overwrite it either way.
        self.projection = nn.Parameter(torch.empty(width, width))
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_ratio) for _ in range(layers))
        self.cross_attn = nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_ratio, cross_attention=True)
                                        for _ in range(layers))
        self.ln_final = nn.LayerNorm(width)
        if init_projection:
            nn.init.normal_(self.projection, std=width ** -0.5)
        else:
            nn.init.zeros_(self.projection)  # deterministic stand-in for the original's garbage memory

    def forward(self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_padding: torch.Tensor | None = None,
                return_attention: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """[N, P, D] image tokens, [N, T, D] text tokens -> [N, P, D], per-layer attention [N, P, T]."""
        x, maps = image_tokens, []
        for block, cross in zip(self.resblocks, self.cross_attn):
            x, _ = block(x)
            x, weights = cross(x, text_tokens, key_padding_mask=text_padding, need_weights=return_attention)
            if return_attention:
                maps.append(weights)
        return self.ln_final(x) @ self.projection, maps


class RankAwareAttention(nn.Module):
    """Relational ranking-aware attention of a pair of images (learned queries, one joint softmax)."""

    def __init__(self, d_model: int, num_heads: int = 8):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.ln_q = nn.LayerNorm(d_model)
        self.ln_kv = nn.LayerNorm(d_model)
        self.q_proj = nn.Linear(d_model, d_model)
        self.kv_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def project(self, queries: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries [Q, D] -> [H, Q, dh]; tokens [N, P, D] -> keys = values [N, H, P, dh]."""
        h = self.num_heads
        q = self.ln_q(self.q_proj(queries))
        kv = self.ln_kv(self.kv_proj(tokens))  # one projection and LayerNorm: K == V
        q = q.reshape(q.shape[0], h, -1).transpose(0, 1)  # [H, Q, dh]
        kv = kv.reshape(kv.shape[0], kv.shape[1], h, -1).transpose(1, 2)  # [N, H, P, dh]
        return q, kv

    def image_logits(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """Per-image attention logits [N, H, Q, P]: O(N), shared by every pair the image is in."""
        return torch.einsum("hqd,nhpd->nhqp", q, kv) / math.sqrt(q.shape[-1])

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor, pairs: torch.Tensor,
                return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pair outputs [k, Q, D] for pairs [k, 2] of indices into tokens [N, P, D].

        Uses per-image softmax statistics (max, normaliser, weighted values) and merges the two
        images of each pair, so memory is O(N·P + k) rather than O(k·P); equal to the dense form
        to float rounding. The attention itself ([k, H, Q, 2P]) is formed only when asked for.
        """
        q, kv = self.project(queries, tokens)
        logits = self.image_logits(q, kv)  # [N, H, Q, P]
        peak = logits.amax(dim=-1, keepdim=True)  # [N, H, Q, 1]
        weights = torch.exp(logits - peak)
        norm = weights.sum(-1)  # [N, H, Q]
        pooled = torch.einsum("nhqp,nhpd->nhqd", weights, kv)  # [N, H, Q, dh], unnormalised
        i, j = pairs[:, 0], pairs[:, 1]
        top = torch.maximum(peak[i], peak[j])[..., 0]  # [k, H, Q]
        scale_i, scale_j = torch.exp(peak[i][..., 0] - top), torch.exp(peak[j][..., 0] - top)
        denom = norm[i] * scale_i + norm[j] * scale_j
        diff = (pooled[i] * scale_i[..., None] - pooled[j] * scale_j[..., None]) / denom[..., None]  # [k,H,Q,dh]
        out = self.out_proj(diff.permute(0, 2, 1, 3).flatten(2))  # [k, Q, D]
        attention = None
        if return_attention:
            attention = torch.softmax(torch.cat([logits[i], logits[j]], dim=-1), dim=-1)  # [k, H, Q, 2P]
        return out, attention


def rank_attention_dense(attn: RankAwareAttention, queries: torch.Tensor, tokens: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The original's all-pairs formulation (pair b = i*N + j), materialising [N², H, 2P, dh].

    Reference for tests and the scaling benchmark; the adapter never calls it.
    """
    n = tokens.shape[0]
    q, kv = attn.project(queries, tokens)
    kv_i = kv.repeat_interleave(n, dim=0)  # image i of pair i*N+j
    kv_j = kv.tile(n, 1, 1, 1)  # image j
    keys = torch.cat([kv_i, kv_j], dim=2)  # [N², H, 2P, dh]
    attention = torch.softmax(q[None] @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)  # [N²,H,Q,2P]
    p = kv.shape[2]
    values = attention[..., :p] @ kv_i - attention[..., p:] @ kv_j
    return attn.out_proj(values.permute(0, 2, 1, 3).flatten(2)), attention


class LinearHead(nn.Module):
    """[LN ->] [Linear -> LN -> ReLU] x blocks -> Linear(D, 1), xavier-normal, as the original heads."""

    def __init__(self, d_model: int, blocks: int, pre_norm: bool):
        super().__init__()
        layers: list[nn.Module] = [nn.LayerNorm(d_model)] if pre_norm else []
        for _ in range(blocks):
            layers += [nn.Linear(d_model, d_model), nn.LayerNorm(d_model), nn.ReLU()]
        self.pre_linear_block = nn.Sequential(*layers)
        self.output_head = nn.Linear(d_model, 1)
        _xavier(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_head(self.pre_linear_block(x))


class PairHead(LinearHead):
    """`PairwiseDiffBlockV2`: LN -> [Linear -> LN -> ReLU] x3 -> Linear(D, 1)."""

    def __init__(self, d_model: int):
        super().__init__(d_model, blocks=3, pre_norm=True)


class ScoreHead(LinearHead):
    """`MLPLayer`: [Linear -> LN -> ReLU] x2 -> Linear(D, 1)."""

    def __init__(self, d_model: int):
        super().__init__(d_model, blocks=2, pre_norm=False)


def _xavier(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)


def all_pairs(n: int, device=None) -> torch.Tensor:
    """Every ordered pair (i, j), self-pairs included, in the original's row-major order i*N + j."""
    idx = torch.arange(n, device=device)
    return torch.stack([idx.repeat_interleave(n), idx.repeat(n)], dim=1)


def adjacent_pairs(order: torch.Tensor) -> torch.Tensor:
    """The N-1 neighbouring pairs of a ranking (what a ranked list shows a person)."""
    return torch.stack([order[:-1], order[1:]], dim=1)
