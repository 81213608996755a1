"""Seeded captioned images with known attributes: what the demo CLIP learns from, and ranking tasks.

Pretrained CLIP weights cannot be downloaded everywhere, so the offline demo backbone is trained on
images whose content we know exactly:

* `scenes`: shapes (circle, square, triangle) in named colours, with counts per shape and colour,
  size, position and optional overlap; caption e.g. "seven shapes: three red circles and four blue
  squares".
* `photos`: crops of the photographs bundled with scikit-image / scikit-learn (`synthetic.PHOTOS`,
  plus `EXTRA_IMAGES` that no benchmark uses) with graded blur, noise, brightness, contrast and
  rotation; caption e.g. "a slightly blurry, dark photo of a coffee cup". Use
  `synthetic.split_photos` so demo-training photos are never test photos.

Every sample keeps its attributes, so `TASKS` (ranking instructions such as "Rank by the number of red
shapes." or "Sharpest first.") have exact ground-truth scores via `task_targets` (higher ranks first).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from .synthetic import draw_shape, load_photo

COLOUR_RGB = {"red": (220, 40, 40), "green": (40, 160, 40), "blue": (40, 80, 220), "yellow": (230, 170, 20),
              "purple": (160, 40, 200), "cyan": (20, 180, 190), "black": (0, 0, 0)}
SHAPE_NAMES = ("circle", "square", "triangle")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve")
PHOTO_OBJECTS = {"astronaut": "an astronaut", "coffee": "a coffee cup", "chelsea": "a cat", "rocket": "a rocket",
                 "immunohistochemistry": "a stained tissue slide", "hubble_deep_field": "distant galaxies",
                 "colorwheel": "a colour wheel", "camera": "a man with a camera", "moon": "the moon",
                 "coins": "old coins", "clock": "a wall clock", "brick": "a brick wall", "grass": "grass",
                 "gravel": "gravel", "sklearn:china": "a temple", "sklearn:flower": "a flower"}
# More scikit-image images, outside `synthetic.PHOTOS` (so never benchmark test photos): more content
# to learn blur and noise from.
EXTRA_IMAGES = {"retina": "a retina", "stereo_motorcycle": "a motorcycle", "cell": "a cell", "page": "a page of text",
                "text": "painted text", "logo": "a logo", "microaneurysms": "a retina close-up",
                "shepp_logan_phantom": "a phantom scan"}
MAX_SHAPES = 12


@dataclass
class Sample:
    image: Image.Image
    caption: str
    attrs: dict = field(default_factory=dict)  # numeric attributes, the ground truth of `TASKS`


# name -> (instruction, attribute, sign): the score that ranks first is sign * attrs[attribute].
TASKS = {
    "count": ("Rank by the number of shapes.", "count", 1.0),
    "red": ("Rank by the number of red shapes.", "n_red", 1.0),
    "blue": ("Rank by the number of blue shapes.", "n_blue", 1.0),
    "circles": ("Rank by the number of circles.", "n_circle", 1.0),
    "size": ("Largest shapes first.", "size", 1.0),
    "blur": ("Rank by how blurry the image is.", "blur", 1.0),
    "sharp": ("Sharpest first.", "blur", -1.0),
    "noise": ("Rank by how noisy the image is.", "noise", 1.0),
    "dark": ("Darkest first.", "brightness", -1.0),
    "bright": ("Brightest first.", "brightness", 1.0),
}


def task_targets(samples: list[Sample], task: str) -> np.ndarray:
    """Ground-truth scores of a task (`TASKS` name) for samples: higher ranks first."""
    _, attr, sign = TASKS[task]
    return np.array([sign * s.attrs[attr] for s in samples], dtype=np.float64)


# ------------------------------------------------------------------------------------------ scenes
def scenes(n: int, *, seed: int = 0, size: int = 64, colours: tuple[str, ...] = tuple(COLOUR_RGB),
           max_count: int = MAX_SHAPES, max_groups: int = 3, overlap_p: float = 0.15,
           degrade_p: float = 0.0) -> list[Sample]:
    """Scenes of 1..max_count shapes drawn from up to `max_groups` (colour, shape) kinds.

    Args:
        n: number of scenes.
        seed: numpy seed; the same seed gives the same scenes.
        size: side of the square image in pixels.
        colours: colour names (keys of `COLOUR_RGB`) to draw from.
        max_count: most shapes in a scene (<= 16, the 4x4 placement grid).
        max_groups: most distinct (colour, shape) kinds per scene; with more, shapes are mixed
            one by one, as `synthetic.shape_scenes` draws them.
        overlap_p: share of scenes whose shapes are placed freely and may overlap.
        degrade_p: share of scenes blurred or noised (captioned), so blur and noise are learned
            apart from any photo's content; attributes `blur` and `noise` as in `photos`.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        sample = _scene(rng, size, colours, max_count, max_groups, overlap_p)
        if degrade_p and rng.random() < degrade_p:
            sample = _degrade_scene(rng, sample, size)
        out.append(sample)
    return out


def _degrade_scene(rng, sample: Sample, size: int) -> Sample:
    a = {"blur": 0.0, "noise": 0.0, "brightness": 1.0, "contrast": 1.0, "rotation": 0.0}
    image = sample.image
    if rng.random() < 0.5:
        a["blur"] = float(rng.uniform(0.4, 4.0))
        image = image.filter(ImageFilter.GaussianBlur(radius=a["blur"] * size / 64))
    else:
        a["noise"] = float(rng.uniform(8, 80))
        image = _add_noise(rng, image, a["noise"])
    words = ", ".join(_quality_words(a)[1:] if not a["blur"] else _quality_words(a)[:1])
    return Sample(image, f"{sample.caption}; {words}", {**sample.attrs, **a})


def _scene(rng, size, colours, max_count, max_groups, overlap_p) -> Sample:
    count = int(rng.integers(1, max_count + 1))
    if rng.random() < 0.25:  # shapes mixed one by one, as the counting benchmark draws them
        palette = [str(c) for c in rng.choice(colours, size=min(len(colours), int(rng.integers(1, 4))), replace=False)]
        if "black" in colours and rng.random() < 0.3:
            palette = ["black"]  # the counting benchmark's all-black scenes
        kinds = [(palette[int(rng.integers(len(palette)))], SHAPE_NAMES[int(rng.integers(3))]) for _ in range(count)]
    else:
        n_groups = int(rng.integers(1, min(max_groups, count) + 1))
        combos = [(c, s) for c in colours for s in SHAPE_NAMES]
        groups = [combos[i] for i in rng.choice(len(combos), size=n_groups, replace=False)]
        split = np.sort(rng.choice(np.arange(1, count), size=n_groups - 1, replace=False)) if n_groups > 1 else []
        sizes = np.diff(np.concatenate([[0], split, [count]])).astype(int)
        kinds = [g for g, k in zip(groups, sizes) for _ in range(k)]
    overlap = bool(rng.random() < overlap_p)
    cells = 4 if (count > 9 or rng.random() < 0.6) else max(2, int(np.ceil(np.sqrt(count))))
    scale = float(rng.uniform(0.18, 0.42))  # radius / cell, the same for every shape in the scene
    cell = size / cells
    background = (255, 255, 255) if rng.random() < 0.8 else tuple(int(v) for v in rng.integers(215, 256, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    slots = rng.choice(cells * cells, size=count, replace=False)
    centres = []
    for (colour, shape), slot in zip(kinds, slots):
        radius = cell * scale * rng.uniform(0.85, 1.15)
        if overlap:
            cx, cy = rng.uniform(radius, size - radius, 2)
        else:
            row, col = divmod(int(slot), cells)
            slack = max(0.0, cell / 2 - radius - 1.0)
            cx, cy = (col + 0.5) * cell + rng.uniform(-1, 1) * slack, (row + 0.5) * cell + rng.uniform(-1, 1) * slack
        draw_shape(draw, shape, cx, cy, radius, COLOUR_RGB[colour])
        centres.append((cx / size, cy / size))
    attrs = {"count": float(count), "size": cell * scale / size, "overlap": float(overlap),
             "x": float(np.mean([c[0] for c in centres])), "y": float(np.mean([c[1] for c in centres]))}
    for colour in COLOUR_RGB:
        attrs[f"n_{colour}"] = float(sum(k[0] == colour for k in kinds))
    for shape in SHAPE_NAMES:
        attrs[f"n_{shape}"] = float(sum(k[1] == shape for k in kinds))
    return Sample(image, _scene_caption(rng, kinds, attrs), attrs)


def _plural(word: str, k: int) -> str:
    return word if k == 1 else word + "s"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _scene_caption(rng, kinds: list[tuple[str, str]], attrs: dict) -> str:
    """Total count first, then the finest breakdown that stays short (kinds, colours or shapes)."""
    count = len(kinds)
    by_kind: dict = {}
    for kind in kinds:
        by_kind[kind] = by_kind.get(kind, 0) + 1
    colours = sorted({c for c, _ in kinds}, key=list(COLOUR_RGB).index)
    shapes = sorted({s for _, s in kinds}, key=SHAPE_NAMES.index)
    if len(by_kind) == 1:
        (colour, shape), k = next(iter(by_kind.items()))
        text = f"{NUMBERS[k]} {colour} {_plural(shape, k)}"
    else:
        if len(by_kind) <= 3:
            parts = [f"{NUMBERS[k]} {c} {_plural(s, k)}" for (c, s), k in by_kind.items()]
        elif len(colours) <= 3:
            parts = [f"{NUMBERS[k]} {c}" for c in colours if (k := sum(x[0] == c for x in kinds))]
        else:
            parts = [f"{NUMBERS[k]} {_plural(s, k)}" for s in shapes if (k := sum(x[1] == s for x in kinds))]
        text = f"{NUMBERS[count]} shapes: {_join(parts)}"
    extras = []
    if attrs["size"] < 0.06:
        extras.append("small")
    elif attrs["size"] > 0.12:
        extras.append("large")
    if attrs["overlap"]:
        extras.append("overlapping")
    if count <= 2:
        horiz = "left" if attrs["x"] < 0.38 else "right" if attrs["x"] > 0.62 else ""
        vert = "top" if attrs["y"] < 0.38 else "bottom" if attrs["y"] > 0.62 else ""
        if horiz or vert:
            extras.append(f"in the {' '.join(w for w in (vert, horiz) if w)}")
    if extras and rng.random() < 0.8:
        lead = [e for e in extras if not e.startswith("in the")]
        tail = [e for e in extras if e.startswith("in the")]
        text = f"{text}, {' '.join(lead + tail)}"
    return text


# ------------------------------------------------------------------------------------------ photos
def photos(n: int, names: list[str] | tuple[str, ...], *, seed: int = 0, size: int = 64,
           degradations: tuple[str, ...] = ("blur", "noise", "brightness", "contrast", "rotation"),
           blur_p: float | None = None) -> list[Sample]:
    """Random crops of bundled photos, each with a random mix of graded degradations.

    Attributes: `blur` (Gaussian radius in px at 64 px), `noise` (pixel std at 64 px), `brightness`
    and `contrast` (PIL enhance factors, 1 = unchanged) and `rotation` (degrees). Strengths scale
    with `size`, so a 128 px sample looks like a 64 px one seen at twice the resolution.

    Args:
        n: number of samples.
        names: source photos (`synthetic.PHOTOS` names); use `split_photos` for a held-out split.
        seed: numpy seed.
        size: side of the output images.
        degradations: which degradations may be applied.
        blur_p: if set, blur is in the mix with this probability (else as often as the others).
    """
    rng = np.random.default_rng(seed)
    cache = {name: _load(name) for name in names}
    out = []
    for _ in range(n):
        name = names[int(rng.integers(len(names)))]
        out.append(_photo(rng, cache[name], name, size, degradations, blur_p))
    return out


def _load(name: str) -> Image.Image:
    if name not in EXTRA_IMAGES:
        return load_photo(name)
    import skimage.data
    array = getattr(skimage.data, name)()
    array = np.asarray(array[0] if isinstance(array, tuple) else array)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def _add_noise(rng, image: Image.Image, std: float) -> Image.Image:
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, std, (image.size[1], image.size[0], 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _photo(rng, photo: Image.Image, name: str, size: int, allowed: tuple[str, ...],
           blur_p: float | None = None) -> Sample:
    w, h = photo.size
    side = int(rng.integers(min(w, h) // 2, min(w, h) + 1))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    image = photo.crop((x, y, x + side, y + side)).resize((size, size), Image.BICUBIC)
    k = min(len(allowed), int(rng.choice([0, 1, 1, 2, 3])))
    active = {str(d) for d in rng.choice(allowed, size=k, replace=False)} if k else set()
    if blur_p is not None and "blur" in allowed:
        active = (active - {"blur"}) | ({"blur"} if rng.random() < blur_p else set())
    a = {"blur": 0.0, "noise": 0.0, "brightness": 1.0, "contrast": 1.0, "rotation": 0.0}
    if "rotation" in active:
        a["rotation"] = float(rng.choice([90, 180, 270]))
        image = image.rotate(a["rotation"])
    if "contrast" in active:
        a["contrast"] = float(rng.uniform(0.25, 0.8))
        image = ImageEnhance.Contrast(image).enhance(a["contrast"])
    if "brightness" in active:
        a["brightness"] = float(rng.choice([rng.uniform(0.3, 0.8), rng.uniform(1.25, 1.8)]))
        image = ImageEnhance.Brightness(image).enhance(a["brightness"])
    scale = size / 64
    if "blur" in active:
        a["blur"] = float(rng.uniform(0.4, 4.0))
        image = image.filter(ImageFilter.GaussianBlur(radius=a["blur"] * scale))
    if "noise" in active:
        a["noise"] = float(rng.uniform(8, 80))
        image = _add_noise(rng, image, a["noise"])
    obj = PHOTO_OBJECTS.get(name) or EXTRA_IMAGES.get(name, "something")
    return Sample(image, _photo_caption(a, obj), a)


def _quality_words(a: dict) -> list[str]:
    """Graded words: four blur grades and four noise grades over the sampled strengths."""
    b, n = a["blur"], a["noise"]
    words = ["sharp" if b == 0 else "slightly blurry" if b < 1.3 else "blurry" if b < 2.2
             else "very blurry" if b < 3.1 else "extremely blurry"]
    if n:
        words.append("slightly noisy" if n < 25 else "noisy" if n < 45 else "very noisy" if n < 65
                     else "extremely noisy")
    return words


def _photo_caption(a: dict, obj: str) -> str:
    adjs = _quality_words(a)
    if a["brightness"] != 1.0:
        b = a["brightness"]
        adjs.append("very dark" if b < 0.5 else "dark" if b < 1 else "bright" if b < 1.5 else "very bright")
    if a["contrast"] != 1.0:
        adjs.append("low-contrast")
    text = f"a {', '.join(adjs)} photo of {obj}"
    if a["rotation"]:
        text += ", upside down" if a["rotation"] == 180 else ", rotated sideways"
    return text
