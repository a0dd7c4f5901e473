"""The outer loop: reproducibility, exact resume, atomic checkpoints, best-by-validation, metrics."""

import json

import pytest
import torch

from hf_rtp import AddressableMemory, AddressableMemoryConfig
from hf_rtp.data import load_image_dataset
from hf_rtp.distill import DistillConfig, Distiller
from tests.helpers import assert_same, fresh_memory, state, tiny


@pytest.fixture(scope="module")
def digits():
    return load_image_dataset("digits")


def test_same_seed_gives_the_same_memory_bit_for_bit(digits, tmp_path):
    first = Distiller(tiny(tmp_path / "a"), fresh_memory(digits), digits).train()
    second = Distiller(tiny(tmp_path / "b"), fresh_memory(digits), digits).train()
    assert_same(state(first), state(second))
    third = Distiller(tiny(tmp_path / "c", seed=1), fresh_memory(digits), digits).train()
    assert not torch.equal(state(first)["bases"], state(third)["bases"])


def test_training_moves_the_memory_and_lowers_the_outer_loss(digits, tmp_path):
    start = fresh_memory(digits)
    before = state(start)
    config = tiny(tmp_path, steps=30, eval_every=0, checkpoint_every=0, unroll_steps=10, learner_width=16)
    Distiller(config, start, digits).train()
    assert not torch.equal(before["bases"], start.bases.detach())
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [l["loss"] for l in lines if "loss" in l]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5


class Crash(Exception):
    pass


class CrashingDistiller(Distiller):
    """Dies in the middle of outer step `crash_at`, as a killed process would."""

    crash_at = 5

    def meta_step(self):
        if self.step + 1 == self.crash_at:
            raise Crash
        return super().meta_step()


def test_a_killed_run_resumes_to_the_same_final_memory(digits, tmp_path):
    whole = Distiller(tiny(tmp_path / "whole"), fresh_memory(digits), digits).train()
    with pytest.raises(Crash):
        CrashingDistiller(tiny(tmp_path / "killed"), fresh_memory(digits), digits).train()
    assert (tmp_path / "killed" / "checkpoints" / "latest").read_text() == "step-0000004"
    # resume from a memory initialised differently: everything must come from the checkpoint
    resumed = Distiller(tiny(tmp_path / "killed", resume=True), fresh_memory(digits, seed=9), digits).train()
    assert_same(state(whole), state(resumed))
    assert whole.config.distillation["best_step"] == resumed.config.distillation["best_step"]
    steps = [json.loads(l)["step"] for l in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps == [json.loads(l)["step"] for l in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]


def test_resume_can_extend_a_finished_run(digits, tmp_path):
    whole = Distiller(tiny(tmp_path / "whole", steps=6), fresh_memory(digits), digits).train()
    Distiller(tiny(tmp_path / "part", steps=4), fresh_memory(digits), digits).train()
    extended = Distiller(tiny(tmp_path / "part", steps=6, resume=True), fresh_memory(digits), digits).train()
    assert_same(state(whole), state(extended))


def test_half_written_checkpoint_is_ignored(digits, tmp_path):
    Distiller(tiny(tmp_path, steps=4), fresh_memory(digits), digits).train()
    root = tmp_path / "checkpoints"
    (root / ".step-0000006.tmp").mkdir()  # a write that was killed before its rename
    (root / ".step-0000006.tmp" / "memory.safetensors").write_bytes(b"partial")
    distiller = Distiller(tiny(tmp_path, steps=4, resume=True), fresh_memory(digits, seed=3), digits)
    assert distiller.load_checkpoint() and distiller.step == 4
    assert sorted(p.name for p in root.glob("step-*")) == ["step-0000002", "step-0000004"]


def test_resume_refuses_different_settings_or_layout(digits, tmp_path):
    Distiller(tiny(tmp_path, steps=2), fresh_memory(digits), digits).train()
    with pytest.raises(ValueError, match="unroll_steps"):
        Distiller(tiny(tmp_path, steps=4, resume=True, unroll_steps=5), fresh_memory(digits), digits).train()
    with pytest.raises(ValueError, match="different memory layout"):
        Distiller(tiny(tmp_path, steps=4, resume=True), fresh_memory(digits, num_bases=4), digits).train()


def test_best_by_validation_is_what_is_returned_and_saved(digits, tmp_path):
    memory = Distiller(tiny(tmp_path, steps=6, eval_every=1), fresh_memory(digits), digits).train()
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    scores = {l["step"]: l["val_accuracy"] for l in lines if "val_accuracy" in l}
    assert sorted(scores) == [1, 2, 3, 4, 5, 6]
    best_step = max(scores, key=lambda s: (scores[s], -s))
    assert memory.config.distillation["best_step"] == best_step
    assert memory.config.distillation["val_accuracy"] == round(scores[best_step], 4)
    saved = AddressableMemory.from_pretrained(tmp_path / "memory")
    assert_same(state(saved), state(memory))
    assert saved.config.distillation["best_step"] == best_step


def test_per_class_memory_trains_through_the_same_loop(digits, tmp_path):
    memory = fresh_memory(digits, addressing="one_hot", downsample=1)
    assert memory.config.images_per_query == 1
    before = memory.bases.detach().clone()
    Distiller(tiny(tmp_path, steps=2, eval_every=0), memory, digits).train()
    assert not torch.equal(before, memory.bases.detach())


def test_truncated_and_random_windows_change_what_is_learned(digits, tmp_path):
    """Each option reaches the unroll: a window, and a random end for it, each give another memory than full BPTT."""
    memories = [state(Distiller(tiny(tmp_path / str(i), steps=2, eval_every=0, **extra), fresh_memory(digits), digits).train())
                for i, extra in enumerate([dict(), dict(window=2), dict(window=2, random_window=True)])]
    assert not torch.equal(memories[0]["bases"], memories[1]["bases"])
    assert not torch.equal(memories[1]["bases"], memories[2]["bases"])


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(steps=0), "steps"), (dict(optimizer="lbfgs"), "optimizer"), (dict(random_window=True), "random_window needs a window"),
     (dict(window=0), "window"), (dict(unroll_steps=0), "unroll_steps")],
)
def test_bad_distill_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DistillConfig(**kwargs)


def test_dataset_and_memory_must_agree(digits, tmp_path):
    other = AddressableMemory(AddressableMemoryConfig(image_shape=[1, 16, 16], class_names=digits.class_names, mean=[0.0], std=[1.0]))
    with pytest.raises(ValueError, match=r"images \(1, 8, 8\) vs the memory's \(1, 16, 16\)"):
        Distiller(tiny(tmp_path), other, digits)
    other = AddressableMemory(AddressableMemoryConfig(image_shape=[1, 8, 8], class_names=["a", "b"], mean=[0.0], std=[1.0]))
    with pytest.raises(ValueError, match=r"classes \['0', '1', '2', '3'\]\.\.\. vs the memory's \['a', 'b'\]"):
        Distiller(tiny(tmp_path), other, digits)


def test_a_stop_off_the_validation_schedule_does_not_change_the_resumed_run(digits, tmp_path):
    """Stopping at step 3 validates there (off the every-2 schedule); resuming to 6 must still equal a 6-step run."""
    whole = Distiller(tiny(tmp_path / "whole", steps=6), fresh_memory(digits), digits).train()
    stopped = Distiller(tiny(tmp_path / "part", steps=3), fresh_memory(digits), digits).train()
    assert stopped.config.distillation["outer_steps"] == 3
    resumed = Distiller(tiny(tmp_path / "part", steps=6, resume=True), fresh_memory(digits), digits).train()
    assert_same(state(whole), state(resumed))
    def log(folder):  # the metrics without the clock
        return [{k: v for k, v in json.loads(l).items() if k != "seconds"} for l in (tmp_path / folder / "metrics.jsonl").read_text().splitlines()]

    assert log("part") == log("whole")


def test_an_earlier_run_in_the_output_dir_is_not_mixed_in(digits, tmp_path):
    Distiller(tiny(tmp_path, steps=6, checkpoint_every=2), fresh_memory(digits), digits).train()
    with pytest.raises(FileExistsError, match="--resume.*--overwrite-output-dir"):
        Distiller(tiny(tmp_path, steps=2), fresh_memory(digits), digits).train()
    Distiller(tiny(tmp_path, steps=2, overwrite_output_dir=True), fresh_memory(digits), digits).train()
    root = tmp_path / "checkpoints"
    assert (root / "latest").read_text() == "step-0000002"  # not pruned in favour of the old run's step 6
    assert sorted(p.name for p in root.glob("step-*")) == ["step-0000002"]
    resumed = Distiller(tiny(tmp_path, steps=2, resume=True), fresh_memory(digits, seed=5), digits)
    assert resumed.load_checkpoint() and resumed.step == 2


def test_saving_the_same_step_again_keeps_a_valid_latest(digits, tmp_path):
    distiller = Distiller(tiny(tmp_path, steps=2, checkpoint_every=2), fresh_memory(digits), digits)
    distiller.train()  # saves step 2 in the loop, then again at the end
    latest = tmp_path / "checkpoints" / (tmp_path / "checkpoints" / "latest").read_text()
    assert (latest / "state.json").exists()
    distiller.save_checkpoint()
    assert (latest / "state.json").exists()


def test_memory_from_another_space_is_refused(digits, tmp_path):
    cfg = AddressableMemoryConfig.for_budget(digits.image_shape, digits.class_names, ipc=1, num_bases=8)  # mean 0, std 1
    with pytest.raises(ValueError, match="normalisation.*for_dataset"):
        Distiller(tiny(tmp_path), AddressableMemory(cfg), digits)
    cfg = AddressableMemoryConfig.for_budget(digits.image_shape, [f"c{i}" for i in range(10)], ipc=1, num_bases=8,
                                             mean=digits.mean, std=digits.std)
    with pytest.raises(ValueError, match="classes"):
        Distiller(tiny(tmp_path), AddressableMemory(cfg), digits)


@pytest.mark.parametrize("kwargs, message", [(dict(classes_per_step=0), "classes_per_step"), (dict(keep_checkpoints=0), "keep_checkpoints"),
                                             (dict(eval_every=-1), "eval_every"), (dict(seed=-1), "seed"),
                                             (dict(clip_grad_norm=0.0), "clip_grad_norm"), (dict(validation_fraction=1.0), "validation_fraction")])
def test_more_bad_distill_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DistillConfig(**kwargs)
