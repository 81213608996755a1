"""What the page asks of the model: rank images, explain a ranking with attention maps.

Images are stored once (label store) and encoded once (feature cache), so re-ranking with a new
instruction or method reuses the cached tokens. The served RAC model comes from a model source
(the background worker) as an immutable snapshot `(method, version)`: ranking never waits for
training. Other methods (zero-shot and the ordinal heads) are built on first use.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from trainer.backbone import Backbone
from trainer.features import FeatureCache
from trainer.method import RankingMethod
from trainer.registry import create_method, get_method_class, list_methods

from .images import ImageBatch, ImageLimits, read_image
from .store import LabelStore


class ModelSource(Protocol):
    def snapshot(self) -> tuple[RankingMethod, int]:
        """The served adapter and its version; never blocks on training."""


class StaticModel:
    """A model source that serves one fixed adapter (no trainer attached)."""

    def __init__(self, method: RankingMethod, version: int = 0):
        self._value = (method, version)

    def snapshot(self) -> tuple[RankingMethod, int]:
        return self._value


@dataclass
class Ranking:
    ids: list[str]  # image ids, input order
    scores: list[float]  # input order
    order: list[int]  # input indices, best first
    method: str
    version: int

    def ranked_ids(self) -> list[str]:
        return [self.ids[i] for i in self.order]


class Engine:
    def __init__(self, backbone: Backbone, store: LabelStore, model: ModelSource, cache_dir: str | Path | None = None):
        self.backbone, self.store, self.model = backbone, store, model
        self.cache = FeatureCache(backbone, cache_dir=cache_dir)
        self._heads: dict[str, RankingMethod] = {}
        self._heads_lock = threading.Lock()
        self._pil: OrderedDict[str, Image.Image] = OrderedDict()
        self._pil_lock = threading.Lock()

    # ---------------------------------------------------------------------------- images
    def add_images(self, batch: ImageBatch) -> list[str]:
        """Store and encode uploads (each once); returns their ids in order."""
        for img in batch.images:
            self.store.add_image(img.data, img.name, img.format, *img.image.size)
            self._remember(img.id, img.image)
        keys, skipped = self.cache.add([img.data for img in batch.images])  # keyed by the bytes' sha256
        if skipped or keys != batch.ids:
            raise ValueError(f"could not encode {len(skipped)} image(s): {skipped[:1]}")
        return batch.ids

    def _remember(self, image_id: str, image: Image.Image) -> None:
        with self._pil_lock:
            self._pil[image_id] = image
            self._pil.move_to_end(image_id)
            while len(self._pil) > 512:
                self._pil.popitem(last=False)

    def image(self, image_id: str) -> Image.Image:
        """The normalised RGB image (from memory, else re-read from the store)."""
        with self._pil_lock:
            if image_id in self._pil:
                return self._pil[image_id]
        loaded = read_image(self.store.image_bytes(image_id), image_id, ImageLimits(max_bytes=1 << 40,
                                                                                  max_pixels=1 << 40, min_side=1))
        self._remember(image_id, loaded.image)
        return loaded.image

    # ---------------------------------------------------------------------------- methods
    def methods(self) -> list[str]:
        return list_methods()

    def method(self, name: str, classes: list[str] | None = None) -> tuple[RankingMethod, int]:
        """The served adapter, or an (untrained) head built for these class names on first use."""
        if name == "rac":
            return self.model.snapshot()
        cls = get_method_class(name)  # unknown names fail with the list of known ones
        key = (name, tuple(classes or ()))
        with self._heads_lock:
            if key not in self._heads:
                config = {"classes": list(classes)} if cls.needs_classes and classes else {}
                self._heads[key] = create_method(name, self.backbone, **config).eval()
                while len(self._heads) > 16:
                    self._heads.pop(next(iter(self._heads)))
            return self._heads[key], 0

    @staticmethod
    def needs_classes(name: str) -> bool:
        return bool(getattr(get_method_class(name), "needs_classes", False))

    # ---------------------------------------------------------------------------- ranking
    def rank(self, ids: list[str], instruction: str, method_name: str = "rac",
             classes: list[str] | None = None) -> Ranking:
        method, version = self.method(method_name, classes)
        if method.needs_classes:
            classes = method.check_classes(classes)
        features = self.cache.get(ids)
        with torch.no_grad():
            scores = method.score(features, instruction, classes).float().cpu().numpy()
        order = np.argsort(-scores, kind="stable").tolist()
        return Ranking(list(ids), [float(s) for s in scores], order, method_name, version)

    def word_maps(self, ids: list[str], instruction: str) -> tuple[list[str], np.ndarray]:
        """Per image, per instruction token: where it lands on the patch grid, [N, W, gh, gw].

        The last fusion layer's image->text attention, keys restricted to the instruction's tokens
        (SOT..EOT); the learnable tokens' share is left out.
        """
        method, _ = self.method("rac")
        with torch.no_grad():
            maps = method.attention(self.cache.get(ids), instruction)
        words = self.backbone.text_token_strings(instruction)
        start = maps["text_offset"]
        cross = maps["cross"][-1][:, :, start:start + len(words)]  # [N, P, W]
        gh, gw = self.backbone.grid_size
        grids = cross.permute(0, 2, 1).reshape(len(ids), len(words), gh, gw)
        return words, grids.float().cpu().numpy()

    def pair_maps(self, ids: list[str], instruction: str, first: int, second: int) -> tuple[np.ndarray, np.ndarray, float]:
        """The relational attention of pair (first, second): two maps [H, Q, gh, gw] and the pair's logit."""
        method, _ = self.method("rac")
        pair = torch.tensor([[first, second]])
        with torch.no_grad():
            maps = method.attention(self.cache.get(ids), instruction, pairs=pair)
        attention = maps["pair"][0]  # [H, Q, 2P]
        p = attention.shape[-1] // 2
        gh, gw = self.backbone.grid_size
        shape = (*attention.shape[:2], gh, gw)
        return (attention[..., :p].reshape(shape).float().cpu().numpy(),
                attention[..., p:].reshape(shape).float().cpu().numpy(), float(maps["pair_logits"][0]))
