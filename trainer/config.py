"""Dataclass configs for training: JSON/YAML in and out, type-checked `key=value` overrides.

Each component owns its defaults (minGPT's `get_default_config`); a run's resolved config is saved
next to its checkpoints. Every field carries a one-line help text, which the CLI turns into one
documented flag per field (`--train.lr 1e-4`), so flags and files can never drift apart.
"""

from __future__ import annotations

import difflib
import json
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml


def _f(default, help: str):
    """A dataclass field with a help text (mutable defaults are copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class BackboneSpec:
    name: str = _f("ViT-B-32", "open_clip model name, or 'local-dir:/folder' (the bundled demo: 'demo')")
    pretrained: str | None = _f("laion2b_s34b_b79k", "pretrained tag or checkpoint file; empty for none")
    resize_mode: str = _f("squash", "image resize: squash | shortest | longest")
    project_tokens: bool = _f(True, "ViT: project patch tokens into the joint space (as RAC)")


@dataclass
class DataConfig:
    kind: str = _f("table", "source: table (RAC TSV/CSV) | folder (one sub-folder per class) | hf | pairs")
    path: str = _f("", "table file, image folder, datasets name or saved dir, or pair file")
    root: str = _f("", "base folder for relative image paths in a table (default: the table's folder)")
    split: str = _f("train", "datasets split to read")
    image_column: str = _f("image", "datasets: the image column")
    label_column: str = _f("label", "datasets: the label column (ClassLabel or numeric)")
    text: str = _f("", "instruction for sources without captions (folder, hf, pairs without one)")
    classes: list = _f([], "ordered class names, lowest rank first (overrides the source's)")
    limit: int = _f(0, "keep only the first N rows (0: all)")
    pair_source: str = _f("", "pairs: 'module:callable' that builds a pair source from path")


@dataclass
class TrainConfig:
    steps: int = _f(200, "optimizer steps")
    batch_size: int = _f(16, "images per batch (pairs per batch for pair data)")
    sampling: str = _f("rank", "rank: RAC batches, one caption per batch, with negatives | plain: shuffled")
    negative_ratio: float = _f(0.0, "rank sampling: share of a batch drawn from other captions, target 0")
    lr: float = _f(5e-5, "peak learning rate (AdamW)")
    weight_decay: float = _f(0.01, "AdamW weight decay; none on biases, norms and gains")
    betas: list = _f([0.9, 0.999], "AdamW betas")
    warmup_steps: int = _f(10, "linear warm-up steps before the cosine decay")
    min_lr_ratio: float = _f(0.0, "cosine floor as a fraction of lr")
    grad_clip: float = _f(1.0, "clip the gradient norm to this (0: off)")
    accum_steps: int = _f(1, "micro-batches per optimizer step (per process)")
    amp: bool = _f(True, "mixed precision on CUDA (ignored on CPU)")
    seed: int = _f(0, "seed for init, batch sampling and dropout")
    device: str = _f("auto", "auto (cuda if available) | cpu | cuda | cuda:N")
    finetune_blocks: int = _f(0, "also fine-tune the last k image blocks of a ViT backbone")
    backbone_lr: float = _f(1e-5, "learning rate of the fine-tuned backbone blocks")
    eval_every: int = _f(0, "evaluate every N steps (0: only at the end)")
    save_every: int = _f(0, "write a resumable checkpoint every N steps (0: only at the end)")
    log_every: int = _f(10, "write a metrics line every N steps")
    progress: bool = _f(True, "show tqdm progress bars")


@dataclass
class CacheConfig:
    dir: str = _f("", "on-disk feature cache folder (empty: memory only)")
    memory_items: int = _f(4096, "images kept in the in-memory LRU")
    encode_batch: int = _f(32, "images per backbone forward when filling the cache")


@dataclass
class FitConfig:
    method: str = _f("rac", "ranking method, see trainer.list_methods()")
    method_config: dict = _f({}, "overrides of the method's own Config, as JSON (e.g. {\"mode\": \"fixed\"})")
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    data: DataConfig = field(default_factory=DataConfig)
    eval_data: DataConfig = field(default_factory=lambda: DataConfig(path=""))
    eval_fraction: float = _f(0.0, "without eval_data.path: hold out this share of the data (stable split)")
    train: TrainConfig = field(default_factory=TrainConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    out_dir: str = _f("runs/fit", "folder for checkpoints, metrics.jsonl and the resolved config")
    resume: str = _f("", "resume from this checkpoint (a .safetensors written by fit)")


# ----------------------------------------------------------------------------------- (de)serialise
def to_dict(config) -> dict:
    return asdict(config)


def from_dict(cls, data: dict, where: str = ""):
    """Build a (nested) dataclass from a dict; unknown keys fail with the closest known names."""
    if not isinstance(data, dict):
        raise ValueError(f"Config section '{where or cls.__name__}' must be a mapping, got {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in known:
            raise ValueError(_unknown(path, [f"{where}.{k}" if where else k for k in known]))
        kind = hints[key]
        kwargs[key] = from_dict(kind, value, path) if is_dataclass(kind) else _check_type(path, kind, value)
    return cls(**kwargs)


def load_config(path: str | Path, cls=FitConfig):
    """Read a JSON or YAML file into `cls`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file not found: {path}")
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return from_dict(cls, data or {})


def save_config(config, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_dict(config), indent=2) + "\n")


# -------------------------------------------------------------------------------------- overrides
def config_keys(cls=FitConfig, prefix: str = "") -> dict[str, tuple[type, str, object]]:
    """Every leaf field as dotted key -> (type, help, default)."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        kind = hints[f.name]
        if is_dataclass(kind):
            out.update(config_keys(kind, key + "."))
        else:
            default = f.default if f.default is not MISSING else f.default_factory()
            out[key] = (kind, f.metadata.get("help", ""), default)
    return out


def set_value(config, key: str, value) -> None:
    """Set a dotted key (`train.lr`) from a string or a value, checking its type."""
    keys = config_keys(type(config))
    if key not in keys:
        raise ValueError(_unknown(key, list(keys)))
    *parents, leaf = key.split(".")
    target = config
    for name in parents:
        target = getattr(target, name)
    kind = keys[key][0]
    setattr(target, leaf, parse_value(key, kind, value) if isinstance(value, str) else _check_type(key, kind, value))


def apply_overrides(config, overrides: list[str] | dict):
    """Apply `key=value` strings (or a dict of dotted keys) in order; returns the config."""
    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides]
    for key, value in items:
        set_value(config, key, value)
    return config


def _split(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ValueError(f"Override '{text}' is not of the form key=value (e.g. train.lr=1e-4).")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def parse_value(key: str, kind, text: str):
    """Parse a flag's string into the field's type, with a clear message on failure."""
    origin = typing.get_origin(kind)
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if text.lower() in ("", "none", "null"):
            return None
        return parse_value(key, args[0], text)
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
        if kind in (list, dict) or origin in (list, dict):
            base = origin or kind
            if base is list and not text.lstrip().startswith("["):
                return [_auto(p.strip()) for p in text.split(",") if p.strip()]
            value = json.loads(text) if text else base()
            return _check_type(key, base, value)
    except (ValueError, json.JSONDecodeError):
        pass
    raise ValueError(f"Config key '{key}' expects {getattr(kind, '__name__', kind)}, got {text!r}.")


def _auto(text: str):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _check_type(key: str, kind, value):
    origin = typing.get_origin(kind) or kind
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if value is None and type(None) in typing.get_args(kind):
        return None
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        origin = args[0]
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin in (int, float) and isinstance(value, bool) or not isinstance(value, origin):
        raise ValueError(f"Config key '{key}' expects {getattr(origin, '__name__', origin)}, "
                         f"got {type(value).__name__} {value!r}.")
    return value


def _unknown(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return f"Unknown config key '{key}'.{hint}"
