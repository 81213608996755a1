"""Builds the app from settings: backbone (or the demo fallback), label store, served model, trainer, page."""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
import torch

from trainer.backbone import DEMO_BACKBONE, Backbone
from trainer.checkpoint import load_checkpoint
from trainer.method import RankingMethod
from trainer.registry import create_method
from trainer.worker import TrainingWorker, WorkerConfig, latest_version

from .engine import Engine
from .handlers import AppContext
from .images import ImageLimits
from .layout import EXAMPLES, KEYS_JS, build_page
from .models import load_backbone_or_demo
from .settings import Settings
from .space import gpu_burst, start_label_mirror
from .store import LabelStore

log = logging.getLogger("rankui")
DEMO_ADAPTER = Path(__file__).resolve().parent.parent / "assets" / "demo_adapter" / "adapter.safetensors"


class WorkerModel:
    """The engine's model source: the worker's published (method, version), never waiting on training."""

    def __init__(self, worker: TrainingWorker):
        self.worker = worker

    def snapshot(self) -> tuple[RankingMethod, int]:
        version, method = self.worker.current()
        return method, version


def initial_model(settings: Settings, backbone: Backbone) -> tuple[RankingMethod, int, str]:
    """The newest good published version in the data dir, else --adapter, else the demo adapter, else new."""
    candidates = []
    latest = latest_version(settings.data_dir / "models")
    if latest is not None:
        candidates.append((latest, "the newest published version"))
    if settings.adapter:
        candidates.append((Path(settings.adapter), "the --adapter checkpoint"))
    if backbone.config.name == DEMO_BACKBONE and DEMO_ADAPTER.is_file():
        candidates.append((DEMO_ADAPTER, "the bundled demo adapter"))
    for path, what in candidates:
        try:
            checkpoint = load_checkpoint(path, backbone, device=settings.device)
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            log.warning("Not using %s (%s): %s", what, path.name, str(err).splitlines()[0][:200])
            continue
        version = int(checkpoint.info.get("metadata", {}).get("version", 0))
        return checkpoint.method, version, f"{what} ({path.name})"
    torch.manual_seed(0)
    return create_method("rac", backbone, mode="fixed").to(settings.device).eval(), 0, "a new, untrained adapter"


def build_context(settings: Settings) -> tuple[AppContext, str | None]:
    backbone, notice = load_backbone_or_demo(settings.backbone, settings.pretrained, settings.device)
    store = LabelStore(settings.data_dir)
    method, version, origin = initial_model(settings, backbone)
    engine = Engine(backbone, store, None, cache_dir=settings.data_dir / "features")
    worker = TrainingWorker(store, backbone, method, WorkerConfig(checkpoint_dir=str(settings.data_dir / "models"),
                                                                  device=settings.device, steps=settings.train_steps),
                            cache=engine.cache)
    worker._set(version=version)  # continue numbering from the version restored
    engine.model = WorkerModel(worker)
    if settings.zero_gpu_bursts:
        worker.burst_fn = gpu_burst(lambda spec: _burst(backbone, spec))
    limits = ImageLimits(max_images=settings.max_images, max_bytes=int(settings.max_file_mb * 1e6),
                         max_pixels=int(settings.max_megapixels * 1e6))
    log.info("Serving %s as version %d.", origin, version)
    ctx = AppContext(engine=engine, store=store, limits=limits, worker=worker, hub_repo=settings.hub_repo)
    ctx.mirror = start_label_mirror(store, settings.hub_repo) if settings.mirror else None
    return ctx, notice


def _burst(backbone, spec):
    from trainer.worker import train_burst
    return train_burst(backbone, spec, "cuda" if torch.cuda.is_available() else "cpu")


def build_app(settings: Settings, start_trainer: bool = True) -> gr.Blocks:
    ctx, notice = build_context(settings)
    demo = build_page(ctx, notice=notice)
    demo.rankui_context = ctx  # for tests and the Space glue
    if start_trainer and gr.NO_RELOAD:  # not again under `gradio app.py` hot reload
        ctx.worker.start()
    return demo


def launch_kwargs(settings: Settings) -> dict:
    """What `launch()` needs: only the upload cache and assets/examples are served; the key bindings."""
    return {"server_name": settings.host, "server_port": settings.port, "js": KEYS_JS,
            "allowed_paths": [str(EXAMPLES)], "max_file_size": f"{int(settings.max_file_mb)}mb"}
