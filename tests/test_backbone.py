"""The open_clip backbone wrapper: tokens, masks, grids, preprocessing, loading and its errors."""

import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from trainer.backbone import (DEMO_BACKBONE_DIR, Backbone, BackboneConfig, BackboneUnavailable,
                              load_backbone, load_demo_backbone)


def test_tiny_backbone_tokens_and_pooled(demo_backbone):
    images = [Image.new("RGB", (120, 80), (40 * i, 90, 200 - 30 * i)) for i in range(3)]
    pixels = demo_backbone.preprocess_images(images)
    assert pixels.shape == (3, 3, 64, 64)
    features = demo_backbone.encode_images(pixels)
    assert features.tokens.shape == (3, 64, 64)  # 8x8 patches, CLS dropped, projected width
    assert demo_backbone.grid_size == (8, 8) and demo_backbone.token_dim == 64
    # pooled is exactly open_clip's encode_image; tokens are ln_post outputs @ proj
    assert torch.allclose(features.pooled, demo_backbone.model.encode_image(pixels), atol=1e-6)
    raw = load_demo_backbone(project_tokens=False).encode_images(pixels).tokens
    assert torch.allclose(raw @ demo_backbone.model.visual.proj, features.tokens, atol=1e-5)
    assert not any(p.requires_grad for p in demo_backbone.parameters())  # frozen by default


def test_tiny_backbone_text_tokens_and_mask(demo_backbone):
    text = demo_backbone.encode_text(["rank by the number of apples", "sharpest first"])
    assert text.tokens.shape == (2, 77, 64)
    # SOT + words + EOT are valid; padding after EOT is masked
    assert text.mask.sum(1).tolist() == [8, 5]  # "sharpest" is two BPE pieces
    assert text.mask[0, :8].all() and not text.mask[0, 8:].any()
    assert torch.allclose(text.pooled, demo_backbone.model.encode_text(text.ids), atol=1e-6)
    assert demo_backbone.text_token_strings("sharpest first") == ["<start_of_text>", "shar", "pest", "first",
                                                                  "<end_of_text>"]


def test_squash_keeps_the_whole_image(demo_backbone):
    """Squash resizing keeps a wide image's edges (maps cover it); shortest-side cropping cuts them."""
    img = np.zeros((50, 200, 3), dtype=np.uint8)
    img[:, :25] = (255, 0, 0)  # a red band on the left edge
    image = Image.fromarray(img)
    squashed = demo_backbone.preprocess_images([image])[0]
    cropped = load_demo_backbone(resize_mode="shortest").preprocess_images([image])[0]
    assert squashed[0, :, 0].mean() > 1.0  # red channel high at the left edge
    assert cropped[0, :, 0].mean() < 0.0  # the crop lost the band
    with pytest.raises(ValueError, match="resize_mode"):
        load_demo_backbone(resize_mode="stretchy")


def test_local_checkpoint_file(tmp_path, demo_backbone):
    """A named config plus a local checkpoint file loads the same weights as the local-dir: folder."""
    config = json.loads((DEMO_BACKBONE_DIR / "open_clip_config.json").read_text())["model_cfg"]
    (tmp_path / "TinyDemo-ckpt.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "TinyDemo-ckpt.json")
    backbone = load_backbone("TinyDemo-ckpt", str(DEMO_BACKBONE_DIR / "open_clip_model.safetensors"))
    text = ["three red circles"]
    assert torch.allclose(backbone.encode_text(text).pooled, demo_backbone.encode_text(text).pooled, atol=1e-6)


def test_convnext_tokens_per_location(tmp_path):
    """ConvNeXt towers give per-location tokens as RAC builds them (trunk -> LayerNorm2d -> 1x1 conv)."""
    config = {"embed_dim": 32,
              "vision_cfg": {"timm_model_name": "convnext_atto", "timm_model_pretrained": False, "timm_pool": "",
                             "timm_proj": "mlp", "timm_drop": 0.0, "timm_drop_path": 0.0, "image_size": 64},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "TinyConvNeXt-test.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "TinyConvNeXt-test.json")
    torch.manual_seed(0)
    backbone = load_backbone("TinyConvNeXt-test", None)
    pixels = torch.randn(2, 3, 64, 64)
    features = backbone.encode_images(pixels)
    assert backbone.grid_size == (2, 2) and backbone.token_dim == 32
    assert features.tokens.shape == (2, 4, 32)
    assert torch.allclose(features.pooled, backbone.model.encode_image(pixels), atol=1e-5)
    trunk = backbone.model.visual.trunk
    fmap = trunk.head.norm(trunk.forward_features(pixels))
    expected = torch.einsum("oc,nchw->nhwo", backbone.token_proj.weight[:, :, 0, 0], fmap) + backbone.token_proj.bias
    assert torch.allclose(features.tokens, expected.reshape(2, 4, 32), atol=1e-5)
    # the conv is seeded: the same tokens on every load, so cached features stay valid
    torch.manual_seed(123)
    again = load_backbone("TinyConvNeXt-test", None)
    assert torch.equal(again.token_proj.weight, backbone.token_proj.weight)


@pytest.mark.slow
def test_vit_b32_shapes_random_init():
    backbone = load_backbone("ViT-B-32", None)
    features = backbone.encode_images(torch.randn(2, 3, 224, 224))
    assert features.tokens.shape == (2, 49, 512) and features.pooled.shape == (2, 512)
    assert backbone.grid_size == (7, 7) and backbone.text_dim == 512


def test_clear_errors_offline():
    with pytest.raises(BackboneUnavailable, match="Unknown open_clip model 'ViT-Q-99'"):
        load_backbone("ViT-Q-99", None)
    with pytest.raises(BackboneUnavailable, match="Unknown pretrained tag 'nosuchtag' for open_clip model 'ViT-B-32'"):
        load_backbone("ViT-B-32", "nosuchtag")
    with pytest.raises(BackboneUnavailable, match="folder not found"):
        Backbone(BackboneConfig(name="local-dir:/nonexistent/folder", pretrained=None))
    # A real tag whose weights cannot be fetched here: one line naming model, tag and the offline way.
    with pytest.raises(BackboneUnavailable) as err:
        load_backbone("ViT-B-32", "laion2b_s34b_b79k")
    message = str(err.value)
    assert "\n" not in message
    assert "'ViT-B-32'" in message and "'laion2b_s34b_b79k'" in message and "local-dir:" in message


def test_backbone_id_is_machine_independent(demo_backbone):
    """The cache key names the weights, not where this checkout happens to live."""
    assert str(DEMO_BACKBONE_DIR.parent) not in demo_backbone.config.id
    assert demo_backbone.config.id == load_demo_backbone().config.id
    assert load_demo_backbone(resize_mode="shortest").config.id != demo_backbone.config.id
