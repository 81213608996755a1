"""A frozen open_clip backbone that hands out the tokens the ranking heads need.

Wraps open_clip (never forks it): `create_model_and_transforms` builds the model from a name and
pretrained tag, a local checkpoint file, or a `local-dir:` folder. What the heads consume:

* image patch tokens `[N, P, D]`: ViT tokens after `ln_post` with CLS dropped, optionally projected
  by `visual.proj` into the joint space (RAC does this for ViT-B/16); ConvNeXt per-location tokens
  built as RAC builds them (trunk features -> the trunk head's LayerNorm2d -> a 1x1 conv);
* text tokens `[N, T, D]` after `ln_final` (no projection), with the padding mask;
* pooled (projected) image and text embeddings, and the patch grid.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
DEMO_BACKBONE_DIR = ASSETS_DIR / "demo_clip"
DEMO_BACKBONE = f"local-dir:{DEMO_BACKBONE_DIR}"
RESIZE_MODES = ("squash", "shortest", "longest")


class BackboneUnavailable(RuntimeError):
    """The requested backbone or its weights cannot be loaded (unknown name or tag, offline, bad file)."""


@dataclass
class BackboneConfig:
    name: str = "ViT-B-32"  # open_clip model name, or "local-dir:/folder" with open_clip_config.json
    pretrained: str | None = "laion2b_s34b_b79k"  # tag, checkpoint file, or None for random init
    resize_mode: str = "squash"  # squash keeps the whole image so maps cover it; or shortest/longest
    project_tokens: bool = True  # ViT: tokens @ visual.proj, into the joint space (as RAC for ViT-B/16)
    device: str = "cpu"
    frozen: bool = True
    token_proj_seed: int = 0  # ConvNeXt 1x1 token conv: seeded, as it is absent from CLIP checkpoints

    @property
    def id(self) -> str:
        """Identifies what produced a feature (keys the feature cache), the same on every machine.

        Local folders and checkpoint files are named by their file name and a digest of the
        weights, not by where this checkout happens to live.
        """
        name, weights = self.name, self.pretrained
        if name.startswith("local-dir:"):
            folder = Path(name[len("local-dir:"):])
            name = f"local-dir:{folder.name}@{_weights_digest(folder)}"
        if weights and Path(weights).is_file():
            weights = f"{Path(weights).name}@{_file_digest(str(Path(weights).resolve()))}"
        proj = "proj" if self.project_tokens else "raw"
        return f"{name}|{weights}|{self.resize_mode}|{proj}|seed{self.token_proj_seed}"


def _weights_digest(folder: Path) -> str:
    for candidate in ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                      "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth"):
        if (folder / candidate).is_file():
            return _file_digest(str((folder / candidate).resolve()))
    return "missing"


def _file_digest(path: str) -> str:
    stat = os.stat(path)
    return _digest_cached(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _digest_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


@dataclass
class ImageFeatures:
    tokens: torch.Tensor  # [N, P, D] patch tokens
    pooled: torch.Tensor  # [N, E] projected pooled embedding (encode_image), not normalised

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def index(self, idx) -> "ImageFeatures":
        return ImageFeatures(self.tokens[idx], self.pooled[idx])

    def to(self, *args, **kwargs) -> "ImageFeatures":
        return ImageFeatures(self.tokens.to(*args, **kwargs), self.pooled.to(*args, **kwargs))


@dataclass
class TextFeatures:
    tokens: torch.Tensor  # [N, T, Dt] after ln_final, not projected
    mask: torch.Tensor  # [N, T] bool, True for SOT..EOT, False for padding
    pooled: torch.Tensor  # [N, E] projected EOT embedding (encode_text), not normalised
    ids: torch.Tensor  # [N, T] token ids
    texts: list[str] = field(default_factory=list)

    def to(self, *args, **kwargs) -> "TextFeatures":
        return TextFeatures(self.tokens.to(*args, **kwargs), self.mask.to(kwargs.get("device", self.mask.device)),
                            self.pooled.to(*args, **kwargs), self.ids.to(kwargs.get("device", self.ids.device)),
                            self.texts)


def _check_known(name: str, pretrained: str | None) -> None:
    """Fail early, in one line, on an unknown model name or pretrained tag."""
    if name.startswith(("local-dir:", "hf-hub:")):
        if name.startswith("local-dir:") and not Path(name[len("local-dir:"):]).is_dir():
            raise BackboneUnavailable(f"Backbone folder not found: '{name[len('local-dir:'):]}' "
                                      "(a 'local-dir:' folder holds open_clip_config.json and open_clip_model.safetensors).")
        return
    if name not in open_clip.list_models():
        raise BackboneUnavailable(f"Unknown open_clip model '{name}'; see open_clip.list_models() for names, "
                                  f"or pass 'local-dir:/folder' (the bundled demo: '{DEMO_BACKBONE}').")
    if pretrained and not Path(pretrained).is_file():
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise BackboneUnavailable(f"Unknown pretrained tag '{pretrained}' for open_clip model '{name}' "
                                      f"(known: {', '.join(tags) or 'none'}), and no such checkpoint file.")


class Backbone(nn.Module):
    """open_clip model plus tokenizer and preprocessing, with token-level outputs."""

    def __init__(self, config: BackboneConfig | None = None, **overrides):
        super().__init__()
        config = config or BackboneConfig()
        for key, value in overrides.items():
            setattr(config, key, value)
        if config.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {config.resize_mode!r}")
        self.config = config
        _check_known(config.name, config.pretrained)
        pretrained = None if config.name.startswith("local-dir:") else config.pretrained
        logging.disable(logging.ERROR)  # open_clip logs the failure itself; we raise one clear line instead
        try:
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(
                config.name, pretrained=pretrained, device=config.device, image_resize_mode=config.resize_mode)
        except RuntimeError as err:
            reason = ("its weights could not be downloaded and are not in the local cache"
                      if "download" in str(err).lower() else str(err).splitlines()[0][:160])
            raise BackboneUnavailable(
                f"Cannot load open_clip model '{config.name}' with pretrained '{config.pretrained}': {reason}. "
                f"To work offline, pass a local checkpoint file as pretrained, a 'local-dir:' folder as name, "
                f"or the bundled demo backbone '{DEMO_BACKBONE}'.") from err
        finally:
            logging.disable(logging.NOTSET)
        self.tokenizer = open_clip.get_tokenizer(config.name)
        self.model.eval()
        self.token_proj = self._make_token_proj()
        if config.frozen:
            self.requires_grad_(False)

    # ----------------------------------------------------------------------------------- shapes
    @property
    def is_vit(self) -> bool:
        return isinstance(self.model.visual, open_clip.transformer.VisionTransformer)

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[-1]) if isinstance(self.model.text_projection, torch.Tensor) \
            else int(self.model.text_projection.out_features)

    @property
    def token_dim(self) -> int:
        """Width D of the image tokens handed out."""
        if self.is_vit:
            visual = self.model.visual
            return int(visual.proj.shape[1]) if self.config.project_tokens and visual.proj is not None \
                else int(visual.transformer.width)
        return int(self.token_proj.out_channels)

    @property
    def text_dim(self) -> int:
        return int(self.model.ln_final.normalized_shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.model.visual.image_size
        return (size, size) if isinstance(size, int) else tuple(size)

    @property
    def grid_size(self) -> tuple[int, int]:
        if self.is_vit:
            return tuple(self.model.visual.grid_size)
        stride = self.model.visual.trunk.feature_info[-1]["reduction"]
        h, w = self.image_size
        return (h // stride, w // stride)

    @property
    def context_length(self) -> int:
        return int(self.model.context_length)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _make_token_proj(self) -> nn.Module | None:
        """ConvNeXt: RAC's 1x1 conv from trunk width to embed_dim (timm init, seeded, frozen)."""
        if self.is_vit:
            return None
        trunk = self.model.visual.trunk
        if not hasattr(trunk, "head") or not hasattr(trunk.head, "norm"):
            raise BackboneUnavailable(f"Image tokens are implemented for ViT and timm ConvNeXt towers, "
                                      f"not for '{self.config.name}'.")
        conv = nn.Conv2d(trunk.num_features, self.embed_dim, kernel_size=1)
        generator = torch.Generator().manual_seed(self.config.token_proj_seed)
        with torch.no_grad():
            conv.weight.copy_(torch.nn.init.trunc_normal_(torch.empty_like(conv.weight), std=0.02,
                                                          generator=generator))
            conv.bias.zero_()
        return conv.to(self.device)

    # ------------------------------------------------------------------------------- encoding
    def preprocess_images(self, images: list[Image.Image]) -> torch.Tensor:
        """PIL images -> normalised pixel batch [N, 3, H, W] with the model's own transform."""
        return torch.stack([self.preprocess(img.convert("RGB")) for img in images]).to(self.device)

    def encode_images(self, pixels: torch.Tensor) -> ImageFeatures:
        visual = self.model.visual
        if self.is_vit:
            visual.output_tokens = True
            try:
                pooled, tokens = visual(pixels)  # [N, E], [N, P, width] after ln_post, CLS dropped
            finally:
                visual.output_tokens = False
            if self.config.project_tokens and visual.proj is not None:
                tokens = tokens @ visual.proj  # [N, P, E]
            return ImageFeatures(tokens, pooled)
        trunk = visual.trunk
        features = trunk.forward_features(pixels)  # [N, C, h, w]
        pooled = visual.head(trunk.forward_head(features))  # == visual(pixels), one trunk pass
        fmap = trunk.head.norm(features)  # LayerNorm2d per location, as RAC's trunk head applies it
        tokens = self.token_proj(fmap).flatten(2).transpose(1, 2)  # [N, h*w, E]
        return ImageFeatures(tokens, pooled)

    def encode_pil(self, images: list[Image.Image]) -> ImageFeatures:
        return self.encode_images(self.preprocess_images(images))

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    def encode_text(self, texts: list[str] | str) -> TextFeatures:
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = self.tokenize(texts)
        return self.encode_token_ids(ids, texts)

    def encode_token_ids(self, ids: torch.Tensor, texts: list[str] | None = None) -> TextFeatures:
        model = self.model
        cast_dtype = model.transformer.get_cast_dtype()
        x = model.token_embedding(ids).to(cast_dtype) + model.positional_embedding.to(cast_dtype)
        x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))  # [N, T, Dt]
        eot = ids.argmax(dim=-1)  # the EOT id is the largest in open_clip's BPE vocabulary
        positions = torch.arange(ids.shape[1], device=ids.device)
        mask = positions[None, :] <= eot[:, None]
        pooled = x[torch.arange(x.shape[0], device=x.device), eot]
        proj = model.text_projection
        pooled = proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj
        return TextFeatures(x, mask, pooled, ids, list(texts or []))

    def text_token_strings(self, text: str) -> list[str]:
        """The decoded BPE tokens from SOT to EOT, for labelling per-word attention."""
        ids = self.tokenize([text])[0]
        eot = int(ids.argmax())
        tok = getattr(self.tokenizer, "decoder", None)
        out = []
        for i in ids[: eot + 1].tolist():
            piece = tok.get(i, str(i)) if tok else str(i)
            out.append(piece.replace("</w>", ""))
        return out


def load_backbone(name: str, pretrained: str | None = None, **kwargs) -> Backbone:
    return Backbone(BackboneConfig(name=name, pretrained=pretrained, **kwargs))


def load_demo_backbone(**kwargs) -> Backbone:
    """The tiny bundled backbone of assets/: what tests and the offline demo use."""
    return Backbone(BackboneConfig(name=DEMO_BACKBONE, pretrained=None, **kwargs))


def interpolate_map(grid_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[..., gh, gw] -> [..., H, W] bilinear, for overlays."""
    lead = grid_map.shape[:-2]
    flat = grid_map.reshape(-1, 1, *grid_map.shape[-2:])
    up = F.interpolate(flat.float(), size=size, mode="bilinear", align_corners=False)
    return up.reshape(*lead, *size)
