"""The training loop every method shares: AdamW, warm-up + cosine, clipping, AMP, DDP, callbacks.

`Trainer` is generic (minGPT's): it turns `BatchSpec`s into `RankBatch`es through the feature cache,
calls `method.loss(batch)["loss"]`, and reports through `add_callback("on_batch_end", fn)`, so the
background worker and the CLI subscribe instead of the loop knowing them. Micro-batch `m` always
uses the dropout seed `seed + m`, so 1-process accumulation and K-process DDP give the same result.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from .backbone import ImageFeatures
from .batches import BatchSpec
from .config import TrainConfig
from .features import FeatureCache, VisionTail
from .method import RankBatch, RankingMethod


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' was asked for, but CUDA is not available.")
    return torch.device(name)


def no_decay(name: str, param: torch.Tensor) -> bool:
    """Gains, biases, norms and logit scales take no weight decay (open_clip's rule, as RAC)."""
    return param.ndim < 2 or "bias" in name or "ln" in name or "norm" in name or "logit_scale" in name


def cosine_with_warmup(warmup: int, total: int, floor: float = 0.0) -> Callable[[int], float]:
    """LR multiplier: linear warm-up to 1, then cosine down to `floor`."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


class _LossModule(nn.Module):
    """What DDP wraps: the trainable image tail (if any) and the method, ending in the loss."""

    def __init__(self, method: RankingMethod, tail: VisionTail | None):
        super().__init__()
        self.method, self.tail = method, tail

    def forward(self, images, batch: RankBatch) -> dict[str, torch.Tensor]:
        batch.images = self.tail(images) if self.tail is not None else images
        return self.method.loss(batch)


class Trainer:
    """Optimises a method on batches from `batch_fn(index)`.

    Args:
        method: any registered ranking method (already on `device`).
        cache: the feature cache holding every training image (final features, or hidden states
            before the tail's blocks when `tail` is given).
        batch_fn: micro-batch index -> `BatchSpec`.
        config: loop hyper-parameters.
        device: where training runs.
        tail: trainable last ViT blocks, for `finetune_blocks > 0`.
        classes: ordered class names handed to every batch (ordinal heads).
    """

    def __init__(self, method: RankingMethod, cache: FeatureCache, batch_fn: Callable[[int], BatchSpec],
                 config: TrainConfig, device: torch.device, tail: VisionTail | None = None,
                 classes: list[str] | None = None):
        self.method, self.cache, self.batch_fn, self.config = method, cache, batch_fn, config
        self.device, self.tail, self.classes = device, tail, classes or None
        self.world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.rank = dist.get_rank() if self.world > 1 else 0
        self.module = _LossModule(method, tail).to(device)
        self.model = self.module
        if self.world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.module, device_ids=ids,
                                                             find_unused_parameters=True)
        self.optimizer = self._optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, cosine_with_warmup(config.warmup_steps, config.steps, config.min_lr_ratio))
        self.amp_dtype = None
        if config.amp and device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.callbacks: dict[str, list[Callable]] = defaultdict(list)

    def add_callback(self, event: str, fn: Callable) -> None:
        """Events: "on_batch_end" (trainer, logs dict) and "on_train_end" (trainer)."""
        self.callbacks[event].append(fn)

    def _fire(self, event: str, *args) -> None:
        for fn in self.callbacks[event]:
            fn(self, *args)

    def _optimizer(self) -> torch.optim.AdamW:
        groups = {"decay": [], "no_decay": [], "tail_decay": [], "tail_no_decay": []}
        for prefix, module in (("", self.method), ("tail_", self.tail)):
            if module is None:
                continue
            for name, param in module.named_parameters():
                if param.requires_grad:
                    groups[prefix + ("no_decay" if no_decay(name, param) else "decay")].append(param)
        c = self.config
        spec = [{"params": groups["decay"], "weight_decay": c.weight_decay, "lr": c.lr},
                {"params": groups["no_decay"], "weight_decay": 0.0, "lr": c.lr},
                {"params": groups["tail_decay"], "weight_decay": c.weight_decay, "lr": c.backbone_lr},
                {"params": groups["tail_no_decay"], "weight_decay": 0.0, "lr": c.backbone_lr}]
        spec = [g for g in spec if g["params"]]
        if not spec:
            raise ValueError(f"Method '{self.method.name}' has no trainable parameters.")
        return torch.optim.AdamW(spec, betas=tuple(c.betas), eps=1e-8)

    def make_batch(self, spec: BatchSpec) -> tuple[ImageFeatures | torch.Tensor, RankBatch]:
        """Cached features for the batch's images plus the labels, on the training device."""
        images = self.cache.get(spec.keys, self.device)
        move = (lambda t: None if t is None else t.to(self.device))
        return images, RankBatch(images=None, text=spec.text, classes=self.classes, targets=move(spec.targets),
                                 labels=move(spec.labels), pairs=move(spec.pairs),
                                 pair_targets=move(spec.pair_targets))

    def train_step(self) -> dict[str, float]:
        """One optimizer step over `accum_steps` micro-batches per process."""
        c = self.config
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = defaultdict(float)
        for a in range(c.accum_steps):
            micro = (self.step * c.accum_steps + a) * self.world + self.rank
            torch.manual_seed(c.seed * 1_000_003 + micro)  # dropout: same masks whatever the process layout
            images, batch = self.make_batch(self.batch_fn(micro))
            sync = a == c.accum_steps - 1 or self.world == 1
            context = contextlib.nullcontext() if sync else self.model.no_sync()
            with context:
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    terms = self.model(images, batch)
                self.scaler.scale(terms["loss"] / c.accum_steps).backward()
            for key, value in terms.items():
                totals[key] += float(value.detach()) / c.accum_steps
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if c.grad_clip > 0:
            totals["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, c.grad_clip))
        totals["lr"] = self.scheduler.get_last_lr()[0]  # the rate this step used
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        self._fire("on_batch_end", dict(totals))
        return dict(totals)

    def run(self, steps: int | None = None, stop: Callable[[], bool] | None = None) -> None:
        """Train until `steps` (default: config.steps) or until `stop()` says so."""
        steps = self.config.steps if steps is None else steps
        while self.step < steps and not (stop and stop()):
            self.train_step()
        self.module.eval()
        self._fire("on_train_end")

    def state_dict(self) -> dict:
        return {"step": self.step, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        # The schedule is this run's (steps may have been extended): set the rate for the next step.
        factor = self.scheduler.lr_lambdas[0](self.step)
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["lr"] = base * factor
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
