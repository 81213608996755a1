"""Ordinal heads against the goldens O1, O3, N1, N2, L1, L2 from the original code (float64, 1e-9)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from trainer.heads.l2rclip import copl_batch_loss, copl_loss
from trainer.heads.numclip import (AGE_BIN_STARTS, SSRRegressor, fcrc_ce_loss, fcrc_ce_weights, fcrc_kl_loss,
                                   fcrc_kl_weights, num2label, ssr_state_from_original)
from trainer.heads.ordinalclip import interpolation_weights, ordinal_metrics, ordinalclip_losses

GOLDENS = Path(__file__).resolve().parents[2] / "shared" / "goldens" / "goldens.json"
TOL = 1e-9
pytestmark = pytest.mark.skipif(not GOLDENS.is_file(), reason=f"golden file not found at {GOLDENS}")


@pytest.fixture(scope="module")
def goldens() -> dict:
    return json.loads(GOLDENS.read_text())


def t(value, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(value, dtype=dtype)


def close(actual: torch.Tensor, expected, tol: float = TOL) -> None:
    expected = t(expected)
    assert actual.dtype == torch.float64
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=0, atol=tol), (actual - expected).abs().max().item()


def test_o1_interpolation_matrices(goldens):
    for case, matrix in goldens["O1"]["expected"]["matrices"].items():
        ranks, bases, kind = case.split("_", 2)
        close(interpolation_weights(int(bases[1:]), int(ranks[1:]), kind, torch.float64), matrix)
    rows = interpolation_weights(3, 101, "linear", torch.float64)[[0, 25, 50, 75, 100]]
    close(rows, goldens["O1"]["expected"]["R101_rows_0_25_50_75_100"])


def test_o3_losses_and_metrics(goldens):
    item = goldens["O3"]
    logits, labels = t(item["inputs"]["logits"]), t(item["inputs"]["y"], torch.long)
    losses = ordinalclip_losses(logits, labels)
    close(losses["ce_loss"], item["expected"]["ce_loss"])
    close(losses["kl_loss"], item["expected"]["kl_loss"])
    for kind in ("exp", "max"):
        metrics = ordinal_metrics(logits, labels, kind)
        for name, values in item["expected"][kind].items():
            close(metrics[name], values)
        close(metrics[f"mae_{kind}_metric"].mean(), item["expected"][f"mae_{kind}_mean"])


def test_n1_fcrc_losses_weights_and_bins(goldens):
    item = goldens["N1"]
    logits, labels, expected = t(item["inputs"]["logits"]), t(item["inputs"]["y"], torch.long), item["expected"]
    close(fcrc_ce_loss(logits, labels), expected["ce_dis"])
    close(fcrc_kl_loss(logits, labels), expected["kl_dis"])
    close(ordinalclip_losses(logits, labels)["ce_loss"], expected["plain_ce"])
    close(ordinalclip_losses(logits, labels)["kl_loss"], expected["ordinalclip_kl"])
    close(fcrc_ce_weights(torch.arange(5), 5, torch.float64), expected["ce_dis_weight_rows_for_label_0_to_4"])
    close(fcrc_kl_weights(labels, 5, torch.float64), expected["kl_dis_weight_matrix_ranks_by_images"])
    absent = expected["absent_rank_case"]
    absent_labels = t(absent["y"], torch.long)
    close(fcrc_ce_loss(logits, absent_labels), absent["ce_dis"])
    close(fcrc_kl_loss(logits, absent_labels), absent["kl_dis"])
    close(ordinalclip_losses(logits, absent_labels)["kl_loss"], absent["ordinalclip_kl"])
    close(fcrc_kl_weights(absent_labels, 5, torch.float64), absent["kl_dis_weight_matrix_ranks_by_images"])
    bins = num2label(t(item["inputs"]["num2label_input"], torch.long))
    assert bins.tolist() == expected["num2label_output"]


def test_fcrc_is_device_agnostic_and_detached():
    logits = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 1, 4])
    assert not fcrc_kl_weights(labels, 5).requires_grad and fcrc_kl_weights(labels, 5).device == logits.device
    fcrc_kl_loss(logits, labels).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def _ssr_from_fill(item: dict, scale: float, faithful: bool) -> SSRRegressor:
    """The N2 parameter recipe (scale·sin(0.37k + 1.3i) over all 28 original parameters)."""
    params = {}
    for index, (name, shape) in enumerate(item["param_order"]):
        flat = torch.arange(math.prod(shape), dtype=torch.float64)
        params[name] = (scale * torch.sin(0.37 * flat + 1.3 * index)).reshape(shape)
    ssr = SSRRegressor(AGE_BIN_STARTS, faithful=faithful).double()
    ssr.load_state_dict(ssr_state_from_original(params), strict=True)
    return ssr


def test_n2_ssr_regressor_faithful(goldens):
    item = goldens["N2"]
    ssr = SSRRegressor(AGE_BIN_STARTS, faithful=True).double()
    ssr.load_state_dict({k: t(v) for k, v in ssr_state_from_original(item["params"]).items()}, strict=True)
    logits = t(item["inputs"]["logits"])
    with torch.no_grad():
        close(ssr(logits), item["expected"]["output"])
        close(ssr.delta(logits), item["expected"]["delta"])
        close((1 + ssr.delta(logits)).min(), item["expected"]["min_one_plus_delta"])
        ssr.delta_k.weight.zero_(), ssr.delta_k.bias.zero_()
        close(ssr(logits), item["expected"]["sum_p_times_start_at_delta0"])


def test_n2_unbounded_denominator_and_the_fixed_bound(goldens):
    item = goldens["N2"]
    logits, demo = t(item["inputs"]["logits"]), item["expected"]["unbounded_denominator_demo"]
    for scale, rtol in ((0.2, 1e-9), (0.3, 1e-6)):
        with torch.no_grad():
            out = _ssr_from_fill(item, scale, faithful=True)(logits)
            bounded = _ssr_from_fill(item, scale, faithful=False)(logits)
        expected = t(demo[f"scale_{scale}"]["output"])
        assert torch.allclose(out, expected, rtol=rtol, atol=0)
        assert out.max() > 9000  # the original blows up ...
        assert bounded.max() <= max(AGE_BIN_STARTS) / 0.5  # ... the fixed form is bounded by start/(1 - 0.5)


def test_l1_cross_modal_ordinal_pairwise_loss(goldens):
    item = goldens["L1"]
    inputs, expected = item["inputs"], item["expected"]
    image, text, gt = t(inputs["img_features"]), t(inputs["txt_features"]), t(inputs["gt"], torch.long)
    rank_min = item["config"]["age_range"][0]
    out = copl_loss(image, text, gt, rank_min=rank_min)
    close(out["loss"], expected["ordinal_entropy"])
    close(out["tightness"], expected["tightness"])
    close(out["distance"], expected["minus_mean_w_d"])
    exact = copl_loss(image, text, gt, rank_min=rank_min, float32_weights=False)["loss"]
    close(exact, expected["precision_variants"]["weights_float64_exact_abs_diff"])


def test_l2_batch_pair_form(goldens):
    item = goldens["L2"]
    inputs = item["inputs"]
    out = copl_batch_loss(t(inputs["imgfeatures"]), t(inputs["txtfeatures"]), t(inputs["gl_text_features"]),
                          t(inputs["gt"], torch.long))
    close(out["loss"], item["expected"]["ordinal_entropy_stage1"])
    close(out["L_t"], item["expected"]["components_float64"]["L_t"])
    exact = copl_batch_loss(t(inputs["imgfeatures"]), t(inputs["txtfeatures"]), t(inputs["gl_text_features"]),
                            t(inputs["gt"], torch.long), float32_weights=False)["loss"]
    close(exact, item["expected"]["precision_variants"]["weights_float64"])
