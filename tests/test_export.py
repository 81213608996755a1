"""Label export round-trips through `datasets`: every label, byte-identical images, no local paths."""

import io

import pyarrow.parquet as pq
import pytest
from datasets import Dataset, load_from_disk
from PIL import Image

from rankui.export import ExportError, export_folder, export_parquet, push_to_hub
from rankui.store import LabelStore


def jpeg(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), colour).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def store(tmp_path):
    store = LabelStore(tmp_path / "data")
    images = [store.add_image(jpeg(c), f"/private/home/{c}.jpg", "JPEG", 24, 16) for c in ("red", "green", "blue")]
    r, g, b = images
    store.add_label("greener first", g, r, "image_0", "alice", "correction", 2, 0.7, 0.1, left_image=1)
    store.add_label("greener first", g, b, "tie", "bob", "suggestion", 2, 0.5, 0.5)
    store.add_label("greener first", r, b, "unsure", "bob", "drag", 3)
    store.add_label("greener first", b, r, "image_0", "alice")
    store.add_label("redder first", r, g, "image_1", "carol")
    store.undo_last("carol")  # undone: not exported
    store.images = images
    return store


def check_pairs(ds: Dataset, store: LabelStore) -> None:
    assert len(ds) == 4
    assert ds["preferred"] == [0, 2, 3, 0]  # image_0, tie, unsure, image_0
    assert ds["label_0"] == [1.0, 0.5, None, 1.0] and ds["label_1"] == [0.0, 0.5, None, 0.0]
    assert ds["annotator"] == ["alice", "bob", "bob", "alice"] and ds["left_image"] == [1, 0, 0, 0]
    assert ds["model_score_0"][0] == pytest.approx(0.7) and ds["model_version"] == [2, 2, 3, 0]
    for row in ds.cast_column("image_0", ds.features["image_0"].__class__(decode=False)):
        assert row["image_0"]["bytes"] == store.image_bytes(row["image_0_id"])  # byte-identical
        assert row["image_0"]["path"] == f"{row['image_0_id']}.jpeg"  # no local path


def test_parquet_round_trip(store, tmp_path):
    paths = export_parquet(store, tmp_path / "out")
    check_pairs(Dataset.from_parquet(str(paths["pairs"])), store)
    assert b"/private/home" not in paths["pairs"].read_bytes()
    assert "image_0" in pq.read_schema(paths["pairs"]).names
    rankings = Dataset.from_parquet(str(paths["rankings"]))
    assert rankings["instruction"] == ["greener first"]  # "redder first" had only an undone label
    row = rankings[0]
    assert row["image_ids"][0] == store.images[1]  # green beat red and tied blue; blue beat red
    assert row["image_ids"][-1] == store.images[0] and row["num_labels"] == 3


def test_folder_round_trip(store, tmp_path):
    paths = export_folder(store, tmp_path / "out")
    check_pairs(load_from_disk(str(paths["pairs"])), store)
    assert len(load_from_disk(str(paths["rankings"]))) == 1


def test_hub_push_fails_clearly_offline(store, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    with pytest.raises(ExportError) as err:
        push_to_hub(store, "someone/labels")
    assert "offline" in str(err.value).lower() and "hf_secret_token_value" not in str(err.value)
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(ExportError, match="set HF_TOKEN"):
        push_to_hub(store, "someone/labels")
    with pytest.raises(ExportError, match="user/name"):
        push_to_hub(store, "nohandle", token="x")
