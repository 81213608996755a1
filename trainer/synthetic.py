"""Small seeded synthetic image tasks with a known numeric target, for tests and benchmarks.

Two families, both returning plain lists of `(PIL image, numeric target)` so any method or benchmark
can consume them without a dataset class:

* `shape_scenes`: 1-12 non-overlapping shapes (circles, squares, triangles) drawn with PIL; the
  target is the number of shapes. A counting task ("rank by the number of shapes").
* `degraded_photos`: crops of real photographs bundled with scikit-image and scikit-learn, degraded
  by graded Gaussian blur or pixel noise; the target is the degradation level (0 = clean). Split by
  *source photo* (`PHOTOS`, `split_photos`) so held-out data never shares a photograph with training.

`bin_targets` turns numeric targets into ordered class indices (e.g. counts 1-12 into 5 classes).
Everything is deterministic given `seed`; no file or network access beyond the bundled images.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle")
COLOURS = ((220, 40, 40), (40, 160, 40), (40, 80, 220), (230, 170, 20), (160, 40, 200), (20, 180, 190))
# Photos that load offline: scikit-image's bundled data and scikit-learn's two sample images.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
          "colorwheel", "camera", "moon", "coins", "clock", "brick", "grass", "gravel",
          "sklearn:china", "sklearn:flower")
DEGRADATIONS = ("blur", "noise")


def shape_scenes(n: int, *, seed: int = 0, size: int = 128, min_count: int = 1, max_count: int = 12,
                 colours: bool = False, background: tuple[int, int, int] = (255, 255, 255)
                 ) -> list[tuple[Image.Image, float]]:
    """Scenes with a known number of shapes; the target is the count.

    Counts are drawn uniformly in [min_count, max_count]; shapes never overlap, so the count is
    unambiguous. With `colours=False` every shape is black, so only the count carries signal.

    Args:
        n: number of images.
        seed: seed of the numpy generator; the same seed gives the same images.
        size: side of the square RGB image in pixels.
        min_count: smallest number of shapes (>= 1).
        max_count: largest number of shapes; must fit the image (checked).
        colours: draw each shape in a random colour instead of black.
        background: RGB background.
    """
    if not 1 <= min_count <= max_count:
        raise ValueError(f"Need 1 <= min_count <= max_count, got {min_count}, {max_count}.")
    cells = max(1, int(np.ceil(np.sqrt(max_count))))
    if size // cells < 8:
        raise ValueError(f"size={size} is too small for {max_count} shapes (need >= {8 * cells} px).")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        count = int(rng.integers(min_count, max_count + 1))
        out.append((_draw_scene(rng, count, size, cells, colours, background), float(count)))
    return out


def _draw_scene(rng: np.random.Generator, count: int, size: int, cells: int, colours: bool,
                background: tuple[int, int, int]) -> Image.Image:
    """One shape per randomly chosen grid cell, jittered inside it: shapes never overlap or touch."""
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    cell = size / cells
    for index in rng.choice(cells * cells, size=count, replace=False):
        row, col = divmod(int(index), cells)
        radius = cell * rng.uniform(0.22, 0.4)
        slack = max(0.0, cell / 2 - radius - 1.5)  # keep a gap at cell borders so shapes never touch
        cx = (col + 0.5) * cell + rng.uniform(-1, 1) * slack
        cy = (row + 0.5) * cell + rng.uniform(-1, 1) * slack
        fill = COLOURS[int(rng.integers(len(COLOURS)))] if colours else (0, 0, 0)
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        draw_shape(draw, shape, cx, cy, radius, fill)
    return image


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    """A circle, square or upward triangle of half-size `r` centred at (cx, cy)."""
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)


def load_photo(name: str) -> Image.Image:
    """One bundled photograph as an RGB PIL image (`PHOTOS` lists the names)."""
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image
        return Image.fromarray(load_sample_image(f"{name.split(':', 1)[1]}.jpg")).convert("RGB")
    import skimage.data
    if name not in PHOTOS:
        raise ValueError(f"Unknown photo '{name}'; known: {', '.join(PHOTOS)}.")
    array = np.asarray(getattr(skimage.data, name)())
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    return Image.fromarray(array).convert("RGB")


def split_photos(test_fraction: float = 0.25, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split `PHOTOS` into (train, test) source photographs, so no photo is in both."""
    order = [PHOTOS[i] for i in np.random.default_rng(seed).permutation(len(PHOTOS))]
    n_test = max(1, int(round(test_fraction * len(order))))
    return order[n_test:], order[:n_test]


def degraded_photos(photos: list[str] | tuple[str, ...] = PHOTOS, *, kind: str = "blur", levels: int = 5,
                    crops_per_photo: int = 4, size: int = 128, max_strength: float | None = None,
                    seed: int = 0) -> list[tuple[Image.Image, float]]:
    """Random crops of real photos at graded degradation; the target is the level 0..levels-1.

    Every crop appears at every level, so within a photo only the degradation varies.

    Args:
        photos: source photo names (use `split_photos` for a train/test split by source).
        kind: "blur" (Gaussian, radius up to `max_strength` px, default 4) or "noise" (Gaussian
            pixel noise, std up to `max_strength` grey levels, default 80).
        levels: number of ordered levels; level 0 is the clean crop.
        crops_per_photo: random square crops taken from each photo.
        size: side of the output images.
        max_strength: strength at the top level (see `kind`).
        seed: seed of the crop positions and the noise.
    """
    if kind not in DEGRADATIONS:
        raise ValueError(f"kind must be one of {DEGRADATIONS}, got {kind!r}.")
    if levels < 2:
        raise ValueError(f"Need at least two degradation levels, got {levels}.")
    top = max_strength if max_strength is not None else (4.0 if kind == "blur" else 80.0)
    rng = np.random.default_rng(seed)
    out = []
    for name in photos:
        photo = load_photo(name)
        for _ in range(crops_per_photo):
            crop = _random_crop(rng, photo, size)
            for level in range(levels):
                strength = top * level / (levels - 1)
                out.append((_degrade(rng, crop, kind, strength), float(level)))
    return out


def _random_crop(rng: np.random.Generator, photo: Image.Image, size: int) -> Image.Image:
    """A square crop of at least half the shorter side, resized to `size`."""
    w, h = photo.size
    side = int(rng.integers(min(w, h) // 2, min(w, h) + 1))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    return photo.crop((x, y, x + side, y + side)).resize((size, size), Image.BICUBIC)


def _degrade(rng: np.random.Generator, image: Image.Image, kind: str, strength: float) -> Image.Image:
    if strength <= 0:
        return image.copy()
    if kind == "blur":
        return image.filter(ImageFilter.GaussianBlur(radius=strength))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0.0, strength, size=(image.size[1], image.size[0], 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def bin_targets(targets, edges) -> np.ndarray:
    """Ordered class index of each numeric target: class k holds edges[k-1] < t <= edges[k].

    Example: counts 1-12 into 5 classes with `edges=(2, 4, 7, 9)`: 1-2 -> 0, 3-4 -> 1, 5-7 -> 2,
    8-9 -> 3, 10-12 -> 4.
    """
    edges = np.asarray(edges, dtype=float)
    if edges.ndim != 1 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges must be a strictly increasing 1-D sequence.")
    return np.searchsorted(edges, np.asarray(targets, dtype=float), side="left").astype(np.int64)
