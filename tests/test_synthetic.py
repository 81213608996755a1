"""The synthetic ordinal tasks: deterministic, with targets that match what is drawn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from trainer.synthetic import PHOTOS, bin_targets, degraded_photos, load_photo, shape_scenes, split_photos


def test_shape_scenes_are_seeded_and_counts_match_the_drawing():
    scenes = shape_scenes(30, seed=3, size=96)
    again = shape_scenes(30, seed=3, size=96)
    other = shape_scenes(30, seed=4, size=96)
    assert [t for _, t in scenes] == [t for _, t in again]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for (a, _), (b, _) in zip(scenes, again))
    assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for (a, _), (b, _) in zip(scenes, other))
    for image, target in scenes:
        assert image.size == (96, 96) and image.mode == "RGB"
        dark = np.asarray(image.convert("L")) < 128
        _, components = ndimage.label(dark)
        assert components == int(target)
    counts = {int(t) for _, t in shape_scenes(200, seed=0)}
    assert counts == set(range(1, 13))


def test_shape_scenes_colours_and_bad_arguments():
    image, _ = shape_scenes(1, seed=1, colours=True, min_count=12)[0]
    pixels = np.asarray(image).reshape(-1, 3)
    assert len({tuple(p) for p in pixels if tuple(p) != (255, 255, 255)}) > 1
    with pytest.raises(ValueError, match="min_count"):
        shape_scenes(1, min_count=5, max_count=2)
    with pytest.raises(ValueError, match="too small"):
        shape_scenes(1, size=16)


def test_bin_targets_counts_into_five_classes():
    counts = np.arange(1, 13)
    assert bin_targets(counts, (2, 4, 7, 9)).tolist() == [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4]
    with pytest.raises(ValueError, match="increasing"):
        bin_targets(counts, (4, 2))


def test_split_photos_is_disjoint_and_covers_all():
    train, test = split_photos(0.25, seed=0)
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(PHOTOS)
    assert len(test) == 4 and split_photos(0.25, seed=0) == (train, test)


def test_degraded_photos_grade_blur_and_noise():
    blur = degraded_photos(["camera"], kind="blur", levels=4, crops_per_photo=2, size=64, seed=0)
    assert [t for _, t in blur] == [0.0, 1.0, 2.0, 3.0] * 2
    grey = [np.asarray(img.convert("L"), dtype=float) for img, _ in blur[:4]]
    sharpness = [np.abs(np.diff(g, axis=1)).mean() for g in grey]
    assert sharpness == sorted(sharpness, reverse=True) and sharpness[0] > 1.5 * sharpness[-1]
    noise = degraded_photos(["sklearn:china"], kind="noise", levels=3, crops_per_photo=1, size=64, seed=0)
    clean = np.asarray(noise[0][0], dtype=float)
    errors = [np.abs(np.asarray(img, dtype=float) - clean).mean() for img, _ in noise]
    assert errors[0] == 0 and errors[1] < errors[2]
    assert load_photo("coffee").mode == "RGB"
    with pytest.raises(ValueError, match="kind"):
        degraded_photos(["camera"], kind="jpeg")
    with pytest.raises(ValueError, match="Unknown photo"):
        load_photo("nope")
