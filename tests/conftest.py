"""Shared test setup: offline, deterministic, small."""

import os

# Before any HF import: tests never touch the network (a fake Hub is plugged in where a test needs one).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest
import torch

from tests.fake_hub import fake_hub  # noqa: F401  (the in-memory fake Hub fixture)

# ../shared/data/mnist next to the checkout, or wherever HF_RTP_MNIST_DIR points.
MNIST_DIR = Path(os.environ.get("HF_RTP_MNIST_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def mnist_dir() -> Path:
    """The shared MNIST parquet copy (same columns as ylecun/mnist); absent on a user's fresh clone."""
    if not (MNIST_DIR / "train-00000-of-00001.parquet").exists():
        pytest.skip(f"MNIST parquet not found at {MNIST_DIR} (only on the project's machines)")
    return MNIST_DIR
