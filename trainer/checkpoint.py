"""Checkpoints: the method's weights in safetensors plus a JSON of everything needed to rebuild it.

`name.safetensors` holds the state dict and, in its header metadata, the same JSON that is written
beside it as `name.json` (method name, resolved method config, backbone config, metadata such as
version, label count and metrics). The safetensors file alone is therefore self-describing; each file
is written to a temporary name, fsynced and renamed, so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import safetensors.torch
import torch

from .backbone import DEMO_BACKBONE, Backbone, BackboneConfig
from .method import RankingMethod
from .registry import create_method

FORMAT = "rankui-checkpoint"
FORMAT_VERSION = 1
BACKBONE_PREFIX = "backbone."  # fine-tuned backbone tensors, keyed by their name in backbone.model


@dataclass
class Checkpoint:
    method: RankingMethod
    backbone: Backbone
    info: dict  # the JSON: method, method_config, backbone, metadata


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, fsync, then rename over `path`: all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a checkpoint is an ordinary, readable file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def portable_backbone(config: BackboneConfig) -> dict:
    """Backbone config for a checkpoint: no device, and the bundled demo as 'demo' (no absolute path)."""
    data = asdict(config)
    data.pop("device", None)
    if data["name"] == DEMO_BACKBONE:
        data["name"] = "demo"
    return data


def backbone_config(data: dict, device: str = "cpu") -> BackboneConfig:
    known = {f.name for f in fields(BackboneConfig)}
    data = {k: v for k, v in data.items() if k in known}
    if data.get("name") == "demo":
        data["name"], data["pretrained"] = DEMO_BACKBONE, None
    return BackboneConfig(**{**data, "device": device})


def checkpoint_info(method: RankingMethod, backbone_cfg: BackboneConfig | None, metadata: dict | None) -> dict:
    config = getattr(method, "config", None)
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "method": method.name,
            "method_config": asdict(config) if config is not None else {},
            "backbone": portable_backbone(backbone_cfg) if backbone_cfg is not None else None,
            "metadata": metadata or {}}


def save_checkpoint(path: str | Path, method: RankingMethod, metadata: dict | None = None,
                    backbone_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write `path` (.safetensors) and its `.json` sidecar atomically; returns the safetensors path.

    Args:
        path: target file; the suffix is forced to .safetensors.
        method: the trained method; its backbone (if any) is recorded by config, not by weights.
        metadata: JSON-serialisable facts (version, label count, metrics, step, ...).
        backbone_tensors: fine-tuned backbone weights to carry (names as in `backbone.model`).
    """
    path = Path(path).with_suffix(".safetensors")
    backbone = getattr(method, "backbone", None)
    info = checkpoint_info(method, backbone.config if backbone is not None else None, metadata)
    info["backbone_tensors"] = sorted(backbone_tensors or {})
    state = {k: v.detach().to("cpu").contiguous() for k, v in method.state_dict().items()}
    for key, value in (backbone_tensors or {}).items():
        state[BACKBONE_PREFIX + key] = value.detach().to("cpu").contiguous()
    text = json.dumps(info, indent=2, default=_jsonable)
    atomic_write(path, lambda tmp: safetensors.torch.save_file(state, tmp, metadata={FORMAT: text}))
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text + "\n"))
    return path


def read_info(path: str | Path) -> dict:
    """The JSON of a checkpoint, read from the safetensors header (authoritative)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    if FORMAT not in meta:
        raise ValueError(f"{path} has no '{FORMAT}' metadata: not written by trainer.save_checkpoint "
                         "(convert foreign weights with the method's converter first).")
    return json.loads(meta[FORMAT])


def load_checkpoint(path: str | Path, backbone: Backbone | None = None, device: str | torch.device = "cpu",
                    key_map: Callable[[dict], dict] | None = None) -> Checkpoint:
    """Rebuild the method from a checkpoint and load its weights with `strict=True`.

    Args:
        path: a .safetensors file written by `save_checkpoint`.
        backbone: reuse this backbone (must have the same id); built from the checkpoint otherwise.
            Fine-tuned backbone tensors are loaded into it, so pass a shared backbone only when the
            checkpoint has none.
        device: where the method (and a newly built backbone) goes.
        key_map: optional renaming of the state dict (foreign or older layouts) before loading.
    """
    info = read_info(path)
    state = safetensors.torch.load_file(str(path), device="cpu")
    if key_map is not None:
        state = key_map(state)
    bb_state = {k[len(BACKBONE_PREFIX):]: state.pop(k) for k in list(state) if k.startswith(BACKBONE_PREFIX)}
    if info.get("backbone") is not None:
        wanted = backbone_config(info["backbone"], str(device))
        if backbone is None:
            backbone = Backbone(wanted)
        elif backbone.config.id != wanted.id:
            raise ValueError(f"Checkpoint {path} was trained on backbone '{wanted.id}', "
                             f"but '{backbone.config.id}' was given.")
    if bb_state:
        missing = set(bb_state) - set(backbone.model.state_dict())
        if missing:
            raise ValueError(f"Checkpoint {path} has backbone tensors the backbone lacks: {sorted(missing)[:5]}")
        backbone.model.load_state_dict(bb_state, strict=False)
    method = create_method(info["method"], backbone, **info.get("method_config", {}))
    method.load_state_dict(state, strict=True)
    return Checkpoint(method.to(device).eval(), backbone, info)


def save_state(path: str | Path, state: dict) -> None:
    """Resumable trainer state (optimizer, scheduler, step) beside a checkpoint, atomically."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path) -> dict:
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _jsonable(value):
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
