"""Training loop: RAC batches, optimizer groups, schedule, determinism, resume, pairs, fine-tuning."""

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from trainer.batches import Example, ItemBatches
from trainer.config import FitConfig, apply_overrides
from trainer.fit import fit, run_eval
from trainer.train import cosine_with_warmup, no_decay

DATA = Path(__file__).resolve().parent / "data"


def tiny_config(out: Path, *overrides: str) -> FitConfig:
    config = FitConfig()
    return apply_overrides(config, [
        "backbone.name=demo", f"data.path={DATA / 'count.tsv'}", f"eval_data.path={DATA / 'count_eval.tsv'}",
        "train.steps=6", "train.batch_size=6", "train.lr=1e-3", "train.warmup_steps=2", "train.log_every=1",
        "train.progress=false", "train.device=cpu", f"out_dir={out}", *overrides])


def weights(path: Path) -> dict:
    return safetensors.torch.load_file(str(path))


def _examples():
    return [Example(f"k{c}{i}", f"Rank {c}.", float(i), None, c, 1.0 + (i == 0) * 50) for c in "ab" for i in range(10)]


def test_rank_batches_follow_rac():
    batches = ItemBatches(_examples(), batch_size=8, sampling="rank", negative_ratio=0.25, seed=3)
    for index in range(20):
        b = batches(index)
        assert len(b.keys) == 8 and b.targets.shape == (8,)
        own = b.text[-2]  # "Rank a." -> "a"
        positives, negatives = b.keys[:6], b.keys[6:]
        assert all(k[1] == own for k in positives) and len(set(positives)) == 6  # no replacement
        assert all(k[1] != own for k in negatives) and b.targets[6:].tolist() == [0.0, 0.0]
        assert b.targets[:6].tolist() == [float(k[2:]) for k in positives]
    assert batches(5).keys == ItemBatches(_examples(), 8, "rank", 0.25, seed=3)(5).keys  # pure function of index
    heavy = sum(batches(i).keys[:6].count(f"k{batches(i).text[-2]}0") for i in range(200))
    assert heavy > 190  # weight 51 vs 1: the heavy item is nearly always drawn


def test_plain_batches_cover_each_epoch_once():
    batches = ItemBatches(_examples(), batch_size=4, sampling="plain", seed=0)
    epoch = [batches(i) for i in range(6)]  # 2 captions x ceil(10 / 4) = 6 batches per epoch
    keys = [k for b in epoch for k in b.keys]
    assert sorted(keys) == sorted(e.key for e in _examples())
    assert all(len({k[1] for k in b.keys}) == 1 for b in epoch)  # one caption per batch
    assert [b.keys for b in (batches(i) for i in range(6, 12))] != [b.keys for b in epoch]  # reshuffled
    with pytest.raises(ValueError, match="negative_ratio"):
        ItemBatches(_examples(), 4, "rank", negative_ratio=1.0)


def test_decay_groups_and_schedule():
    assert no_decay("post_fuse_block.layers.0.norm1.weight", torch.zeros(4))
    assert no_decay("regressor.0.bias", torch.zeros(4))
    assert not no_decay("regressor.0.weight", torch.zeros(4, 4))
    factor = cosine_with_warmup(warmup=4, total=14, floor=0.1)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(9) == pytest.approx(0.55) and factor(14) == pytest.approx(0.1)


def test_fit_writes_everything_and_eval_reproduces_metrics(tmp_path):
    result = fit(tiny_config(tmp_path, "train.steps=30", "train.batch_size=8", "train.warmup_steps=5"))
    assert result.checkpoint == tmp_path / "checkpoint.safetensors"
    for name in ("checkpoint.json", "checkpoint.state.pt", "config.json", "metrics.jsonl"):
        assert (tmp_path / name).is_file()
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines[:-1]] == list(range(1, 31)) and "final" in lines[-1]
    assert lines[0]["lr"] == pytest.approx(2e-4) and all("loss" in l for l in lines[:-1])
    assert lines[-1]["final"] == result.metrics
    info = json.loads((tmp_path / "checkpoint.json").read_text())
    assert info["metadata"]["labels"] == 24 and info["metadata"]["metrics"] == result.metrics
    # 30 steps on the fixture learn the counts (seeded, deterministic on CPU).
    assert result.metrics["split"] == "held-out" and result.metrics["srcc"] > 0.5
    assert run_eval(result.checkpoint, tiny_config(tmp_path)) == result.metrics


def test_same_seed_same_weights_and_resume_is_exact(tmp_path):
    full = fit(tiny_config(tmp_path / "full"))
    again = fit(tiny_config(tmp_path / "again"))
    assert all(torch.equal(a, b) for a, b in zip(weights(full.checkpoint).values(), weights(again.checkpoint).values()))

    def crash(trainer, logs):
        if trainer.step == 4:
            raise KeyboardInterrupt("killed mid-run")

    with pytest.raises(KeyboardInterrupt):  # a run killed after its step-3 checkpoint
        fit(tiny_config(tmp_path / "resumed", "train.save_every=3"), callbacks={"on_batch_end": [crash]})
    half = weights(tmp_path / "resumed/checkpoint.safetensors")
    assert json.loads((tmp_path / "resumed/checkpoint.json").read_text())["metadata"]["step"] == 3
    resumed = fit(tiny_config(tmp_path / "resumed", f"resume={tmp_path / 'resumed/checkpoint.safetensors'}"))
    assert json.loads((tmp_path / "resumed/checkpoint.json").read_text())["metadata"]["step"] == 6
    a, b = weights(full.checkpoint), weights(resumed.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], half[k]) for k in a)
    other = fit(tiny_config(tmp_path / "seed1", "train.seed=1"))
    assert not all(torch.equal(a[k], weights(other.checkpoint)[k]) for k in a)


def test_fit_on_pairs_with_held_out_share(tmp_path):
    counts = {}
    for row in (DATA / "count.tsv").read_text().splitlines()[1:13]:
        file, _, cname, value, _ = row.split("\t")
        counts[file] = float(value)
    files = sorted(counts)
    rows = [{"instruction": "Rank by the number of shapes.", "image_0": str(DATA / a), "image_1": str(DATA / b),
             "label_0": 0.5 if counts[a] == counts[b] else float(counts[a] > counts[b]), "pair_id": f"{a}|{b}"}
            for i, a in enumerate(files) for b in files[i + 1:]]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    config = tiny_config(tmp_path / "run", "data.kind=pairs", f"data.path={tmp_path / 'pairs.jsonl'}",
                         "eval_data.path=", "eval_fraction=0.3", "train.steps=20", "train.batch_size=16")
    result = fit(config)
    assert result.metrics["split"] == "held-out" and 10 <= result.metrics["pairs"] <= 30
    assert result.metrics["pair_label_accuracy"] > 0.6
    assert run_eval(result.checkpoint, config) == result.metrics


def test_finetune_last_block_saves_and_reloads_it(tmp_path):
    config = tiny_config(tmp_path, "train.finetune_blocks=1", "train.backbone_lr=1e-3", "train.steps=3")
    result = fit(config)
    state = weights(result.checkpoint)
    tuned = [k for k in state if k.startswith("backbone.")]
    assert tuned and all(k.startswith(("backbone.visual.transformer.resblocks.1.", "backbone.visual.ln_post",
                                       "backbone.visual.proj")) for k in tuned)
    original = safetensors.torch.load_file(str(DATA.parents[1] / "assets/demo_clip/open_clip_model.safetensors"))
    key = "visual.transformer.resblocks.1.mlp.c_fc.weight"
    assert not torch.allclose(state["backbone." + key], original[key].float(), atol=1e-4)
    assert run_eval(result.checkpoint, config) == result.metrics
    with pytest.raises(ValueError, match="finetune_blocks must be in 1..2"):
        fit(tiny_config(tmp_path / "x", "train.finetune_blocks=3"))


def test_clear_errors_for_bad_config(tmp_path):
    with pytest.raises(ValueError, match="Unknown config key 'train.lrr'. Did you mean: train.lr"):
        tiny_config(tmp_path, "train.lrr=1")
    with pytest.raises(ValueError, match="expects int, got 'many'"):
        tiny_config(tmp_path, "train.steps=many")
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        fit(tiny_config(tmp_path, "method=nope"))


CLASSES = "c0,c1,c2,c3,c4,c5,c6"  # the fixture's counts 1..6 are class indices


@pytest.mark.parametrize("name", [m for m in __import__("trainer.registry").registry.list_methods() if m != "rac"])
def test_every_method_trains_through_the_same_loop(name, tmp_path):
    config = tiny_config(tmp_path, f"method={name}", "train.steps=2", f"data.classes={CLASSES}",
                         f"eval_data.classes={CLASSES}")
    result = fit(config)
    info = json.loads((tmp_path / "checkpoint.json").read_text())
    assert info["method"] == name and info["metadata"]["classes"] == CLASSES.split(",")
    assert run_eval(result.checkpoint, config) == result.metrics
