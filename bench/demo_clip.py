"""What the bundled demo CLIP can do: zero-shot retrieval, and the RAC adapter from 200 pairwise labels.

1. Image->text top-1 / top-5 over the distinct captions of held-out generated data (new scene seeds;
   crops of the benchmarks' *test* photos, whose objects no caption named; new crops of the training
   photos), against chance (1 / #captions).
2. With the CLIP frozen, a fresh RAC adapter (fixed mode) trained on `--labels` random pairwise labels
   per instruction; held-out Spearman per task. Single tasks are those of bench/learning_curve.py
   (`count` = its `shapes`, `blur`); instruction pairs (`red`+`blue` on red/blue scenes, `sharp`+`dark`
   on blurred and darkened test photos) train one adapter on both instructions over the *same* images
   and rank the same held-out images by each: both orders are scored, and so is each order against the
   other instruction's truth (which should be low: the orders differ).

Run: python -m bench.demo_clip [--labels 200] [--steps 150] [--paired-steps 400] [--clip-dir assets/demo_clip]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.learning_curve import INSTRUCTIONS, encode, label, task_images, train_pairs  # noqa: E402
from trainer.backbone import Backbone, BackboneConfig, DEMO_BACKBONE_DIR  # noqa: E402
from trainer.captions import TASKS, photos, scenes, task_targets  # noqa: E402
from trainer.demo_clip import held_out, retrieval  # noqa: E402
from trainer.features import FeatureCache  # noqa: E402
from trainer.metrics import ranking_metrics  # noqa: E402
from trainer.synthetic import split_photos  # noqa: E402

SINGLE = {"count": ("shapes", INSTRUCTIONS["shapes"]), "blur": ("blur", INSTRUCTIONS["blur"])}
PAIRED = {("red", "blue"): "scenes", ("sharp", "dark"): "photos"}


def paired_images(kind: str, split: str, seed: int = 0, size: int = 64):
    """The same images for two instructions: red/blue scenes, or test photos blurred and darkened."""
    offset = 0 if split == "train" else 1000
    if kind == "scenes":
        return scenes(240 if split == "train" else 120, seed=seed + 500 + offset, size=size, colours=("red", "blue"))
    train_photos, test_photos = split_photos(0.25, seed=seed)
    names = train_photos if split == "train" else test_photos
    return photos(240 if split == "train" else 120, names, seed=seed + 600 + offset, size=size,
                  degradations=("blur", "brightness"))


def random_pairs(keys, targets, text: str, n: int, seed: int):
    rng = random.Random(seed)
    return [label(keys, targets, *rng.sample(range(len(keys)), 2), text) for _ in range(n)]


@torch.no_grad()
def spearman(method, cache, keys, targets, text) -> float:
    return ranking_metrics(np.asarray(targets), method.score(cache.get(keys), text).numpy())["srcc"]


def single_task(backbone, cache, task: str, labels: int, steps: int, seed: int) -> float:
    name, text = SINGLE[task]
    train_keys, train_t = encode(cache, task_images(name, "train", seed=seed))
    test_keys, test_t = encode(cache, task_images(name, "test", seed=seed))
    method = train_pairs(backbone, cache, random_pairs(train_keys, train_t, text, labels, seed), steps, seed)
    return spearman(method, cache, test_keys, test_t, text)


def two_instructions(backbone, cache, tasks: tuple[str, str], labels: int, steps: int, seed: int) -> dict:
    """One adapter, two instructions over the same images; Spearman of each order vs each truth."""
    kind = PAIRED[tasks]
    train, test = paired_images(kind, "train", seed), paired_images(kind, "test", seed)
    train_keys, _ = encode(cache, [(s.image, 0.0) for s in train])
    test_keys, _ = encode(cache, [(s.image, 0.0) for s in test])
    pairs = []
    for k, task in enumerate(tasks):
        pairs += random_pairs(train_keys, torch.tensor(task_targets(train, task)), TASKS[task][0], labels, seed + k)
    method = train_pairs(backbone, cache, pairs, steps, seed)
    return {(ranked_by, truth): spearman(method, cache, test_keys, task_targets(test, truth), TASKS[ranked_by][0])
            for ranked_by in tasks for truth in tasks}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip-dir", type=Path, default=DEMO_BACKBONE_DIR, help="a local-dir: CLIP folder")
    parser.add_argument("--labels", type=int, default=200, help="pairwise labels per instruction")
    parser.add_argument("--steps", type=int, default=150, help="adapter optimizer steps, one instruction")
    parser.add_argument("--paired-steps", type=int, default=400, help="adapter steps for two instructions")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    backbone = Backbone(BackboneConfig(name=f"local-dir:{args.clip_dir}", pretrained=None))
    print(f"CLIP: {args.clip_dir}\n")
    print("| held-out set | images | captions | top-1 | top-5 | chance top-1 |\n|---|---|---|---|---|---|")
    for name, samples in held_out(seen_photos=True).items():
        r = retrieval(backbone.model, samples)
        print(f"| {name} | {r['images']} | {r['captions']} | {r['top1']:.3f} | {r['top5']:.3f} "
              f"| {r['chance_top1']:.4f} |")
    cache = FeatureCache(backbone)
    print(f"\n| task | instruction | held-out Spearman ({args.labels} labels; seeds {args.seeds}) |\n|---|---|---|")
    for task, (_, text) in SINGLE.items():
        values = [single_task(backbone, cache, task, args.labels, args.steps, s) for s in args.seeds]
        print(f"| {task} | {text} | {' / '.join(f'{v:.3f}' for v in values)} |", flush=True)
    print("\n| images | ranked by | Spearman vs its truth | vs the other instruction's truth |\n|---|---|---|---|")
    for tasks in PAIRED:
        for s in args.seeds:
            rho = two_instructions(backbone, cache, tasks, args.labels, args.paired_steps, s)
            for a, b in (tasks, tasks[::-1]):
                print(f"| {PAIRED[tasks]} (seed {s}) | {TASKS[a][0]} | {rho[a, a]:.3f} | {rho[a, b]:.3f} |", flush=True)
    print(f"\n({args.steps} / {args.paired_steps} adapter steps per single / paired run, RAC fixed mode; "
          f"{time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
