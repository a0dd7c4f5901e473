"""The benchmark scripts' code paths on tiny data (their real runs are long; see bench/run_all.sh), and what keeps
the results page (docs/results.md) reproducible: bench/common.py's result writer, and every results JSON holding
only keys its script writes, under a command that bench/run_all.sh or bench/gpu_checks.sh runs."""

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _load_common():
    # by path, under its own name: the bench scripts import it as `common`, a name too generic to claim in tests
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "bench" / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _load_common()


@pytest.mark.slow  # about 100 s: the default suite ran 614 s alone with it, over the 10-minute budget
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
    assert row["command"].startswith("python bench/cifar10.py --dataset ") and "note" not in row
    assert row["train_images"] == 60 and row["test_images"] == 20 and len(row["elapsed_seconds_after_each_outer_step"]) == 2
    config = json.loads((tmp_path / "out" / "memories" / "cifar10-ipc1-cpu" / "config.json").read_text())
    assert config["zca_regularization"] == 0.1 and config["images_per_query"] == 115
    assert (tmp_path / "out" / "memories" / "cifar10-ipc1-cpu" / "README.md").exists()


def test_continual_bench_runs_every_method_on_one_buffer(tmp_path):
    out = tmp_path / "continual.json"
    command = [sys.executable, str(ROOT / "bench" / "continual.py"), "--dataset", "digits", "--tasks", "3",
               "--samples-per-task", "60", "--test-per-task", "50", "--buffer-floats", "1920", "--inner-steps", "3",
               "--final-steps", "2", "--retrain-epochs", "3", "--seeds", "0", "1", "--output", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    assert [row["tag"] for row in record["rows"]] == ["online", "replay", "ewc", "compress-then-recall",
                                                      "compress-then-recall (per-task)"]
    assert [row["recall_mode"] for row in record["rows"]] == [None, None, None, "joint", "per-task"]
    for row in record["rows"]:
        assert row["buffer_floats"] == 1920 and len(row["retained_accuracy"]["runs"]) == 2
        assert all(run["max_stored_floats"] <= 1920 for run in row["runs"])
        assert ("backward_transfer" in row) == (row["method"] != "compress-then-recall")
    assert record["rows"][1]["runs"][0]["max_stored_floats"] == 1920  # replay fills its buffer
    joint, own = record["rows"][3:]
    assert len(joint["minutes_per_task"]) == 2 and joint["memory_floats"] <= 1920 // 5  # share 5: room for 10 raw
    assert own["retained_accuracy"]["runs"] == [r["per_task"]["retained_accuracy"] for r in joint["runs"]]
    # the seed-0 bank, saved with its stream, re-scores as the run reported, from another script
    bank_run = subprocess.run(command + ["--methods", "compress-then-recall", "--seeds", "0", "--tag", "kept",
                                         "--save-bank", str(tmp_path / "bank")], capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert bank_run.returncode == 0, bank_run.stderr[-3000:]
    kept = next(row for row in json.loads(out.read_text())["rows"] if row["tag"] == "compress-then-recall kept")
    assert kept["runs"][0]["bank"].endswith("bank") and json.loads((tmp_path / "bank" / "bank.json").read_text())["stream"]
    # ... with the run's retraining recipe, which its bank.json records (3 epochs here, not the default 100)
    assert json.loads((tmp_path / "bank" / "bank.json").read_text())["recipe"] == {
        "learner": "mlp", "retrain_epochs": 3, "retrain_lr": 0.01, "retrain_batch": 256, "retrain_noise": 0.0, "seed": 0}
    rescore = subprocess.run([sys.executable, str(ROOT / "bench" / "continual_bank.py"), str(tmp_path / "bank"),
                              "--projected", "--output", str(tmp_path / "rescored.json")],
                             capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert rescore.returncode == 0, rescore.stderr[-3000:]
    scored = json.loads((tmp_path / "rescored.json").read_text())["rows"][0]
    assert scored["joint"]["accuracy"] == kept["runs"][0]["accuracy"]
    assert scored["per-task"]["accuracy"] == kept["runs"][0]["per_task"]["accuracy"]
    assert scored["config"]["retrain_epochs"] == 3
    assert len(scored["projected"]["joint"]["accuracy"]) == len(scored["tasks"]) and "projected" in rescore.stdout
    index = json.loads((tmp_path / "bank" / "bank.json").read_text())
    index["recipe"]["retrain_lr"] = -1  # a hand-edited recipe: refused in one line, before any retraining
    (tmp_path / "bank" / "bank.json").write_text(json.dumps(index))
    refused = subprocess.run([sys.executable, str(ROOT / "bench" / "continual_bank.py"), str(tmp_path / "bank")],
                             capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "the retraining recipe its bank.json records is not valid: retrain_lr must be positive" in refused.stderr
    # a grid: one row per combination, tagged by it
    grid = subprocess.run(command[:-5] + ["--seeds", "0", "--methods", "online", "--grid", '{"lr": [0.01, 0.1]}', "--output",
                                          str(tmp_path / "grid.json")], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert grid.returncode == 0, grid.stderr[-3000:]
    rows = json.loads((tmp_path / "grid.json").read_text())["rows"]
    assert [(r["tag"], r["config"]["lr"]) for r in rows] == [("online lr0.01", 0.01), ("online lr0.1", 0.1)]
    bad = subprocess.run(command[:2] + ["--stream", "cifar10"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_extrapolation_bench_builds_new_tasks_from_separate_memories(tmp_path):
    out = tmp_path / "extrapolation.json"
    command = [sys.executable, str(ROOT / "bench" / "extrapolation.py"), "--dataset", "digits", "--steps", "2",
               "--samples", "2", "--ipc", "2", "--num-bases", "4", "--inner-steps", "3", "--retrain-epochs", "3",
               "--full-epochs", "1", "--bank", str(tmp_path / "bank"), "--output", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["tasks"] == [["0", "1"], ["2", "3"], ["4", "5"], ["6", "7"], ["8", "9"]]
    assert [(row["way"], row["new_tasks"]) for row in record["rows"]] == [(2, 2), (5, 2)]
    from hf_rtp import MemoryBank

    bank = MemoryBank.from_pretrained(tmp_path / "bank")
    assert bank.tasks == ["task-0-1", "task-2-3", "task-4-5", "task-6-7", "task-8-9"]
    assert bank.recall(classes=["0", "9"]).features["label"].names == ["0", "9"]


def test_few_shot_bench_on_a_tiny_cifar100_layout_seen_and_held_out(tmp_path):
    """bench/few_shot.py as it runs CIFAR-100 by Hub id (`fine_label` / `coarse_label` / `img`), on a local copy."""
    from hf_rtp import AddressableMemory
    from hf_rtp.data import load_train_test
    from tests.test_data import write_hub_like_repo

    root = write_hub_like_repo(tmp_path / "cifar100", label_column="fine_label", classes=10, n=60, size=16,
                               extra={"coarse_label": ClassLabel(names=["a", "b"])})
    train, _ = load_train_test(str(root))
    seen = train.with_classes([f"class{i}" for i in range(5)])
    AddressableMemory.for_dataset(train, ipc=2, num_bases=4, query_encoder="test_resnet",
                                  query_dim=6).save_pretrained(tmp_path / "by-images")
    AddressableMemory.for_dataset(seen, ipc=2, num_bases=4, query_encoder="test_resnet",
                                  query_dim=6).save_pretrained(tmp_path / "by-images-seen")
    AddressableMemory.for_dataset(train, ipc=2, num_bases=4).save_pretrained(tmp_path / "by-labels")
    base = [sys.executable, str(ROOT / "bench" / "few_shot.py"), "--dataset", str(root), "--way", "5", "--shots", "1",
            "--episodes", "2", "--learner-epochs", "1", "--test-per-class", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(base + [str(tmp_path / "by-images"), str(tmp_path / "by-labels"), "--output",
                                  str(tmp_path / "seen.json")], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads((tmp_path / "seen.json").read_text())["rows"][0]
    assert {"image addressing", "nearest neighbour", "classify-then-recall"} <= set(row)
    assert len(row["image addressing"]["runs"]) == 2
    # a second image-addressed memory joins the same rows as its own column; the other columns stay as they were
    done = subprocess.run(base + [str(tmp_path / "by-images-seen"), str(tmp_path / "by-labels"), "--output",
                                  str(tmp_path / "seen.json"), "--merge"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode != 0 and "scored on other episodes" in done.stderr  # another memory's classes: refused
    done = subprocess.run(base + [str(tmp_path / "by-images"), str(tmp_path / "by-labels"), "--output",
                                  str(tmp_path / "seen.json"), "--merge", "--methods", "image addressing",
                                  "--label", "image addressing, second"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    merged = json.loads((tmp_path / "seen.json").read_text())["rows"][0]
    for k, v in row.items():  # every earlier column kept as it was, with the command that computed it
        if isinstance(v, dict):
            assert merged[k].items() >= v.items() and merged[k]["command"] == v.get("command", row["command"])
        elif k != "command":
            assert merged[k] == v
    second = merged["image addressing, second"]
    assert second["memory"].endswith("by-images") and "--methods" in second["command"]
    assert second["runs"] == row["image addressing"]["runs"]  # the same memory on the same episodes
    assert len(second["runs"]) == 2
    for bad, message in ((["--label", "mine"], "--label must start with 'image addressing'"),
                         (["--held-out", "class9", "--methods", "classify-then-recall"], "applies to --held-out"),
                         (["--validation"], "--validation draws episodes of --held-out classes")):
        done = subprocess.run(base + [str(tmp_path / "by-images-seen"), str(tmp_path / "by-labels"), *bad],
                              capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    held = [f"class{i}" for i in range(5, 10)]
    done = subprocess.run(base + [str(tmp_path / "by-images-seen"), str(tmp_path / "by-labels"), "--held-out", *held,
                                  "--output", str(tmp_path / "held.json"), "--methods", "image addressing",
                                  "nearest neighbour", "shots alone", "shots in the memory's span"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "held.json").read_text())
    assert record["held_out"] == held and record["seen"] == [f"class{i}" for i in range(5)]
    row = record["rows"][0]
    assert "classify-then-recall" not in row  # a label memory cannot recall classes it never saw
    assert len(row["shots alone"]["runs"]) == 2 and row["shots in the memory's span"]["bases"] == 4
    assert record["episodes_split"] == "test"
    # --validation: the held-out classes' episodes from the training split (the memory never saw those classes)
    done = subprocess.run(base + [str(tmp_path / "by-images-seen"), str(tmp_path / "by-labels"), "--held-out", *held,
                                  "--validation", "--output", str(tmp_path / "held-val.json"), "--methods",
                                  "image addressing"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    validation = json.loads((tmp_path / "held-val.json").read_text())
    assert validation["episodes_split"] == "train" and validation["held_out"] == held
    assert len(validation["rows"][0]["image addressing"]["runs"]) == 2


def test_image_starts_runs_a_start_and_records_its_validation_curve(tmp_path):
    """bench/image_starts.py: one `hf-rtp distill` run per (start, seed), here a supervised frozen encoder on the
    embedded digits, two outer steps, validated after each; the row holds its curve, best and last accuracy, whether
    it left chance and the command that made it; the memory records where its encoder started. An unknown start is
    refused before any run; a run that fails (digits' 5 classes hold no 16-base memory at IPC 1) stops the script
    with hf-rtp's one line and its own, no traceback."""
    base = [sys.executable, str(ROOT / "bench" / "image_starts.py"), "--dataset", "digits", "--runs-dir", str(tmp_path / "runs"),
            "--output", str(tmp_path / "starts.json")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    tiny = ["--starts", "supervised-frozen", "--steps", "2", "--eval-every", "1", "--eval-episodes", "2"]
    done = subprocess.run(base + tiny, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "starts.json").read_text())
    assert record["classes"] is None and record["chance"] == 0.2 and record["steps"] == 2
    (row,) = record["rows"]
    assert (row["start"], row["seed"]) == ("supervised-frozen", 0)
    assert [step for step, _ in row["validation"]] == [1, 2]
    accuracies = [acc for _, acc in row["validation"]]
    assert row["best"] == max(accuracies) and row["last"] == accuracies[-1] and all(0 <= a <= 1 for a in accuracies)
    assert row["left_chance"] == (row["best"] > 0.25)
    words = row["distill_command"].split()
    for option, value in (("--query-encoder-start", "supervised"), ("--query-encoder-lr", "0"), ("--steps", "2")):
        assert words[words.index(option) + 1] == value
    memory = json.loads((Path(row["run"]) / "memory" / "config.json").read_text())
    assert memory["query_encoder_start"].startswith("supervised:digits") and len(memory["class_names"]) == 10
    bad = subprocess.run(base + ["--starts", "imagenet"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "invalid choice: 'imagenet'" in bad.stderr
    failed = subprocess.run(base + tiny + ["--classes", "0", "1", "2", "3", "4"], capture_output=True, text=True, env=env,
                            timeout=600)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "hf-rtp: error: a budget of ipc=1.0" in failed.stderr
    assert "image_starts.py: error: the supervised-frozen run (seed 0) stopped with exit status 2" in failed.stderr


def test_a_recall_is_its_own_nearest_image_in_the_memorys_span(monkeypatch):
    """few_shot.py's span reference: recall lies in the span of the bases (eqn 2), so projecting it changes nothing;
    an image outside the span moves, and no recall is closer to it than its projection."""
    import importlib.util

    import torch

    from hf_rtp import AddressableMemory, AddressableMemoryConfig

    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # the script imports its neighbour `common`
    spec = importlib.util.spec_from_file_location("few_shot", ROOT / "bench" / "few_shot.py")
    few_shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(few_shot)
    torch.manual_seed(0)
    memory = AddressableMemory(AddressableMemoryConfig(image_shape=[1, 8, 8], class_names=["a", "b"], num_bases=5,
                                                       images_per_query=3, downsample=2, mean=[0.0], std=[1.0],
                                                       output_norm="standardize")).double()
    recall = memory(labels=torch.tensor([0, 1])).images
    assert torch.allclose(few_shot.nearest_in_span(memory, recall), recall, atol=1e-9)
    outside = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    nearest = few_shot.nearest_in_span(memory, outside)
    assert (nearest - outside).abs().max() > 0.1
    assert torch.allclose(few_shot.nearest_in_span(memory, nearest), nearest, atol=1e-9)


def test_cross_arch_refuses_an_unknown_student_before_any_work():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "cross_arch.py"), "no/such-memory", "--students", "ViT-small/4",
                           "vit-huge"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unknown student(s) ['vit-huge']" in done.stderr, done.stderr[-2000:]


def test_cross_arch_trains_each_student_with_one_recipe_on_both_sets(tmp_path):
    import torch

    from hf_rtp import AddressableMemory
    from hf_rtp.data import load_train_test

    train, _ = load_train_test("digits")
    torch.manual_seed(0)
    AddressableMemory.for_dataset(train, ipc=1, num_bases=4, downsample=2).save_pretrained(tmp_path / "memory")
    output = tmp_path / "cross_arch.json"
    command = [sys.executable, str(ROOT / "bench" / "cross_arch.py"), str(tmp_path / "memory"), "--models", "1", "--epochs", "2",
               "--students", "MLP", "resnet10t", "--split", "validation", "--device", "cpu", "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(output.read_text())
    assert record["split"] == "validation" and record["output_norm"] == "standardize"
    resnet, mlp = record["rows"]  # in the script's student order
    assert (mlp["student"], mlp["learner"], mlp["recipe"]) == ("MLP", "mlp", "protocol")
    for row in (mlp, resnet):  # one recipe per row, for both training sets; the protocol: no rescaling of either
        assert row["recipe_settings"] == {}
        for name in ("distilled", "random_real"):
            assert len(row[name]["runs"]) == 1 and row[name]["mean"] == row[name]["runs"][0]
    assert mlp["models"] == resnet["models"] == 1 and mlp["command"] == record["command"]
    assert "commands" not in record and "note" not in record

    # --merge: a second run replaces the ConvNet's row and keeps the resnet's; the file lists both commands
    command = [sys.executable, str(ROOT / "bench" / "cross_arch.py"), str(tmp_path / "memory"), "--models", "2", "--epochs", "1",
               "--students", "ConvNet-128", "--device", "cpu", "--note", "the ConvNet again", "--merge", "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    merged = json.loads(output.read_text())
    assert [r["student"] for r in merged["rows"]] == ["resnet10t", "MLP", "ConvNet-128"]
    assert merged["rows"][2]["models"] == 2 and merged["rows"][0] == resnet and merged["rows"][1] == mlp
    assert merged["commands"] == [record["command"], merged["command"]] and merged["command"].endswith("--merge --output " + str(output))
    assert merged["note"] == "the ConvNet again"


def test_cross_arch_scores_a_runs_checkpoint_and_refuses_one_not_kept(tmp_path):
    """--checkpoint STEP: the run's memory (config, recall) with the tables of that outer step's checkpoint."""
    import torch

    from hf_rtp import AddressableMemory
    from hf_rtp.data import load_train_test
    from hf_rtp.initialization import init_from_real
    from hf_rtp.run_dir import RunDirectory

    train, _ = load_train_test("digits")
    torch.manual_seed(0)
    memory = AddressableMemory.for_dataset(train, ipc=1, num_bases=4, downsample=2)
    init_from_real(memory, train, torch.Generator().manual_seed(0))  # recalls digits: an MLP learns from them
    memory.save_pretrained(tmp_path / "run" / "memory")
    earlier = {k: torch.zeros_like(v) for k, v in memory.state_dict().items()}  # recalls constant images
    RunDirectory(tmp_path / "run").save_checkpoint(3, earlier, {}, None, {"step": 3}, keep=5)
    for step, val in ((3, 0.25), (4, 0.5)):  # the Distiller's own validation, recorded next to the students
        RunDirectory(tmp_path / "run").log({"step": step, "loss": 1.0, "val_accuracy": val})
    base = [sys.executable, str(ROOT / "bench" / "cross_arch.py"), str(tmp_path / "run" / "memory"), "--models", "1",
            "--epochs", "30", "--students", "MLP", "--split", "validation", "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(base + ["--checkpoint", "4", "--output", str(tmp_path / "no.json")], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 2 and "--checkpoint 4" in done.stderr and "step-0000003" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "no.json").exists()
    for step, output in ((3, "step3.json"), (None, "final.json")):
        done = subprocess.run(base + (["--checkpoint", str(step)] if step else []) + ["--output", str(tmp_path / output)],
                              capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    step3, final = (json.loads((tmp_path / name).read_text()) for name in ("step3.json", "final.json"))
    assert step3["checkpoint"] == 3 and "checkpoint" not in final
    assert step3["distiller_val_accuracy"] == 0.25 and "distiller_val_accuracy" not in final
    # constant recalled images teach the MLP nothing (chance); the memory's own recall of real digits does
    assert step3["rows"][0]["distilled"]["mean"] < 0.2 < final["rows"][0]["distilled"]["mean"]
    assert step3["rows"][0]["random_real"] == final["rows"][0]["random_real"]


@pytest.mark.slow  # 35-40 s: keeps the default suite under 10 minutes on 2 cores
def test_unroll_bench_times_engine_and_reference_and_checks_the_ratios(tmp_path):
    output = tmp_path / "unroll.json"
    command = [sys.executable, str(ROOT / "bench" / "unroll.py"), "--steps", "2", "3", "--impl", "engine", "reference",
               "--repeats", "1", "--per-class", "1", "--real-per-class", "2", "--threads", "1", "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(output.read_text())
    assert record["command"] == shlex.join(["python", "bench/unroll.py", *command[2:]]) and record["device"] == "cpu"
    assert {(r["impl"], r["T"]) for r in record["rows"]} == {("engine", 2), ("reference", 2), ("engine", 3), ("reference", 3)}
    assert all(r["device"] == "cpu" and r["peak_mb"] == r["peak_rss_mb"] > 0 for r in record["rows"])
    assert {"engine peak T=3 / T=2", "engine / reference peak at T=3", "engine / plain steps at T=3"} <= set(record["ratios"])
    assert (tmp_path / "unroll_memory.png").exists()


@pytest.mark.slow  # 35-40 s: keeps the default suite under 10 minutes on 2 cores
def test_ablations_in_parallel_processes(tmp_path):
    output = tmp_path / "ablations.json"
    command = [sys.executable, str(ROOT / "bench" / "ablations.py"), "--minutes", "0.02", "--seeds", "0", "1", "--models", "1",
               "--epochs", "2", "--only", "downsampled", "--parallel", "2", "--output", str(output), "--runs-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(output.read_text())["rows"]
    assert row["finding"].startswith("downsampled") and row["A"]["memory"]["downsample"] == 2 and row["B"]["memory"]["downsample"] == 1
    assert all(len(row[k]["seeds"]) == 2 and all(s["outer_steps"] >= 1 for s in row[k]["seeds"]) for k in "AB")


# ---- bench/common.py -------------------------------------------------------------------------------------------------


def test_command_line_names_the_script_from_the_repo_root_and_quotes_arguments():
    assert common.command_line([str(ROOT / "bench" / "cross_arch.py"), "memory", "--title", "one recipe, test split"]) == \
        "python bench/cross_arch.py memory --title 'one recipe, test split'"
    assert common.command_line(["/elsewhere/x.py", "--a"]) == "python /elsewhere/x.py --a"  # outside the repo: as given
    args = ["--note", "it's a note", "--settings", '{"lr": 0.1}']
    assert shlex.split(common.command_line([str(ROOT / "bench" / "mnist.py"), *args]))[2:] == args  # round trip


def test_result_options_note_output_and_merge():
    parser = argparse.ArgumentParser()
    common.add_result_options(parser, "out.json", mergeable=True)
    args = parser.parse_args(["--note", "shared GPU", "--merge"])
    assert (args.note, args.output, args.merge) == ("shared GPU", "out.json", True)
    assert parser.parse_args([]).merge is False
    by_default = argparse.ArgumentParser()
    common.add_result_options(by_default, "out.json", merge_by_default=True)  # bench/mnist.py: one row per run
    assert by_default.parse_args([]).merge is True and by_default.parse_args(["--no-merge"]).merge is False
    no_merge = argparse.ArgumentParser()
    common.add_result_options(no_merge)
    assert vars(no_merge.parse_args([])) == {"note": None, "overwrite": False}


def _write(monkeypatch, path, rows, argv, note=None, merge=False, **kwargs):
    monkeypatch.setattr(sys, "argv", [str(ROOT / "bench" / "x.py"), *argv])
    return common.write_result(path, {"dataset": "digits", "rows": rows}, argparse.Namespace(note=note, merge=merge), **kwargs)


def test_write_result_adds_command_machine_and_note(tmp_path, monkeypatch):
    written = _write(monkeypatch, tmp_path / "r.json", [{"k": 1}], ["--a", "1"], note="a remark")
    assert json.loads((tmp_path / "r.json").read_text()) == written
    assert written["command"] == "python bench/x.py --a 1" and written["note"] == "a remark"
    assert "CPU cores" in written["machine"] and written["dataset"] == "digits" and "commands" not in written
    assert "note" not in _write(monkeypatch, tmp_path / "r.json", [], [])  # no --note, no note; no --merge: replaced


def test_merge_replaces_rows_by_key_keeps_the_others_and_lists_every_command(tmp_path, monkeypatch):
    path, key = tmp_path / "r.json", lambda r: r["student"]
    _write(monkeypatch, path, [{"student": "a", "v": 1}, {"student": "b", "v": 1}], ["--first"], note="first note")
    merged = _write(monkeypatch, path, [{"student": "b", "v": 2}, {"student": "c", "v": 2}], ["--second"], note="second note",
                    merge=True, row_key=key)
    assert merged["rows"] == [{"student": "a", "v": 1}, {"student": "b", "v": 2}, {"student": "c", "v": 2}]
    assert merged["commands"] == ["python bench/x.py --first", "python bench/x.py --second"] == [merged["commands"][0], merged["command"]]
    assert merged["note"] == "first note; second note"
    assert list(merged)[:5] == ["command", "commands", "machine", "note", "dataset"]  # the layout of every result
    # the same run written again (a script writes after every row) changes nothing
    assert _write(monkeypatch, path, [{"student": "b", "v": 2}, {"student": "c", "v": 2}], ["--second"], note="second note",
                  merge=True, row_key=key) == merged
    # a third command: appended; without its own note the notes stay; sort_rows orders the table by key
    third = _write(monkeypatch, path, [{"student": "0", "v": 3}], ["--third"], merge=True, row_key=key, sort_rows=True)
    assert [r["student"] for r in third["rows"]] == ["0", "a", "b", "c"] and len(third["commands"]) == 3
    assert third["note"] == "first note; second note"
    # --merge with no file yet: a plain write
    assert "commands" not in _write(monkeypatch, tmp_path / "new.json", [{"student": "a"}], [], merge=True, row_key=key)


def test_a_committed_result_is_never_replaced_unasked(tmp_path, monkeypatch):
    """A run that would change a committed result writes <name>.new.json beside it; adding rows, --overwrite and
    $BENCH_OVERWRITE (run_all.sh) write in place; the recorded command never carries --overwrite."""
    assert common.is_committed(ROOT / "bench" / "results" / "main_job.json") and not common.is_committed(tmp_path / "x.json")
    monkeypatch.delenv(common.OVERWRITE_ENV, raising=False)
    path, key = tmp_path / "r.json", lambda r: r["k"]
    _write(monkeypatch, path, [{"k": "a", "v": 1}], [])
    monkeypatch.setattr(common, "is_committed", lambda p: p == path)
    _write(monkeypatch, path, [{"k": "a", "v": 2}], [])  # replacing the file
    _write(monkeypatch, path, [{"k": "a", "v": 3}], [], merge=True, row_key=key)  # replacing its row
    assert json.loads(path.read_text())["rows"] == [{"k": "a", "v": 1}]
    assert json.loads((tmp_path / "r.new.json").read_text())["rows"][-1] == {"k": "a", "v": 3}
    _write(monkeypatch, path, [{"k": "b", "v": 1}], [], merge=True, row_key=key)  # a new row: added in place
    assert [r["k"] for r in json.loads(path.read_text())["rows"]] == ["a", "b"]
    # a merge that replaces one row of the committed result: the .new.json holds the result's other rows and commands
    # too (it used to hold only this run's rows), so moving it over the result loses nothing
    (tmp_path / "r.new.json").unlink()
    beside = _write(monkeypatch, path, [{"k": "b", "v": 5}], ["--again"], merge=True, row_key=key)
    assert beside["rows"] == [{"k": "a", "v": 1}, {"k": "b", "v": 5}] and len(beside["commands"]) == 2
    assert json.loads((tmp_path / "r.new.json").read_text()) == beside
    assert [r["v"] for r in json.loads(path.read_text())["rows"]] == [1, 1]
    monkeypatch.setattr(sys, "argv", [str(ROOT / "bench" / "x.py"), "--overwrite"])
    written = common.write_result(path, {"rows": [{"k": "a", "v": 9}]}, argparse.Namespace(note=None, merge=False, overwrite=True))
    assert json.loads(path.read_text())["rows"] == [{"k": "a", "v": 9}] and written["command"] == "python bench/x.py"
    monkeypatch.setenv(common.OVERWRITE_ENV, "1")
    _write(monkeypatch, path, [{"k": "a", "v": 10}], [])
    assert json.loads(path.read_text())["rows"] == [{"k": "a", "v": 10}]


def test_write_json_is_atomic(tmp_path):
    path = tmp_path / "r.json"
    common.write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        common.write_json(path, {"a": object()})  # fails while serialising: the old file stays whole
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_mnist_is_read_from_its_local_copy_when_present(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_RTP_MNIST_DIR", str(tmp_path))
    assert common.resolve_dataset("ylecun/mnist") == "ylecun/mnist"  # no parquet there: the Hub id
    (tmp_path / "train-00000-of-00001.parquet").touch()
    assert common.resolve_dataset("ylecun/mnist") == str(tmp_path) and common.resolve_dataset("digits") == "digits"


# ---- bench/results/*.json and bench/report.py -------------------------------------------------------------------------

# The keys each script writes (bench/common.py adds COMMON_KEYS to every record). report.py reads no others.
WRITTEN = {
    "main_job": ({"minutes", "dataset", "ipc", "num_bases", "images_per_query", "downsample", "storage_floats", "evaluation",
                  "distillation"}, None),
    "unroll": ({"device", "rows", "ratios"},
               {"impl", "T", "device", "skipped", "seconds_per_outer_step", "all_seconds", "plain_steps_seconds", "ratio_to_plain_steps",
                "peak_rss_mb", "peak_above_setup_mb", "minor_faults_per_step", "system_seconds_per_step", "compile_seconds", "synthetic_per_step", "real_batch", "threads", "peak_cuda_mb",
                "peak_cuda_above_setup_mb", "peak_mb"}),
    "mnist": ({"rows"},
              {"ipc", "method", "command", "machine", "dataset", "tag", "accuracy", "images", "storage_floats", "num_bases",
               "images_per_query", "downsample", "settings", "distillation", "distill_minutes", "resumed_minutes", "curve",
               "memory_folder", "best_val_accuracy"}),
    "ablations": ({"dataset", "ipc", "minutes_per_run", "seeds", "parallel", "evaluation", "rows"}, {"finding", "A", "B", "holds", "gap"}),
    "cross_arch": ({"title", "memory", "checkpoint", "distiller_val_accuracy", "dataset", "ipc", "epochs", "split", "output_norm", "rows", "distilled_with"},
                   {"student", "learner", "learner_kwargs", "recipe", "recipe_settings", "distilled", "random_real", "models",
                    "command"}),
    "few_shot": ({"image_memory", "label_memory", "dataset", "held_out", "seen", "episodes", "episodes_split", "image_memory_floats",
                  "label_memory_floats", "query_head_floats", "query_encoder", "learner", "classifier_epochs", "rows"},
                 {"way", "shots", "held_out", "learner_compiled", "command", "image addressing*", "nearest neighbour",
                  "classify-then-recall", "shots alone", "shots in the memory's span"}),
    "image_starts": ({"dataset", "steps", "eval_every", "eval_episodes", "classes", "common_options", "starts", "chance",
                      "rows"}, {"start", "seed", "validation", "best", "last", "left_chance", "minutes", "run",
                                "distill_command"}),
    "continual": ({"stream", "split", "dataset", "tasks", "rows"},
                  {"tag", "method", "command", "config", "stream_config", "buffer_floats", "state_floats", "retained_accuracy",
                   "runs", "backward_transfer", "minutes_per_task", "memory_floats", "recall_mode", "assumes", "diverged"}),
    "continual_tasks": ({"stream", "split", "dataset", "first_tasks", "buffer_floats", "rows"},
                        {"tag", "command", "settings", "config", "memory_floats", "recalled_images_per_task",
                         "joint_retained_accuracy", "mean", "tasks", "seconds", "threads"}),
    "continual_retrain": ({"bank", "stream", "split", "rows"},
                          {"tag", "command", "config", "tasks", "joint", "per-task", "seconds", "real_per_task", "projected"}),
    "extrapolation": ({"dataset", "task_size", "tasks", "ipc", "memory_floats", "steps", "minutes_per_task", "learner",
                       "config", "bank", "rows"}, {"way", "new_tasks", "command", "memories", "random real", "full real"}),
    "faults": ({"run", "checkpoint_every", "seed", "reference_seconds", "hook_calls", "kills", "killed", "bit_identical",
                "max_steps_lost", "by_kind", "rows"},
               {"kill", "how", "at", "status", "last_logged_step", "resumed_from_step", "steps_lost", "resumes", "bit_identical"}),
    "startup": ({"repeats", "memory", "bank", "rows"}, {"measured", "seconds", "vs_import_torch"}),
    "cifar10": ({"config", "dataset", "train_images", "test_images", "distill_minutes", "settings", "evaluation", "result", "paper",
                 "memory_folder", "elapsed_seconds_after_each_outer_step"}, None),
}
RESULT_FILES = sorted(RESULTS.glob("*.json"))


def _family(path: Path) -> str:
    return next(name for name in sorted(WRITTEN, key=len, reverse=True) if path.stem.startswith(name))


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda p: p.name)
def test_results_hold_only_keys_their_script_writes(path):
    record = json.loads(path.read_text())
    keys, row_keys = WRITTEN[_family(path)]
    assert set(record) <= keys | set(common.COMMON_KEYS), set(record) - keys - set(common.COMMON_KEYS)
    assert {"command", "machine"} <= set(record)
    common_keys = [k for k in common.COMMON_KEYS if k in record]
    assert list(record)[:len(common_keys)] == common_keys  # laid out as write_result writes
    if "commands" in record:
        assert record["commands"][-1] == record["command"]
    prefixes = tuple(k[:-1] for k in row_keys or () if k.endswith("*"))  # columns named by an option (--label)
    for row in record.get("rows", []) if row_keys else []:
        extra = {k for k in set(row) - row_keys if not (prefixes and k.startswith(prefixes))}
        assert not extra, extra


def _script_commands() -> set[tuple[str, ...]]:
    """The `python bench/...` command lines of run_all.sh and gpu_checks.sh, as word lists."""
    commands = set()
    for script in ("run_all.sh", "gpu_checks.sh"):
        text = (ROOT / "bench" / script).read_text().replace("\\\n", " ")
        for line in text.splitlines():
            words = shlex.split(line, comments=True) if "python bench/" in line else []
            if "python" in words:  # a command line, not a comment naming one
                words = words[words.index("python"):]
                commands.add(tuple(words[:-1] if words[-1] == "&" else words))
    return commands


@pytest.mark.parametrize("path", RESULT_FILES + sorted(RESULTS.glob("trajectory/*.json")), ids=lambda p: p.name)
def test_every_recorded_command_is_a_line_of_run_all_or_gpu_checks(path):
    record = json.loads(path.read_text())
    recorded = {record["command"], *record.get("commands", []), *(row["command"] for row in record.get("rows", []) if "command" in row)}
    lines = _script_commands()
    missing = [c for c in recorded if tuple(shlex.split(c)) not in lines]
    assert not missing, missing


def test_report_renders_every_result(tmp_path):
    """bench/report.py rewrites the results page (docs/results.md) between its markers, with every result, pictures
    linked relative to the file it writes; the page in the tree is what it writes."""
    page = tmp_path / "results.md"
    shutil.copy(ROOT / "docs" / "results.md", page)
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), "--output", str(page)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    text = page.read_text()
    section = text.split("<!-- results:begin")[1].split("<!-- results:end -->")[0]
    committed = (ROOT / "docs" / "results.md").read_text()
    assert text.split("<!-- results:begin")[0] == committed.split("<!-- results:begin")[0]
    for path in RESULT_FILES:
        record = json.loads(path.read_text())
        if path.name != "mnist_tuning.json":  # the tuning pilots chose settings; they are no results table
            assert _without_note(record["command"]) in section, path.name
    pictures = [chunk.split("](", 1)[1].split(")", 1)[0] for chunk in section.split("![")[1:]]
    assert pictures and all((page.parent / p).resolve().exists() for p in pictures), pictures
    prefix = os.path.relpath(RESULTS, tmp_path).replace(os.sep, "/")
    assert text.replace(f"]({prefix}/", "](../bench/results/") == committed, \
        "docs/results.md is not what bench/report.py writes: run `python bench/report.py`"


def test_report_keeps_its_old_option_name(tmp_path):
    """`--readme FILE` (the option's old name) still writes FILE."""
    page = tmp_path / "x.md"
    page.write_text("before\n<!-- results:begin (generated by bench/report.py) -->\n<!-- results:end -->\nafter\n")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), "--readme", str(page)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "### Main job" in text


def _without_note(command: str) -> str:
    """A command as the results page shows it: its --note is printed as a note of its own."""
    words = shlex.split(command)
    kept = [w for i, w in enumerate(words) if w != "--note" and (i == 0 or words[i - 1] != "--note")]
    return shlex.join(kept)
