"""Checkpoints: safetensors + JSON, atomic, self-describing, strict reload, clear errors."""

import json

import pytest
import safetensors.torch
import torch

from trainer.checkpoint import atomic_write, load_checkpoint, read_info, save_checkpoint
from trainer.registry import create_method


def test_roundtrip_gives_identical_scores(demo_backbone, tmp_path):
    torch.manual_seed(0)
    method = create_method("rac", demo_backbone, mode="fixed", dropout=0.0).eval()
    path = save_checkpoint(tmp_path / "ck" / "v1", method, {"version": 3, "labels": 12, "metrics": {"srcc": 0.5}})
    assert path.name == "v1.safetensors" and path.with_suffix(".json").is_file()
    info = json.loads(path.with_suffix(".json").read_text())
    assert info == read_info(path)
    assert info["method"] == "rac" and info["method_config"]["mode"] == "fixed"
    assert info["backbone"]["name"] == "demo" and "device" not in info["backbone"]
    assert info["metadata"] == {"version": 3, "labels": 12, "metrics": {"srcc": 0.5}}
    loaded = load_checkpoint(path, backbone=demo_backbone)
    assert loaded.backbone is demo_backbone
    feats = demo_backbone.encode_images(torch.randn(5, 3, 64, 64))
    assert torch.equal(loaded.method.score(feats, "Rank it."), method.score(feats, "Rank it."))
    rebuilt = load_checkpoint(path)  # builds its own demo backbone from the JSON
    assert rebuilt.backbone.config.id == demo_backbone.config.id
    assert torch.equal(rebuilt.method.score(feats, "Rank it."), method.score(feats, "Rank it."))
    assert not list(path.parent.glob("*.tmp"))


def test_strict_loading_and_clear_errors(demo_backbone, tmp_path):
    method = create_method("rac", demo_backbone)
    path = save_checkpoint(tmp_path / "a.safetensors", method)
    state = safetensors.torch.load_file(str(path))
    meta = {"rankui-checkpoint": read_info(path) and json.dumps(read_info(path))}
    state.pop("reg_tokens")
    safetensors.torch.save_file(state, str(tmp_path / "broken.safetensors"), metadata=meta)
    with pytest.raises(RuntimeError, match="reg_tokens"):
        load_checkpoint(tmp_path / "broken.safetensors", backbone=demo_backbone)
    safetensors.torch.save_file({"w": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match="no 'rankui-checkpoint' metadata"):
        load_checkpoint(tmp_path / "foreign.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        read_info(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError):
        read_info(tmp_path / "none.safetensors")


def test_backbone_mismatch_is_refused(demo_backbone, tmp_path):
    from trainer.backbone import load_demo_backbone
    path = save_checkpoint(tmp_path / "a", create_method("rac", demo_backbone))
    with pytest.raises(ValueError, match="trained on backbone"):
        load_checkpoint(path, backbone=load_demo_backbone(resize_mode="longest"))


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def fail(tmp):
        open(tmp, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
