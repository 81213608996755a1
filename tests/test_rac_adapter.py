"""The RAC adapter's behaviour beyond the goldens: batch independence, sparse pairs, attention, loading."""

import pytest
import torch

from trainer.backbone import ImageFeatures
from trainer.layers import all_pairs, rank_attention_dense
from trainer.method import RankBatch
from trainer.metrics import pairwise_label_accuracy
from trainer.rac import RankingAwareAdapter, convert_rac_state_dict
from trainer.registry import create_method, list_methods


def features(n: int, p: int = 64, d: int = 64, seed: int = 0) -> ImageFeatures:
    g = torch.Generator().manual_seed(seed)
    return ImageFeatures(torch.randn(n, p, d, generator=g), torch.randn(n, d, generator=g))


@pytest.fixture(params=["fixed", "faithful"])
def adapter(request, demo_backbone):
    torch.manual_seed(0)
    return create_method("rac", demo_backbone, mode=request.param, score_chunk=4)


def test_registered():
    assert "rac" in list_methods()
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        create_method("nope")
    with pytest.raises(ValueError, match="Unknown RAC options"):
        create_method("rac", None, d_model=16, colour="red")
    with pytest.raises(ValueError, match="mode must be one of"):
        create_method("rac", None, d_model=16, mode="magic")


def test_scores_do_not_depend_on_the_batch(adapter):
    images = features(10)
    text = "rank by the number of apples"
    full = adapter.score(images, text)
    assert full.shape == (10,)
    alone = torch.cat([adapter.score(images.index(slice(i, i + 1)), text) for i in range(10)])
    reordered = adapter.score(images.index(torch.tensor([7, 2, 9])), text)
    assert torch.allclose(full, alone, atol=1e-5)
    assert torch.allclose(reordered, full[[7, 2, 9]], atol=1e-5)
    assert full.std() > 0  # not a constant
    adapter.config.score_chunk = 100  # chunking changes nothing
    assert torch.allclose(adapter.score(images, text), full, atol=1e-5)


def test_instruction_changes_scores(adapter):
    images = features(6)
    a = adapter.score(images, "sharpest first")
    b = adapter.score(images, "rank by the number of red circles")
    assert not torch.allclose(a, b)


def test_sparse_pairs_equal_dense_all_pairs(adapter):
    images = features(7)
    text = "order by age"
    dense = adapter.pair_logits(images, text, "all")  # the original's N² layout, i*N + j
    assert dense.shape == (49,)
    g = torch.Generator().manual_seed(1)
    pairs = torch.randint(0, 7, (12, 2), generator=g)
    sparse = adapter.pair_logits(images, text, pairs)
    assert torch.allclose(sparse, dense[pairs[:, 0] * 7 + pairs[:, 1]], atol=1e-5)
    # ...and the relational attention itself equals the original dense formulation.
    adapter.eval()
    text_tokens, mask = adapter.text_tokens(text)
    with torch.no_grad():
        x, _ = adapter.fuse(images.tokens, text_tokens, mask)
        ref_out, ref_attn = rank_attention_dense(adapter.reg_token_pooler, adapter.reg_tokens, x)
        out, attn = adapter.reg_token_pooler(adapter.reg_tokens, x, pairs, return_attention=True)
    idx = pairs[:, 0] * 7 + pairs[:, 1]
    assert torch.allclose(out, ref_out[idx], atol=1e-5)
    assert torch.allclose(attn, ref_attn[idx], atol=1e-6)


def test_attention_on_request_changes_nothing(adapter):
    images = features(5)
    text = "darkest first"
    pairs = torch.tensor([[0, 1], [3, 2], [4, 4]])
    scores = adapter.score(images, text)
    logits = adapter.pair_logits(images, text, pairs)
    maps = adapter.attention(images, text, pairs=pairs)
    assert torch.allclose(maps["scores"], scores, atol=1e-6)
    assert torch.allclose(maps["pair_logits"], logits, atol=1e-6)
    k = adapter.config.num_learnable_text_tokens
    assert len(maps["cross"]) == adapter.config.layers
    for layer in maps["cross"]:
        assert layer.shape == (5, 64, k + 77)  # [N, P, K + T]
        assert torch.allclose(layer.sum(-1), torch.ones(5, 64), atol=1e-5)
    words = int(maps["text_mask"].sum())  # SOT + 2 words + EOT
    assert words == 4
    if not adapter.faithful:  # the padding mask: no attention on padding keys
        assert maps["cross"][0][..., k + words:].abs().max() == 0
    pair = maps["pair"]
    assert pair.shape == (3, 8, 16, 128)  # [k, heads, queries, 2P]
    assert torch.allclose(pair.sum(-1), torch.ones(3, 8, 16), atol=1e-5)
    # A self-pair splits every query's attention equally between the two identical halves.
    assert torch.allclose(pair[2, ..., :64].sum(-1), torch.full((8, 16), 0.5), atol=1e-5)


def test_original_key_names_load_strictly_at_d768(goldens):
    """A checkpoint with the original names (prefixed, as saved by the original trainer) loads."""
    adapter = RankingAwareAdapter.from_config(None, mode="faithful", d_model=768)
    assert sum(p.numel() for p in adapter.parameters()) == 40_791_586
    golden_names = [name for name, _ in goldens["R3"]["param_order"]]
    assert list(adapter.state_dict()) == golden_names
    scale = {16: 768, 48: 2304, 64: 3072}
    checkpoint = {"visual.trunk.head.fc.weight": torch.zeros(768, 1536, 1, 1),
                  "visual.trunk.head.fc.bias": torch.zeros(768), "logit_scale": torch.ones(())}
    for name, shape in goldens["R3"]["param_order"]:
        if name == "reg_tokens":
            shape = [16, 768]
        elif name != "learnable_text_tokens":
            shape = [scale.get(s, s) for s in shape]
        checkpoint[f"module.adapter.{name}"] = torch.full(shape, 0.5)
    state, conv = convert_rac_state_dict({"state_dict": checkpoint})
    fresh = RankingAwareAdapter.from_config(None, mode="faithful", d_model=768)
    fresh.load_state_dict(state, strict=True)
    assert fresh.regressor.output_head.weight.eq(0.5).all()
    assert set(conv) == {"weight", "bias"} and conv["weight"].shape == (768, 1536, 1, 1)
    assert sum(p.numel() for p in RankingAwareAdapter.from_config(None, mode="faithful", d_model=512)
               .parameters()) == 18_150_434


def test_any_width_and_token_count():
    """ViT-B-32 (49 tokens, 512 wide), ViT-B/16 (196, 512), ConvNeXt-L-D-320 (100, 768), tiny widths."""
    for p, d, text_dim in ((49, 512, 512), (196, 512, 512), (100, 768, 768), (16, 32, 64)):
        adapter = RankingAwareAdapter.from_config(None, mode="fixed", d_model=d, text_dim=text_dim).eval()
        with torch.no_grad():
            scores, paired = adapter.forward_tokens(torch.randn(3, p, d), torch.randn(1, 77, text_dim),
                                                    torch.ones(1, 77, dtype=torch.bool), pairs=all_pairs(3))
        assert scores.shape == (3,) and paired.shape == (9,) and torch.isfinite(paired).all()
    with pytest.raises(ValueError, match="text width"):
        RankingAwareAdapter.from_config(None, mode="faithful", d_model=32, text_dim=64)


def test_losses_for_targets_and_pairs(adapter):
    images = features(6)
    targets = torch.tensor([3.0, 0.0, 5.0, 1.0, 2.0, 2.0])
    pairs = torch.tensor([[0, 1], [2, 3], [4, 5]])
    terms = adapter.loss(RankBatch(images=images, text="count", targets=targets, pairs=pairs,
                                   pair_targets=torch.tensor([1.0, 0.0, 0.5])))
    assert set(terms) == {"regression", "rank", "pair", "ranknet", "loss"}
    assert torch.isclose(terms["loss"], terms["regression"] + terms["rank"] + terms["pair"] + terms["ranknet"])
    terms["loss"].backward()
    assert adapter.regressor.output_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs numeric targets"):
        adapter.loss(RankBatch(images=images, text="count"))


def test_faithful_loss_is_the_original_formula(demo_backbone):
    from trainer.losses import rac_adapter_loss
    torch.manual_seed(0)
    adapter = create_method("rac", demo_backbone, mode="faithful", dropout=0.0)
    images, targets = features(5), torch.tensor([1.0, 4.0, 0.0, 2.0, 2.0])
    terms = adapter.loss(RankBatch(images=images, text="count the dots", targets=targets))
    text, mask = adapter.text_tokens("count the dots")
    scores, paired = adapter.forward_tokens(images.tokens, text, mask, pairs="all")
    expected = rac_adapter_loss(scores[:, None], targets, paired[:, None])
    assert torch.isclose(terms["loss"], expected["loss"], atol=1e-6)


def ranked_features(n: int, seed: int) -> tuple[ImageFeatures, torch.Tensor]:
    """Tokens that carry a hidden quantity along one fixed direction, plus noise."""
    g = torch.Generator().manual_seed(seed)
    key = torch.rand(n, generator=g) * 4 - 2
    direction = torch.randn(64, generator=torch.Generator().manual_seed(99))
    tokens = torch.randn(n, 64, 64, generator=g) + key[:, None, None] * direction / direction.norm() * 3
    return ImageFeatures(tokens, tokens.mean(1)), key


def test_fixed_adapter_learns_an_order_from_pairs(demo_backbone):
    """Pairwise labels train the scores: held-out pair accuracy goes from chance to near 1."""
    torch.manual_seed(0)
    adapter = create_method("rac", demo_backbone, mode="fixed")
    (train, train_key), (test, test_key) = ranked_features(24, 1), ranked_features(12, 2)
    g = torch.Generator().manual_seed(3)
    pairs = torch.randint(0, 24, (200, 2), generator=g)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    wanted = (train_key[pairs[:, 0]] > train_key[pairs[:, 1]]).float()
    test_pairs = torch.combinations(torch.arange(12))
    test_wanted = (test_key[test_pairs[:, 0]] > test_key[test_pairs[:, 1]]).float()
    before = pairwise_label_accuracy(adapter.score(test, "rank"), test_pairs, test_wanted)
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=1e-3)
    for _ in range(30):
        optimizer.zero_grad()
        adapter.loss(RankBatch(images=train, text="rank", pairs=pairs, pair_targets=wanted))["loss"].backward()
        optimizer.step()
    after = pairwise_label_accuracy(adapter.score(test, "rank"), test_pairs, test_wanted)
    assert after > 0.85 and after > before + 0.2, (before, after)
