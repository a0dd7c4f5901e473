"""The `hf-rtp` commands end to end on the embedded digits (tiny settings)."""

import json
import os
import subprocess
import sys

import pytest
from datasets import load_from_disk

from hf_rtp import AddressableMemory
from hf_rtp.cli import main

TINY = ["--steps", "4", "--unroll-steps", "3", "--eval-every", "2", "--eval-epochs", "3", "--learner-width", "8",
        "--eval-width", "8", "--final-models", "2", "--final-epochs", "5", "--no-progress"]


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    main(["distill", "--output-dir", str(out), *TINY])
    return out


def test_distill_saves_memory_card_pictures_metrics_and_checkpoints(distilled, capsys):
    folder = distilled / "memory"
    assert {"model.safetensors", "config.json", "README.md", "recalled.png", "bases.png", "class_similarity.png"} <= {p.name for p in folder.iterdir()}
    memory = AddressableMemory.from_pretrained(folder)
    assert memory.config.dataset_name == "digits" and memory.config.num_bases == 8  # the digits preset
    assert memory.config.evaluation["models"] == 2 and "random_real" in memory.config.evaluation
    assert memory.config.distillation["outer_steps"] == 4
    assert "random real images" in (folder / "README.md").read_text()
    steps = [json.loads(line)["step"] for line in (distilled / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert (distilled / "checkpoints" / "latest").read_text() == "step-0000004"


def test_options_without_a_command_mean_distill(tmp_path, capsys):
    main(["--output-dir", str(tmp_path), *TINY, "--ipc", "2", "--num-bases", "4", "--addressing", "learned"])
    out = capsys.readouterr().out
    assert "distilled memory (recalled)" in out and "random real images" in out
    assert AddressableMemory.from_pretrained(tmp_path / "memory").config.num_bases == 4


def test_evaluate_recall_info(distilled, tmp_path, capsys):
    folder = str(distilled / "memory")
    main(["evaluate", folder, "--models", "1", "--epochs", "3", "--width", "8", "--no-random-real", "--json"])
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["models"] == 1 and "random_real" not in record
    main(["evaluate", folder, "--models", "1", "--epochs", "3", "--width", "8", "--no-random-real", "--json", "--optimizer", "adamw",
          "--lr", "0.001", "--schedule", "cosine", "--warmup-epochs", "1", "--input-size", "16", "--device", "cpu"])
    protocol = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["protocol"]
    assert (protocol["optimizer"], protocol["schedule"], protocol["warmup_epochs"], protocol["input_size"]) == ("adamw", "cosine", 1, 16)
    main(["recall", folder, "--output", str(tmp_path / "recalled"), "--classes", "3", "7", "--preview"])
    dataset = load_from_disk(str(tmp_path / "recalled"))
    assert set(dataset["label"]) == {3, 7} and "image" in dataset.column_names
    assert (tmp_path / "recalled" / "recalled.png").exists()
    assert "recalled 12 images of 2 classes" in capsys.readouterr().out
    main(["info", folder])
    assert json.loads(capsys.readouterr().out)["num_bases"] == 8


def test_push_command_uploads_to_the_hub(distilled, fake_hub, capsys):
    main(["push", str(distilled / "memory"), "user/digits-ipc1"])
    assert {"model.safetensors", "config.json", "README.md"} <= set(fake_hub.files("user/digits-ipc1"))


def test_console_script_help():
    done = subprocess.run([sys.executable, "-m", "hf_rtp.cli", "distill", "--help"], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0
    assert "--unroll-steps" in done.stdout and "inner SGD steps per unroll" in done.stdout


def test_bad_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot load dataset"):
        main(["distill", "--dataset", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path), *TINY])


def test_budget_too_small_is_a_clear_error(tmp_path):
    from hf_rtp import BudgetError

    with pytest.raises(BudgetError, match="64 bases"):
        main(["distill", "--num-bases", "64", "--output-dir", str(tmp_path), *TINY])


def test_explicit_none_is_not_ignored_and_resume_needs_only_the_output_dir(tmp_path, capsys):
    from hf_rtp.cli import build_parser, run_settings

    args = build_parser().parse_args(["distill", "--clip-grad-norm", "none", "--max-minutes", "none"])
    settings = run_settings({k: v for k, v in vars(args).items() if k != "command"})
    assert settings["clip_grad_norm"] is None and settings["max_minutes"] is None
    assert run_settings({})["clip_grad_norm"] == 2.0
    main(["distill", "--output-dir", str(tmp_path), *TINY, "--steps", "2", "--num-bases", "4"])
    capsys.readouterr()
    main(["distill", "--resume", "--output-dir", str(tmp_path), "--steps", "4"])  # dataset and layout come from the run
    assert AddressableMemory.from_pretrained(tmp_path / "memory").config.distillation["outer_steps"] == 4
    assert "random real images" in capsys.readouterr().out
