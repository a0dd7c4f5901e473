"""One run folder, whoever starts the run: the Python API, `hf-rtp distill` and `examples/distill.py` leave the same
layout, with one settings file and one memory/ holding the model card and pictures."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_rtp import AddressableMemory
from hf_rtp.cli import main
from hf_rtp.data import DataConfig
from hf_rtp.distill import Distiller, _launch_warnings
from hf_rtp.pipeline import distill_memory
from hf_rtp.run_dir import RunDirectory
from tests.helpers import TINY_CLI, fresh_memory, tiny

ROOT = Path(__file__).resolve().parents[1]
MEMORY_FILES = {"model.safetensors", "config.json", "README.md", "recalled.png", "bases.png", "class_similarity.png"}


def layout(folder: Path) -> set[str]:
    """Every path in the run folder, with checkpoint step numbers blanked."""
    return {str(p.relative_to(folder)).replace("0000004", "N") for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def digits():
    return DataConfig("digits").load()


def test_python_api_cli_and_example_leave_the_same_run_folder(digits, tmp_path):
    train, test = digits
    config = tiny(tmp_path / "api", steps=4, unroll_steps=3, eval_every=2, checkpoint_every=50, final_models=2, final_epochs=5,
                  lr=0.01, real_per_class=64, synthetic_per_class=32)
    memory = distill_memory(config, fresh_memory(train), train, test=test)
    main(["distill", "--output-dir", str(tmp_path / "cli"), *TINY_CLI])
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "distill.py"), "--output-dir", str(tmp_path / "example"),
                           *TINY_CLI], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    api, cli, example = (layout(tmp_path / name) for name in ("api", "cli", "example"))
    assert api == cli == example
    assert {"settings.json", "metrics.jsonl", "checkpoints/latest", "checkpoints/step-N/state.json"} <= api
    assert {f"memory/{name}" for name in MEMORY_FILES} <= api
    assert not any("run_settings" in p or ".tmp" in p or ".old" in p for p in api)
    # the Python API's memory carries the same card facts as the CLI's: evaluated, with the random-real baseline
    for name in ("api", "cli", "example"):
        card = (tmp_path / name / "memory" / "README.md").read_text()
        assert "random real images, same budget" in card and "Not evaluated" not in card, name
    assert memory.config.evaluation["models"] == 2
    # the example used the digits preset, as hf-rtp distill does
    assert json.loads((tmp_path / "example" / "settings.json").read_text())["memory"]["num_bases"] == 8
    cli_settings, example_settings = (json.loads((tmp_path / name / "settings.json").read_text()) for name in ("cli", "example"))
    cli_settings["distill"].pop("output_dir"), example_settings["distill"].pop("output_dir")
    assert cli_settings == example_settings


def test_settings_record_data_memory_and_loop_and_resume_reads_them(digits, tmp_path, capsys):
    main(["distill", "--output-dir", str(tmp_path), *TINY_CLI, "--steps", "2", "--num-bases", "4", "--zca", "off"])
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["data"] == {"dataset": "digits", "dataset_config": None, "image_column": None, "label_column": None, "zca": "off",
                                "classes": None}
    assert settings["memory"]["num_bases"] == 4 and settings["distill"]["steps"] == 2
    state = json.loads((tmp_path / "checkpoints" / "step-0000002" / "state.json").read_text())
    assert "config" not in state and "memory_config" not in state  # settings live in one file
    main(["distill", "--resume", "--output-dir", str(tmp_path), "--steps", "3", "--no-progress"])
    assert AddressableMemory.from_pretrained(tmp_path / "memory").config.num_bases == 4


def test_a_failed_final_save_keeps_the_previous_memory(digits, tmp_path, monkeypatch):
    train, _ = digits
    run = RunDirectory(tmp_path)
    first = fresh_memory(train, seed=1)
    run.save_memory(first)

    def broken(self, folder, **kwargs):
        Path(folder).mkdir(parents=True)
        (Path(folder) / "model.safetensors").write_bytes(b"half")
        raise OSError("No space left on device")

    monkeypatch.setattr(AddressableMemory, "save_pretrained", broken)
    with pytest.raises(OSError, match="No space left"):
        run.save_memory(fresh_memory(train, seed=2))
    monkeypatch.undo()
    kept = AddressableMemory.from_pretrained(run.memory_path)
    assert torch.equal(kept.bases, first.bases)


def test_metrics_reach_an_accelerate_tracker(digits, tmp_path):
    train, _ = digits
    distill_memory(tiny(tmp_path, steps=2, report_to="tensorboard"), fresh_memory(train), train)
    events = list(tmp_path.rglob("events.out.tfevents.*"))
    assert events, sorted(str(p) for p in tmp_path.rglob("*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("loss")] == [1, 2]
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") >= 2  # metrics.jsonl as well


def test_a_tracker_that_is_not_installed_is_named_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="report_to='wandb' needs the `wandb` package"):
        tiny(tmp_path, report_to="wandb")


def test_launch_settings_that_would_be_ignored_are_warned_about(monkeypatch):
    class Launched:
        mixed_precision, num_processes = "bf16", 1

    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    found = _launch_warnings(Launched())
    assert any("mixed precision 'bf16' is ignored" in w for w in found)
    assert any("started a single process" in w for w in found)
    Launched.mixed_precision = "no"
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _launch_warnings(Launched()) == []
