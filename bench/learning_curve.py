"""Held-out SRCC against the number of pairwise labels, random pairs vs uncertainty-chosen pairs.

Tasks (seeded, from `trainer.synthetic`): `shapes` (count 1-12 shapes), `blur` and `noise` (graded
degradation of real photos bundled with scikit-image / scikit-learn, split by source photo, so no
test image shares a photograph with a training one). Pair labels come from the true targets (ties
0.5). The RAC adapter (pairwise loss) trains on `n` labels over the frozen backbone's cached
features; SRCC is measured on the held-out images.

* random: n pairs drawn uniformly from the training images.
* uncertainty: n/4 random pairs, then three rounds that each add the pairs (from a random candidate
  pool) whose current score difference is smallest, retraining after each round.

Run: python -m bench.learning_curve [--labels 50 200 1000] [--tasks shapes blur noise] [--steps 150]
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.backbone import load_demo_backbone  # noqa: E402
from trainer.batches import PairBatches  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.data import Pair  # noqa: E402
from trainer.features import FeatureCache  # noqa: E402
from trainer.metrics import ranking_metrics  # noqa: E402
from trainer.registry import create_method  # noqa: E402
from trainer.synthetic import degraded_photos, shape_scenes, split_photos  # noqa: E402
from trainer.train import Trainer  # noqa: E402

INSTRUCTIONS = {"shapes": "Rank by the number of shapes.", "blur": "Rank by how blurry the image is.",
                "noise": "Rank by how noisy the image is."}


def task_images(task: str, split: str, size: int = 64, seed: int = 0) -> list[tuple]:
    """(PIL image, target) for a task's train or test split."""
    if task == "shapes":
        n, offset = (240, 0) if split == "train" else (120, 1000)
        half = n // 2  # black and coloured scenes, as the demo's examples are coloured
        return shape_scenes(half, seed=seed + offset, size=size) + \
            shape_scenes(n - half, seed=seed + offset + 1, size=size, colours=True)
    train_photos, test_photos = split_photos(0.25, seed=seed)
    photos = train_photos if split == "train" else test_photos
    return degraded_photos(photos, kind=task, levels=5, crops_per_photo=4 if split == "train" else 6,
                           size=size, seed=seed + (0 if split == "train" else 1))


def encode(cache: FeatureCache, images: list[tuple]) -> tuple[list[str], torch.Tensor]:
    blobs = []
    for image, _ in images:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        blobs.append(buf.getvalue())
    keys, skipped = cache.add(blobs)
    assert not skipped
    return keys, torch.tensor([t for _, t in images], dtype=torch.float32)


def label(keys, targets, i: int, j: int, text: str) -> Pair:
    ti, tj = float(targets[i]), float(targets[j])
    return Pair(text, keys[i], keys[j], 0.5 if ti == tj else float(ti > tj), f"{i}-{j}")


def train_pairs(backbone, cache, pairs, steps, seed, method=None):
    torch.manual_seed(seed)
    method = method or create_method("rac", backbone, dropout=0.0)
    config = TrainConfig(steps=steps, batch_size=32, lr=1e-3, warmup_steps=10, seed=seed, progress=False,
                         device="cpu")
    Trainer(method, cache, PairBatches(pairs, config.batch_size, seed), config, torch.device("cpu")).run()
    return method.eval()


@torch.no_grad()
def srcc(method, cache, keys, targets, text) -> float:
    scores = method.score(cache.get(keys), text)
    return ranking_metrics(targets.numpy(), scores.numpy())["srcc"]


def curve(backbone, cache, task, budgets, steps, seed):
    text = INSTRUCTIONS[task]
    train_keys, train_t = encode(cache, task_images(task, "train", seed=seed))
    test_keys, test_t = encode(cache, task_images(task, "test", seed=seed))
    rows = []
    for n in budgets:
        rng = random.Random(seed * 7919 + n)
        n_img = len(train_keys)
        random_pairs = [label(train_keys, train_t, *rng.sample(range(n_img), 2), text) for _ in range(n)]
        model = train_pairs(backbone, cache, random_pairs, steps, seed)
        rows.append((task, n, "random", srcc(model, cache, test_keys, test_t, text)))
        # Uncertainty: start from n/4 random pairs, then 3 rounds of the least separated candidates.
        pairs = random_pairs[: max(2, n // 4)]
        model = train_pairs(backbone, cache, pairs, steps, seed)
        for round_ in range(3):
            want = (n - len(pairs)) // (3 - round_)
            with torch.no_grad():
                scores = model.score(cache.get(train_keys), text)
            pool = [tuple(rng.sample(range(n_img), 2)) for _ in range(20 * want)]
            pool.sort(key=lambda ij: abs(float(scores[ij[0]] - scores[ij[1]])))
            pairs += [label(train_keys, train_t, i, j, text) for i, j in pool[:want]]
            model = train_pairs(backbone, cache, pairs, steps, seed)
        rows.append((task, n, "uncertainty", srcc(model, cache, test_keys, test_t, text)))
        print(f"{task:7s} n={n:5d}  random {rows[-2][3]:+.3f}  uncertainty {rows[-1][3]:+.3f}", flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=int, nargs="+", default=[50, 200, 1000], help="pair-label budgets")
    parser.add_argument("--tasks", nargs="+", default=list(INSTRUCTIONS), choices=list(INSTRUCTIONS))
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per training run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for the tiny model)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    backbone = load_demo_backbone()
    cache = FeatureCache(backbone)
    rows = [r for task in args.tasks for r in curve(backbone, cache, task, args.labels, args.steps, args.seed)]
    print("\n| task | pair labels | random pairs SRCC | uncertainty pairs SRCC |\n|---|---|---|---|")
    for i in range(0, len(rows), 2):
        task, n, _, rand = rows[i]
        print(f"| {task} | {n} | {rand:.3f} | {rows[i + 1][3]:.3f} |")
    print(f"\n(backbone: bundled demo CLIP, RAC fixed mode, {args.steps} steps per run, seed {args.seed}; "
          f"{time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
