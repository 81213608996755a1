"""Write the tiny bundled open_clip backbone (config + seeded random weights) to assets/demo_clip/.

It is what the tests and the offline demo load with `local-dir:`. Re-running this script rewrites
byte-identical files (seeded init, half precision to keep the repository small).

    python assets/make_tiny_backbone.py [--out assets/demo_clip]
"""

import argparse
import json
from pathlib import Path

import open_clip
import safetensors.torch
import torch

TINY_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def build(out: Path, seed: int = 0) -> None:
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CONFIG)
    out.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": TINY_CONFIG,
              "preprocess_cfg": {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD),
                                 "interpolation": "bicubic", "resize_mode": "squash"}}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, str(out / "open_clip_model.safetensors"), metadata={"seed": str(seed)})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "demo_clip")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.out, args.seed)
    print(f"wrote {args.out}")
