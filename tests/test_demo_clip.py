"""The bundled demo CLIP (trained on generated captioned images) and the demo adapter over it.

Checks the issue's bars on held-out data: zero-shot retrieval far above chance; with the CLIP frozen,
an adapter trained from 200 pairwise labels counts (SRCC >= 0.9); the shipped demo adapter ranks the
same images by two different instructions in two different, correct orders. The slower
two-instructions-from-200-labels run is in bench/demo_clip.py.
"""

import inspect
import json
from pathlib import Path

import numpy as np
import safetensors
import safetensors.torch
import torch
import torch.nn.functional as F

from trainer.captions import PHOTO_OBJECTS, TASKS, photos, scenes, task_targets
from trainer.demo_clip import TINY_CONFIG, held_out, retrieval, save, train
from trainer.metrics import ranking_metrics
from trainer.synthetic import split_photos

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = {"red": 0.85, "blue": 0.85, "sharp": 0.6, "dark": 0.6}  # shipped adapter, held-out Spearman


def shipped_summary() -> dict:
    """The training summary `trainer.demo_clip.save` stored in the shipped weights' metadata."""
    path = REPO / "assets" / "demo_clip" / "open_clip_model.safetensors"
    with safetensors.safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["summary"])


def test_captions_are_seeded_and_match_their_attributes():
    a, b = scenes(20, seed=3), scenes(20, seed=3)
    assert [s.caption for s in a] == [s.caption for s in b]
    assert all(np.array_equal(np.asarray(x.image), np.asarray(y.image)) for x, y in zip(a, b))
    numbers = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
               "twelve")
    for s in a:
        count = int(s.attrs["count"])
        assert s.attrs["count"] == sum(s.attrs[f"n_{k}"] for k in ("circle", "square", "triangle"))
        assert s.caption.startswith(numbers[count] + " "), s.caption
    shots = photos(30, ["coffee"], seed=1, degradations=("blur",))
    assert all(s.attrs["noise"] == 0 and s.attrs["brightness"] == 1 for s in shots)
    assert {("sharp" in s.caption) for s in shots} == {True, False}
    assert all(("sharp" in s.caption) == (s.attrs["blur"] == 0) for s in shots)
    assert np.array_equal(task_targets(shots, "sharp"), -task_targets(shots, "blur"))
    always, never = (photos(20, ["coffee"], seed=2, blur_p=p) for p in (1.0, 0.0))
    assert all(s.attrs["blur"] > 0 for s in always) and all(s.attrs["blur"] == 0 for s in never)


def test_demo_clip_is_the_tiny_config_in_half_precision(demo_backbone):
    path = REPO / "assets" / "demo_clip" / "open_clip_model.safetensors"
    assert path.stat().st_size < 8_000_000
    with safetensors.safe_open(str(path), "pt") as f:
        assert f.get_tensor("visual.proj").dtype == torch.float16
        assert "trainer/demo_clip.py" in f.metadata()["trained_by"]
    assert demo_backbone.grid_size == (8, 8) and demo_backbone.token_dim == TINY_CONFIG["embed_dim"]
    assert demo_backbone.context_length == 77


def test_demo_clip_training_photos_are_not_test_photos():
    trained_on = set(shipped_summary()["train_photos"])
    assert trained_on and not trained_on & set(split_photos(0.25, seed=0)[1])


def test_demo_clip_was_trained_with_train_defaults():
    """The shipped weights are what `python assets/train_demo_clip.py` rebuilds: `train()`'s defaults."""
    summary = shipped_summary()
    defaults = {k: p.default for k, p in inspect.signature(train).parameters.items()}
    for key in ("steps", "batch_size", "lr", "seed", "blur_p", "n_scenes", "n_photos"):
        assert summary[key] == defaults[key], key
    assert summary["blur_p"] == 0.7 and summary["samples"] == 50_000


def test_zero_shot_retrieval_beats_chance(demo_backbone):
    """Image->text top-1 among the held-out set's distinct captions (chance = 1 / #captions)."""
    sets = held_out(n=200, seen_photos=True)
    scenes_r = retrieval(demo_backbone.model, sets["scenes"])
    assert scenes_r["top1"] > 0.6 and scenes_r["top1"] > 100 * scenes_r["chance_top1"], scenes_r
    crops = retrieval(demo_backbone.model, sets["new crops of training photos"])
    assert crops["top1"] > 0.5 and crops["top5"] > 0.9, crops
    unseen = retrieval(demo_backbone.model, sets["photos"])  # objects never named: degradation words only
    assert unseen["top1"] > 3 * unseen["chance_top1"] and unseen["top5"] > 15 * unseen["chance_top1"], unseen


@torch.no_grad()
def test_zero_shot_reads_blur(demo_backbone):
    """Without any adapter the caption words carry meaning: "extremely blurry" minus "sharp" (averaged
    over the training photos' object names) orders unseen photos by blur."""
    train_photos, test_photos = split_photos(0.25, seed=0)
    shots = photos(60, test_photos, seed=5, degradations=("blur",))
    img = F.normalize(demo_backbone.encode_pil([s.image for s in shots]).pooled, dim=-1)
    objects = [PHOTO_OBJECTS[name] for name in train_photos]
    blurry, sharp = (F.normalize(demo_backbone.encode_text([f"a {w} photo of {o}" for o in objects]).pooled,
                                 dim=-1).mean(0) for w in ("extremely blurry", "sharp"))
    rho = ranking_metrics(task_targets(shots, "blur"), (img @ (blurry - sharp)).numpy())["srcc"]
    assert rho > 0.6, rho


def test_adapter_from_200_labels_counts(demo_backbone):
    """Frozen demo CLIP + a fresh adapter from 200 random pairwise labels: held-out counting SRCC >= 0.9.

    (The two-instruction version needs ~400 steps, too slow here: bench/demo_clip.py measures it, and
    the shipped adapter's two orders are asserted below.)
    """
    from bench.demo_clip import single_task
    from trainer.features import FeatureCache
    rho = single_task(demo_backbone, FeatureCache(demo_backbone), "count", labels=200, steps=80, seed=0)
    assert rho >= 0.9, rho


@torch.no_grad()
def test_shipped_demo_adapter_reorders_by_instruction(demo_backbone):
    from trainer.checkpoint import load_checkpoint
    loaded = load_checkpoint(REPO / "assets" / "demo_adapter" / "adapter.safetensors", backbone=demo_backbone)
    test_photos = split_photos(0.25, seed=0)[1]
    for kind, samples, tasks in (("scenes", scenes(80, seed=77, colours=("red", "blue")), ("red", "blue")),
                                 ("photos", photos(80, test_photos, seed=77, degradations=("blur", "brightness")),
                                  ("sharp", "dark"))):
        features = demo_backbone.encode_pil([s.image for s in samples])
        orders = {}
        for task in tasks:
            scores = loaded.method.score(features, TASKS[task][0]).numpy()
            rho = ranking_metrics(task_targets(samples, task), scores)["srcc"]
            assert rho >= THRESHOLDS[task], (kind, task, rho)
            orders[task] = scores
        assert abs(ranking_metrics(*orders.values())["srcc"]) < 0.5, kind  # different orders


def test_clip_training_is_seeded(tmp_path):
    """Two short runs of the training script's function give identical weights."""
    torch.set_num_threads(1)
    runs = []
    for k in range(2):
        model, summary = train(steps=3, batch_size=16, n_scenes=40, n_photos=20, log_every=100, log=lambda *_: None)
        save(model, tmp_path / str(k), summary)
        runs.append(safetensors.torch.load_file(str(tmp_path / str(k) / "open_clip_model.safetensors")))
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
