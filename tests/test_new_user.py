"""What a new user meets on the command line: banks as first-class targets, pictures folders, time limits, options
that would be ignored, start-up cost, destinations that cannot be written (tiny settings, the embedded digits)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import load_from_disk
from PIL import Image

from hf_rtp import MemoryBank
from hf_rtp.cli import main
from hf_rtp.continual import ContinualConfig, StreamConfig, make_method, run_stream

from tests.helpers import TINY_CLI as TINY


@pytest.fixture(scope="module")
def stream_bank(tmp_path_factory):
    """A compress-then-recall bank of a 2-task Rotated digits stream, with the result its run reported."""
    folder = tmp_path_factory.mktemp("bank") / "bank"
    stream = StreamConfig(stream="rotations", dataset="digits", tasks=2, samples_per_task=60, test_per_task=80, seed=3).load()
    config = ContinualConfig(buffer_floats=40 * stream.image_floats, inner_steps=2, final_steps=1, retrain_epochs=2)
    learner = make_method(config, stream)
    result = run_stream(learner, stream)
    learner.bank.save_pretrained(folder)
    return folder, result


def run_cli(argv, capsys):
    """(exit code, stdout, stderr) of `hf-rtp argv` in this process."""
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_top_level_help_imports_neither_torch_nor_transformers():
    """`hf-rtp --help` lists the commands without importing torch, transformers or datasets (it took 10 s)."""
    code = ("import sys\nfrom hf_rtp.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'transformers', 'datasets') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert "distill" in done.stdout and "info" in done.stdout and done.stdout.strip().endswith("[]")


def test_import_hf_rtp_registers_the_auto_classes_in_either_order(tmp_path):
    """The package loads lazily, yet `import hf_rtp` before or after transformers registers AutoModel."""
    from tests.helpers import fresh_memory

    from hf_rtp.data import DataConfig

    train, _ = DataConfig("digits").load()
    fresh_memory(train).save_pretrained(tmp_path / "m", pictures=False)
    # hf_rtp first, transformers after (the other order is what every test process here does)
    code = f"import hf_rtp\nfrom transformers import AutoModel\nprint(type(AutoModel.from_pretrained({str(tmp_path / 'm')!r})).__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.stdout.strip().splitlines()[-1] == "AddressableMemory", done.stderr[-500:]


def test_a_bank_is_a_first_class_cli_target(stream_bank, tmp_path, fake_hub, capsys):
    folder, result = stream_bank
    code, out, _ = run_cli(["info", str(folder)], capsys)
    assert code == 0 and "bank" in out and "2: task-00, task-01" in out and "rotations of digits" in out
    code, out, _ = run_cli(["info", str(folder), "--json"], capsys)
    assert json.loads(out)["kind"] == "bank" and "Loading weights" not in out
    code, out, _ = run_cli(["recall", str(folder), "--output", str(tmp_path / "r"), "--tasks", "task-01", "--preview"], capsys)
    recalled = load_from_disk(str(tmp_path / "r"))
    assert code == 0 and set(recalled["task"]) == {"task-01"} and "image" in recalled.column_names
    assert (tmp_path / "r" / "recalled.png").is_file()
    # evaluate rebuilds the tasks' test sets from bank.json and scores what the run reported, with the recipe bank.json
    # records (2 retraining epochs here; it used ContinualConfig's 100 unless --epochs said 2)
    code, out, _ = run_cli(["evaluate", str(folder), "--json"], capsys)
    scored = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and scored["joint"]["accuracy"] == result["accuracy"]
    assert scored["per-task"]["accuracy"] == result["per_task"]["accuracy"]
    code, out, _ = run_cli(["evaluate", str(folder), "--epochs", "20", "--json"], capsys)  # an option replaces its setting
    longer = json.loads(out.strip().splitlines()[-1])
    code, out, _ = run_cli(["evaluate", str(folder), "--epochs", "20", "--noise", "3.0", "--json"], capsys)
    noisy = json.loads(out.strip().splitlines()[-1])
    assert longer["per-task"]["accuracy"] != result["per_task"]["accuracy"]
    assert code == 0 and (noisy["joint"], noisy["per-task"]) != (longer["joint"], longer["per-task"])
    code, _, err = run_cli(["evaluate", str(folder), "--width", "8"], capsys)
    assert code == 2 and "--width do not apply to a bank" in err
    # a task memory's card and info say which task of which stream it holds (it said "unknown dataset")
    card = (folder / "task-01" / "README.md").read_text()
    assert "`digits, task-01 of a rotations stream (rotation degrees " in card and "unknown dataset" not in card
    code, _, err = run_cli(["evaluate", str(folder / "task-01")], capsys)
    assert code == 2 and "score its bank (hf-rtp evaluate BANK)" in err
    code, out, _ = run_cli(["push", str(folder), "user/rot-bank"], capsys)
    assert code == 0 and "task-01/model.safetensors" in fake_hub.files("user/rot-bank")
    assert MemoryBank.from_pretrained("user/rot-bank").tasks == ["task-00", "task-01"]


def test_a_memory_of_some_classes_is_evaluated_on_those_classes(tmp_path, capsys):
    """A memory distilled with --classes 0,1,2 is scored on those classes of the test split (its own card's
    reproduce command used to fail: the dataset has other classes)."""
    main(["distill", "--classes", "0,1,2", "--output-dir", str(tmp_path), *TINY])
    capsys.readouterr()
    code, out, err = run_cli(["evaluate", str(tmp_path / "memory"), "--models", "1", "--epochs", "2", "--width", "8",
                              "--no-random-real", "--json"], capsys)
    assert code == 0, err
    assert "scored on the 3 classes the memory holds (0, 1, 2)" in out
    assert json.loads(out.strip().splitlines()[-1])["models"] == 1


def test_recall_by_a_folder_of_pictures_forgives_and_draws_what_it_recalled(tmp_path, capsys):
    from hf_rtp.data import DataConfig
    from tests.helpers import fresh_memory

    train, _ = DataConfig("digits").load()
    memory = fresh_memory(train, num_bases=4, query_encoder="test_resnet", query_dim=6)
    memory.save_pretrained(tmp_path / "memory", pictures=False)
    shots = tmp_path / "shots"
    for name, size in (("three", 16), ("seven", 8)):
        (shots / name).mkdir(parents=True)
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size), dtype=np.uint8)).save(shots / name / "a.png")
    (shots / "seven" / "broken.png").write_bytes(b"not a picture")
    (shots / "empty").mkdir()
    code, out, err = run_cli(["recall", str(tmp_path / "memory"), "--images", str(shots), "--output", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert "broken.png" in out and "empty" in out and "resized" in out
    recalled = load_from_disk(str(tmp_path / "out"))
    assert recalled.features["label"].names == ["seven", "three"]
    assert (tmp_path / "out" / "recalled.png").is_file() and not (tmp_path / "out" / "bases.png").exists()
    code, _, err = run_cli(["evaluate", str(tmp_path / "memory"), "--episodes", "1", "--shots", "1", "--way", "2",
                            "--epochs", "1", "--width", "8", "--json"], capsys)
    assert code == 0, err
    code, out, _ = run_cli(["info", str(tmp_path / "memory")], capsys)
    assert "images per query (a group of shot pictures" in out and "images per class" not in out.split("stores")[0]


def test_options_that_would_be_ignored_are_refused(tmp_path, capsys):
    code, _, err = run_cli(["distill", "--shots", "5", "--output-dir", str(tmp_path), *TINY], capsys)
    assert code == 2 and "--shots apply to memories addressed by images" in err
    code, _, err = run_cli(["distill", "--classes", "0,1,2", "--classes-per-step", "5", "--output-dir", str(tmp_path), *TINY], capsys)
    assert code == 2 and "classes_per_step=5 but the memory holds 3 classes" in err
    code, _, err = run_cli(["distill", "--query-encoder", "no_such_net", "--output-dir", str(tmp_path), *TINY], capsys)
    assert code == 2 and err == "hf-rtp: error: query_encoder 'no_such_net' is not a timm model name (see timm.list_models())\n"


def test_a_destination_that_cannot_be_written_is_refused_before_any_training(tmp_path, capsys):
    main(["distill", "--output-dir", str(tmp_path / "run"), *TINY])
    capsys.readouterr()
    memory = tmp_path / "run" / "memory"
    (tmp_path / "taken").write_text("a file")  # under a file: refused for every user, root included
    code, _, err = run_cli(["evaluate", str(memory), "--save-to", str(tmp_path / "taken" / "out"), "--epochs", "300"], capsys)
    assert code == 2 and "is a file, not a folder" in err
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders: the read-only case needs another user")
    memory.chmod(0o555)
    try:
        code, _, err = run_cli(["evaluate", str(memory), "--save", "--models", "1", "--epochs", "300"], capsys)
    finally:
        memory.chmod(0o755)
    assert code == 2 and "is not writable" in err


def test_a_failed_write_leaves_nothing_half_written(tmp_path):
    """A full disk (simulated by a writer that fails halfway) leaves no partial files and names the destination."""
    from hf_rtp.cli import UsageError, write_atomically

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("earlier")

    def half(folder: Path) -> None:
        (folder / "part.arrow").write_bytes(b"x" * 10)
        raise OSError(28, "No space left on device")

    with pytest.raises(UsageError, match=r"--output .*out: could not write it \(No space left on device\)"):
        write_atomically(tmp_path / "out", half, "--output")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_a_local_copy_of_a_known_dataset_gets_its_preset(tmp_path, capsys):
    from hf_rtp.cli import build_parser
    from hf_rtp.presets import resolve_run_options

    copy = tmp_path / "mnist"
    copy.mkdir()
    notes = []
    _, memory, config = resolve_run_options(build_parser("distill").parse_args(["distill", "--dataset", str(copy)]), note=notes.append)
    assert config.steps == 200 and config.inner_learner == "convnet+mlp" and "a local copy of ylecun/mnist" in notes[0]
    other = tmp_path / "my_pictures"
    other.mkdir()
    notes.clear()
    _, _, config = resolve_run_options(build_parser("distill").parse_args(["distill", "--dataset", str(other)]), note=notes.append)
    assert config.steps == 2000 and "no preset applies, so the defaults do: 2000 outer steps" in notes[0]


def test_the_time_limit_counts_every_step_and_the_bar_total_is_the_bound(tmp_path):
    """No step starts that is expected to end past max_minutes, and the bar's total is what fits at the pace so far."""
    from hf_rtp.data import DataConfig
    from hf_rtp.distill import Distiller
    from tests.helpers import fresh_memory, tiny

    train, _ = DataConfig("digits").load()
    distiller = Distiller(tiny(tmp_path, steps=1000, max_minutes=1.0, compile=None, eval_every=0), fresh_memory(train), train)
    assert not distiller.compile and "compile off" in distiller.notes[0]  # a 1-minute run: eager
    distiller.step, distiller.elapsed = 3, 50.0
    distiller._step_times = [40.0, 4.0, 4.0]  # the first step compiled: left out of the pace
    assert distiller.steps_within_limit() == 3 + 2  # 10 s left at 4 s a step
    assert not distiller._should_stop()
    distiller.elapsed = 57.0  # 3 s left, a step takes 4
    assert distiller._should_stop()


def test_the_final_evaluation_trains_what_fits_and_pairs_the_baseline(tmp_path):
    from hf_rtp.data import DataConfig
    from hf_rtp.evaluate import EvalConfig, evaluate_memory
    from tests.helpers import fresh_memory

    train, test = DataConfig("digits").load()
    memory = fresh_memory(train)
    record = evaluate_memory(memory, test, EvalConfig(models=4, epochs=2, width=8, max_minutes=1e-6, progress=False), train=train)
    assert record["models"] == 1 and len(record["accuracy"]["runs"]) == 1 == len(record["random_real"]["runs"])
