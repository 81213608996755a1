"""Shared fixtures: offline environment, the goldens file, the tiny bundled backbone."""

import json
import os
from pathlib import Path

# Before gradio / huggingface_hub / datasets are imported anywhere: no network, no telemetry.
for _key, _value in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                     "HF_HUB_DISABLE_TELEMETRY": "1", "HF_DATASETS_OFFLINE": "1"}.items():
    os.environ.setdefault(_key, _value)

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GOLDENS = REPO.parent / "shared" / "goldens" / "goldens.json"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest single-threaded; two threads on a shared 2-core box thrash."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def goldens() -> dict:
    if not GOLDENS.is_file():
        pytest.skip(f"golden vectors not found at {GOLDENS} (they live in ../shared/goldens beside the repo)")
    return json.loads(GOLDENS.read_text())


@pytest.fixture(scope="session")
def demo_backbone():
    from trainer.backbone import load_demo_backbone
    return load_demo_backbone()


@pytest.fixture
def float64():
    """Run a test in float64, as the goldens were produced, and restore the default after."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def t64(value) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)
