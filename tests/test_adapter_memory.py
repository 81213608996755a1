"""Scoring 1024 images on cached ViT-B-32-shaped tokens fits in 4 GB (peak resident memory)."""

import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = """
import resource, torch
from trainer.rac import RankingAwareAdapter
from trainer.backbone import ImageFeatures
torch.manual_seed(0)
adapter = RankingAwareAdapter.from_config(None, mode="fixed", d_model=512, text_dim=512)
adapter._text_cache[("x", torch.float32, "cpu")] = (torch.randn(1, 77, 512), torch.ones(1, 77, dtype=torch.bool))
tokens = torch.randn(1024, 49, 512)
with torch.no_grad():
    scores = adapter.score(ImageFeatures(tokens, tokens.mean(1)), "x")
assert scores.shape == (1024,) and torch.isfinite(scores).all()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_scores_for_1024_images_within_4gb():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, check=True)
    peak_kib = int(out.stdout.strip().splitlines()[-1])
    assert peak_kib < 4 * 1024 * 1024, f"peak {peak_kib / 1024:.0f} MiB"
