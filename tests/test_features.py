"""Feature cache: content-addressed, half precision on disk, bounded LRU, never re-encodes."""

import shutil
from pathlib import Path

import torch
from PIL import Image

from trainer.backbone import load_demo_backbone
from trainer.data import read_table
from trainer.features import FeatureCache, VisionTail

DATA = Path(__file__).resolve().parent / "data"
FILES = [DATA / f"images/train_shapes_{i:02d}.png" for i in range(6)]


def test_features_match_backbone_and_are_never_reencoded(demo_backbone, tmp_path):
    cache = FeatureCache(demo_backbone, tmp_path, memory_items=4)
    feats, ok = cache.features(FILES)
    assert ok == list(range(6)) and cache.stats["encoded"] == 6
    with torch.no_grad():
        direct = demo_backbone.encode_pil([Image.open(f) for f in FILES])
    assert feats.tokens.shape == (6, 64, 64) and feats.tokens.dtype == torch.float32
    torch.testing.assert_close(feats.tokens, direct.tokens.half().float())  # stored half, returned float
    torch.testing.assert_close(feats.pooled, direct.pooled.half().float())
    # Same bytes under another name: same key, no new encoding; LRU holds 4, the rest come from disk.
    shutil.copy(FILES[0], tmp_path / "copy.png")
    again, _ = cache.features([tmp_path / "copy.png", *FILES])
    assert cache.stats["encoded"] == 6 and cache.stats["disk_hits"] >= 2
    assert torch.equal(again.tokens[0], feats.tokens[0]) and torch.equal(again.tokens[1:], feats.tokens)
    assert len(cache._lru) == 4
    # A fresh cache on the same folder (a restart) reads everything from disk.
    fresh = FeatureCache(demo_backbone, tmp_path)
    assert torch.equal(fresh.features(FILES)[0].tokens, feats.tokens) and fresh.stats["encoded"] == 0
    files = list((tmp_path / cache.namespace).rglob("*.safetensors"))
    assert len(files) == 6


def test_namespace_depends_on_backbone_and_preprocessing(demo_backbone, tmp_path):
    other = load_demo_backbone(resize_mode="shortest")
    a, b = FeatureCache(demo_backbone, tmp_path), FeatureCache(other, tmp_path)
    assert a.namespace != b.namespace != FeatureCache(demo_backbone, tmp_path, split=1).namespace
    assert a.namespace == FeatureCache(demo_backbone, tmp_path / "elsewhere").namespace


def test_unreadable_images_are_reported_and_skipped(demo_backbone, caplog):
    table = read_table(DATA / "count.tsv")
    cache = FeatureCache(demo_backbone)
    feats, ok = cache.features(table.items)
    bad = [i for i in range(len(table.items)) if i not in ok]
    assert [Path(table.items[i].image).name for i in bad] == ["truncated.png"]
    assert len(feats) == len(table.items) - 1
    assert "truncated.png" in caplog.text and "unreadable image" in caplog.text
    _, skipped = cache.add([b"not an image", FILES[0]])
    assert len(skipped) == 1


def test_vision_tail_reproduces_full_encoding():
    backbone = load_demo_backbone()
    tail = VisionTail(backbone, k=1)
    cache = FeatureCache(backbone, split=tail.split)
    keys, _ = cache.add(FILES[:3])
    hidden = cache.get(keys)
    assert hidden.shape == (3, 65, 64)  # CLS + 8x8 patches, width 64
    with torch.no_grad():
        direct = backbone.encode_pil([Image.open(f) for f in FILES[:3]])
        via_tail = tail(hidden)
    torch.testing.assert_close(via_tail.tokens, direct.tokens, atol=2e-2, rtol=2e-2)  # half-precision cache
    assert any(p.requires_grad for p in tail.parameters())
    trainable = {n for n, p in backbone.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("visual.transformer.resblocks.1.", "visual.ln_post", "visual.proj"))
                             for n in trainable)
