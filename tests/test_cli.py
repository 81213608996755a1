"""CLI: fit -> eval gives identical metrics, --help documents every flag, predict, export-labels."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.cli import build_parser, main
from trainer.config import config_keys
from trainer.data import DatasetPairSource, JsonlPairSource, read_hf, read_table

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests/data"
CONFIG = REPO / "trainer/configs/tiny-test.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, request):
    out = tmp_path_factory.mktemp("fit")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["fit", "--config", str(CONFIG), "--out_dir", str(out), "--train.progress", "false",
                     "--data.path", str(DATA / "count.tsv"), "--eval_data.path", str(DATA / "count_eval.tsv")]) == 0
    finally:
        torch.set_num_threads(previous)
    return out


def test_fit_then_eval_reloads_with_identical_metrics(trained, tmp_path, capsys):
    fitted = json.loads((trained / "checkpoint.json").read_text())["metadata"]["metrics"]
    assert fitted["srcc"] > 0.5 and fitted["images"] == 12
    assert main(["eval", "--config", str(CONFIG), "--checkpoint", str(trained / "checkpoint.safetensors"),
                 "--eval_data.path", str(DATA / "count_eval.tsv"), "--output", str(tmp_path / "m.json")]) == 0
    assert json.loads(tmp_path.joinpath("m.json").read_text()) == fitted
    resolved = json.loads((trained / "config.json").read_text())
    assert resolved["train"]["steps"] == 30 and resolved["method_config"] == {"mode": "fixed", "dropout": 0.0}


def test_help_documents_every_flag():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices
    fit_help = sub["fit"].format_help()
    for key, (_, help_text, _) in config_keys().items():
        assert f"--{key} " in fit_help and help_text, key
    for name, parser_ in sub.items():
        for action in parser_._actions:
            assert action.help, f"{name} {action.option_strings} has no help"
    out = subprocess.run([sys.executable, "-m", "trainer", "predict", "--help"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert "--checkpoint FILE" in out and "--output FILE" in out and "--text TEXT" in out


def test_bad_flags_fail_clearly(capsys, tmp_path):
    assert main(["fit", "--config", str(CONFIG), "--train.steps", "many"]) == 2
    assert "Config key 'train.steps' expects int, got 'many'" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "none.safetensors"), "--data.path", "x"]) == 2
    assert "Checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "--train.lrr", "1"])


def test_predict_writes_a_ranked_csv(trained, tmp_path):
    out = tmp_path / "ranked.csv"
    assert main(["predict", "--checkpoint", str(trained / "checkpoint.safetensors"), "--images",
                 str(DATA / "images"), "--text", "Rank by the number of shapes.", "--output", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    names = [Path(r["image"]).name for r in rows]
    assert len(rows) == 36 and "truncated.png" not in names  # 37 files, the truncated one reported
    assert [int(r["rank"]) for r in rows] == list(range(1, 37))
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_export_labels_roundtrips_tables_and_pairs(tmp_path):
    assert main(["export-labels", "--data.path", str(DATA / "count_eval.tsv"), "--output", str(tmp_path / "items")]) == 0
    table = read_table(DATA / "count_eval.tsv")
    again = read_hf(str(tmp_path / "items"), label_column="target")
    assert [i.read_bytes() for i in again.items] == [i.read_bytes() for i in table.items]
    assert [i.target for i in again.items] == [i.target for i in table.items]
    rows = [{"instruction": "more shapes", "image_0": str(DATA / "images/eval_shapes_00.png"),
             "image_1": str(DATA / "images/eval_shapes_01.png"), "label_0": 1, "annotator": "ann"},
            {"instruction": "more shapes", "image_0": str(DATA / "images/eval_shapes_01.png"),
             "image_1": str(DATA / "images/eval_shapes_02.png"), "label_0": 0.5}]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["export-labels", "--data.kind", "pairs", "--data.path", str(tmp_path / "p.jsonl"),
                 "--output", str(tmp_path / "pairs.parquet")]) == 0
    import datasets
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "pairs.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert ds[1]["label_0"] == ds[1]["label_1"] == 0.5 and ds[0]["annotator"] == "ann"
    assert "/" not in ds.cast_column("image_0", datasets.Image(decode=False))[0]["image_0"]["path"]
    source, back = JsonlPairSource(tmp_path / "p.jsonl"), DatasetPairSource(ds)
    assert [(p.image_0, p.image_1, p.label_0) for p in back.pairs()] == \
        [(p.image_0, p.image_1, p.label_0) for p in source.pairs()]
