"""Goldens R1, R2, R3, R5, R7: the RAC adapter, its losses and metrics against the original code."""

import numpy as np
import pytest
import torch

from conftest import t64
from trainer.layers import PairHead, RankAwareAttention, ScoreHead, all_pairs, rank_attention_dense
from trainer.losses import rac_adapter_loss
from trainer.metrics import evaluate_clip_on_count, ranking_metrics
from trainer.rac import RankingAwareAdapter

TOL = 1e-9


def load_params(module: torch.nn.Module, params: dict) -> None:
    """Load the golden parameters by their original names, strictly."""
    module.load_state_dict({name: t64(value) for name, value in params.items()}, strict=True)


def close(actual: torch.Tensor, expected, tol: float = TOL) -> None:
    expected = t64(expected)
    assert actual.shape == expected.shape
    err = (actual.detach() - expected).abs().max().item()
    assert err <= tol, f"max abs error {err:.3g} > {tol}"


def faithful_r3(goldens) -> RankingAwareAdapter:
    cfg = goldens["R3"]["config"]
    adapter = RankingAwareAdapter.from_config(
        None, mode="faithful", d_model=cfg["d_model"], layers=cfg["num_layers"], fusion_heads=cfg["n_head"],
        num_learnable_text_tokens=cfg["num_learnable_text_tokens"], n_reg_tokens=cfg["n_reg_tokens"]).double()
    load_params(adapter, goldens["R3"]["params"])
    return adapter.eval()


def test_r1_rank_aware_attention_sparse_and_dense(goldens, float64):
    g = goldens["R1"]
    attn = RankAwareAttention(g["config"]["d_model"], g["config"]["num_heads"]).double()
    assert [n for n, _ in attn.named_parameters()] == [n for n, _ in g["param_order"]]
    load_params(attn, g["params"])
    queries, tokens = t64(g["inputs"]["q_x"])[0], t64(g["inputs"]["kv_x"])
    pairs = all_pairs(tokens.shape[0])
    out, attention = attn(queries, tokens, pairs, return_attention=True)
    close(out, g["expected"]["out"])
    close(attention, g["expected"]["attention"])
    dense_out, dense_attention = rank_attention_dense(attn, queries, tokens)
    close(dense_out, g["expected"]["out"])
    close(dense_attention, g["expected"]["attention"])
    # The original's properties: self-pairs equal the bias; antisymmetric before out_proj.
    bias = attn.out_proj.bias
    assert torch.allclose(out[0], bias.expand_as(out[0]), atol=1e-12, rtol=0)
    assert torch.allclose(out[1] - bias, -(out[3] - bias), atol=1e-12, rtol=0)
    assert attention.sum(-1).sub(1).abs().max() < 1e-12


def test_r2_pair_and_score_heads(goldens, float64):
    g = goldens["R2"]
    x = t64(g["inputs"]["x"])
    for name, cls in (("PairwiseDiffBlockV2", PairHead), ("MLPLayer", ScoreHead)):
        head = cls(g["config"][name]["input_dim"]).double()
        assert [n for n, _ in head.named_parameters()] == [n for n, _ in g["param_order"][name]]
        load_params(head, g["params"][name])
        close(head(x), g["expected"][name])


def test_r3_whole_adapter_faithful(goldens, float64):
    g = goldens["R3"]
    adapter = faithful_r3(goldens)
    assert [n for n, _ in adapter.named_parameters()] == [n for n, _ in g["param_order"]]
    img, txt = t64(g["inputs"]["image_embeddings"]), t64(g["inputs"]["text_embeddings"])
    scores, paired = adapter.forward_tokens(img, txt, pairs="all")
    close(scores[:, None], g["expected"]["scores"])
    close(paired[:, None], g["expected"]["paired"])
    # Intermediates locate a mismatch: fusion, post-fusion, rank attention, cross maps.
    inter = g["expected"]["intermediates"]
    fused, cross = adapter.fuse(img, txt, return_attention=True)
    close(adapter.crossmodal_block(img, torch.cat([adapter.learnable_text_tokens.view(1, 32, 1).expand(3, 32, 16),
                                                  txt], 1))[0], inter["crossmodal_out"])
    close(fused, inter["post_fuse_out"])
    for layer, expected in zip(cross, inter["cross_attention_per_layer"]):
        close(layer, expected)
    out, attention = adapter.reg_token_pooler(adapter.reg_tokens, fused, all_pairs(3), return_attention=True)
    close(out, inter["rank_attn_out"])
    close(attention, inter["rank_attention"])
    # Self-pairs (0, 4, 8) see the same inputs, so they agree, as in the original (bit-for-bit there;
    # here up to the BLAS kernel's summation order, which can differ between rows of one batch).
    close(paired[[4, 8]], paired[[0, 0]].tolist(), tol=1e-12)


def test_r3_learnable_tokens_get_no_gradient_in_faithful_mode(goldens, float64):
    adapter = faithful_r3(goldens)
    g = goldens["R3"]
    scores, paired = adapter.forward_tokens(t64(g["inputs"]["image_embeddings"]),
                                            t64(g["inputs"]["text_embeddings"]), pairs="all")
    (scores.sum() + paired.sum()).backward()
    assert adapter.learnable_text_tokens.grad.abs().max().item() < 1e-12
    reg_grad = adapter.reg_tokens.grad.abs().max().item()
    assert reg_grad == pytest.approx(g["expected"]["grad_reg_tokens_absmax"], abs=1e-9)


def test_r3_no_grad_path_matches(goldens, float64):
    adapter = faithful_r3(goldens)
    g = goldens["R3"]
    with torch.no_grad():
        scores, paired = adapter.forward_tokens(t64(g["inputs"]["image_embeddings"]),
                                                t64(g["inputs"]["text_embeddings"]), pairs="all")
    close(scores[:, None], g["expected"]["scores"])
    close(paired[:, None], g["expected"]["paired"])


@pytest.mark.parametrize("components,key", [
    (("regression", "rank"), "regression+rank"), (("regression", "rank", "bce"), "regression+rank+bce"),
    (("regression",), "regression"), (("rank",), "rank"), (("bce",), "bce")])
def test_r5_adapter_loss(goldens, float64, components, key):
    g = goldens["R5"]
    y, s, p = (t64(g["inputs"][k]) for k in ("adapter_targets", "adapter_logits", "adapter_paired_logits"))
    terms = rac_adapter_loss(s, y, p, components)
    assert terms["loss"].item() == pytest.approx(g["expected"]["by_components"][key]["adapter_loss"], abs=TOL)


def test_r5_terms(goldens, float64):
    g = goldens["R5"]
    y, s, p = (t64(g["inputs"][k]) for k in ("adapter_targets", "adapter_logits", "adapter_paired_logits"))
    terms = rac_adapter_loss(s, y, p, ("regression", "rank", "bce"))
    assert terms["regression"].item() == pytest.approx(g["expected"]["term_0p2_log1p_smoothl1"], abs=TOL)
    assert terms["rank"].item() == pytest.approx(g["expected"]["term_rank_bce"], abs=TOL)
    assert terms["bce"].item() == pytest.approx(g["expected"]["term_bce_nonzero"], abs=TOL)


def test_r7_metrics(goldens):
    g = goldens["R7"]
    y_true, y_pred = np.array(g["inputs"]["y_trues"]), np.array(g["inputs"]["y_preds"])
    got = evaluate_clip_on_count(y_true, y_pred)
    for key in ("PLCC", "SRCC", "MAE", "accuracy"):
        assert got[key] == pytest.approx(g["expected"][key], abs=TOL), key
    ours = ranking_metrics(y_true, y_pred)
    assert ours["pair_accuracy_tril_k1"] == pytest.approx(g["expected"]["accuracy"], abs=TOL)
    assert ours["pair_accuracy"] == pytest.approx(g["expected"]["strict_lower_triangle_accuracy"], abs=TOL)
