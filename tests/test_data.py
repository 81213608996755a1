"""Data sources: RAC tables, class folders, datasets datasets, pair sources; bad rows are reported."""

import io
import json
import logging
import shutil
from pathlib import Path

import datasets
import pytest
from PIL import Image

from trainer.config import DataConfig
from trainer.data import (JsonlPairSource, PairSource, content_id, is_held_out, load_source,
                          read_folder, read_hf, read_table, split_items)

DATA = Path(__file__).resolve().parent / "data"


def test_table_reads_rows_and_reports_bad_ones(caplog):
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        table = read_table(DATA / "count.tsv")
    assert len(table.items) == 25  # 24 good rows + the truncated PNG (only decoding can tell)
    first = table.items[0]
    assert (first.text, first.cname, first.target, first.weight) == ("Rank by the number of shapes.", "shapes", 6.0, 1.0)
    assert Path(first.image).is_file() and first.source.endswith("count.tsv:2")
    reasons = {s.source.rsplit(":", 1)[1]: s.reason for s in table.skipped}
    assert reasons == {"26": f"image file not found: {DATA / 'images/missing.png'}",
                       "27": "value 'many' is not a number"}
    assert "missing.png" in caplog.text and "'many'" in caplog.text
    assert {i.cname for i in table.items} == {"shapes", "colours"}


def test_table_comma_separated_and_missing_columns(tmp_path):
    shutil.copy(DATA / "images/train_shapes_00.png", tmp_path / "a.png")
    (tmp_path / "t.csv").write_text("filepath,title,cname,value\na.png,Rank it.,x,4\na.png,Rank it.,x\n")
    table = read_table(tmp_path / "t.csv")
    assert [i.target for i in table.items] == [4.0] and table.skipped[0].reason == "wrong number of fields"
    (tmp_path / "bad.csv").write_text("path,value\na.png,1\n")
    with pytest.raises(ValueError, match="missing column"):
        read_table(tmp_path / "bad.csv")


def test_table_with_classes_checks_indices(tmp_path):
    shutil.copy(DATA / "images/train_shapes_00.png", tmp_path / "a.png")
    (tmp_path / "t.tsv").write_text("filepath\ttitle\tcname\tvalue\na.png\tt\tc\t1\na.png\tt\tc\t5\na.png\tt\tc\t0.5\n")
    table = read_table(tmp_path / "t.tsv", classes=["low", "high"])
    assert [i.label for i in table.items] == [1]
    assert [s.reason for s in table.skipped] == ["value 5.0 is not a class index in 0..1",
                                                "value 0.5 is not a class index in 0..1"]


def _folder(tmp_path: Path) -> Path:
    for name, files in {"2": ["a.png", "b.png"], "10": ["c.png"], "1": ["d.png", "notes.txt"]}.items():
        (tmp_path / name).mkdir()
        for f in files:
            shutil.copy(DATA / "images/train_shapes_00.png", tmp_path / name / f)
    return tmp_path


def test_folder_orders_classes_naturally_and_skips_non_images(tmp_path):
    folder = read_folder(_folder(tmp_path), text="Rank by age.")
    assert folder.classes == ["1", "2", "10"]
    assert [(Path(i.image).name, i.label, i.target) for i in folder.items] == [
        ("d.png", 0, 0.0), ("a.png", 1, 1.0), ("b.png", 1, 1.0), ("c.png", 2, 2.0)]
    assert folder.items[0].text == "Rank by age."
    assert len(folder.skipped) == 1 and "notes.txt" in folder.skipped[0].source
    assert read_folder(tmp_path, classes=["10", "1"]).classes == ["10", "1"]
    with pytest.raises(ValueError, match="no sub-folder"):
        read_folder(tmp_path, classes=["1", "3"])


def _hf_dataset() -> datasets.Dataset:
    images = [Image.open(DATA / f"images/train_shapes_{i:02d}.png") for i in range(4)]
    features = datasets.Features({"img": datasets.Image(), "age": datasets.ClassLabel(names=["young", "old"])})
    return datasets.Dataset.from_dict({"img": images, "age": [0, 1, 1, 0]}, features=features)


def test_hf_dataset_with_class_labels_and_saved_copy(tmp_path):
    ds = _hf_dataset()
    got = read_hf(ds, image_column="img", label_column="age", text="Rank by age.")
    assert got.classes == ["young", "old"]
    assert [(i.label, i.target, i.cname) for i in got.items] == [(0, 0.0, "young"), (1, 1.0, "old"),
                                                                  (1, 1.0, "old"), (0, 0.0, "young")]
    assert Image.open(io.BytesIO(got.items[0].read_bytes())).size == (64, 64)
    ds.save_to_disk(str(tmp_path / "saved"))
    cfg = DataConfig(kind="hf", path=str(tmp_path / "saved"), image_column="img", label_column="age")
    again = load_source(cfg)
    assert [i.read_bytes() for i in again.items] == [i.read_bytes() for i in got.items]
    with pytest.raises(ValueError, match="Column 'label' not in the dataset"):
        read_hf(ds, image_column="img")


def test_hf_dataset_numeric_labels_report_bad_rows():
    ds = datasets.Dataset.from_dict({"image": [str(DATA / "images/train_shapes_00.png"), "nope.png", None],
                                     "score": [0.5, 1.0, 2.0]},
                                    features=datasets.Features({"image": datasets.Image(),
                                                                "score": datasets.Value("float32")}))
    got = read_hf(ds, label_column="score")
    assert [i.target for i in got.items] == [0.5] and got.classes == []
    assert len(got.skipped) == 2 and "no readable path" in got.skipped[0].reason


def test_jsonl_pairs_and_dataset_pairs_agree(tmp_path):
    for i in range(3):
        shutil.copy(DATA / f"images/train_shapes_{i:02d}.png", tmp_path / f"{i}.png")
    rows = [{"instruction": "sharpest", "image_0": "0.png", "image_1": "1.png", "label_0": 1},
            {"instruction": "sharpest", "image_0": "1.png", "image_1": "2.png", "label_0": 0.5, "pair_id": "p2"},
            {"instruction": "other", "image_0": "0.png", "image_1": "2.png", "label_0": 0},
            {"instruction": "x", "image_0": "0.png", "image_1": "gone.png", "label_0": 1},
            {"instruction": "x", "image_0": "0.png", "image_1": "1.png", "label_0": 0.3}]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    source = JsonlPairSource(tmp_path / "pairs.jsonl")
    assert isinstance(source, PairSource)
    assert len(source.pairs()) == 3 and [p.label_0 for p in source.pairs("sharpest")] == [1.0, 0.5]
    assert [s.source.rsplit(":", 1)[1] for s in source.skipped] == ["4", "5"]
    first = source.pairs()[0]
    assert first.image_0 == content_id((tmp_path / "0.png").read_bytes())
    assert source.image_bytes(first.image_1) == (tmp_path / "1.png").read_bytes()

    features = datasets.Features({"instruction": datasets.Value("string"), "image_0": datasets.Image(),
                                  "image_1": datasets.Image(), "label_0": datasets.Value("float32")})
    ds = datasets.Dataset.from_list([{"instruction": p.instruction, "label_0": p.label_0,
                                      "image_0": {"bytes": source.image_bytes(p.image_0), "path": "a.png"},
                                      "image_1": {"bytes": source.image_bytes(p.image_1), "path": "b.png"}}
                                     for p in source.pairs()], features=features)
    ds.save_to_disk(str(tmp_path / "exported"))
    again = load_source(DataConfig(kind="pairs", path=str(tmp_path / "exported")))
    assert [(p.instruction, p.image_0, p.image_1, p.label_0) for p in again.pairs()] == \
        [(p.instruction, p.image_0, p.image_1, p.label_0) for p in source.pairs()]


def test_held_out_split_is_stable_and_near_fraction():
    ids = [f"pair-{i}" for i in range(2000)]
    held = [i for i in ids if is_held_out(i, 0.2)]
    assert held == [i for i in ids[:1000] if is_held_out(i, 0.2)] + [i for i in ids[1000:] if is_held_out(i, 0.2)]
    assert 0.17 < len(held) / len(ids) < 0.23
    assert not any(is_held_out(i, 0.0) for i in ids)
    table = read_table(DATA / "count.tsv")
    train, test = split_items(table.items, 0.3)
    assert len(train) + len(test) == len(table.items) and test and train
    assert split_items(table.items, 0.3)[1] == test


def test_bad_source_kind_and_empty_path():
    with pytest.raises(ValueError, match="Unknown data.kind 'csv'"):
        load_source(DataConfig(kind="csv", path="x"))
    with pytest.raises(ValueError, match="data.path is empty"):
        load_source(DataConfig(kind="table", path=""))
