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


def test_cross_arch_picks_recipes_on_validation_and_records_them(tmp_path):
    import torch

    from hf_rtp import AddressableMemory
    from hf_rtp.data import load_train_test

    train, _ = load_train_test("digits")
    torch.manual_seed(0)
    AddressableMemory.for_dataset(train, ipc=1, num_bases=4, downsample=2).save_pretrained(tmp_path / "memory")
    output = tmp_path / "cross_arch.json"
    command = [sys.executable, str(ROOT / "bench" / "cross_arch.py"), str(tmp_path / "memory"), "--models", "1", "--epochs", "2",
               "--students", "ConvNet-128", "resnet10t", "--recipes", "protocol", "adamw, 112 px", "--device", "cpu",
               "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(output.read_text())
    convnet, resnet = record["rows"]
    assert convnet["distilled"]["recipe"] == "protocol" and convnet["distilled"]["validation"] == {}  # one recipe: nothing to pick
    assert set(resnet["distilled"]["validation"]) == {"protocol", "adamw, 112 px"}
    for name in ("distilled", "random_real"):
        chosen = resnet[name]
        assert chosen["validation"][chosen["recipe"]] == max(chosen["validation"].values())
        assert len(chosen["runs"]) == 1 and 0 <= chosen["mean"] <= 1
    assert "CPU" in record["machine"] or "no GPU" in record["machine"]


def test_unroll_bench_times_engine_and_reference_and_checks_the_ratios(tmp_path):
    output = tmp_path / "unroll.json"
    command = [sys.executable, str(ROOT / "bench" / "unroll.py"), "--steps", "2", "3", "--impl", "engine", "reference",
               "--repeats", "1", "--per-class", "1", "--real-per-class", "2", "--threads", "1", "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(output.read_text())
    assert {(r["impl"], r["T"]) for r in record["rows"]} == {("engine", 2), ("reference", 2), ("engine", 3), ("reference", 3)}
    assert all(r["device"] == "cpu" and r["peak_mb"] == r["peak_rss_mb"] > 0 for r in record["rows"])
    assert {"engine peak T=3 / T=2", "engine / reference peak at T=3", "engine / plain steps at T=3"} <= set(record["ratios"])
    assert (tmp_path / "unroll_memory.png").exists()


def test_ablations_in_parallel_processes(tmp_path):
    output = tmp_path / "ablations.json"
    command = [sys.executable, str(ROOT / "bench" / "ablations.py"), "--minutes", "0.02", "--seeds", "0", "1", "--models", "1",
               "--epochs", "2", "--only", "downsampled", "--parallel", "2", "--output", str(output), "--runs-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(output.read_text())["rows"]
    assert row["finding"].startswith("downsampled") and row["A"]["memory"]["downsample"] == 2 and row["B"]["memory"]["downsample"] == 1
    assert all(len(row[k]["seeds"]) == 2 and all(s["outer_steps"] >= 1 for s in row[k]["seeds"]) for k in "AB")
