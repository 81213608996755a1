"""Ordinal methods vs the RAC adapter on a synthetic counting task, untrained and trained, side by side.

Task: `trainer.synthetic.shape_scenes` (1-12 black shapes), counts binned into 5 ordered classes
(1-2, 3-4, 5-7, 8-9, 10-12). Every method gets the same frozen image features of the same backbone
(the bundled tiny demo CLIP unless `--backbone` names another), trains `--steps` AdamW steps on
class labels, and is evaluated on held-out scenes drawn with another seed:
MAE = |score - label| in class units (the score is each method's expected rank; RAC's is its
regressed score) and accuracy of the predicted class (RAC: the rounded score).

Zero-shot CLIP has no weights; what it trains is its calibration (a temperature and a per-class
bias, identity at start), at `--calibration-lr`. With the random-weight demo backbone it can learn
no more than the class prior.

Run: python -m bench.ordinal_methods [--steps 300] [--train 600] [--test 300] [--methods ...]
"""

from __future__ import annotations

import argparse
import time

import torch

from trainer.backbone import ImageFeatures, load_backbone, load_demo_backbone
from trainer.method import RankBatch
from trainer.registry import create_method
from trainer.synthetic import bin_targets, shape_scenes

EDGES = (2, 4, 7, 9)
CLASSES = ["one or two shapes", "three or four shapes", "five to seven shapes", "eight or nine shapes",
           "ten to twelve shapes"]
INSTRUCTION = "Rank by the number of shapes"
METHODS = ("zeroshot", "coop", "ordinalclip", "numclip", "l2rclip", "rac")


def encode(backbone, scenes, batch: int = 64) -> tuple[ImageFeatures, torch.Tensor]:
    """Frozen features of all scenes, and their class labels."""
    tokens, pooled = [], []
    with torch.no_grad():
        for start in range(0, len(scenes), batch):
            feats = backbone.encode_pil([img for img, _ in scenes[start:start + batch]])
            tokens.append(feats.tokens), pooled.append(feats.pooled)
    labels = torch.as_tensor(bin_targets([target for _, target in scenes], EDGES))
    return ImageFeatures(torch.cat(tokens), torch.cat(pooled)), labels


def evaluate(method, feats: ImageFeatures, labels: torch.Tensor) -> tuple[float, float]:
    method.eval()
    with torch.no_grad():
        out = method(RankBatch(images=feats, text=INSTRUCTION, classes=CLASSES))
    scores = out.scores.float()
    predicted = out.predicted if out.predicted is not None else scores.round().clamp(0, len(CLASSES) - 1).long()
    return float((scores - labels).abs().mean()), float((predicted == labels).float().mean())


def train(method, feats: ImageFeatures, labels: torch.Tensor, steps: int, batch: int, lr: float, seed: int) -> None:
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    method.train()
    for _ in range(steps):
        idx = torch.randint(len(labels), (batch,), generator=generator)
        out = method.loss(RankBatch(images=feats.index(idx), text=INSTRUCTION, classes=CLASSES,
                                    labels=labels[idx], targets=labels[idx].float()))
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()


def build(name: str, backbone):
    if name == "rac":
        return create_method("rac", backbone)
    return create_method(name, backbone, classes=CLASSES)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--calibration-lr", type=float, default=2e-2,
                        help="lr of zero-shot's 6 calibration scalars (temperature scaling takes big steps)")
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--backbone", default="", help="open_clip name (default: the bundled demo backbone)")
    parser.add_argument("--pretrained", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    backbone = load_backbone(args.backbone, args.pretrained) if args.backbone else load_demo_backbone()
    train_feats, train_labels = encode(backbone, shape_scenes(args.train, seed=args.seed))
    test_feats, test_labels = encode(backbone, shape_scenes(args.test, seed=args.seed + 1000))
    print(f"backbone {backbone.config.name}; {args.train} train / {args.test} held-out scenes; "
          f"{args.steps} steps, batch {args.batch}, lr {args.lr}; held-out class counts "
          f"{torch.bincount(test_labels, minlength=len(CLASSES)).tolist()}")
    print("| method | untrained MAE | untrained acc | trained MAE | trained acc | train s |")
    print("|---|---|---|---|---|---|")
    for name in args.methods:
        torch.manual_seed(args.seed)
        try:
            method = build(name, backbone)
        except Exception as err:  # noqa: BLE001 - a method that cannot be built is reported, not fatal
            print(f"| {name} | pending: {type(err).__name__}: {str(err)[:80]} | | | | |")
            continue
        before = evaluate(method, test_feats, test_labels)
        start = time.perf_counter()
        lr = args.calibration_lr if name == "zeroshot" else args.lr
        train(method, train_feats, train_labels, args.steps, args.batch, lr, args.seed)
        seconds = time.perf_counter() - start
        after = evaluate(method, test_feats, test_labels)
        print(f"| {name} | {before[0]:.3f} | {before[1]:.3f} | {after[0]:.3f} | {after[1]:.3f} | {seconds:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
