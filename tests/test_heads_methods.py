"""The ordinal heads on the real tiny open_clip backbone: prompts, the shared contract, training, errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from trainer.backbone import load_demo_backbone
from trainer.heads.prompts import PromptLearner, name_embeddings
from trainer.method import RankBatch
from trainer.registry import create_method, list_methods
from trainer.synthetic import bin_targets, shape_scenes

CLASSES = ["child", "teenager", "young adult", "middle adult", "older adult"]
HEADS = ("zeroshot", "coop", "ordinalclip", "numclip", "l2rclip")


@pytest.fixture(scope="module")
def backbone():
    return load_demo_backbone()


@pytest.fixture(scope="module")
def images(backbone):
    with torch.no_grad():
        return backbone.encode_pil([img for img, _ in shape_scenes(8, seed=5)])


def make(name, backbone, **config):
    torch.manual_seed(0)
    return create_method(name, backbone, classes=CLASSES, **config)


def test_heads_are_registered():
    assert set(HEADS) <= set(list_methods())


@pytest.mark.parametrize("position, template", [("end", "age estimation: the person is a {}."),
                                                ("front", "{} age estimation: the person is a.")])
def test_prompted_encoder_matches_open_clip_on_word_embeddings(backbone, position, template):
    embeds, lengths = name_embeddings(backbone, CLASSES)
    learner = PromptLearner(backbone, lengths, context="age estimation: the person is a", position=position)
    with torch.no_grad():
        prompted = learner.encode(embeds)
        plain = backbone.encode_text([template.format(c) for c in CLASSES]).pooled
    assert torch.allclose(prompted, plain, atol=1e-5)
    assert learner.ids.argmax(-1).tolist() == backbone.tokenize([template.format(c) for c in CLASSES]).argmax(-1).tolist()


def test_untrained_coop_and_l2rclip_start_from_zero_shot(backbone, images):
    batch = RankBatch(images=images, classes=CLASSES)
    with torch.no_grad():
        zero = make("zeroshot", backbone)(batch).probs
        coop = make("coop", backbone)(batch).probs
        l2r = make("l2rclip", backbone)(batch).probs
    assert torch.allclose(zero, coop, atol=1e-5) and torch.allclose(coop, l2r, atol=1e-5)


@pytest.mark.parametrize("name", HEADS)
def test_forward_contract(backbone, images, name):
    method = make(name, backbone).eval()
    pairs = torch.tensor([[0, 1], [3, 2]])
    with torch.no_grad():
        out = method(RankBatch(images=images, classes=CLASSES, pairs=pairs))
        subset = method(RankBatch(images=images.index(slice(2, 5)), classes=CLASSES))
    assert out.probs.shape == (8, 5) and torch.allclose(out.probs.sum(-1), torch.ones(8))
    assert torch.allclose(out.scores, out.probs @ torch.arange(5.0), atol=1e-5)
    assert out.predicted.tolist() == (out.probs.argmax(-1) if name != "numclip" else out.scores.round()).tolist()
    assert torch.allclose(out.pair_logits, out.scores[pairs[:, 0]] - out.scores[pairs[:, 1]])
    assert torch.allclose(subset.scores, out.scores[2:5], atol=1e-5)  # independent of the batch
    assert not any(k.startswith(("model.", "backbone.")) for k in method.state_dict())


@pytest.mark.parametrize("name", HEADS)
def test_trains_from_labels_targets_and_pairs(backbone, images, name):
    method = make(name, backbone)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    batches = {"labels": RankBatch(images=images, classes=CLASSES, labels=labels),
               "targets": RankBatch(images=images, classes=CLASSES, targets=labels.float() + 0.3),
               "pairs": RankBatch(images=images, classes=CLASSES, pairs=torch.tensor([[1, 0], [4, 2], [3, 5]]),
                                  pair_targets=torch.tensor([1.0, 1.0, 0.5]))}
    expected_terms = {"labels": {"loss"}, "targets": {"loss", "numeric"}, "pairs": {"loss", "ranknet"}}
    for kind, batch in batches.items():
        method.zero_grad()
        out = method.loss(batch)
        assert expected_terms[kind] <= set(out) or name == "numclip"
        assert torch.isfinite(out["loss"]) and out["loss"] > 0
        out["loss"].backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters()), kind
    optimizer = torch.optim.AdamW(method.parameters(), lr=5e-3)
    first = method.loss(batches["labels"])["loss"].item()
    for _ in range(15):
        optimizer.zero_grad()
        method.loss(batches["labels"])["loss"].backward()
        optimizer.step()
    assert method.loss(batches["labels"])["loss"].item() < first


def test_numclip_age_rule_bins_numeric_targets(backbone, images):
    method = make("numclip", backbone, label_rule="bins", target_shift=1.0)
    ages = torch.tensor([1.0, 13.0, 14.0, 19.0, 20.0, 36.0, 65.0, 66.0])
    labels = method.labels_for(RankBatch(images=images, targets=ages), 5)
    assert labels.tolist() == [0, 0, 1, 1, 2, 3, 3, 4]  # y - 1, then 0-12, 13-18, 19-34, 35-64, >=65
    out = method(RankBatch(images=images, classes=CLASSES))
    assert torch.allclose(out.scores, out.extras["regression"]) and out.scores.min() > 1.0
    assert out.scores.max() <= 65 / 0.5 + 1  # bounded SSR denominator
    loss = method.loss(RankBatch(images=images, classes=CLASSES, targets=ages))
    assert {"ce_fcrc", "kl_fcrc", "reg"} <= set(loss) and loss["reg"] > 1.0


def test_l2rclip_rankformer_options(backbone, images):
    method = make("l2rclip", backbone, attention_axis="all", blend="residual", ffn=False, learn_alpha=False,
                  rank_position="learned", rank_prompts="ordinal", batch_pair_weight=0.5, heads=4)
    base = method.base_rank_embeds()
    assert torch.allclose(method.rankformer(base, method.lengths), (1 + 0.1) * base, atol=1e-6)  # identity block
    maps = method.attention()["rankformer"]
    tokens = int(method.lengths.max()) * 5
    assert maps[0].shape == (1, 4, tokens, tokens) and torch.allclose(maps[0].sum(-1), torch.ones(1, 4, tokens))
    loss = method.loss(RankBatch(images=images, classes=CLASSES, labels=torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])))
    assert {"ce", "copl", "copl_batch"} <= set(loss)
    per_rank = make("l2rclip", backbone).attention()["rankformer"][0]
    assert per_rank.shape[1:] == (8, 5, 5)  # per token position: heads x ranks x ranks


def test_bad_configurations_fail_clearly(backbone, images, tmp_path):
    for name in HEADS:
        with pytest.raises(ValueError, match="at least two"):
            create_method(name, backbone, classes=["only one"])
    with pytest.raises(ValueError, match="at least two"):
        create_method("zeroshot", backbone)(RankBatch(images=images, classes=["x", " "]))
    three = tmp_path / "three.txt"
    three.write_text("young\nmiddle\nold\n")
    with pytest.raises(ValueError, match="lists 3 names.*needs 5"):
        create_method("coop", backbone, classes=CLASSES, rank_names_file=str(three))
    four = tmp_path / "four.txt"
    four.write_text("a\nb\nc\nd\n")
    with pytest.raises(ValueError, match="lists 4 names.*needs 3 or 5"):  # OrdinalCLIP issue #9
        create_method("ordinalclip", backbone, classes=CLASSES, rank_names_file=str(four))
    five = tmp_path / "five.txt"
    five.write_text("\n".join(CLASSES))
    for file in (three, five):  # B names or R names both work
        assert create_method("ordinalclip", backbone, classes=CLASSES, rank_names_file=str(file)).base_rank_embeds.shape[0] == 3
    with pytest.raises(ValueError, match="context length 77"):
        create_method("coop", backbone, classes=CLASSES, context=" ".join(["very"] * 80))
    with pytest.raises(ValueError, match="context length 77"):
        create_method("zeroshot", backbone)(RankBatch(images=images, classes=["a " * 80, "b"]))
    with pytest.raises(ValueError, match="built for the classes"):
        make("coop", backbone)(RankBatch(images=images, classes=["low", "high"]))
    with pytest.raises(ValueError, match="Unknown option"):
        create_method("numclip", backbone, classes=CLASSES, bins=3)
    with pytest.raises(ValueError, match="bin edges"):
        create_method("numclip", backbone, classes=CLASSES, label_rule="bins", bin_edges=(1, 2))
    with pytest.raises(ValueError, match="Class labels must lie"):
        make("coop", backbone).loss(RankBatch(images=images, classes=CLASSES, labels=torch.full((8,), 7)))


def test_classes_from_a_comma_separated_string(backbone):
    method = create_method("ordinalclip", backbone, classes="1930s, 1940s, 1950s, 1960s, 1970s")
    assert method.classes == ("1930s", "1940s", "1950s", "1960s", "1970s")
    assert bin_targets([1930, 1975], (1939, 1949, 1959, 1969)).tolist() == [0, 4]


@pytest.mark.parametrize("name", HEADS)
def test_saved_config_and_weights_rebuild_the_head(backbone, images, name, tmp_path):
    """What a checkpoint stores (the config as a dict, the state dict) rebuilds the same head."""
    extra = {}
    if name in ("coop", "ordinalclip"):
        names = tmp_path / "names.txt"
        names.write_text("\n".join(CLASSES))
        extra = {"rank_names_file": str(names)}
    method = make(name, backbone, **extra).eval()
    with torch.no_grad():
        for param in method.parameters():
            param.add_(0.05 * torch.randn_like(param))
    config = dataclasses.asdict(method.config)
    if extra:
        names.unlink()  # the names travel in the config, not the file
        assert config["rank_names_file"] is None and list(config["rank_names"]) == CLASSES
    rebuilt = create_method(name, backbone, **json.loads(json.dumps(config)))
    rebuilt.load_state_dict(method.state_dict(), strict=True)
    batch = RankBatch(images=images, classes=CLASSES)
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(batch).scores, method(batch).scores, atol=1e-6)
