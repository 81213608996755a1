"""Every kind of bad or unusual image gets a clear reason or a stated conversion; nothing raises."""

import io
import struct
import zlib

import numpy as np
from PIL import Image

from rankui.images import ImageLimits, read_images


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming a huge size (the decoder is never reached)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


LIMITS = ImageLimits(max_images=5, max_bytes=200_000, max_pixels=4_000_000, min_side=8)


def test_bad_files_are_rejected_with_reasons():
    good = encode(Image.new("RGB", (32, 32), "red"))
    files = [("notes.txt", b"hello, I am text"), ("empty.png", b""), ("cut.png", good[: len(good) // 2]),
             ("bomb.png", bomb_png(50_000, 50_000)), ("mid.png", bomb_png(3000, 3000)), ("tiny.png", encode(Image.new("RGB", (4, 4)))),
             ("huge.bmp", b"BM" + b"\0" * 300_000), ("ok.png", good)]
    batch = read_images(files, ImageLimits(max_images=50, max_bytes=200_000, max_pixels=4_000_000))
    assert [img.name for img in batch.images] == ["ok.png"]
    reasons = "\n".join(batch.problems)
    assert "notes.txt: not an image" in reasons
    assert "empty.png: the file is empty" in reasons
    assert "cut.png: the file is truncated or corrupt" in reasons
    assert "bomb.png: refused as a possible decompression bomb" in reasons  # PIL refuses it from the header
    assert "mid.png: the image is 3000x3000 = 9 megapixels; the limit is 4" in reasons
    assert "tiny.png: the image is 4x4" in reasons
    assert "huge.bmp: the file is 0.3 MB; the limit is 0.2 MB" in reasons


def test_unusual_images_are_normalised_to_rgb():
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))  # fully transparent red -> white
    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))
    deep = Image.fromarray((np.arange(400, dtype=np.uint16).reshape(20, 20) * 100))
    frames = [Image.new("RGB", (20, 20), c) for c in ("blue", "green")]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    rotated = encode(Image.new("RGB", (40, 20), "white"), "JPEG", exif=exif.tobytes())
    batch = read_images([("a.png", encode(rgba)), ("c.jpg", encode(cmyk, "JPEG")), ("d.tif", encode(deep, "TIFF")),
                         ("e.gif", gif.getvalue()), ("r.jpg", rotated)], LIMITS)
    images = {img.name: img for img in batch.images}
    assert all(img.image.mode == "RGB" for img in batch.images) and len(images) == 5
    assert images["a.png"].image.getpixel((0, 0)) == (255, 255, 255)
    assert images["d.tif"].image.getpixel((19, 19))[0] == 255  # scaled to 8 bit
    assert images["e.gif"].image.getpixel((0, 0))[2] > 200  # the first (blue) frame
    assert images["r.jpg"].image.size == (20, 40)  # EXIF orientation applied
    notes = "\n".join(batch.problems)
    assert "e.gif: animated: first frame used" in notes and "r.jpg: rotated" in notes


def test_duplicates_and_count_limit():
    a, b = encode(Image.new("RGB", (16, 16), "red")), encode(Image.new("RGB", (16, 16), "blue"))
    batch = read_images([("a.png", a), ("b.png", b), ("a-copy.png", a)], LIMITS)
    assert [img.name for img in batch.images] == ["a.png", "b.png"]
    assert "a-copy.png: same file as a.png, kept once" in batch.problems
    many = [(f"{k}.png", encode(Image.new("RGB", (16, 16), (k, 0, 0)))) for k in range(8)]
    batch = read_images(many, LIMITS)
    assert len(batch.images) == 5 and "only the first 5 are used" in batch.problems[0]
    assert batch.images[0].data == many[0][1]  # bytes kept unchanged


def test_feature_cache_sees_what_the_page_shows(demo_backbone):
    """An EXIF-rotated upload: the cached features are those of the rotated image the page shows."""
    import torch

    from trainer.features import FeatureCache

    exif = Image.Exif()
    exif[0x0112] = 6
    base = Image.fromarray(np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (20, 1))).convert("RGB")
    data = encode(base, "JPEG", exif=exif.tobytes(), quality=95)
    shown = read_images([("r.jpg", data)], LIMITS).images[0].image
    assert shown.size == (20, 40)
    cache = FeatureCache(demo_backbone)
    keys, _ = cache.add([data])
    cached = cache.get(keys).tokens
    direct = demo_backbone.encode_pil([shown]).tokens
    assert torch.allclose(cached, direct, atol=2e-2)
    unrotated = demo_backbone.encode_pil([base]).tokens
    assert (cached - unrotated).abs().max() > 10 * (cached - direct).abs().max()
