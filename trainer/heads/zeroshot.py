"""Zero-shot CLIP over class prompts: the baseline row of every ordinal-CLIP paper.

Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision"
(ICML'21), github.com/openai/CLIP; as the ordinal baseline in OrdinalCLIP (github.com/xk-huang/
OrdinalCLIP, zero checkpoints -> zero-shot), NumCLIP and RAC's results figure.

Each class name is put in a text template ("a photo of {}."), encoded by the frozen text tower, and
the image is classified by `exp(logit_scale) * cos(image, text)`; the score is the expected rank
Σ p_k·k, the prediction the argmax (or the rounded expectation).

Differs from the original:
* A template in the batch instruction wins: `RankBatch.text` containing "{}" is used as the template.
* Optional calibration (`learn_calibration`, on by default) so the method is trainable like the others:
  a learned temperature and, when classes are given at construction, a per-class bias. Both start at
  the identity, so the untrained head *is* zero-shot CLIP. Off: the head has no parameters.
* Text features are cached per template and class list (the text tower is frozen).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_method
from .base import OrdinalConfig, OrdinalHead
from .prompts import check_prompt_texts


@dataclass
class ZeroShotConfig(OrdinalConfig):
    template: str = "a photo of {}."  # "{}" is replaced by each class name
    learn_calibration: bool = True  # learned temperature (+ per-class bias with fixed classes); identity at init


@register_method("zeroshot")
class ZeroShotCLIP(OrdinalHead):
    """Zero-shot CLIP: class prompts through the frozen text tower, cosine logits."""

    Config = ZeroShotConfig
    fixed_classes = False  # any class list works; a per-class bias exists only for the configured classes

    def __init__(self, backbone, config: ZeroShotConfig):
        super().__init__(backbone, config)
        if "{}" not in config.template:
            raise ValueError(f"The zero-shot template needs a '{{}}' for the class name, got {config.template!r}.")
        self.log_temperature = nn.Parameter(torch.zeros(())) if config.learn_calibration else None
        self.class_bias = (nn.Parameter(torch.zeros(len(self.classes)))
                           if config.learn_calibration and self.classes else None)
        self._text_cache: dict = {}

    def prompts(self, classes: tuple[str, ...], instruction: str = "") -> list[str]:
        template = instruction if "{}" in (instruction or "") else self.config.template
        return [template.replace("{}", name) for name in classes]

    def text_features(self, texts: list[str]) -> torch.Tensor:
        """[C, E] normalised text features, cached (the text tower is frozen)."""
        key = (tuple(texts), str(self.backbone.device))
        if key not in self._text_cache:
            check_prompt_texts(self.backbone, texts)
            with torch.no_grad():
                pooled = self.backbone.encode_text(texts).pooled
            self._text_cache[key] = F.normalize(pooled, dim=-1)
        return self._text_cache[key]

    def class_logits(self, images, classes, instruction: str = ""):
        text = self.text_features(self.prompts(classes, instruction))
        image = self.image_embedding(images)
        logits = self.scale() * image @ text.to(image.dtype).T  # [N, C]
        if self.log_temperature is not None:
            logits = logits * self.log_temperature.exp()
        if self.class_bias is not None and classes == self.classes:
            logits = logits + self.class_bias
        return logits, {"text_features": text}
