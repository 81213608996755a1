"""`fit`, `evaluate` and `predict`: a run from a `FitConfig` to a checkpoint, metrics and rankings.

What the CLI calls (and, under torchrun, every process calls): read the data, fill the feature cache,
train with `Trainer`, evaluate with the shared metrics, write `checkpoint.safetensors` (+ JSON, +
`checkpoint.state.pt` for resuming), the resolved `config.json` and a `metrics.jsonl` log.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .backbone import DEMO_BACKBONE, Backbone, BackboneConfig
from .batches import Example, ItemBatches, PairBatches, examples_from, pair_spec
from .checkpoint import load_checkpoint, load_state, save_checkpoint, save_state
from .config import FitConfig, save_config, to_dict
from .data import LabelledSet, Pair, PairSource, is_held_out, load_source, split_items
from .distributed import is_main, world_size
from .features import FeatureCache, VisionTail
from .metrics import pairwise_label_accuracy, ranking_metrics
from .method import RankingMethod
from .registry import create_method, get_method_class
from .train import Trainer, resolve_device

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Training or evaluation data with every image in the feature cache."""

    examples: list[Example] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs) or len(self.examples)


@dataclass
class FitResult:
    checkpoint: Path
    metrics: dict
    history: list[dict]


def build_backbone(spec, device: torch.device) -> Backbone:
    """A backbone from `BackboneSpec`; name 'demo' is the bundled tiny model."""
    name, pretrained = spec.name, spec.pretrained or None
    if name == "demo":
        name, pretrained = DEMO_BACKBONE, None
    return Backbone(BackboneConfig(name=name, pretrained=pretrained, resize_mode=spec.resize_mode,
                                   project_tokens=spec.project_tokens, device=str(device)))


def prepare(source: LabelledSet | PairSource | list[Pair], cache: FeatureCache, classes: list[str] | None = None,
            pair_source: PairSource | None = None) -> Prepared:
    """Put every image into the cache; unreadable ones are reported and left out."""
    if isinstance(source, LabelledSet):
        keys, _ = cache.add(source.items)
        return Prepared(examples=examples_from(source.items, keys), classes=list(classes or source.classes))
    pairs = source if isinstance(source, list) else source.pairs()
    pair_source = pair_source or source
    ids = sorted({i for p in pairs for i in (p.image_0, p.image_1)})
    keys, _ = cache.add([pair_source.image_bytes(i) for i in ids])
    key_of = dict(zip(ids, keys))
    usable = [Pair(p.instruction, key_of[p.image_0], key_of[p.image_1], p.label_0, p.pair_id, p.annotator,
                   p.created_at) for p in pairs if key_of[p.image_0] and key_of[p.image_1]]
    return Prepared(pairs=usable, classes=list(classes or []))


@torch.no_grad()
def evaluate(method: RankingMethod, data: Prepared, cache: FeatureCache, tail: VisionTail | None = None,
             device: torch.device | str = "cpu") -> dict[str, float]:
    """Metrics per caption (RAC's per-category averaging), or pairwise accuracy on labelled pairs."""
    method.eval()
    if data.pairs:
        groups = defaultdict(list)
        for pair in data.pairs:
            groups[pair.instruction].append(pair)
        hits, total = 0.0, 0
        for text, pairs in groups.items():
            spec = pair_spec(pairs, text)
            scores = _scores(method, cache, tail, spec.keys, text, data.classes, device)
            keep = int((spec.pair_targets != 0.5).sum())
            if keep:
                hits += pairwise_label_accuracy(scores, spec.pairs, spec.pair_targets) * keep
                total += keep
        return {"pair_label_accuracy": hits / total if total else float("nan"), "pairs": len(data.pairs)}
    groups = defaultdict(list)
    for example in data.examples:
        groups[example.text].append(example)
    per_group = []
    for text, examples in sorted(groups.items()):
        scores = _scores(method, cache, tail, [e.key for e in examples], text, data.classes, device)
        per_group.append(ranking_metrics([e.target for e in examples], scores.cpu().numpy(),
                                         len(data.classes) or None))
    metrics = {k: float(np.nanmean([m[k] for m in per_group])) for k in per_group[0]} if per_group else {}
    metrics["images"] = len(data.examples)
    return metrics


def _scores(method, cache, tail, keys, text, classes, device) -> torch.Tensor:
    scores = []
    for start in range(0, len(keys), 256):
        feats = cache.get(keys[start:start + 256], device)
        feats = tail(feats) if tail is not None else feats
        scores.append(method.score(feats, text, classes or None).float().cpu())
    return torch.cat(scores)


def _pair_split(source: PairSource, fraction: float) -> tuple[list[Pair], list[Pair]]:
    pairs = source.pairs()
    return ([p for p in pairs if not is_held_out(p.pair_id, fraction)],
            [p for p in pairs if is_held_out(p.pair_id, fraction)])


def load_data(config: FitConfig, cache: FeatureCache) -> tuple[Prepared, Prepared | None]:
    """Training data and evaluation data (a separate source or a stable held-out share)."""
    source = load_source(config.data)
    classes = config.data.classes or None
    held = None
    if config.eval_data.path:
        eval_cfg = config.eval_data
        if eval_cfg.kind == config.data.kind and not eval_cfg.text:
            eval_cfg.text = config.data.text
        held = prepare(load_source(eval_cfg), cache, classes)
    if isinstance(source, LabelledSet):
        if held is None and config.eval_fraction > 0:
            train_items, held_items = split_items(source.items, config.eval_fraction)
            held = prepare(LabelledSet(held_items, source.classes), cache, classes)
            source = LabelledSet(train_items, source.classes, source.skipped)
        train = prepare(source, cache, classes)
    else:
        train_pairs, held_pairs = _pair_split(source, config.eval_fraction if held is None else 0.0)
        train = prepare(train_pairs, cache, classes, pair_source=source)
        if held_pairs:
            held = prepare(held_pairs, cache, classes, pair_source=source)
    if held is not None and held.classes != train.classes and not held.classes:
        held.classes = train.classes
    return train, held


def make_method(config: FitConfig, backbone: Backbone, classes: list[str], device: torch.device) -> RankingMethod:
    """The configured method; heads with per-class parameters get the data's classes."""
    options = dict(config.method_config)
    if getattr(get_method_class(config.method), "needs_classes", False) and classes and "classes" not in options:
        options["classes"] = list(classes)
    torch.manual_seed(config.train.seed)
    return create_method(config.method, backbone, **options).to(device)


def build(config: FitConfig, device: torch.device):
    """Backbone, optional trainable tail, and the feature cache they share."""
    get_method_class(config.method)  # fail on an unknown name before any data is read
    backbone = build_backbone(config.backbone, device)
    tail = VisionTail(backbone, config.train.finetune_blocks) if config.train.finetune_blocks else None
    cache = FeatureCache(backbone, config.cache.dir or None, config.cache.memory_items,
                         split=tail.split if tail else None, encode_batch=config.cache.encode_batch)
    return backbone, tail, cache


def fit(config: FitConfig, callbacks: dict[str, list] | None = None) -> FitResult:
    """Train as configured; under torchrun every process runs this and rank 0 writes the files.

    Args:
        config: the run.
        callbacks: extra `Trainer` callbacks by event, e.g. {"on_batch_end": [fn]}.
    """
    device = resolve_device(config.train.device)
    if world_size() > 1 and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    backbone, tail, cache = build(config, device)
    train, held = load_data(config, cache)
    if not len(train):
        raise ValueError("No usable training data: every row was skipped (see the warnings above).")
    method = make_method(config, backbone, train.classes, device)
    c = config.train
    batches = PairBatches(train.pairs, c.batch_size, c.seed) if train.pairs else \
        ItemBatches(train.examples, c.batch_size, c.sampling, c.negative_ratio, c.seed)
    trainer = Trainer(method, cache, batches, c, device, tail, train.classes)
    out = Path(config.out_dir)
    if config.resume:
        resume = load_checkpoint(config.resume, backbone=backbone if not tail else None, device=device)
        method.load_state_dict(resume.method.state_dict())
        if tail is not None:
            backbone.model.load_state_dict(resume.backbone.model.state_dict())
        trainer.load_state_dict(load_state(Path(config.resume).with_suffix(".state.pt")))
    history: list[dict] = []
    main = is_main()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.json")
    log_file = (out / "metrics.jsonl").open("a") if main else None
    bar = tqdm(total=c.steps, initial=trainer.step, desc="fit", disable=not (c.progress and main), leave=False)

    def on_batch_end(tr: Trainer, logs: dict) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{logs['loss']:.4f}")
        record = {"step": tr.step, **logs}
        if c.eval_every and held is not None and tr.step % c.eval_every == 0 and tr.step < c.steps:
            record["eval"] = evaluate(method, held, cache, tail, device)
            method.train()
        if main and (tr.step % max(1, c.log_every) == 0 or "eval" in record or tr.step == c.steps):
            history.append(record)
            log_file.write(json.dumps({"time": time.time(), **record}) + "\n")
            log_file.flush()
        if main and c.save_every and tr.step % c.save_every == 0 and tr.step < c.steps:
            _save(out, method, tail, trainer, config, len(train), {})

    trainer.add_callback("on_batch_end", on_batch_end)
    for event, fns in (callbacks or {}).items():
        for fn in fns:
            trainer.add_callback(event, fn)
    try:
        trainer.run()
    finally:
        bar.close()
    metrics = evaluate(method, held if held is not None else train, cache, tail, device)
    metrics["split"] = "held-out" if held is not None else "train"
    path = out / "checkpoint.safetensors"
    if main:
        log_file.write(json.dumps({"time": time.time(), "step": trainer.step, "final": metrics}) + "\n")
        log_file.close()
        path = _save(out, method, tail, trainer, config, len(train), metrics)
    return FitResult(path, metrics, history)


def _save(out: Path, method, tail, trainer: Trainer, config: FitConfig, n_train: int, metrics: dict) -> Path:
    tensors = None
    if tail is not None:
        tensors = {n: p for n, p in method.backbone.model.named_parameters() if p.requires_grad}
    meta = {"step": trainer.step, "labels": n_train, "metrics": metrics,
            "finetune_blocks": config.train.finetune_blocks, "classes": trainer.classes or [],
            "fit_config": to_dict(config)}
    path = save_checkpoint(out / "checkpoint.safetensors", method, meta, tensors)
    save_state(out / "checkpoint.state.pt", trainer.state_dict())
    return path


def open_for_eval(checkpoint: str | Path, config: FitConfig, device: torch.device):
    """Method, tail and cache from a checkpoint, ready for `evaluate` or `predict`."""
    loaded = load_checkpoint(checkpoint, device=device)
    blocks = int(loaded.info["metadata"].get("finetune_blocks", 0))
    tail = VisionTail(loaded.backbone, blocks).to(device).eval() if blocks else None
    cache = FeatureCache(loaded.backbone, config.cache.dir or None, config.cache.memory_items,
                         split=tail.split if tail else None, encode_batch=config.cache.encode_batch)
    return loaded, tail, cache


def run_eval(checkpoint: str | Path, config: FitConfig) -> dict:
    """Re-evaluate a checkpoint on `eval_data` (or the held-out share of `data`, as fit did)."""
    device = resolve_device(config.train.device)
    loaded, tail, cache = open_for_eval(checkpoint, config, device)
    if config.eval_data.path:  # only the evaluation source is needed
        config.eval_data.text = config.eval_data.text or config.data.text
        train, held = None, prepare(load_source(config.eval_data), cache, config.data.classes or None)
    else:
        train, held = load_data(config, cache)
    classes = loaded.info["metadata"].get("classes") or []
    data = held if held is not None else train
    data.classes = data.classes or classes
    metrics = evaluate(loaded.method, data, cache, tail, device)
    metrics["split"] = "held-out" if held is not None else "train"
    return metrics


@torch.no_grad()
def predict(checkpoint: str | Path, images: list, text: str, classes: list[str] | None = None,
            config: FitConfig | None = None) -> list[dict]:
    """Score images under an instruction; rows sorted best first (rank 1 = highest score)."""
    config = config or FitConfig()
    device = resolve_device(config.train.device)
    loaded, tail, cache = open_for_eval(checkpoint, config, device)
    classes = classes or loaded.info["metadata"].get("classes") or None
    keys, _ = cache.add(images)
    ok = [i for i, k in enumerate(keys) if k is not None]
    scores = _scores(loaded.method, cache, tail, [keys[i] for i in ok], text, classes, device)
    order = sorted(range(len(ok)), key=lambda j: -float(scores[j]))
    return [{"rank": r + 1, "score": float(scores[j]), "image": str(images[ok[j]])} for r, j in enumerate(order)]
