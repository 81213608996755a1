"""Training throughput of `trainer.train.Trainer` against a bare torch loop, same model and batches.

Both loops train the same method (RAC by default) on the same cached features (random tokens of the
backbone's shape, so no image decoding is timed): the bare loop is AdamW + `method.loss` + backward +
step, nothing else; `Trainer` adds what `fit` uses (decay groups, schedule, clipping, AMP on CUDA,
seeded micro-batches, cache lookups, callbacks). The ratio is the loop's overhead.

Run: python -m bench.train_throughput [--backbone demo|ViT-B-16 ...] [--batch 64] [--steps 50] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.batches import Example, ItemBatches  # noqa: E402
from trainer.config import BackboneSpec, TrainConfig  # noqa: E402
from trainer.fit import build_backbone  # noqa: E402
from trainer.method import RankBatch  # noqa: E402
from trainer.registry import create_method  # noqa: E402
from trainer.train import Trainer, resolve_device  # noqa: E402
from trainer.worker import FeatureTable  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="demo", help="open_clip name, or demo")
    parser.add_argument("--pretrained", default="", help="pretrained tag (none: random weights suffice)")
    parser.add_argument("--method", default="rac")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", action="store_true", help="bf16/fp16 autocast in both loops (CUDA)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    backbone = build_backbone(BackboneSpec(name=args.backbone, pretrained=args.pretrained or None), device)
    p, d, e = backbone.grid_size[0] * backbone.grid_size[1], backbone.token_dim, backbone.embed_dim
    n_images = args.batch * 4
    gen = torch.Generator().manual_seed(0)
    table = FeatureTable({f"k{i}": (torch.randn(p, d, generator=gen).half(), torch.randn(e, generator=gen).half())
                          for i in range(n_images)})
    examples = [Example(f"k{i}", "Rank by the number of shapes.", float(i % 12), None, "shapes", 1.0)
                for i in range(n_images)]
    batches = ItemBatches(examples, args.batch, "rank", 0.0, seed=0)
    amp_dtype = torch.bfloat16 if device.type == "cuda" and args.amp else None

    torch.manual_seed(0)
    method = create_method(args.method, backbone).to(device).train()
    opt = torch.optim.AdamW(method.parameters(), lr=1e-4)

    def bare_step(i):
        spec = batches(i)
        images = table.get(spec.keys, device)
        batch = RankBatch(images, spec.text, targets=spec.targets.to(device))
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = method.loss(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    results = {}
    for name in ("bare", "trainer"):
        if name == "trainer":
            torch.manual_seed(0)
            method = create_method(args.method, backbone).to(device)
            trainer = Trainer(method, table, batches, TrainConfig(steps=args.steps + args.warmup, batch_size=args.batch,
                                                                  amp=args.amp, progress=False), device)
            step = lambda i: trainer.train_step()  # noqa: E731
        else:
            step = bare_step
        for i in range(args.warmup):
            step(i)
        _sync(device)
        start = time.perf_counter()
        for i in range(args.steps):
            step(args.warmup + i)
        _sync(device)
        results[name] = args.steps / (time.perf_counter() - start)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"backbone {args.backbone}, method {args.method}, batch {args.batch}, amp {bool(amp_dtype)}")
    print("| loop | steps/s | images/s |\n|---|---|---|")
    for name, rate in results.items():
        print(f"| {name} | {rate:.2f} | {rate * args.batch:.0f} |")
    print(f"Trainer / bare: {results['trainer'] / results['bare']:.3f}")


if __name__ == "__main__":
    main()
