"""Attention maps as colour-mapped heatmaps blended over the image.

Patch-grid maps are upsampled bilinearly to the image size and coloured with a perceptual colour
map (matplotlib's); maps that must be compared (the two images of a pair) share one scale.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from trainer.backbone import interpolate_map

COLORMAP = "turbo"


def to_heatmap(grid: np.ndarray | torch.Tensor, size: tuple[int, int], vmin: float, vmax: float) -> np.ndarray:
    """A [gh, gw] map -> [H, W] values in 0..1 on the given scale (size is (width, height))."""
    grid = torch.as_tensor(np.asarray(grid, dtype=np.float32))
    width, height = size
    up = interpolate_map(grid, (height, width)).numpy()
    span = vmax - vmin
    return np.clip((up - vmin) / span, 0, 1) if span > 0 else np.zeros_like(up)


def blend(image: Image.Image, heat: np.ndarray, alpha: float = 0.5, colormap: str = COLORMAP) -> Image.Image:
    """Blend a [H, W] 0..1 heatmap, colour-mapped, over an RGB image."""
    colours = colormaps[colormap](heat)[..., :3]  # [H, W, 3] in 0..1
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    mixed = (1 - alpha) * base + alpha * colours
    return Image.fromarray((mixed * 255).round().astype(np.uint8))


def overlay(image: Image.Image, grid, alpha: float = 0.5, scale: tuple[float, float] | None = None) -> Image.Image:
    """One map over one image; its own min..max scale unless a shared `scale` is given."""
    grid = np.asarray(grid, dtype=np.float32)
    vmin, vmax = scale if scale is not None else (float(grid.min()), float(grid.max()))
    return blend(image, to_heatmap(grid, image.size, vmin, vmax), alpha)


def pair_overlays(image_a: Image.Image, image_b: Image.Image, grid_a, grid_b, alpha: float = 0.5
                  ) -> tuple[Image.Image, Image.Image, tuple[float, float]]:
    """The two relational maps of a pair on ONE colour scale, so their intensities compare."""
    grid_a, grid_b = np.asarray(grid_a, dtype=np.float32), np.asarray(grid_b, dtype=np.float32)
    scale = (float(min(grid_a.min(), grid_b.min())), float(max(grid_a.max(), grid_b.max())))
    return overlay(image_a, grid_a, alpha, scale), overlay(image_b, grid_b, alpha, scale), scale


def colorbar(width: int = 256, height: int = 16) -> Image.Image:
    """A horizontal legend strip of the colour map (low on the left)."""
    ramp = np.tile(np.linspace(0, 1, width, dtype=np.float32), (height, 1))
    return Image.fromarray((colormaps[COLORMAP](ramp)[..., :3] * 255).astype(np.uint8))
