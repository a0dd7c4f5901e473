"""The outer loop: reproducibility, exact resume, atomic checkpoints, best-by-validation, metrics."""

import json

import pytest
import torch

from hf_rtp import AddressableMemory, AddressableMemoryConfig
from hf_rtp.data import load_image_dataset
from hf_rtp.distill import DistillConfig, Distiller
from hf_rtp.pipeline import distill_memory
from tests.helpers import assert_same, fresh_memory, state, tiny


@pytest.fixture(scope="module")
def digits():
    return load_image_dataset("digits")


def test_same_seed_gives_the_same_memory_bit_for_bit(digits, tmp_path):
    first = distill_memory(tiny(tmp_path / "a"), fresh_memory(digits), digits)
    second = distill_memory(tiny(tmp_path / "b"), fresh_memory(digits), digits)
    assert_same(state(first), state(second))
    third = distill_memory(tiny(tmp_path / "c", seed=1), fresh_memory(digits), digits)
    assert not torch.equal(state(first)["bases"], state(third)["bases"])


def test_training_moves_the_memory_and_lowers_the_outer_loss(digits, tmp_path):
    start = fresh_memory(digits)
    before = state(start)
    config = tiny(tmp_path, steps=30, eval_every=0, checkpoint_every=0, unroll_steps=10, learner_width=16)
    distill_memory(config, start, digits)
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
    whole = distill_memory(tiny(tmp_path / "whole"), fresh_memory(digits), digits)
    with pytest.raises(Crash):
        CrashingDistiller(tiny(tmp_path / "killed"), fresh_memory(digits), digits).train()
    assert (tmp_path / "killed" / "checkpoints" / "latest").read_text() == "step-0000004"
    # resume from a memory initialised differently: everything must come from the checkpoint
    resumed = distill_memory(tiny(tmp_path / "killed", resume=True), fresh_memory(digits, seed=9), digits)
    assert_same(state(whole), state(resumed))
    assert whole.config.distillation["best_step"] == resumed.config.distillation["best_step"]
    steps = [json.loads(l)["step"] for l in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps == [json.loads(l)["step"] for l in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]


def test_resume_can_extend_a_finished_run(digits, tmp_path):
    whole = distill_memory(tiny(tmp_path / "whole", steps=6), fresh_memory(digits), digits)
    distill_memory(tiny(tmp_path / "part", steps=4), fresh_memory(digits), digits)
    extended = distill_memory(tiny(tmp_path / "part", steps=6, resume=True), fresh_memory(digits), digits)
    assert_same(state(whole), state(extended))


def test_half_written_checkpoint_is_ignored(digits, tmp_path):
    distill_memory(tiny(tmp_path, steps=4), fresh_memory(digits), digits)
    root = tmp_path / "checkpoints"
    (root / ".step-0000006.tmp").mkdir()  # a write that was killed before its rename
    (root / ".step-0000006.tmp" / "memory.safetensors").write_bytes(b"partial")
    distiller = Distiller(tiny(tmp_path, steps=4, resume=True), fresh_memory(digits, seed=3), digits)
    assert distiller.load_checkpoint() and distiller.step == 4
    assert sorted(p.name for p in root.glob("step-*")) == ["step-0000002", "step-0000004"]


def test_resume_refuses_different_settings_or_layout(digits, tmp_path):
    distill_memory(tiny(tmp_path, steps=2), fresh_memory(digits), digits)
    with pytest.raises(ValueError, match="unroll_steps"):
        distill_memory(tiny(tmp_path, steps=4, resume=True, unroll_steps=5), fresh_memory(digits), digits)
    with pytest.raises(ValueError, match="different memory layout"):
        distill_memory(tiny(tmp_path, steps=4, resume=True), fresh_memory(digits, num_bases=4), digits)


def test_best_by_validation_is_what_is_returned_and_saved(digits, tmp_path):
    memory = distill_memory(tiny(tmp_path, steps=6, eval_every=1), fresh_memory(digits), digits)
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
    distill_memory(tiny(tmp_path, steps=2, eval_every=0), memory, digits)
    assert not torch.equal(before, memory.bases.detach())


def test_a_truncated_window_changes_what_is_learned(digits, tmp_path):
    """The window reaches the unroll: differentiating the last 2 of 4 steps gives another memory than full BPTT."""
    memories = []
    for i, extra in enumerate([dict(), dict(window=2), dict(window=4)]):
        distiller = Distiller(tiny(tmp_path / str(i), steps=2, eval_every=0, **extra), fresh_memory(digits), digits)
        distiller.meta_step()
        distiller.meta_step()
        memories.append(state(distiller.memory))
    assert not torch.equal(memories[0]["bases"], memories[1]["bases"])
    assert_same(memories[0], memories[2])  # a window of all T steps is full BPTT


def test_a_random_window_ends_each_unroll_at_a_drawn_step_in_w_to_t(digits, tmp_path):
    """random_window: one outer step with T=4, W=2 equals, bit for bit, the step of a fixed run of L inner steps (same
    seed, same W) for exactly one L, always in [W, T], and L varies with the unroll's seed over all of W..T. With
    random_window ignored every step would be the T one; drawn from [1, T], some would match only L=1."""
    T, W = 4, 2

    def one_step(seed, **settings):
        # r = 1 image per query (24 bases): the inner steps' picks are the same whatever the generator drew last,
        # so a run of L steps does exactly what a random window that ends at L does
        memory = fresh_memory(digits, num_bases=24)
        assert memory.config.images_per_query == 1
        config = tiny(tmp_path / f"{seed}-{settings}", steps=1, eval_every=0, checkpoint_every=0, seed=seed,
                      optimizer="sgd", window=W, **settings)
        Distiller(config, memory, digits).meta_step()
        return memory.bases.detach().clone()

    drawn = []
    for seed in range(16):
        random = one_step(seed, unroll_steps=T, random_window=True)
        matches = [length for length in range(1, T + 1) if torch.equal(one_step(seed, unroll_steps=length), random)]
        assert len(matches) == 1, (seed, matches)
        drawn.append(matches[0])
    assert set(drawn) == set(range(W, T + 1)), drawn


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(steps=-1), "steps"), (dict(optimizer="lbfgs"), "optimizer"), (dict(random_window=True), "random_window needs a window"),
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
    whole = distill_memory(tiny(tmp_path / "whole", steps=6), fresh_memory(digits), digits)
    stopped = distill_memory(tiny(tmp_path / "part", steps=3), fresh_memory(digits), digits)
    assert stopped.config.distillation["outer_steps"] == 3
    resumed = distill_memory(tiny(tmp_path / "part", steps=6, resume=True), fresh_memory(digits), digits)
    assert_same(state(whole), state(resumed))
    def log(folder):  # the metrics without the clock
        return [{k: v for k, v in json.loads(l).items() if k != "seconds"} for l in (tmp_path / folder / "metrics.jsonl").read_text().splitlines()]

    assert log("part") == log("whole")


def test_an_earlier_run_in_the_output_dir_is_not_mixed_in(digits, tmp_path):
    distill_memory(tiny(tmp_path, steps=6, checkpoint_every=2), fresh_memory(digits), digits)
    with pytest.raises(FileExistsError, match="--resume.*--overwrite-output-dir"):
        distill_memory(tiny(tmp_path, steps=2), fresh_memory(digits), digits)
    distill_memory(tiny(tmp_path, steps=2, overwrite_output_dir=True), fresh_memory(digits), digits)
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
