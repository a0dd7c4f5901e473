"""Nothing lost, nothing poisoned: divergence, non-finite data and files, concurrent runs, broken checkpoints, and
errors that name what is at fault. Behaviour that involves processes is tested with real processes."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Array3D, ClassLabel, Dataset, Features
from safetensors.torch import load_file, save_file

from hf_rtp import AddressableMemory, AddressableMemoryConfig, CheckpointError
from hf_rtp.cli import main
from hf_rtp.data import ImageClassificationData, load_image_dataset
from hf_rtp.distill import Distiller, NonFiniteError
from hf_rtp.pipeline import distill_memory
from hf_rtp.run_dir import RunDirectory, RunLockedError
from tests.helpers import TINY_CLI, assert_same, fresh_memory, state, tiny

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    return load_image_dataset("digits")


def all_finite(folder: Path) -> bool:
    return all(bool(torch.isfinite(t).all()) for f in folder.rglob("*.safetensors") for t in load_file(f).values())


# ---- poisoned results ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings, cause", [(dict(optimizer="adam", lr=1e30), r"lr=1e\+30"),
                                             (dict(inner_lr=1e8), r"inner_lr=100000000\.0")])
def test_divergence_stops_at_its_step_and_saves_nothing_non_finite(digits, tmp_path, settings, cause):
    config = tiny(tmp_path, steps=6, checkpoint_every=1, eval_every=0, **settings)
    with pytest.raises(NonFiniteError, match=rf"step (\d+): .*Nothing of this step was applied or saved.*{cause}") as error:
        distill_memory(config, fresh_memory(digits), digits)
    step = int(error.value.args[0].split(":")[0].split()[1])
    run = RunDirectory(tmp_path)
    assert all_finite(tmp_path) and not run.memory_path.exists()
    # the last good checkpoint is the step before, and it is what --resume continues from
    assert [int(p.name[5:]) for p in run.checkpoints()][-1] == step - 1 if step > 1 else run.checkpoints() == []
    assert not run.lock_path.exists()  # the lock goes with the run, even when it fails


def test_nan_pixels_are_refused_at_load_naming_split_and_count(tmp_path):
    images = np.random.default_rng(0).random((6, 1, 4, 4)).astype(np.float32)
    images[1, 0, 2, 2] = np.nan
    images[4, 0, 0, 0] = np.inf
    features = Features({"image": Array3D(shape=(1, 4, 4), dtype="float32"), "label": ClassLabel(names=["a", "b"])})
    Dataset.from_dict({"image": images, "label": [0, 1] * 3}, features=features).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ValueError, match=r"bad:train has 2 image\(s\) with NaN or infinite pixels"):
        load_image_dataset(str(tmp_path / "bad"), mean=[0.0], std=[1.0])


def test_nan_pixels_handed_to_the_distiller_are_refused(digits, tmp_path):
    images = digits.images.clone()
    images[7, 0, 3, 3] = float("nan")
    poisoned = ImageClassificationData(images, digits.labels, digits.class_names, digits.mean, digits.std, "digits", "train")
    with pytest.raises(ValueError, match=r"digits:train has 1 image\(s\) with NaN .*rows \[7\]"):
        Distiller(tiny(tmp_path), fresh_memory(digits), poisoned)


def test_resume_refuses_a_non_finite_checkpoint(digits, tmp_path):
    distill_memory(tiny(tmp_path, steps=2, checkpoint_every=1), fresh_memory(digits), digits)
    newest = RunDirectory(tmp_path).checkpoints()[-1] / "memory.safetensors"
    tensors = load_file(newest)
    tensors["bases"][0, 0, 0, 0] = float("nan")
    save_file(tensors, newest)
    with pytest.warns(UserWarning, match=r"skipped a broken newer checkpoint: step-0000002: its memory has non-finite values in \['bases'\]"):
        distiller = Distiller(tiny(tmp_path, steps=3, checkpoint_every=1, resume=True), fresh_memory(digits), digits)
        distiller.prepare()
    assert distiller.step == 1
    distiller._release()


def test_memory_files_with_non_finite_or_integer_tensors_are_refused(tmp_path):
    cfg = AddressableMemoryConfig.for_budget((1, 8, 8), ["a", "b"], ipc=2, num_bases=2, mean=[0.0], std=[1.0])
    memory = AddressableMemory(cfg)
    memory.save_pretrained(tmp_path / "good")
    tensors = load_file(tmp_path / "good" / "model.safetensors")
    for name, change, message in (("nan", lambda t: t["addressing"].view(-1).__setitem__(3, float("inf")),
                                   r"tensor 'addressing' has non-finite values"),
                                  ("int", lambda t: t.__setitem__("bases", t["bases"].round().long()),
                                   r"tensor 'bases' holds I64 values, not floats")):
        broken = {k: v.clone() for k, v in tensors.items()}
        change(broken)
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text((tmp_path / "good" / "config.json").read_text())
        save_file(broken, tmp_path / name / "model.safetensors")
        with pytest.raises(CheckpointError, match=message):
            AddressableMemory.from_pretrained(tmp_path / name)
    with torch.no_grad():
        memory.bases[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite values .* in \['bases'\]"):
        memory.save_pretrained(tmp_path / "never")
    assert not (tmp_path / "never" / "model.safetensors").exists()


def test_non_finite_queries_and_non_integer_class_ids_are_errors():
    cfg = AddressableMemoryConfig.for_budget((1, 8, 8), ["a", "b", "c"], ipc=2, num_bases=2, mean=[0.0], std=[1.0])
    memory = AddressableMemory(cfg)
    with pytest.raises(ValueError, match="queries must be finite"):
        memory(queries=torch.tensor([[0.5, float("nan"), 0.0]]))
    for bad in ([1.7], [True], [np.float32(1.0)]):
        with pytest.raises(ValueError, match="class names or integer ids"):
            memory.recall(classes=bad)
    assert memory.recall(classes=[np.int64(1), "c"]).features["label"].names == ["b", "c"]


# ---- runs that mix or vanish -------------------------------------------------------------------------------------


HOLDER = """
import sys
from hf_rtp.run_dir import RunDirectory
RunDirectory(sys.argv[1]).acquire()
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes stdin or kills this process
"""


def test_a_second_run_in_the_same_output_dir_is_refused_and_a_killed_runs_lock_is_taken_over(digits, tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"in use by process {holder.pid}"):
            distill_memory(tiny(tmp_path, steps=1), fresh_memory(digits), digits)
        with pytest.raises(SystemExit) as exit:  # the CLI says so before loading any data
            main(["distill", "--output-dir", str(tmp_path), "--dataset", str(tmp_path / "no-such-data"), *TINY_CLI])
        assert exit.value.code == 2 and f"in use by process {holder.pid}" in capsys.readouterr().err
        assert not (tmp_path / "metrics.jsonl").exists()  # nothing of the refused run was written
    finally:
        holder.kill()  # kill -9: its lock stays behind, stale
        holder.wait()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid
    with pytest.warns(UserWarning, match=rf"taking over the lock .* from process {holder.pid}, which no longer runs"):
        distill_memory(tiny(tmp_path, steps=1, eval_every=0), fresh_memory(digits), digits)
    assert not (tmp_path / ".lock").exists()


def test_an_empty_lock_is_live_while_fresh_and_stale_once_old(tmp_path):
    """Its owner created it (O_EXCL) but has not written its id yet: a second run must not take it over then, or two
    runs that start microseconds apart would both run here. A run killed in that instant leaves it empty for good."""
    run = RunDirectory(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / ".lock").write_text("")
    with pytest.raises(RunLockedError, match="being locked by another run at this moment"):
        run.acquire()
    old = os.path.getmtime(tmp_path / ".lock") - 60
    os.utime(tmp_path / ".lock", (old, old))
    with pytest.warns(UserWarning, match="taking over the lock"):
        run.acquire()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    run.release()


def test_resume_with_nothing_to_resume_is_an_error(digits, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="nothing to resume in"):
        distill_memory(tiny(tmp_path / "empty", resume=True), fresh_memory(digits), digits)
    with pytest.raises(SystemExit) as exit:
        main(["distill", "--resume", "--output-dir", str(tmp_path / "missing")])
    assert exit.value.code == 2 and "nothing to resume in" in capsys.readouterr().err


def test_resume_on_other_data_of_the_same_shape_is_refused(digits, tmp_path):
    distill_memory(tiny(tmp_path, steps=2), fresh_memory(digits), digits)
    shuffled = ImageClassificationData(digits.images, digits.labels.roll(1), digits.class_names, digits.mean, digits.std,
                                       "digits", "train")
    with pytest.raises(ValueError, match=r"was distilled from other data \(labels: "):
        distill_memory(tiny(tmp_path, steps=4, resume=True), fresh_memory(digits), shuffled)


def test_broken_checkpoints_fall_back_to_the_newest_intact_one(digits, tmp_path):
    whole = distill_memory(tiny(tmp_path / "whole", steps=4, checkpoint_every=1, keep_checkpoints=4), fresh_memory(digits), digits)
    part = tmp_path / "part"
    distill_memory(tiny(part, steps=3, checkpoint_every=1, keep_checkpoints=4), fresh_memory(digits), digits)
    run = RunDirectory(part)
    # a truncated newest file: resume from step 2 with a warning naming it, and end equal to the uninterrupted run
    newest = run.checkpoints()[-1] / "memory.safetensors"
    newest.write_bytes(newest.read_bytes()[:50])
    with pytest.warns(UserWarning, match=r"resuming from step-0000002; skipped a broken newer checkpoint: step-0000003"):
        resumed = distill_memory(tiny(part, steps=4, checkpoint_every=1, keep_checkpoints=4, resume=True), fresh_memory(digits), digits)
    assert_same(state(whole), state(resumed))
    assert load_file(newest)  # the broken step was written again by the resumed run
    # `latest` naming a missing folder, and a complete folder it does not point to yet: the newest complete one is used
    (run.checkpoint_root / "latest").write_text("step-0000009")
    (run.checkpoint_root / "step-0000004" / "state.json").write_text("{broken")
    with pytest.warns(UserWarning, match=r"resuming from step-0000003; .*`latest` names step-0000009, which does not exist; "
                                         r"step-0000004: Expecting"):
        checkpoint = run.load_checkpoint()
    assert checkpoint.folder.name == "step-0000003" and checkpoint.state["step"] == 3


def test_a_resume_before_the_first_checkpoint_says_it_starts_from_step_zero(digits, tmp_path):
    run = RunDirectory(tmp_path)
    distill_memory(tiny(tmp_path, steps=1, checkpoint_every=0), fresh_memory(digits), digits)
    for folder in run.checkpoints():  # as if killed before the first checkpoint
        import shutil

        shutil.rmtree(folder)
    (run.checkpoint_root / "latest").unlink()
    with pytest.warns(UserWarning, match="no checkpoint yet .* resuming from step 0"):
        distill_memory(tiny(tmp_path, steps=1, resume=True), fresh_memory(digits), digits)


def test_a_full_disk_names_the_folder_and_keeps_the_previous_checkpoint(digits, tmp_path, monkeypatch):
    import hf_rtp.run_dir as run_dir

    distiller = Distiller(tiny(tmp_path, steps=2, checkpoint_every=1), fresh_memory(digits), digits)
    real_save = run_dir.save_file
    calls = {"n": 0}

    def fills_up(tensors, path):
        calls["n"] += 1
        if calls["n"] > 2:  # step 1's memory and best are written; step 2's memory meets a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(tensors, path)

    monkeypatch.setattr(run_dir, "save_file", fills_up)
    with pytest.raises(OSError, match=r"no space left on device while writing checkpoint step-0000002 in .*checkpoints "
                                      r"\(the previous checkpoint step-0000001 is intact\)"):
        distiller.train()
    run = RunDirectory(tmp_path)
    assert [p.name for p in run.checkpoints()] == ["step-0000001"] and run.latest().name == "step-0000001"
    assert not list(run.checkpoint_root.glob(".*.tmp"))


# ---- errors a person can act on ------------------------------------------------------------------------------------


@pytest.mark.parametrize("option, message", [
    (["--ipc", "-1"], "ipc must be positive"),
    (["--unroll-steps", "0"], "unroll_steps must be >= 1"),
    (["--downsample", "0"], "downsample must be >= 1"),
    (["--zca", "abc"], "zca must be a positive regulariser or `off`, got 'abc'"),
    (["--max-minutes", "-1"], "max_minutes must be positive"),
])
def test_bad_options_are_one_line_before_any_data_loads(option, message, tmp_path, capsys):
    # the dataset does not exist: an error about the option proves it was checked first
    with pytest.raises(SystemExit) as exit:
        main(["distill", "--dataset", str(tmp_path / "no-such-data"), "--output-dir", str(tmp_path / "out"), *option])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.startswith(f"hf-rtp: error: {message}") and err.count("\n") == 1, err


def test_an_output_dir_that_is_a_file_is_named(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        main(["distill", "--dataset", str(tmp_path / "no-such-data"), "--output-dir", str(tmp_path / "file" / "run")])
    assert "is a file, not a folder" in capsys.readouterr().err


def image_folder(root: Path, classes: dict[str, int], size=8, mode="L") -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                shape = (size, size) if mode == "L" else (size, size, 3)
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / split / name / f"{i}.png")
    return root


def test_faults_in_the_data_are_named(tmp_path, digits):
    zeros = digits.labels == 0
    one = ImageClassificationData(digits.images[zeros], digits.labels[zeros], ["0"], digits.mean, digits.std, "zeros", "train")
    with pytest.raises(ValueError, match=r"zeros has a single class \(\['0'\]\)"):
        Distiller(tiny(tmp_path / "r1"), AddressableMemory.for_dataset(one, ipc=1, num_bases=2), one)
    data = load_image_dataset(str(image_folder(tmp_path / "few", {"a": 1, "b": 1})))
    with pytest.raises(ValueError, match=r"too few images \(2\) for a validation split"):
        Distiller(tiny(tmp_path / "r2"), AddressableMemory.for_dataset(data, ipc=1, num_bases=2), data)
    corrupt = image_folder(tmp_path / "corrupt", {"a": 3, "b": 3})
    (corrupt / "train" / "b" / "1.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"image .*b/1\.png .* cannot be read"):
        load_image_dataset(str(corrupt))


def test_a_grayscale_memory_on_rgb_data_says_so(tmp_path):
    image_folder(tmp_path / "rgb", {"a": 2, "b": 2}, mode="RGB")
    with pytest.raises(ValueError, match=r"has RGB images but the normalisation given is for grayscale ones"):
        load_image_dataset(str(tmp_path / "rgb"), mean=[0.5], std=[0.2])


def test_configs_and_paths_that_do_not_describe_a_memory_are_named(tmp_path):
    cfg = AddressableMemoryConfig.for_budget((3, 8, 8), ["a", "b"], ipc=2, num_bases=2, mean=[0.5] * 3, std=[0.2] * 3)
    AddressableMemory(cfg).save_pretrained(tmp_path / "m")
    for key in ("image_shape", "mean"):
        stated = json.loads((tmp_path / "m" / "config.json").read_text())
        del stated[key]
        (tmp_path / key).mkdir()
        (tmp_path / key / "config.json").write_text(json.dumps(stated))
        (tmp_path / key / "model.safetensors").write_bytes((tmp_path / "m" / "model.safetensors").read_bytes())
        with pytest.raises(CheckpointError, match=rf"does not state \['{key}'\]"):
            AddressableMemory.from_pretrained(tmp_path / key)
    with pytest.raises(CheckpointError, match="no such folder"):
        AddressableMemory.from_pretrained(str(tmp_path / "nothing" / "here"))
    with pytest.raises(CheckpointError, match="there is no folder outputs/mnist here"):
        AddressableMemory.from_pretrained("outputs/mnist")


def test_kill_minus_nine_mid_write_then_resume_is_bit_identical(tmp_path):
    """The bounded version of bench/faults.py: real processes killed by SIGKILL at a rename (checkpoint folder or
    `latest` pointer) and during the final save, each resumed and compared with an uninterrupted run bit for bit."""
    output = tmp_path / "faults.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "faults.py"), "--kills", "2", "--kinds", "rename", "final_save",
                           "--seed", "3", "--output", str(output)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    record = json.loads(output.read_text())
    assert record["killed"] == 2 and record["bit_identical"] == 2
    assert record["max_steps_lost"] <= record["checkpoint_every"]
    assert [r["how"] for r in record["rows"]] == ["rename", "final_save"]
