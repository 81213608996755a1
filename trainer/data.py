"""Labelled data from every source the trainer reads, as `Item`s (images with targets) or `Pair`s.

Sources: RAC's TSV/CSV (`filepath, title, cname, value[, sample_weights_by_class]`), an image folder
with one sub-folder per ordered class, a `datasets` dataset (image column + label column), and any
pair source (the app's label store implements `PairSource`; `JsonlPairSource` and
`DatasetPairSource` are the file-based ones). Rows that cannot be used are reported (file and reason)
in `Skipped` records and a warning, never dropped silently.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from PIL import Image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
TABLE_COLUMNS = ("filepath", "title", "cname", "value")


@dataclass
class Item:
    """One image with its labels; `image` is a path or the encoded bytes."""

    image: str | bytes
    text: str = ""  # the caption / instruction this item is ranked under
    target: float | None = None  # numeric target (count, score, class index)
    label: int | None = None  # class index into the source's classes
    cname: str = ""  # RAC category: batches are formed per category
    weight: float = 1.0  # RAC sample_weights_by_class
    source: str = ""  # where it came from, for reports

    def read_bytes(self) -> bytes:
        return self.image if isinstance(self.image, bytes) else Path(self.image).read_bytes()


@dataclass
class Pair:
    """One pairwise label: `label_0` is P(image_0 ranks above image_1): 1, 0, or 0.5 for a tie."""

    instruction: str
    image_0: str  # content id (sha256 of the image bytes)
    image_1: str
    label_0: float
    pair_id: str = ""  # stable id: decides the held-out split
    annotator: str = ""
    created_at: str = ""


@dataclass
class Skipped:
    source: str  # file (and row) that could not be used
    reason: str


@dataclass
class LabelledSet:
    items: list[Item]
    classes: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@runtime_checkable
class PairSource(Protocol):
    """What the trainer needs from a label store."""

    def pairs(self, instruction: str | None = None) -> list[Pair]:
        """All pairwise labels, optionally for one instruction."""

    def image_bytes(self, content_id: str) -> bytes:
        """The encoded image with this content id."""


def content_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def report(skipped: list[Skipped], what: str) -> None:
    """One warning per skipped row, so nothing is dropped silently."""
    for s in skipped:
        log.warning("Skipped %s row %s: %s", what, s.source, s.reason)


# ----------------------------------------------------------------------------------- RAC tables
def read_table(path: str | Path, root: str | Path | None = None, classes: list[str] | None = None,
               limit: int = 0) -> LabelledSet:
    """RAC's TSV/CSV; the delimiter is sniffed (RAC's example `.csv` is tab-separated)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Table not found: {path}")
    base = Path(root) if root else path.parent
    text = path.read_text(encoding="utf-8-sig")
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else "", delimiters="\t,;")
    except csv.Error:
        dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    missing = [c for c in TABLE_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; a RAC table has "
                         f"{', '.join(TABLE_COLUMNS)}[, sample_weights_by_class] (got {reader.fieldnames}).")
    items, skipped = [], []
    for row_no, row in enumerate(reader, start=2):  # row 1 is the header
        if limit and len(items) >= limit:
            break
        where = f"{path}:{row_no}"
        try:
            items.append(_table_item(row, base, where, classes))
        except ValueError as err:
            skipped.append(Skipped(where, str(err)))
    report(skipped, "table")
    return LabelledSet(items, list(classes or []), skipped)


def _table_item(row: dict, base: Path, where: str, classes: list[str] | None) -> Item:
    if None in row or any(row.get(c) is None for c in TABLE_COLUMNS):
        raise ValueError("wrong number of fields")
    file = (row["filepath"] or "").strip()
    if not file:
        raise ValueError("empty filepath")
    image = Path(file) if Path(file).is_absolute() else base / file
    if not image.is_file():
        raise ValueError(f"image file not found: {image}")
    try:
        value = float(row["value"])
    except ValueError:
        raise ValueError(f"value {row['value']!r} is not a number") from None
    if value != value:
        raise ValueError("value is NaN")
    weight_text = (row.get("sample_weights_by_class") or "").strip()
    try:
        weight = float(weight_text) if weight_text else 1.0
    except ValueError:
        raise ValueError(f"sample_weights_by_class {weight_text!r} is not a number") from None
    label = None
    if classes:
        label = int(round(value))
        if not 0 <= label < len(classes) or label != value:
            raise ValueError(f"value {value} is not a class index in 0..{len(classes) - 1}")
    return Item(str(image), text=row["title"].strip(), target=value, label=label,
                cname=row["cname"].strip(), weight=weight, source=where)


# --------------------------------------------------------------------------------- image folders
def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def read_folder(path: str | Path, text: str = "", classes: list[str] | None = None,
                limit: int = 0) -> LabelledSet:
    """One sub-folder per class, ordered by `classes` or naturally by name ("2" before "10")."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder not found: {root}")
    found = sorted((d.name for d in root.iterdir() if d.is_dir()), key=_natural_key)
    names = list(classes) if classes else found
    if len(names) < 2:
        raise ValueError(f"{root}: need at least two class sub-folders, found {found}.")
    absent = [n for n in names if n not in found]
    if absent:
        raise ValueError(f"{root}: no sub-folder for class(es) {absent} (found {found}).")
    items, skipped = [], []
    for index, name in enumerate(names):
        for file in sorted((root / name).iterdir()):
            if limit and len(items) >= limit:
                break
            if file.is_dir():
                continue
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append(Skipped(str(file), f"not an image file type ({file.suffix or 'no suffix'})"))
                continue
            items.append(Item(str(file), text=text, target=float(index), label=index, cname=name, source=str(file)))
    report(skipped, "folder")
    return LabelledSet(items, names, skipped)


# ---------------------------------------------------------------------------------- datasets
def read_hf(dataset, image_column: str = "image", label_column: str = "label", split: str = "train",
            text: str = "", classes: list[str] | None = None, limit: int = 0) -> LabelledSet:
    """A `datasets.Dataset`, a `save_to_disk` folder, or a dataset name (`load_dataset`)."""
    import datasets

    if isinstance(dataset, (str, Path)):
        if Path(dataset).is_dir():
            dataset = datasets.load_from_disk(str(dataset))
        else:
            dataset = datasets.load_dataset(str(dataset), split=split)
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise ValueError(f"Split '{split}' not in the dataset (has {list(dataset)}).")
        dataset = dataset[split]
    for col in (image_column, label_column):
        if col not in dataset.column_names:
            raise ValueError(f"Column '{col}' not in the dataset (columns: {dataset.column_names}).")
    feature = dataset.features[label_column]
    names = list(classes) if classes else list(getattr(feature, "names", []) or [])
    if isinstance(dataset.features[image_column], datasets.Image):
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))  # bytes, not PIL
    items, skipped = [], []
    for index, row in enumerate(dataset.select_columns([image_column, label_column])):
        if limit and len(items) >= limit:
            break
        where = f"{getattr(dataset, 'info', None) and dataset.info.dataset_name or 'dataset'}[{index}]"
        try:
            image = _hf_image(row[image_column])
            value = row[label_column]
            if value is None or isinstance(value, (str, bytes)):
                raise ValueError(f"label {value!r} is not a number")
            value = float(value)
            label = int(value) if names else None
            if names and not 0 <= label < len(names):
                raise ValueError(f"label {label} is not a class index in 0..{len(names) - 1}")
        except (ValueError, OSError) as err:
            skipped.append(Skipped(where, str(err)))
            continue
        items.append(Item(image, text=text, target=value, label=label, cname=names[label] if names else "",
                          source=where))
    report(skipped, "dataset")
    return LabelledSet(items, names, skipped)


def _hf_image(cell) -> str | bytes:
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return cell["bytes"]
        if cell.get("path") and Path(cell["path"]).is_file():
            return cell["path"]
        raise ValueError(f"image cell has no bytes and no readable path ({cell.get('path')!r})")
    if isinstance(cell, Image.Image):
        buf = io.BytesIO()
        cell.save(buf, format="PNG")
        return buf.getvalue()
    if isinstance(cell, str) and Path(cell).is_file():
        return cell
    raise ValueError(f"unsupported image cell {type(cell).__name__}")


# --------------------------------------------------------------------------------- pair sources
class JsonlPairSource:
    """Pairs in a JSONL file: {instruction, image_0, image_1 (paths), label_0[, pair_id, annotator]}."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"Pair file not found: {self.path}")
        self._images: dict[str, bytes] = {}
        self._pairs: list[Pair] = []
        self.skipped: list[Skipped] = []
        for line_no, line in enumerate(self.path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    self._pairs.append(self._parse(json.loads(line)))
                except (ValueError, KeyError, TypeError, OSError) as err:
                    self.skipped.append(Skipped(f"{self.path}:{line_no}", str(err) or type(err).__name__))
        report(self.skipped, "pair file")

    def _parse(self, row: dict) -> Pair:
        ids = []
        for key in ("image_0", "image_1"):
            file = Path(row[key]) if Path(row[key]).is_absolute() else self.path.parent / row[key]
            data = file.read_bytes()
            ids.append(content_id(data))
            self._images[ids[-1]] = data
        label = float(row["label_0"])
        if label not in (0.0, 0.5, 1.0):
            raise ValueError(f"label_0 must be 1, 0 or 0.5 (tie), got {label}")
        pair_id = str(row.get("pair_id") or f"{ids[0]}:{ids[1]}:{row['instruction']}")
        return Pair(str(row["instruction"]), ids[0], ids[1], label, pair_id, str(row.get("annotator", "")))

    def pairs(self, instruction: str | None = None) -> list[Pair]:
        return [p for p in self._pairs if instruction is None or p.instruction == instruction]

    def image_bytes(self, content_id: str) -> bytes:
        return self._images[content_id]


class DatasetPairSource:
    """Pairs from an exported `datasets` dataset (ECOSYSTEM §4 schema: image_0/1, label_0, instruction)."""

    def __init__(self, dataset):
        import datasets

        if isinstance(dataset, (str, Path)):
            dataset = datasets.load_from_disk(str(dataset))
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset["train"]
        for col in ("image_0", "image_1"):
            dataset = dataset.cast_column(col, datasets.Image(decode=False))
        self._images, self._pairs = {}, []
        for i, row in enumerate(dataset):
            ids = []
            for col in ("image_0", "image_1"):
                data = _hf_image(row[col])
                data = data if isinstance(data, bytes) else Path(data).read_bytes()
                ids.append(content_id(data))
                self._images[ids[-1]] = data
            self._pairs.append(Pair(row["instruction"], ids[0], ids[1], float(row["label_0"]),
                                    str(row.get("pair_id") or i), str(row.get("annotator") or "")))

    def pairs(self, instruction: str | None = None) -> list[Pair]:
        return [p for p in self._pairs if instruction is None or p.instruction == instruction]

    def image_bytes(self, content_id: str) -> bytes:
        return self._images[content_id]


def open_pair_source(path: str, factory: str = "") -> PairSource:
    """A pair source from a path: a JSONL file, a saved pairs dataset, or `module:callable(path)`."""
    if factory:
        module, _, name = factory.partition(":")
        if not name:
            raise ValueError(f"pair_source must be 'module:callable', got {factory!r}.")
        source = getattr(importlib.import_module(module), name)(path)
    elif Path(path).is_dir():
        source = DatasetPairSource(path)
    else:
        source = JsonlPairSource(path)
    if not isinstance(source, PairSource):
        raise TypeError(f"{type(source).__name__} is not a pair source (needs pairs() and image_bytes()).")
    return source


def is_held_out(pair_id: str, fraction: float, salt: str = "holdout") -> bool:
    """Stable split: a label stays on its side as more labels arrive (hash of its id)."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"{salt}:{pair_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_items(items: list[Item], fraction: float) -> tuple[list[Item], list[Item]]:
    """Stable train/held-out split of items by image path or content."""
    train, held = [], []
    for item in items:
        key = item.image if isinstance(item.image, str) else content_id(item.image)
        (held if is_held_out(str(key), fraction) else train).append(item)
    return train, held


def load_source(config, text_default: str = "") -> LabelledSet | PairSource:
    """Read what a `DataConfig` describes."""
    kind, path = config.kind, config.path
    if not path:
        raise ValueError("data.path is empty: give a table, folder, dataset or pair file.")
    if kind == "table":
        return read_table(path, config.root or None, config.classes or None, config.limit)
    if kind == "folder":
        return read_folder(path, config.text or text_default, config.classes or None, config.limit)
    if kind == "hf":
        return read_hf(path, config.image_column, config.label_column, config.split,
                       config.text or text_default, config.classes or None, config.limit)
    if kind == "pairs":
        return open_pair_source(path, config.pair_source)
    raise ValueError(f"Unknown data.kind '{kind}'; use table, folder, hf or pairs.")
