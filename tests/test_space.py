"""Space glue: the label mirror snapshots consistently and fails clearly offline; ZeroGPU wrapper."""

import logging
import sqlite3

from rankui.space import LabelMirror, gpu_burst, start_label_mirror
from rankui.store import LabelStore


def test_mirror_is_off_without_token_or_hub(tmp_path, monkeypatch, caplog):
    store = LabelStore(tmp_path / "data")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with caplog.at_level(logging.WARNING, logger="rankui"):
        assert start_label_mirror(store, "me/labels") is None
        assert "no HF_TOKEN" in caplog.text
        caplog.clear()
        assert start_label_mirror(store, "me/labels", token="hf_secret_value") is None  # offline here
    assert "cannot be reached" in caplog.text and "hf_secret_value" not in caplog.text
    assert start_label_mirror(store, "") is None


def test_snapshot_is_a_consistent_copy(tmp_path):
    store = LabelStore(tmp_path / "data")
    a = store.add_image(b"A" * 32, "a.png", "PNG", 8, 8)
    b = store.add_image(b"B" * 32, "b.png", "PNG", 8, 8)
    for _ in range(5):
        store.add_label("i", a, b, "image_0", "ann")
    mirror = LabelMirror.__new__(LabelMirror)  # the snapshot part only: no Hub here
    mirror.store, mirror.snapshot_dir = store, tmp_path / "data" / "mirror"
    path = mirror.snapshot()
    count = sqlite3.connect(path).execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    assert count == 5
    assert (mirror.snapshot_dir / "images" / a[:2] / a).read_bytes() == b"A" * 32


def test_gpu_burst_is_a_no_op_off_zerogpu(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    fn = lambda x: x + 1  # noqa: E731
    assert gpu_burst(fn) is fn
    monkeypatch.setenv("SPACES_ZERO_GPU", "1")  # 'spaces' is not installed here: falls back, with a warning
    assert gpu_burst(fn)(1) == 2
