"""The SQLite label store: durable labels, content-addressed images, own-label undo, pair source."""

import hashlib
import io
import os
import signal
import subprocess
import sys
import threading

import pytest
from PIL import Image

from conftest import REPO
from rankui.store import LabelStore
from trainer.data import PairSource


def png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def store(tmp_path):
    return LabelStore(tmp_path / "data")


def add_two(store):
    a, b = png((255, 0, 0)), png((0, 0, 255))
    return store.add_image(a, "/home/me/red.png", "PNG", 16, 16), store.add_image(b, "blue.png", "PNG", 16, 16)


def test_images_are_stored_once_by_sha256(store):
    data = png((1, 2, 3))
    first = store.add_image(data, "x.png", "PNG", 16, 16)
    again = store.add_image(data, "copy.png", "PNG", 16, 16)
    assert first == again == hashlib.sha256(data).hexdigest()
    assert store.image_bytes(first) == data
    assert len(list(store.image_dir.rglob("*"))) == 2  # one folder, one file
    assert store.image_info(first)["name"] == "x.png"  # base name only, no local path
    with pytest.raises(KeyError):
        store.image_path("../../etc/passwd")


def test_label_records_everything_and_pairs(store):
    a, b = add_two(store)
    assert store.image_info(a)["name"] == "red.png"
    label = store.add_label("redder first", a, b, "image_0", "ann-1", source="suggestion", model_version=3,
                            score_0=1.5, score_1=-0.2, left_image=1)
    store.add_label("redder first", a, b, "tie", "ann-2")
    store.add_label("redder first", b, a, "unsure", "ann-2")
    rows = store.labels()
    assert [r.outcome for r in rows] == ["image_0", "tie", "unsure"]
    assert rows[0] == label and rows[0].model_version == 3 and rows[0].left_image == 1 and rows[0].score_0 == 1.5
    pairs = store.pairs("redder first")
    assert [(p.image_0, p.image_1, p.label_0) for p in pairs] == [(a, b, 1.0), (a, b, 0.5)]  # unsure: no preference
    assert isinstance(store, PairSource)
    with pytest.raises(ValueError, match="outcome must be one of"):
        store.add_label("x", a, b, "left", "ann-1")
    with pytest.raises(ValueError, match="two different images"):
        store.add_label("x", a, a, "tie", "ann-1")


def test_undo_only_ones_own_last_label(store):
    a, b = add_two(store)
    store.add_label("i", a, b, "image_0", "alice")
    bob = store.add_label("i", a, b, "image_1", "bob")
    undone = store.undo_last("alice")
    assert undone.annotator == "alice" and undone.outcome == "image_0"
    assert [r.annotator for r in store.labels()] == ["bob"]  # bob's label untouched
    assert store.undo_last("alice") is None  # nothing left of alice's
    assert len(store.labels(include_undone=True)) == 2  # the undone label is kept, marked
    assert store.labels()[0].pair_id == bob.pair_id


def test_concurrent_writers_lose_nothing(store):
    a, b = add_two(store)
    errors = []

    def annotate(k):
        try:
            for n in range(25):
                store.add_label("i", a, b, "image_0" if n % 2 else "image_1", f"ann-{k}")
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=annotate, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and store.count() == 200


WRITER = """
import sys
from rankui.store import LabelStore
store = LabelStore(sys.argv[1])
a = store.add_image(b"A" * 64, "a.png", "PNG", 8, 8)
b = store.add_image(b"B" * 64, "b.png", "PNG", 8, 8)
for n in range(10_000):
    label = store.add_label("i", a, b, "image_0", "ann")
    print(label.pair_id, flush=True)   # acknowledged only after the commit returned
"""


def test_acknowledged_labels_survive_kill_9(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "data")], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    acked = [proc.stdout.readline().strip() for _ in range(40)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = {label.pair_id for label in LabelStore(tmp_path / "data").labels()}
    assert all(acked) and set(acked) <= stored
