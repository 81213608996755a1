"""Prompted text encoder and the CoOp / OrdinalCLIP prompt sentence layout, for any open_clip CLIP.

The ordinal heads learn prompts in the *word-embedding space*: a sentence is
`[SOT] ctx_1..ctx_M rank_1..rank_T <fixed words> [EOT] [pad]...` where the context and rank tokens
are vectors, not words. `encode_prompts` runs open_clip's own text tower on such embeddings (token
embedding skipped; positional embedding, transformer, causal/pad mask, `ln_final`, pooling and
projection as open_clip does them), and finds the pooled position from *pseudo token ids* as
OrdinalCLIP does (`argmax` of the ids for CLIP, whose EOT id is the largest; the tower's own
`pool_type` otherwise). Learned slots get the id of the word "X", as CoOp's template does.
"""

from __future__ import annotations

from pathlib import Path

import torch
from open_clip.transformer import TextTransformer
from open_clip.tokenizer import SimpleTokenizer
from torch import nn

PLACEHOLDER = "X"  # CoOp's placeholder word for learned slots; only its id is used (never its embedding)
RANK_POSITIONS = ("end", "front", "middle")


def text_tower(backbone):
    """The parts of the open_clip text tower the prompted encoder needs, for CLIP and CustomTextCLIP."""
    model = backbone.model
    if hasattr(model, "token_embedding"):  # open_clip CLIP: the text tower is flattened into the model
        return dict(embedding=model.token_embedding, positional=model.positional_embedding,
                    transformer=model.transformer, ln_final=model.ln_final, projection=model.text_projection,
                    attn_mask=model.attn_mask, pool_type=getattr(model, "text_pool_type", "argmax"),
                    eos_id=getattr(model, "text_eos_id", None), module=None)
    text = getattr(model, "text", None)
    if isinstance(text, TextTransformer) and text.cls_emb is None:
        return dict(embedding=text.token_embedding, positional=text.positional_embedding,
                    transformer=text.transformer, ln_final=text.ln_final, projection=text.text_projection,
                    attn_mask=text.attn_mask, pool_type=text.pool_type, eos_id=getattr(text, "eos_id", None),
                    module=text)
    raise ValueError(f"Prompt learning needs an open_clip text transformer; '{backbone.config.name}' has "
                     f"{type(text).__name__ if text is not None else 'none'} (Hugging Face and CoCa text towers are "
                     "not supported). Use the 'zeroshot' method, or a CLIP-style backbone.")


def pooled_positions(tower: dict, ids: torch.Tensor) -> torch.Tensor:
    """[R] index of the token the tower pools, from the pseudo ids (OrdinalCLIP: ids.argmax)."""
    pool = tower["pool_type"]
    if pool == "argmax":
        return ids.argmax(dim=-1)
    if pool == "eos":
        return (ids == tower["eos_id"]).int().argmax(dim=-1)
    if pool == "last":
        return torch.full((ids.shape[0],), ids.shape[1] - 1, dtype=torch.long, device=ids.device)
    if pool == "first":
        return torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
    raise ValueError(f"Unsupported text pool type '{pool}'.")


def encode_prompts(backbone, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Sentence embeddings [R, L, D] plus pseudo ids [R, L] -> projected text features [R, E].

    Gradients flow into `embeds` (the learned prompt vectors); the tower itself is frozen by the
    backbone. `L` must equal the model's context length (the positional table's length).
    """
    tower = text_tower(backbone)
    positional = tower["positional"]
    if embeds.shape[1] != positional.shape[0]:
        raise ValueError(f"Prompt length {embeds.shape[1]} != context length {positional.shape[0]}.")
    cast = tower["transformer"].get_cast_dtype()
    x = embeds.to(cast) + positional.to(cast)
    attn_mask = tower["attn_mask"]
    text = tower["module"]
    if text is not None and getattr(text, "use_pad_mask", False):  # pad mask from the pseudo ids
        add = text._build_additive_mask(ids, ids.shape[1], x.dtype)
        attn_mask = add if attn_mask is None else attn_mask.unsqueeze(0) + add
    x = tower["ln_final"](tower["transformer"](x, attn_mask=attn_mask))  # [R, L, Dt]
    pooled = x[torch.arange(x.shape[0], device=x.device), pooled_positions(tower, ids)]
    proj = tower["projection"]
    if proj is None:
        return pooled
    return proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj


# --------------------------------------------------------------------------------- tokens
def _simple_tokenizer(backbone) -> SimpleTokenizer:
    tok = backbone.tokenizer
    if not isinstance(tok, SimpleTokenizer):
        raise ValueError(f"Prompt learning builds sentences from CLIP BPE ids and needs open_clip's "
                         f"SimpleTokenizer; '{backbone.config.name}' uses {type(tok).__name__}.")
    return tok


def word_ids(backbone, text: str) -> list[int]:
    """BPE ids of `text` without SOT/EOT (cleaned and lower-cased as open_clip's tokenizer does)."""
    return list(_simple_tokenizer(backbone).encode(text)) if text.strip() else []


def check_length(backbone, n_tokens: int, what: str) -> None:
    """Clear error instead of open_clip's silent truncation (which would drop the EOT slot)."""
    limit = backbone.context_length
    if n_tokens > limit:
        raise ValueError(f"{what} needs {n_tokens} tokens (with SOT and EOT), more than the context length "
                         f"{limit} of '{backbone.config.name}'. Shorten the context or the class names.")


def check_prompt_texts(backbone, texts: list[str]) -> None:
    """Check that plain-text prompts fit the context (SimpleTokenizer backbones only)."""
    if not isinstance(backbone.tokenizer, SimpleTokenizer):
        return
    for text in texts:
        check_length(backbone, len(word_ids(backbone, text)) + 2, f"The prompt '{text[:60]}'")


def name_embeddings(backbone, names: list[str], length: int | None = None) -> tuple[torch.Tensor, list[int]]:
    """Token embeddings of names, [R, T, D] padded with the embedding of id 0 (as OrdinalCLIP pads).

    Args:
        backbone: the backbone whose token embedding table is read.
        names: one name per rank.
        length: T; default the longest name. Longer names are truncated to it.

    Returns:
        The padded embeddings (detached copies, to initialise parameters) and each name's length.
    """
    ids = [word_ids(backbone, name) or word_ids(backbone, PLACEHOLDER) for name in names]
    length = length or max(len(i) for i in ids)
    table = text_tower(backbone)["embedding"]
    padded = torch.zeros(len(ids), length, dtype=torch.long, device=table.weight.device)
    for r, row in enumerate(ids):
        row = row[:length]
        padded[r, :len(row)] = torch.tensor(row, device=padded.device)
    with torch.no_grad():
        embeds = table(padded).detach().clone()
    return embeds, [min(len(i), length) for i in ids]


def read_rank_names(path: str | Path) -> list[str]:
    """One name per line (blank lines ignored), as OrdinalCLIP's `init_rank_path` files."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Rank-name file not found: '{path}'.")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ------------------------------------------------------------------------------- learner
class PromptLearner(nn.Module):
    """CoOp / OrdinalCLIP `PlainPromptLearner` sentence layout with a learned (or fixed) context.

    The rank token embeddings are an *input* of `forward`, so CoOp (per-rank embeddings),
    OrdinalCLIP (interpolated) and L2RCLIP (RankFormer-blended) share this layout.

    Args:
        backbone: supplies the token embedding table, tokenizer and context length.
        rank_lengths: number of rank tokens of each rank (R entries).
        context: phrase the context is initialised from ("" for random N(0, 0.02) init).
        n_context: number of context tokens when `context` is empty.
        suffix: fixed words after the rank tokens (OrdinalCLIP: ".").
        position: where the rank tokens go: "end" (after the context), "front" or "middle".
        rank_specific_context: one context per rank instead of a shared one.
        learn_context: train the context vectors (False: a frozen buffer, e.g. NumCLIP's age recipe).
    """

    def __init__(self, backbone, rank_lengths: list[int], context: str = "", n_context: int = 8,
                 suffix: str = ".", position: str = "end", rank_specific_context: bool = False,
                 learn_context: bool = True):
        super().__init__()
        if position not in RANK_POSITIONS:
            raise ValueError(f"position must be one of {RANK_POSITIONS}, got {position!r}.")
        object.__setattr__(self, "backbone", backbone)
        table = text_tower(backbone)["embedding"]
        ctx_ids = word_ids(backbone, context)
        n_ctx = len(ctx_ids) if ctx_ids else n_context
        num_ranks, t_max = len(rank_lengths), max(rank_lengths)
        if ctx_ids:
            with torch.no_grad():
                ctx = table(torch.tensor(ctx_ids, device=table.weight.device)).detach().clone()
        else:
            ctx = torch.randn(n_ctx, table.embedding_dim, device=table.weight.device) * 0.02
        if rank_specific_context:
            ctx = ctx.unsqueeze(0).repeat(num_ranks, 1, 1)
        if learn_context:
            self.context = nn.Parameter(ctx)
        else:
            self.register_buffer("context", ctx)
        self.n_context, self.num_ranks, self.max_rank_tokens = n_ctx, num_ranks, t_max
        self.rank_lengths = list(rank_lengths)

        tok = _simple_tokenizer(backbone)
        x_id, suffix_ids = word_ids(backbone, PLACEHOLDER)[0], word_ids(backbone, suffix)
        length = backbone.context_length
        check_length(backbone, 2 + n_ctx + t_max + len(suffix_ids),
                     f"A prompt of {n_ctx} context tokens, {t_max} rank tokens and suffix '{suffix}'")
        ids = torch.zeros(num_ranks, length, dtype=torch.long)
        # Source index of every slot in the table [fixed token embeddings | context | rank tokens].
        index = torch.arange(num_ranks * length).reshape(num_ranks, length)
        ctx_base, rank_base = num_ranks * length, num_ranks * length + ctx.numel() // ctx.shape[-1]
        half = n_ctx // 2
        for r, n_rank in enumerate(rank_lengths):
            ctx_src = [ctx_base + (r * n_ctx if rank_specific_context else 0) + m for m in range(n_ctx)]
            rank_src = [rank_base + r * t_max + t for t in range(n_rank)]
            ctx_slots, rank_slots = [("c", s) for s in ctx_src], [("r", s) for s in rank_src]
            body = {"end": ctx_slots + rank_slots, "front": rank_slots + ctx_slots,
                    "middle": ctx_slots[:half] + rank_slots + ctx_slots[half:]}[position]
            row = [tok.sot_token_id] + [x_id] * len(body) + suffix_ids + [tok.eot_token_id]
            ids[r, :len(row)] = torch.tensor(row)
            for offset, (_, src) in enumerate(body):
                index[r, 1 + offset] = src
        self.register_buffer("ids", ids.to(table.weight.device), persistent=False)  # [R, L] pseudo ids
        self.register_buffer("index", index.to(table.weight.device), persistent=False)  # [R, L]

    def forward(self, rank_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank token embeddings [R, T_max, D] -> (sentence embeddings [R, L, D], pseudo ids [R, L])."""
        if rank_embeds.shape[:2] != (self.num_ranks, self.max_rank_tokens):
            raise ValueError(f"Expected rank embeddings [{self.num_ranks}, {self.max_rank_tokens}, D], "
                             f"got {list(rank_embeds.shape)}.")
        fixed = text_tower(self.backbone)["embedding"](self.ids)  # [R, L, D] (frozen table)
        dim = fixed.shape[-1]
        table = torch.cat([fixed.reshape(-1, dim), self.context.reshape(-1, dim).to(fixed.dtype),
                           rank_embeds.reshape(-1, dim).to(fixed.dtype)])
        return table[self.index], self.ids

    def encode(self, rank_embeds: torch.Tensor) -> torch.Tensor:
        """Rank token embeddings -> projected text features [R, E]."""
        embeds, ids = self(rank_embeds)
        return encode_prompts(self.backbone, embeds, ids)
