"""Reading uploaded images safely: every bad file gets a clear reason, nothing crashes the app.

Accepted: anything PIL decodes within the limits. Normalised for the model: EXIF orientation
applied, first frame of animations, alpha composited on white, CMYK / 16-bit / float / palette
converted to 8-bit RGB. Rejected with a reason: non-images, truncated or corrupt files, files over
the byte limit, images over the pixel limit (decompression bombs are refused from the header,
before decoding) or under the minimum side. Duplicates (same bytes) are kept once.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from trainer.images import to_rgb


@dataclass
class ImageLimits:
    max_images: int = 200  # per ranking request
    max_bytes: int = 20 * 1024 * 1024  # per file
    max_pixels: int = 40_000_000  # width x height, checked from the header before decoding
    min_side: int = 8  # pixels

    def describe(self) -> str:
        return (f"up to {self.max_images} images, each at most {_mb(self.max_bytes)} and "
                f"{self.max_pixels / 1e6:.0f} megapixels, at least {self.min_side} px a side")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


@dataclass
class LoadedImage:
    id: str  # sha256 of the file's bytes
    name: str  # base name, for display as text
    data: bytes  # the file's bytes, unchanged (exports are byte-identical)
    image: Image.Image  # RGB, orientation applied, for the model and overlays
    format: str
    note: str = ""  # what was done to it, e.g. "animated: first frame used"


@dataclass
class ImageBatch:
    images: list[LoadedImage]
    problems: list[str]  # one line per rejected or changed file, shown to the person

    @property
    def ids(self) -> list[str]:
        return [img.id for img in self.images]


def read_image(data: bytes, name: str, limits: ImageLimits) -> LoadedImage:
    """Decode one upload or raise ValueError with the reason a person can act on."""
    if len(data) == 0:
        raise ValueError("the file is empty")
    if len(data) > limits.max_bytes:
        raise ValueError(f"the file is {_mb(len(data))}; the limit is {_mb(limits.max_bytes)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > limits.max_pixels:
                raise ValueError(f"the image is {width}x{height} = {width * height / 1e6:.0f} megapixels; "
                                 f"the limit is {limits.max_pixels / 1e6:.0f}")
            if min(width, height) < limits.min_side:
                raise ValueError(f"the image is {width}x{height}; each side must be at least {limits.min_side} px")
            fmt = img.format or "unknown"
            img.load()
            rgb, notes = to_rgb(img)
    except UnidentifiedImageError:
        raise ValueError("not an image PIL can read (accepted: PNG, JPEG, WebP, GIF, BMP, TIFF)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError("refused as a possible decompression bomb (too many pixels)") from None
    except (OSError, SyntaxError) as err:
        raise ValueError(f"the file is truncated or corrupt ({str(err)[:80]})") from None
    return LoadedImage(hashlib.sha256(data).hexdigest(), Path(name).name, data, rgb, fmt, "; ".join(notes))


def read_images(files: list, limits: ImageLimits) -> ImageBatch:
    """Read uploads (paths or (name, bytes) pairs); reject bad ones with reasons, drop duplicates."""
    images, problems, seen = [], [], {}
    files = list(files or [])
    if len(files) > limits.max_images:
        problems.append(f"{len(files)} files given; only the first {limits.max_images} are used "
                        f"(limit: {limits.describe()}).")
        files = files[: limits.max_images]
    for entry in files:
        if isinstance(entry, tuple):
            name, data = entry
        else:
            name = Path(str(entry)).name
            try:
                data = Path(str(entry)).read_bytes()
            except OSError as err:
                problems.append(f"{name}: could not be read ({err.strerror or err})")
                continue
        try:
            loaded = read_image(data, name, limits)
        except ValueError as err:
            problems.append(f"{name}: {err}")
            continue
        if loaded.id in seen:
            problems.append(f"{name}: same file as {seen[loaded.id]}, kept once")
            continue
        seen[loaded.id] = name
        if loaded.note:
            problems.append(f"{name}: {loaded.note}")
        images.append(loaded)
    return ImageBatch(images, problems)
