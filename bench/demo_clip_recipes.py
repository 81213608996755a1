"""Demo-CLIP recipes against the blur bar: train one recipe, then blur Spearman from 200 labels.

The shipped recipe is `trainer.demo_clip.train()`'s defaults, which are `blur70`. The other recipes
each change one thing of `base`, the recipe shipped before it (`blur50_photos` combines `blur50`
and `photos`).

After training (on `--device`; the shipped weights come from the CPU), a fresh RAC adapter (fixed
mode, 150 steps) learns blur from 200 random pairwise labels over the frozen CLIP, once per label
seed, on the held-out split of bench/learning_curve.py (4 unseen photos). `--recipe shipped` skips
training and measures `assets/demo_clip` itself.

Run: python -m bench.demo_clip_recipes --recipe shipped|base|bs256|depth3|lr1e3|wide96|photos|dead_leaves|blur50|steps7000|blur70|blur50_photos
         [--device cuda] [--label-seeds 0 1 2 3 4] [--labels 200] [--adapter-steps 150] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trainer.demo_clip as demo_clip  # noqa: E402
from bench.demo_clip import random_pairs, spearman  # noqa: E402
from bench.learning_curve import INSTRUCTIONS, encode, task_images, train_pairs  # noqa: E402
from trainer.backbone import DEMO_BACKBONE_DIR, Backbone, BackboneConfig  # noqa: E402
from trainer.captions import _photo  # noqa: E402
from trainer.features import FeatureCache  # noqa: E402

BEFORE = {"blur_p": None}  # the recipe shipped before blur70: blur drawn like the other degradations
RECIPES = {"base": BEFORE, "bs256": {**BEFORE, "batch_size": 256}, "lr1e3": {**BEFORE, "lr": 1e-3},
           "photos": {**BEFORE, "n_scenes": 15_000, "n_photos": 35_000},
           "dead_leaves": {**BEFORE, "n_scenes": 20_000, "n_photos": 20_000}, "depth3": BEFORE, "wide96": BEFORE,
           "blur50": {"blur_p": 0.5}, "steps7000": {**BEFORE, "steps": 7000}, "blur70": {"blur_p": 0.7},
           "blur50_photos": {"blur_p": 0.5, "n_scenes": 15_000, "n_photos": 35_000}}
VISION = {"depth3": {"layers": 3}, "wide96": {"width": 96}}


def dead_leaves(rng: np.random.Generator, side: int, discs: int = 2000) -> Image.Image:
    """Occluding discs with radius density ~ r^-3 in [side/64, side/4] (natural-image-like statistics)."""
    image = Image.new("RGB", (side, side), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    r_min, r_max = side / 64, side / 4
    u = rng.random(discs)
    radii = 1 / np.sqrt(u / r_min**2 + (1 - u) / r_max**2)  # inverse CDF
    centres = rng.uniform(-r_max / 2, side + r_max / 2, (discs, 2))
    grey = rng.random(discs) < 0.3
    colours = rng.integers(0, 256, (discs, 3))
    colours[grey] = colours[grey, :1]
    for (x, y), r, c in zip(centres, radii, colours):
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in c))
    return image


def with_textures(n_textures: int):
    """`demo_clip.generate` plus dead-leaves crops with the photos' graded degradations."""
    plain = demo_clip.generate

    def generate(n_scenes, n_photos, photo_names, seed, blur_p=None):
        rng = np.random.default_rng(int(np.random.default_rng([seed, 1]).integers(2**31)))
        allowed = ("blur", "noise", "brightness", "contrast", "rotation")
        extra = [_photo(rng, dead_leaves(rng, 4 * demo_clip.IMAGE), "texture", demo_clip.IMAGE, allowed)
                 for _ in range(n_textures)]  # captioned "... photo of something"; renamed below
        extra = [replace(s, caption=s.caption.replace(" of something", " of overlapping discs")) for s in extra]
        return plain(n_scenes, n_photos, photo_names, seed, blur_p) + extra
    return generate


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="shipped", choices=["shipped", *RECIPES])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--label-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--labels", type=int, default=200, help="pairwise labels per adapter")
    parser.add_argument("--adapter-steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    result = {"recipe": args.recipe, "device": args.device}
    clip_dir = DEMO_BACKBONE_DIR
    if args.recipe != "shipped":
        if args.recipe in VISION:
            cfg = demo_clip.TINY_CONFIG
            demo_clip.TINY_CONFIG = {**cfg, "vision_cfg": {**cfg["vision_cfg"], **VISION[args.recipe]}}
        if args.recipe == "dead_leaves":
            demo_clip.generate = with_textures(10_000)
        model, summary = demo_clip.train(device=args.device, log_every=10**9, log=lambda *_: None,
                                         **RECIPES[args.recipe])
        clip_dir = Path(tempfile.mkdtemp(prefix=f"clip-{args.recipe}-"))
        demo_clip.save(model, clip_dir, summary)
        result["train_s"] = summary["seconds"]
        result["scene_top1"] = round(summary["retrieval"]["scenes"]["top1"], 3)
    backbone = Backbone(BackboneConfig(name=f"local-dir:{clip_dir}", pretrained=None))
    cache = FeatureCache(backbone)
    text = INSTRUCTIONS["blur"]
    train_keys, train_t = encode(cache, task_images("blur", "train", seed=0))
    test_keys, test_t = encode(cache, task_images("blur", "test", seed=0))
    rho = [spearman(train_pairs(backbone, cache, random_pairs(train_keys, train_t, text, args.labels, s),
                                args.adapter_steps, s),
                    cache, test_keys, test_t, text) for s in args.label_seeds]
    result.update(blur=[round(r, 3) for r in rho], blur_mean=round(float(np.mean(rho)), 3),
                  seconds=round(time.time() - start))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
