"""Attention overlays are colour-mapped, upsampled to the image, and pairs share one scale."""

import numpy as np
import pytest
from PIL import Image

from rankui.overlays import overlay, pair_overlays, to_heatmap


def test_heatmap_upsamples_and_normalises():
    grid = np.array([[0.0, 1.0], [2.0, 3.0]])
    heat = to_heatmap(grid, (40, 20), 0.0, 3.0)
    assert heat.shape == (20, 40)  # [H, W] for a (W, H) image size
    assert heat.min() >= 0 and heat.max() <= 1
    assert heat[0, 0] < heat[-1, -1]


def test_overlay_is_colour_mapped_not_single_hue():
    image = Image.new("RGB", (32, 32), (128, 128, 128))
    grid = np.linspace(0, 1, 16).reshape(4, 4)
    out = np.asarray(overlay(image, grid, alpha=0.8))
    low, high = out[0, 0], out[-1, -1]
    assert out.shape == (32, 32, 3)
    assert low[2] > low[0] and high[0] > high[2]  # blue-ish where low, red-ish where high


def test_pair_maps_share_one_scale():
    a = b = Image.new("RGB", (16, 16), (0, 0, 0))
    strong, weak = np.full((2, 2), 0.9), np.full((2, 2), 0.1)
    out_a, out_b, scale = pair_overlays(a, b, strong, weak)
    assert scale == pytest.approx((0.1, 0.9))
    assert not np.array_equal(np.asarray(out_a), np.asarray(out_b))  # one scale: different colours
    solo_a, solo_b = overlay(a, strong), overlay(b, weak)  # own scales: both flat -> identical
    assert np.array_equal(np.asarray(solo_a), np.asarray(solo_b))
