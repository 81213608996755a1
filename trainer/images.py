"""Turning any decoded image into the 8-bit RGB the model sees, the same way everywhere.

Training, the feature cache and the app all call `to_rgb`, so an EXIF-rotated, transparent, CMYK or
16-bit image gives the same pixels (and so the same features) wherever it enters.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps


def to_rgb(img: Image.Image) -> tuple[Image.Image, list[str]]:
    """RGB with orientation applied, first frame, alpha on white, high bit depth scaled; plus notes."""
    notes = []
    if getattr(img, "is_animated", False) and getattr(img, "n_frames", 1) > 1:
        img.seek(0)
        notes.append("animated: first frame used")
    transposed = ImageOps.exif_transpose(img)
    if transposed is not img and transposed.size != img.size:
        notes.append("rotated by its EXIF orientation")
    img = transposed
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        low, high = float(arr.min()), float(arr.max())
        arr = (arr - low) / (high - low) * 255 if high > low else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8)).convert("RGB")
        notes.append("high bit depth scaled to 8 bit")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        img = background
    elif img.mode != "RGB":
        if img.mode == "CMYK":
            notes.append("CMYK converted to RGB")
        img = img.convert("RGB")
    return img, notes
