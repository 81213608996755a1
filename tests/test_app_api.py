"""Every endpoint through gradio_client against a real server on the tiny model; results checked."""

import io
from pathlib import Path

import pytest
from datasets import Dataset
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from rankui.app import build_app, launch_kwargs
from rankui.settings import Settings

ENDPOINTS = {"/rank", "/attention", "/pair_attention", "/label", "/undo", "/suggest", "/drag", "/train_now",
             "/train_status", "/export", "/examples"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    settings = Settings.from_args(["--data-dir", str(data), "--host", "127.0.0.1", "--max-images", "12"])
    demo = build_app(settings)
    kwargs = {**launch_kwargs(settings), "server_port": None}
    demo.launch(prevent_thread_lock=True, quiet=True, **kwargs)
    yield demo
    demo.close()


@pytest.fixture
def client(app):
    return Client(app.local_url, verbose=False, analytics_enabled=False)


def ranked(client, instruction="rank by the number of shapes", method="rac", classes=""):
    examples = client.predict(api_name="/examples")
    return client.predict([handle_file(p) for p in examples], instruction, method, classes, api_name="/rank")


def test_endpoints_are_named(client):
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert ENDPOINTS <= named


def test_rank_orders_by_score_and_reuses_cached_tokens(app, client):
    gallery, plot, strip, _, message = ranked(client)
    assert len(gallery) == 10 and "Ranked 10 images" in message
    scores = [float(item["caption"].split(" · ")[1]) for item in gallery]
    assert scores == sorted(scores, reverse=True)
    assert [item["caption"].split(" · ")[0] for item in gallery] == [f"#{k}" for k in range(1, 11)]
    assert [row[0] for row in plot["data"]] == list(range(1, 11))
    assert len(strip) == 10 and strip[0]["url"].startswith("data:image/jpeg;base64,")
    cache = app.rankui_context.engine.cache
    encoded = cache.stats["encoded"]
    again = ranked(client, "sharpest first")[0]
    assert cache.stats["encoded"] == encoded  # a new instruction re-ranks from cached tokens
    assert [g["caption"].split(" · ")[2] for g in again] != [g["caption"].split(" · ")[2] for g in gallery] \
        or [g["caption"].split(" · ")[1] for g in again] != [g["caption"].split(" · ")[1] for g in gallery]


def test_attention_maps(client):
    gallery = ranked(client)[0]
    image_path, message = client.predict(2, "all words", api_name="/attention")
    heat = Image.open(image_path)
    original = Image.open(gallery[1]["image"])
    assert max(heat.size) == 384 and heat.width / heat.height == pytest.approx(original.width / original.height, rel=0.02)
    assert "Rank #2" in message
    assert Image.open(image_path).convert("RGB").getcolors(1 << 20).__len__() > 50  # a colour map, not one hue
    _, word_message = client.predict(2, "shapes", api_name="/attention")
    assert "'shapes'" in word_message
    left, right, pair_message = client.predict(1, 3, "mean", "mean", api_name="/pair_attention")
    assert Path(left).is_file() and Path(right).is_file() and "P(#1 above)" in pair_message
    _, _, head_message = client.predict(1, 3, "2", "5", api_name="/pair_attention")
    assert "head 2, query 5" in head_message
    with pytest.raises(AppError, match="not a token of the instruction|not in the list of choices"):
        client.predict(1, "bananas", api_name="/attention")
    with pytest.raises(AppError, match="Query must be|not in the list of choices"):
        client.predict(1, 2, "mean", "99", api_name="/pair_attention")


def test_label_undo_suggest(app, client):
    store = app.rankui_context.store
    ranked(client)
    before = store.count()
    left, right, _, _, message = client.predict("alice", api_name="/suggest")
    assert left != right and "Which ranks higher" in message
    saved = client.predict(left, right, "right", "alice", "correction", api_name="/label")
    assert saved.startswith("Saved:")
    record = store.labels()[-1]
    assert record.annotator == "alice" and record.source == "suggestion" and record.instruction == \
        "rank by the number of shapes" and record.score_0 >= record.score_1 and store.count() == before + 1
    client.predict(1, 4, "tie", "bob", "correction", api_name="/label")
    assert "Undid your label" in client.predict("alice", api_name="/undo")
    assert store.count() == before + 1 and store.labels()[-1].annotator == "bob"  # bob's label stays
    assert "Nothing to undo" in client.predict("alice", api_name="/undo")
    with pytest.raises(AppError, match="left, right, tie or unsure"):
        client.predict(1, 2, "maybe", "alice", "correction", api_name="/label")
    with pytest.raises(AppError, match="out of range"):
        client.predict(1, 99, "left", "alice", "correction", api_name="/label")


def test_drag_turns_into_pairwise_labels(app, client):
    strip = ranked(client)[2]
    store = app.rankui_context.store
    before = store.count()
    moved = [strip[3]] + strip[:3] + strip[4:]  # #4 dragged to the top: above #1, #2, #3
    _ = client.predict(moved, "carol", api_name="/drag")
    new = store.labels()[before:]
    assert len(new) == 3 and all(lab.source == "drag" and lab.annotator == "carol" for lab in new)
    assert all(lab.outcome == "image_1" for lab in new)  # the model had the moved image lower


def test_train_status_and_now(client):
    status = client.predict(api_name="/train_status")[0]
    for key in ("state", "version", "labels_used", "held_out_accuracy", "curve", "progress", "last_error"):
        assert key in status
    assert isinstance(client.predict(api_name="/train_now"), str)


def test_export_parquet_round_trip(app, client):
    store = app.rankui_context.store
    ranked(client)
    client.predict(1, 2, "left", "dave", "correction", api_name="/label")
    path, message = client.predict("parquet", "", api_name="/export")
    ds = Dataset.from_parquet(path)
    assert len(ds) == store.count() and f"Exported {store.count()} labels" in message
    row = ds.cast_column("image_0", ds.features["image_0"].__class__(decode=False))[len(ds) - 1]
    assert row["image_0"]["bytes"] == store.image_bytes(row["image_0_id"])
    with pytest.raises(AppError, match="offline|HF_TOKEN"):
        client.predict("hub", "someone/labels", api_name="/export")


def png(size=(32, 32), colour="red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def bad_files(tmp_path):
    noisy = io.BytesIO()
    Image.effect_noise((64, 64), 40).convert("RGB").save(noisy, "PNG")
    files = {"text.png": b"not an image at all", "cut.png": noisy.getvalue()[: len(noisy.getvalue()) // 2],
             "ok1.png": png(), "ok2.png": png(colour="blue")}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: str(tmp_path / name) for name in files}


@pytest.mark.parametrize("case,match", [
    ("none", "at least two images"), ("one", "at least two images"), ("garbage", "not an image"),
    ("truncated", "truncated or corrupt"), ("empty_instruction", "Type an ordering instruction"),
    ("long_instruction", "keep it under"), ("unknown_method", "Unknown method|not in the list"),
    ("too_many", "only the first 12 are used"), ("one_class", "at least two"),
    ("hostile", "")])
def test_bad_input_gets_a_clear_error_and_the_app_keeps_serving(client, bad_files, case, match):
    good = [handle_file(bad_files["ok1.png"]), handle_file(bad_files["ok2.png"])]
    args = {"none": ([], "x", "rac", ""), "one": ([good[0]], "x", "rac", ""),
            "garbage": ([handle_file(bad_files["text.png"]), good[0]], "x", "rac", ""),
            "truncated": ([handle_file(bad_files["cut.png"]), good[0]], "x", "rac", ""),
            "empty_instruction": (good, "   ", "rac", ""), "long_instruction": (good, "a" * 5000, "rac", ""),
            "unknown_method": (good, "x", "magic", ""), "one_class": (good, "x", "ordinalclip", "adult")}
    if case == "hostile":  # shown back as the same text; the page test checks it is never run as HTML
        hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
        message = client.predict(good, hostile, "rac", "", api_name="/rank")[-1]
        assert hostile in message
    elif case == "too_many":
        examples = client.predict(api_name="/examples")
        files = [handle_file(p) for p in examples] + [handle_file(bad_files["ok1.png"]), handle_file(bad_files["ok2.png"])]
        files += [handle_file(bad_files["ok1.png"])]
        message = client.predict(files, "x", "rac", "", api_name="/rank")[-1]
        assert "13 files given; only the first 12 are used" in message
    else:
        with pytest.raises(AppError, match=match):
            client.predict(*args[case], api_name="/rank")
    assert "Ranked 2 images" in client.predict(good, "x", "rac", "", api_name="/rank")[-1]  # still serving


@pytest.mark.parametrize("method", ["zeroshot", "coop", "ordinalclip", "numclip", "l2rclip"])
def test_ordinal_methods_rank_over_class_names(client, method):
    classes = "one or two shapes, three or four shapes, five to seven shapes, eight or more shapes"
    gallery, plot, _, _, message = ranked(client, "rank by the number of shapes", method, classes)
    assert len(gallery) == 10 and f"with {method}" in message
    scores = [row[1] for row in plot["data"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 3 for s in scores)  # expected class index


def _bomb(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def _encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _unusual(case: str) -> bytes:
    import numpy as np
    if case == "bomb":
        return _bomb(60_000, 60_000)
    if case == "huge":
        return _bomb(9_000, 9_000)  # 81 megapixels > the 40 megapixel limit
    if case == "tiny":
        return _encoded(Image.new("RGB", (3, 3)), "PNG")
    if case == "cmyk":
        return _encoded(Image.new("CMYK", (40, 40), (0, 200, 200, 0)), "JPEG")
    if case == "16bit":
        return _encoded(Image.fromarray(np.arange(1600, dtype=np.uint16).reshape(40, 40) * 40), "PNG")
    if case == "alpha":
        return _encoded(Image.new("RGBA", (40, 40), (10, 200, 10, 90)), "PNG")
    if case == "animated":
        buf = io.BytesIO()
        frames = [Image.new("RGB", (40, 40), c) for c in ("navy", "gold")]
        frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
        return buf.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 8
    return _encoded(Image.new("RGB", (60, 30), "teal"), "JPEG", exif=exif.tobytes())


@pytest.mark.parametrize("case,expect", [
    ("bomb", "decompression bomb"), ("huge", "the limit is 40"), ("tiny", "at least 8 px"),
    ("cmyk", "CMYK converted"), ("16bit", "scaled to 8 bit"), ("alpha", "Ranked 3 images"),
    ("animated", "first frame used"), ("exif", "rotated by its EXIF orientation")])
def test_unusual_images_through_the_api(client, bad_files, tmp_path, case, expect):
    path = tmp_path / f"{case}.{'gif' if case == 'animated' else 'png'}"
    path.write_bytes(_unusual(case))
    files = [handle_file(str(path)), handle_file(bad_files["ok1.png"]), handle_file(bad_files["ok2.png"])]
    message = client.predict(files, "x", "rac", "", api_name="/rank")[-1]
    assert expect in message
    rejected = case in ("bomb", "huge", "tiny")
    assert f"Ranked {2 if rejected else 3} images" in message
