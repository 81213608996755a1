"""Export the collected labels as Hugging Face `datasets`: a "pairs" config and a "rankings" config.

"pairs" follows Pick-a-Pic (label_0 / label_1: 1/0 for a preference, 0.5/0.5 for a tie) plus the
provenance an annotation tool keeps: annotator, time, source, which image was on the left, the
model version and its scores at labelling time, and content ids. "Can't tell" judgements are kept
with null labels and `preferred = "unsure"`. "rankings" is listwise, one row per instruction: its
labelled images ordered by a Bradley-Terry fit of the pairs (HPD-style consumers). Images are
embedded as their original bytes, named by content id: no local paths leave the machine.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image, Sequence, Value

from .pairs import bt_posterior
from .store import LabelStore

PREFERRED = ["image_0", "image_1", "tie", "unsure"]
PAIR_FEATURES = Features({
    "pair_id": Value("string"), "instruction": Value("string"),
    "image_0": Image(), "image_1": Image(), "image_0_id": Value("string"), "image_1_id": Value("string"),
    "label_0": Value("float32"), "label_1": Value("float32"), "preferred": ClassLabel(names=PREFERRED),
    "are_different": Value("bool"), "annotator": Value("string"), "created_at": Value("timestamp[ms, tz=UTC]"),
    "source": Value("string"), "left_image": Value("int8"), "model_version": Value("int32"),
    "model_score_0": Value("float32"), "model_score_1": Value("float32"),
})
RANKING_FEATURES = Features({
    "instruction": Value("string"), "images": Sequence(Image()), "image_ids": Sequence(Value("string")),
    "scores": Sequence(Value("float32")), "num_labels": Value("int32"),
})


class ExportError(RuntimeError):
    """An export that cannot be done, with the reason a person can act on."""


def _cell(store: LabelStore, image_id: str) -> dict:
    fmt = store.image_info(image_id)["format"].lower()
    return {"bytes": store.image_bytes(image_id), "path": f"{image_id}.{fmt}"}


def pairs_dataset(store: LabelStore) -> Dataset:
    rows = []
    for lab in store.labels():
        label_0 = lab.label_0
        rows.append({
            "pair_id": lab.pair_id, "instruction": lab.instruction,
            "image_0": _cell(store, lab.image_0), "image_1": _cell(store, lab.image_1),
            "image_0_id": lab.image_0, "image_1_id": lab.image_1,
            "label_0": label_0, "label_1": None if label_0 is None else 1.0 - label_0,
            "preferred": lab.outcome, "are_different": lab.image_0 != lab.image_1,
            "annotator": lab.annotator, "created_at": datetime.fromisoformat(lab.created_at),
            "source": lab.source, "left_image": lab.left_image, "model_version": lab.model_version,
            "model_score_0": lab.score_0, "model_score_1": lab.score_1,
        })
    return Dataset.from_list(rows, features=PAIR_FEATURES) if rows else Dataset.from_dict(
        {name: [] for name in PAIR_FEATURES}, features=PAIR_FEATURES)


def rankings_dataset(store: LabelStore) -> Dataset:
    rows = []
    for instruction in sorted({p.instruction for p in store.pairs()}):
        pairs = store.pairs(instruction)
        ids = sorted({p.image_0 for p in pairs} | {p.image_1 for p in pairs})
        index = {image_id: k for k, image_id in enumerate(ids)}
        mean, _ = bt_posterior(np.zeros(len(ids)), [(index[p.image_0], index[p.image_1], p.label_0) for p in pairs])
        order = np.argsort(-mean, kind="stable")
        rows.append({"instruction": instruction, "images": [_cell(store, ids[k]) for k in order],
                     "image_ids": [ids[k] for k in order], "scores": [float(mean[k]) for k in order],
                     "num_labels": len(pairs)})
    return Dataset.from_list(rows, features=RANKING_FEATURES) if rows else Dataset.from_dict(
        {name: [] for name in RANKING_FEATURES}, features=RANKING_FEATURES)


def export_parquet(store: LabelStore, out_dir: str | Path) -> dict[str, Path]:
    """pairs.parquet and rankings.parquet, images embedded."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"pairs": out / "pairs.parquet", "rankings": out / "rankings.parquet"}
    pairs_dataset(store).to_parquet(str(paths["pairs"]))
    rankings_dataset(store).to_parquet(str(paths["rankings"]))
    return paths


def export_folder(store: LabelStore, out_dir: str | Path) -> dict[str, Path]:
    """`save_to_disk` folders pairs/ and rankings/ (reload with `datasets.load_from_disk`)."""
    out = Path(out_dir)
    paths = {"pairs": out / "pairs", "rankings": out / "rankings"}
    pairs_dataset(store).save_to_disk(str(paths["pairs"]))
    rankings_dataset(store).save_to_disk(str(paths["rankings"]))
    return paths


def push_to_hub(store: LabelStore, repo_id: str, token: str | None = None, private: bool = True) -> str:
    """Push both configs to a dataset repo (private by default); the token comes from HF_TOKEN."""
    token = token or os.environ.get("HF_TOKEN")
    if not repo_id or "/" not in repo_id:
        raise ExportError("Give the dataset repository as 'user/name'.")
    if not token:
        raise ExportError("No Hugging Face token: set HF_TOKEN (a write token) to push to the Hub.")
    try:
        pairs_dataset(store).push_to_hub(repo_id, config_name="pairs", private=private, token=token)
        rankings_dataset(store).push_to_hub(repo_id, config_name="rankings", private=private, token=token)
    except Exception as err:  # noqa: BLE001 - any Hub failure becomes one clear line, token never included
        reason = type(err).__name__
        if "Offline" in reason or os.environ.get("HF_HUB_OFFLINE") == "1":
            raise ExportError("Cannot push to the Hub: offline mode is on (HF_HUB_OFFLINE=1) or the Hub "
                              "cannot be reached. Export to Parquet or a folder instead.") from None
        raise ExportError(f"Pushing to the Hub failed ({reason}).") from None
    return f"https://huggingface.co/datasets/{repo_id}"
