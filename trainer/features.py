"""Frozen-backbone features, computed once per image: disk (half precision) plus a bounded LRU.

Keys are the image's content hash (SHA-256 of its bytes) under a namespace made of the backbone id,
its preprocessing, and how much of the tower is frozen. Adapter training and re-ranking therefore never
re-encode an image. When the last k ViT blocks are fine-tuned, the cache holds the hidden states
before those blocks (`VisionTail.split`) and `VisionTail` runs the trainable rest.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import safetensors.torch
import torch
from PIL import Image
from torch import nn

from .backbone import Backbone, ImageFeatures
from .data import Item, Skipped, content_id, report
from .images import to_rgb

log = logging.getLogger(__name__)


class VisionTail(nn.Module):
    """The last k blocks of a ViT image tower, plus ln_post, pooling and projections (trainable)."""

    def __init__(self, backbone: Backbone, k: int):
        super().__init__()
        if not backbone.is_vit:
            raise ValueError("Fine-tuning image blocks is implemented for ViT backbones only.")
        visual = backbone.model.visual
        depth = len(visual.transformer.resblocks)
        if not 0 < k <= depth:
            raise ValueError(f"finetune_blocks must be in 1..{depth} for this backbone, got {k}.")
        self.split, self.visual, self.project = depth - k, visual, backbone.config.project_tokens
        self.blocks = nn.ModuleList(visual.transformer.resblocks[self.split:])
        for module in (self.blocks, visual.ln_post):
            module.requires_grad_(True)
        if visual.proj is not None:
            visual.proj.requires_grad_(True)

    def forward(self, hidden: torch.Tensor) -> ImageFeatures:
        x = hidden  # [N, 1 + P, W] hidden state before block `split`
        batch_first = self.visual.transformer.batch_first
        x = x if batch_first else x.transpose(0, 1)
        for block in self.blocks:
            x = block(x)
        x = x if batch_first else x.transpose(0, 1)
        pooled, tokens = self.visual._pool(x)  # [N, W], [N, P, W]
        if self.visual.proj is not None:
            pooled = pooled @ self.visual.proj
            if self.project:
                tokens = tokens @ self.visual.proj
        return ImageFeatures(tokens, pooled)

    @staticmethod
    def prefix(backbone: Backbone, pixels: torch.Tensor, split: int) -> torch.Tensor:
        """Hidden state [N, 1 + P, W] before block `split` (frozen, cacheable)."""
        visual = backbone.model.visual
        x = visual._embeds(pixels)
        batch_first = visual.transformer.batch_first
        x = x if batch_first else x.transpose(0, 1)
        for block in visual.transformer.resblocks[:split]:
            x = block(x)
        return x if batch_first else x.transpose(0, 1)


class FeatureCache:
    """Content-addressed feature store shared by training and ranking (thread-safe).

    Args:
        backbone: the frozen backbone that encodes images.
        cache_dir: folder for the on-disk cache; None keeps features in memory only.
        memory_items: how many images the in-memory LRU holds.
        split: cache the hidden state before this ViT block instead of the final tokens
            (for fine-tuning the blocks after it); None caches final features.
    """

    def __init__(self, backbone: Backbone, cache_dir: str | Path | None = None, memory_items: int = 4096,
                 split: int | None = None, encode_batch: int = 32):
        self.backbone, self.split, self.encode_batch = backbone, split, encode_batch
        self.memory_items = memory_items
        preprocessing = repr(backbone.preprocess)
        part = "final" if split is None else f"block{split}"
        self.namespace = hashlib.sha256(f"{backbone.config.id}|{preprocessing}|{part}".encode()).hexdigest()[:16]
        self.dir = Path(cache_dir) / self.namespace if cache_dir else None
        self._lru: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()  # one backbone forward at a time
        self.stats = {"memory_hits": 0, "disk_hits": 0, "encoded": 0}

    # ---------------------------------------------------------------------------------- lookup
    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.safetensors"

    def _get(self, key: str) -> dict[str, torch.Tensor] | None:
        with self._lock:
            if key in self._lru:
                self._lru.move_to_end(key)
                self.stats["memory_hits"] += 1
                return self._lru[key]
        if self.dir is not None and self._path(key).is_file():
            try:
                value = safetensors.torch.load_file(str(self._path(key)))
            except Exception as err:  # a torn or foreign file: re-encode rather than fail
                log.warning("Unreadable cache file %s (%s); re-encoding.", self._path(key), err)
                return None
            with self._lock:
                self.stats["disk_hits"] += 1
            self._remember(key, value)
            return value
        return None

    def _remember(self, key: str, value: dict[str, torch.Tensor]) -> None:
        with self._lock:
            self._lru[key] = value
            self._lru.move_to_end(key)
            while len(self._lru) > self.memory_items:
                self._lru.popitem(last=False)

    def _store(self, key: str, value: dict[str, torch.Tensor]) -> None:
        self._remember(key, value)
        if self.dir is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            safetensors.torch.save_file(value, tmp)
            os.replace(tmp, path)  # readers see the old file or the whole new one
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            if key in self._lru:
                return True
        return self.dir is not None and self._path(key).is_file()

    # -------------------------------------------------------------------------------- encoding
    @torch.no_grad()
    def _encode(self, images: list[Image.Image]) -> list[dict[str, torch.Tensor]]:
        with self._encode_lock:
            pixels = self.backbone.preprocess_images(images)
            if self.split is None:
                feats = self.backbone.encode_images(pixels)
                parts = {"tokens": feats.tokens, "pooled": feats.pooled}
            else:
                parts = {"hidden": VisionTail.prefix(self.backbone, pixels, self.split)}
            self.stats["encoded"] += len(images)
        return [{k: v[i].detach().to("cpu", torch.float16).contiguous() for k, v in parts.items()}
                for i in range(len(images))]

    def add(self, sources: list[bytes | str | Path | Image.Image | Item]) -> tuple[list[str | None], list[Skipped]]:
        """Make sure every image is cached; returns its key (None where unreadable) and the skips."""
        keys: list[str | None] = []
        todo: dict[str, Image.Image] = {}
        skipped = []
        for source in sources:
            where = _describe(source)
            try:
                data = _to_bytes(source)
                key = content_id(data)
                if key not in todo and key not in self:
                    todo[key] = _decode(data)
                keys.append(key)
            except (OSError, ValueError, Image.DecompressionBombError) as err:
                skipped.append(Skipped(where, f"unreadable image: {err}"))
                keys.append(None)
        pending = list(todo.items())
        for start in range(0, len(pending), self.encode_batch):
            chunk = pending[start:start + self.encode_batch]
            for (key, _), value in zip(chunk, self._encode([img for _, img in chunk])):
                self._store(key, value)
        report(skipped, "image")
        return keys, skipped

    def get(self, keys: list[str], device: torch.device | str = "cpu") -> ImageFeatures | torch.Tensor:
        """Stacked features of cached images, as float32: `ImageFeatures`, or hidden states when split."""
        values = []
        for key in keys:
            value = self._get(key)
            if value is None:
                raise KeyError(f"Image {key[:12]}… is not in the feature cache; call add() first.")
            values.append(value)
        if self.split is not None:
            return torch.stack([v["hidden"] for v in values]).to(device, torch.float32)
        tokens = torch.stack([v["tokens"] for v in values]).to(device, torch.float32)  # [N, P, D]
        pooled = torch.stack([v["pooled"] for v in values]).to(device, torch.float32)  # [N, E]
        return ImageFeatures(tokens, pooled)

    def features(self, sources: list, device: torch.device | str = "cpu") -> tuple[ImageFeatures, list[int]]:
        """Encode-or-load in one call; returns features of the readable images and their indices."""
        keys, _ = self.add(sources)
        ok = [i for i, k in enumerate(keys) if k is not None]
        return self.get([keys[i] for i in ok], device), ok


def _describe(source) -> str:
    """Row and file of an image, for reports."""
    if isinstance(source, Item):
        file = source.image if isinstance(source.image, str) else "<bytes>"
        return f"{source.source} ({file})" if source.source and source.source != file else file
    return "<bytes>" if isinstance(source, bytes) else str(source)[:200]


def _to_bytes(source) -> bytes:
    if isinstance(source, Item):
        return source.read_bytes()
    if isinstance(source, bytes):
        return source
    if isinstance(source, Image.Image):
        buf = io.BytesIO()
        source.save(buf, format="PNG")
        return buf.getvalue()
    return Path(source).read_bytes()


def _decode(data: bytes) -> Image.Image:
    """Fully decode (so truncated files fail here, with the file named) and convert to RGB."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return to_rgb(image)[0]  # the same normalisation as the app: EXIF orientation, alpha on white, ...
