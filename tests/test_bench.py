"""The benchmark scripts' code paths on tiny data (their real runs are long; see bench/run_all.sh)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image

ROOT = Path(__file__).resolve().parents[1]


def test_cifar10_script_end_to_end_on_a_tiny_cifar_layout(tmp_path):
    """ZCA, flip_rotate shared across the unroll, distillation, evaluation with augmentation, model card."""
    rng = np.random.default_rng(0)
    features = Features({"img": Image(), "label": ClassLabel(names=["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                                     "frog", "horse", "ship", "truck"])})
    (tmp_path / "cifar" / "plain_text").mkdir(parents=True)
    for split, n in (("train", 60), ("test", 20)):
        Dataset.from_dict({"img": list(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)), "label": np.arange(n) % 10},
                          features=features).to_parquet(tmp_path / "cifar" / "plain_text" / f"{split}-00000-of-00001.parquet")
    command = [sys.executable, str(ROOT / "bench" / "cifar10.py"), "--dataset", str(tmp_path / "cifar"), "--config", "cpu",
               "--steps", "2", "--models", "1", "--epochs", "2", "--no-compile", "--no-progress", "--results-dir", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "CIFAR-10 IPC 1 (cpu)" in done.stdout
    row = json.loads((tmp_path / "out" / "cifar10.json").read_text())
    assert row["settings"]["augment"] == "flip_rotate" and row["result"]["models"] == 1
    config = json.loads((tmp_path / "out" / "memories" / "cifar10-ipc1-cpu" / "config.json").read_text())
    assert config["zca_regularization"] == 0.1 and config["images_per_query"] == 115
    assert (tmp_path / "out" / "memories" / "cifar10-ipc1-cpu" / "README.md").exists()
