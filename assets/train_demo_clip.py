"""Rebuild the bundled demo CLIP in assets/demo_clip/ (trained, seeded; see assets/README.md).

    python assets/train_demo_clip.py [--steps 4500] [--seed 0] [--out assets/demo_clip]

About 15-20 minutes on one CPU core. Single-threaded on purpose: the same seed then gives the same
weights on every run of the same torch build.
"""

import argparse
import inspect
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.demo_clip import save, train  # noqa: E402

if __name__ == "__main__":
    defaults = {k: p.default for k, p in inspect.signature(train).parameters.items()}  # one source of truth
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "demo_clip")
    parser.add_argument("--steps", type=int, default=defaults["steps"])
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, summary = train(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    save(model, args.out, summary)
    print(json.dumps(summary["retrieval"], indent=1))
    print(f"wrote {args.out} in {summary['seconds']} s")
