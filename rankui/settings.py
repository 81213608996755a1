"""App settings from flags and environment (one object passed down; no module globals)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Settings:
    backbone: str = "ViT-B-32"  # open_clip model name or local-dir: folder
    pretrained: str | None = "laion2b_s34b_b79k"  # tag or checkpoint file
    data_dir: Path = Path("./data")
    host: str | None = None  # None: Gradio's default (GRADIO_SERVER_NAME, else 127.0.0.1)
    port: int | None = None  # None: Gradio's default (GRADIO_SERVER_PORT, else 7860)
    device: str = "cpu"
    max_images: int = 200  # per ranking
    max_file_mb: float = 20.0  # per image file
    max_megapixels: float = 40.0  # per image, checked before decoding
    adapter: str | None = None  # adapter checkpoint (.safetensors from the trainer) to serve first
    train_steps: int = 100  # optimizer steps per background training round
    hub_repo: str = ""  # dataset repo for Hub export and label mirroring (user/name)
    mirror: bool = False  # mirror labels to hub_repo every few minutes (needs HF_TOKEN)
    zero_gpu_bursts: bool = False  # run training rounds as @spaces.GPU bursts (ZeroGPU Spaces)

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> "Settings":
        parser = argparse.ArgumentParser(prog="python app.py",
                                         description="Rank images by a text instruction with a ranking-aware CLIP adapter.")
        parser.add_argument("--backbone", default=cls.backbone,
                            help="open_clip model name, or 'local-dir:/folder' (default: %(default)s)")
        parser.add_argument("--pretrained", default=cls.pretrained,
                            help="pretrained tag or local checkpoint file; 'none' for random init (default: %(default)s)")
        parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("RANKUI_DATA_DIR", cls.data_dir)),
                            help="where labels, images and model versions live (env RANKUI_DATA_DIR; default ./data)")
        parser.add_argument("--host", default=None, help="address to serve on (default: Gradio's, 127.0.0.1)")
        parser.add_argument("--port", type=int, default=None, help="port to serve on (default: Gradio's, 7860)")
        parser.add_argument("--device", default=cls.device, help="torch device for the model (default: %(default)s)")
        parser.add_argument("--max-images", type=int, default=cls.max_images, help="images per ranking (default: %(default)s)")
        parser.add_argument("--max-file-mb", type=float, default=cls.max_file_mb,
                            help="size limit of one image file in MB (default: %(default)s)")
        parser.add_argument("--max-megapixels", type=float, default=cls.max_megapixels,
                            help="pixel limit of one image in megapixels (default: %(default)s)")
        parser.add_argument("--adapter", default=None,
                            help="adapter checkpoint to serve first (default: newest in the data dir, else the demo)")
        parser.add_argument("--train-steps", type=int, default=cls.train_steps,
                            help="optimizer steps per background training round (default: %(default)s)")
        parser.add_argument("--hub-repo", default=os.environ.get("RANKUI_HUB_REPO", ""),
                            help="Hub dataset repo user/name for export and mirroring (env RANKUI_HUB_REPO)")
        parser.add_argument("--mirror", action="store_true", help="mirror labels to --hub-repo (needs HF_TOKEN)")
        parser.add_argument("--zero-gpu", action="store_true", dest="zero_gpu",
                            default=bool(os.environ.get("SPACES_ZERO_GPU")),
                            help="train in short @spaces.GPU bursts (default on when SPACES_ZERO_GPU is set)")
        args = parser.parse_args(argv)
        pretrained = None if str(args.pretrained).lower() == "none" else args.pretrained
        return cls(backbone=args.backbone, pretrained=pretrained, data_dir=args.data_dir, host=args.host,
                   port=args.port, device=args.device, max_images=args.max_images, max_file_mb=args.max_file_mb,
                   max_megapixels=args.max_megapixels, adapter=args.adapter, train_steps=args.train_steps,
                   hub_repo=args.hub_repo, mirror=args.mirror, zero_gpu_bursts=args.zero_gpu)
