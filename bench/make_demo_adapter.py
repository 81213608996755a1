"""Train the demo adapter shipped in assets/demo_adapter/ (RAC over the bundled tiny backbone).

Tasks are those of bench/learning_curve.py (shape counting, blur level, noise level; photos split by
source) plus instruction pairs over the same images from bench/demo_clip.py (red / blue shape counts
on red-and-blue scenes; sharpest / darkest first on blurred and darkened photos), so the one adapter
re-ranks the same images differently when the instruction changes. They are written as one RAC table
whose `cname` is the task, and trained with `trainer.fit` exactly as `python -m trainer fit` would
(RAC batches: one task per batch). Prints held-out SRCC per task and on the page's example images,
and writes assets/demo_adapter/adapter.safetensors (+ .json).

Run: python -m bench.make_demo_adapter [--steps 1600] [--out assets/demo_adapter]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.demo_clip import paired_images  # noqa: E402
from bench.learning_curve import INSTRUCTIONS, task_images  # noqa: E402
from trainer.captions import TASKS, task_targets  # noqa: E402
from trainer.checkpoint import load_checkpoint  # noqa: E402
from trainer.config import FitConfig, apply_overrides  # noqa: E402
from trainer.fit import fit  # noqa: E402
from trainer.metrics import ranking_metrics  # noqa: E402
from trainer.synthetic import shape_scenes  # noqa: E402

EXAMPLES = ROOT / "assets" / "examples"
COFFEE_LEVELS = {"coffee_c.png": 0, "coffee_a.png": 1, "coffee_d.png": 2, "coffee_b.png": 3}  # make_examples.py
PAIRED_TASKS = {"red": "scenes", "blue": "scenes", "sharp": "photos", "dark": "photos"}  # trainer.captions.TASKS


def all_tasks(split: str, seed: int) -> dict[str, tuple[str, list]]:
    """task -> (instruction, [(image, target)]); paired tasks share their images."""
    out = {task: (text, task_images(task, split, seed=seed)) for task, text in INSTRUCTIONS.items()}
    for kind in ("scenes", "photos"):
        samples = paired_images(kind, split, seed)
        for task in (t for t, k in PAIRED_TASKS.items() if k == kind):
            out[task] = (TASKS[task][0], [(s.image, float(v)) for s, v in zip(samples, task_targets(samples, task))])
    return out


def write_table(folder: Path, split: str, seed: int) -> Path:
    lines = ["filepath\ttitle\tcname\tvalue"]
    for task, (text, images) in all_tasks(split, seed).items():
        for i, (image, target) in enumerate(images):
            name = f"{split}_{task}_{i:04d}.png"
            image.save(folder / name)
            lines.append(f"{name}\t{text}\t{task}\t{target:g}")
    path = folder / f"{split}.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


@torch.no_grad()
def example_srcc(checkpoint: Path) -> dict[str, float]:
    """SRCC of the shipped adapter on the page's example images (known answers, see make_examples)."""
    from trainer.features import FeatureCache

    loaded = load_checkpoint(checkpoint)
    cache = FeatureCache(loaded.backbone)
    counts = [t for _, t in shape_scenes(6, seed=11, size=128, colours=True)]
    shapes = [EXAMPLES / f"shapes_{k + 1}.png" for k in range(6)]
    coffee = [EXAMPLES / n for n in COFFEE_LEVELS]
    out = {}
    for name, files, targets, text in (("shapes", shapes, counts, INSTRUCTIONS["shapes"]),
                                       ("blur", coffee, list(COFFEE_LEVELS.values()), INSTRUCTIONS["blur"])):
        if all(f.is_file() for f in files):
            feats, _ = cache.features(files)
            out[name] = ranking_metrics(targets, loaded.method.score(feats, text).numpy())["srcc"]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "demo_adapter")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train, test = write_table(tmp, "train", args.seed), write_table(tmp, "test", args.seed)
        config = apply_overrides(FitConfig(), {
            "method": "rac", "method_config": {"mode": "fixed", "dropout": 0.0}, "backbone.name": "demo",
            "data.path": str(train), "eval_data.path": str(test), "out_dir": str(tmp / "run"),
            "train.steps": args.steps, "train.batch_size": 32, "train.lr": 1e-3, "train.warmup_steps": 40,
            "train.seed": args.seed, "train.device": "cpu", "train.progress": False, "train.log_every": 100})
        result = fit(config)
        args.out.mkdir(parents=True, exist_ok=True)
        for suffix in (".safetensors", ".json"):
            shutil.copy(result.checkpoint.with_suffix(suffix), args.out / f"adapter{suffix}")
        loaded = load_checkpoint(args.out / "adapter.safetensors")
        print("| task | held-out SRCC | held-out PLCC |\n|---|---|---|")
        from trainer.data import read_table
        from trainer.features import FeatureCache
        cache = FeatureCache(loaded.backbone)
        items = read_table(test).items
        for task, text in {t: v[0] for t, v in all_tasks("test", args.seed).items()}.items():
            subset = [i for i in items if i.cname == task]
            feats, _ = cache.features(subset)
            with torch.no_grad():
                m = ranking_metrics([i.target for i in subset], loaded.method.score(feats, text).numpy())
            print(f"| {task} | {m['srcc']:.3f} | {m['plcc']:.3f} |")
    print("examples:", {k: round(v, 3) for k, v in example_srcc(args.out / "adapter.safetensors").items()})


if __name__ == "__main__":
    main()
