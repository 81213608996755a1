"""CoOp: learned prompt context with the class names as rank tokens.

Paper: Zhou et al., "Learning to Prompt for Vision-Language Models" (IJCV'22), github.com/KaiyangZhou/
CoOp; in its ordinal form, OrdinalCLIP's `PlainPromptLearner` (github.com/xk-huang/OrdinalCLIP,
`ordinalclip/models/prompt_leaners/plain_prompt_learner.py`), which is what OrdinalCLIP, L2RCLIP,
NumCLIP and RAC report as "CoOp" (METHODS §1.5).

Sentence per class: `[SOT] ctx_1..ctx_M name-tokens "." [EOT]`, context initialised from a phrase
(its token embeddings) or drawn from N(0, 0.02); rank tokens initialised from the class names' token
embeddings (or from a rank-name file, one name per class). Trained with cross-entropy over the class
texts; logit scale frozen at the backbone's value.

Differs from the original:
* open_clip text tower of any CLIP-style model instead of OpenAI CLIP (`encode_prompts`).
* Rank tokens are learned by default (`learn_ranks`, as OrdinalCLIP's "coop" recipe tunes context and
  ranks); `learn_ranks=False` keeps them at the class-name embeddings, as Zhou et al.'s CoOp does.
* Per-rank token counts are each name's own length; unused padding slots are never put in a sentence.
* A rank-name file whose length is not the number of classes is a clear error, not a crash.
* Numeric targets and pairwise labels train it too (L1 on the expected rank; RankNet), see `base.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..registry import register_method
from .base import OrdinalConfig, OrdinalHead, rank_names
from .prompts import PromptLearner, name_embeddings


@dataclass
class PromptConfig(OrdinalConfig):
    context: str = "a photo of"  # phrase the context starts from; "" draws n_context vectors from N(0, 0.02)
    n_context: int = 8  # context length when `context` is empty
    suffix: str = "."  # fixed words after the rank tokens
    position: str = "end"  # rank tokens after the context ("end"), before it ("front"), or inside ("middle")
    rank_specific_context: bool = False  # one context per class (CoOp's class-specific context)
    learn_context: bool = True


@dataclass
class CoOpConfig(PromptConfig):
    learn_ranks: bool = True  # OrdinalCLIP's PlainPromptLearner tunes the rank tokens; False = Zhou et al.
    rank_names: tuple[str, ...] | str | None = None  # initialise the rank tokens from these (one per class)
    rank_names_file: str | None = None  # the same from a file, one name per line (read into rank_names)


def make_learner(backbone, config: PromptConfig, rank_lengths: list[int]) -> PromptLearner:
    return PromptLearner(backbone, rank_lengths, context=config.context, n_context=config.n_context,
                         suffix=config.suffix, position=config.position,
                         rank_specific_context=config.rank_specific_context, learn_context=config.learn_context)


@register_method("coop")
class CoOp(OrdinalHead):
    """Learned context + per-class rank tokens, CE over the class texts."""

    Config = CoOpConfig

    def __init__(self, backbone, config: CoOpConfig):
        super().__init__(backbone, config)
        names = rank_names(config, (self.num_classes,),
                           f"'{self.name}' with {self.num_classes} classes") or list(self.classes)
        embeds, lengths = name_embeddings(backbone, names)
        if config.learn_ranks:
            self.rank_embeds = nn.Parameter(embeds)  # [R, T_max, D]
        else:
            self.register_buffer("rank_embeds", embeds)
        self.prompt = make_learner(backbone, config, lengths)

    def text_features(self) -> torch.Tensor:
        return torch.nn.functional.normalize(self.prompt.encode(self.rank_embeds), dim=-1)  # [C, E]

    def class_logits(self, images, classes, instruction: str = ""):
        text = self.text_features()
        image = self.image_embedding(images)
        return self.scale() * image @ text.to(image.dtype).T, {"text_features": text}
