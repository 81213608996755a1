"""Builds the app from settings: backbone (or the demo fallback), label store, engine, page."""

from __future__ import annotations

import gradio as gr
import torch

from trainer.registry import create_method

from .engine import Engine, StaticModel
from .handlers import AppContext
from .images import ImageLimits
from .layout import KEYS_JS, build_page
from .models import load_backbone_or_demo
from .settings import Settings
from .store import LabelStore


def build_context(settings: Settings) -> tuple[AppContext, str | None]:
    backbone, notice = load_backbone_or_demo(settings.backbone, settings.pretrained, settings.device)
    store = LabelStore(settings.data_dir)
    torch.manual_seed(0)
    adapter = create_method("rac", backbone, mode="fixed").eval()
    engine = Engine(backbone, store, StaticModel(adapter), cache_dir=settings.data_dir / "features")
    limits = ImageLimits(max_images=settings.max_images, max_bytes=int(settings.max_file_mb * 1e6),
                         max_pixels=int(settings.max_megapixels * 1e6))
    return AppContext(engine=engine, store=store, limits=limits), notice


def build_app(settings: Settings) -> gr.Blocks:
    ctx, notice = build_context(settings)
    demo = build_page(ctx, notice=notice)
    demo.rankui_context = ctx  # for tests and the Space glue
    return demo


def launch_kwargs(settings: Settings) -> dict:
    """What `launch()` needs: only the upload cache and assets/ are served; the key bindings."""
    from .layout import EXAMPLES
    return {"server_name": settings.host, "server_port": settings.port, "js": KEYS_JS,
            "allowed_paths": [str(EXAMPLES)], "max_file_size": f"{int(settings.max_file_mb)}mb"}
