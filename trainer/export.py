"""Export any labelled source as a `datasets` dataset with embedded image bytes.

Pairs follow the app's export schema (ECOSYSTEM §4: Pick-a-Pic-style rows with label_0/label_1,
0.5/0.5 for a tie, and content ids), so `DatasetPairSource` reads the export back; items keep their
caption, category, numeric target and class label.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from .data import LabelledSet, load_source

PAIR_FEATURES = datasets.Features({
    "pair_id": datasets.Value("string"), "instruction": datasets.Value("string"),
    "image_0": datasets.Image(), "image_1": datasets.Image(),
    "label_0": datasets.Value("float32"), "label_1": datasets.Value("float32"),
    "annotator": datasets.Value("string"), "created_at": datasets.Value("string"),
    "image_0_id": datasets.Value("string"), "image_1_id": datasets.Value("string"),
})


def item_features(classes: list[str]) -> datasets.Features:
    label = datasets.ClassLabel(names=classes) if classes else datasets.Value("int64")
    return datasets.Features({"image": datasets.Image(), "text": datasets.Value("string"),
                              "cname": datasets.Value("string"), "target": datasets.Value("float32"),
                              "label": label})


def to_dataset(source) -> datasets.Dataset:
    if isinstance(source, LabelledSet):
        rows = [{"image": {"bytes": item.read_bytes(), "path": _name(item.image, i)}, "text": item.text,
                 "cname": item.cname, "target": item.target, "label": item.label}
                for i, item in enumerate(source.items)]
        return datasets.Dataset.from_list(rows, features=item_features(source.classes))
    rows = [{"pair_id": p.pair_id, "instruction": p.instruction, "label_0": p.label_0, "label_1": 1.0 - p.label_0,
             "image_0": {"bytes": source.image_bytes(p.image_0), "path": f"{p.image_0[:16]}.png"},
             "image_1": {"bytes": source.image_bytes(p.image_1), "path": f"{p.image_1[:16]}.png"},
             "annotator": p.annotator, "created_at": p.created_at, "image_0_id": p.image_0, "image_1_id": p.image_1}
            for p in source.pairs()]
    return datasets.Dataset.from_list(rows, features=PAIR_FEATURES)


def _name(image, index: int) -> str:
    """Only the file name travels: exports hold no local absolute paths."""
    return Path(image).name if isinstance(image, str) else f"{index}.png"


def export_labels(data_config, output: str | Path) -> datasets.Dataset:
    """Save to a folder (`save_to_disk`) or, for a `.parquet` path, one Parquet file."""
    ds = to_dataset(load_source(data_config))
    output = Path(output)
    if output.suffix == ".parquet":
        output.parent.mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(output))
    else:
        ds.save_to_disk(str(output))
    return ds
