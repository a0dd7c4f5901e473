"""Task streams and continual learners: determinism, sizes, the single pass, and the buffer's accounting."""

import pytest
import torch

from hf_rtp.continual import Permutation, Rotation, StreamConfig, build_stream, task_accuracy
from hf_rtp.continual import (
    BufferOverflow,
    ContinualConfig,
    ContinualMethod,
    Replay,
    make_method,
    run_stream,
)
from hf_rtp.configuration_memory import BudgetError
from hf_rtp.data import DIGITS, load_train_test
from tests.test_data import write_hub_like_repo


@pytest.fixture(scope="module")
def digits():
    return load_train_test(DIGITS, zca=False)


def stream_of(digits, **kwargs):
    kwargs = {"stream": "rotations", "tasks": 3, "samples_per_task": 60, "test_per_task": 80, **kwargs}
    return build_stream(StreamConfig(**kwargs), *digits)


def test_streams_are_deterministic_from_their_seed(digits):
    for kind in ("rotations", "permutations"):
        a, b, other = stream_of(digits, stream=kind), stream_of(digits, stream=kind), stream_of(digits, stream=kind, seed=1)
        for ta, tb in zip(a.tasks, b.tasks):
            assert torch.equal(ta.train.images, tb.train.images) and torch.equal(ta.test().images, tb.test().images)
        assert not torch.equal(a.tasks[0].train.images, other.tasks[0].train.images)


def test_task_sizes_disjoint_samples_and_rotation_angles(digits):
    stream = stream_of(digits, tasks=4, samples_per_task=50)
    assert [len(t.train) for t in stream.tasks] == [50] * 4 and [len(t.test()) for t in stream.tasks] == [80] * 4
    angles = [t.transform.degrees for t in stream.tasks]
    assert all(45 * i <= a < 45 * (i + 1) for i, a in enumerate(angles))  # one angle per slice of 0-180 degrees
    with pytest.raises(ValueError, match="need 2000 training images"):
        stream_of(digits, tasks=4, samples_per_task=500)


def test_transforms_rotate_and_permute_the_pixels(digits):
    train, _ = digits
    x = train.images[:4]
    quarter = Rotation(90, train.mean, train.std)(x)
    assert torch.allclose(quarter, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)
    background = (0 - train.mean[0]) / train.std[0]
    corners = Rotation(45, train.mean, train.std)(torch.full_like(x, 5.0))[:, :, 0, 0]
    assert torch.allclose(corners, torch.full_like(corners, background))  # filled with pixel 0, not with 0.0
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    shuffled = Permutation(order)(x)
    assert torch.equal(shuffled.flatten(2), x.flatten(2)[:, :, order])
    assert torch.equal(shuffled.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


class Recorder(ContinualMethod):
    """Records what the stream shows it; holds nothing."""

    def __init__(self, config, stream, buffer_floats):
        super().__init__(config, stream, buffer_floats)
        self.seen, self.net = [], torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

    def observe(self, images, labels):
        self.seen.append(images.clone())

    def classifier(self):
        return self.net


def test_every_training_image_is_shown_once_in_minibatches_of_ten(digits):
    stream = stream_of(digits, samples_per_task=55)
    method = Recorder(ContinualConfig(method="online"), stream, 1)
    run_stream(method, stream)
    assert [len(b) for b in method.seen] == ([10] * 5 + [5]) * 3
    assert torch.equal(torch.cat(method.seen), torch.cat([t.train.images for t in stream.tasks]))


@pytest.mark.parametrize("method", ["online", "replay", "ewc", "compress-then-recall"])
def test_no_method_holds_more_than_its_buffer(digits, method):
    stream = stream_of(digits, stream="permutations")
    buffer = 30 * stream.image_floats
    config = ContinualConfig(method=method, buffer_floats=buffer, inner_steps=5, final_steps=3, retrain_epochs=5)
    learner = make_method(config, stream)
    result = run_stream(learner, stream)
    assert result["max_stored_floats"] <= buffer and result["buffer_floats"] == buffer
    # each task's accuracy is the final classifier's on the task's test set, counted here; RA is their mean
    net = learner.classifier()
    with torch.no_grad():
        counted = [float((net(t.test().images).argmax(1) == t.test().labels).float().mean()) for t in stream.tasks]
    assert result["accuracy"] == pytest.approx(counted, abs=1e-6)
    assert result["retained_accuracy"] == pytest.approx(sum(counted) / 3, abs=1e-6)
    if "backward_transfer" in result:  # of these final accuracies (the formula: test_continual_metrics.py)
        from hf_rtp.continual import backward_transfer

        assert result["backward_transfer"] == pytest.approx(backward_transfer(counted, result["just_learned"]), abs=1e-6)
    # what each holds: nothing for the two without a buffer (EWC's Fisher and anchor are state, reported apart),
    # the whole buffer for replay's reservoir, a part of it for the memories (and the raw images of a task)
    weights = sum(p.numel() for p in net.parameters())
    if method in ("online", "ewc"):
        assert result["max_stored_floats"] == 0
        assert result["state_floats"] == (2 * weights if method == "ewc" else 0)
    if method == "replay":
        assert result["max_stored_floats"] == buffer  # the reservoir fills the whole buffer
    if method == "compress-then-recall":
        assert result["max_stored_floats"] >= sum(result["memory_floats"]) > 0  # the memories were counted
        assert all(f <= buffer // 3 for f in result["memory_floats"])  # each task's memory: 1/T of the buffer
        assert len(result["minutes_per_task"]) == 3 and "backward_transfer" not in result
    else:
        assert len(result["just_learned"]) == 3 and "backward_transfer" in result


def test_a_buffer_too_small_for_a_memory_is_refused_before_the_stream(digits):
    stream = stream_of(digits)
    with pytest.raises(BudgetError, match="buffer \\(300 / 3 = 100 floats\\) holds no memory of 4 bases"):
        make_method(ContinualConfig(buffer_floats=300), stream)


def test_a_method_that_holds_too_much_is_stopped(digits):
    stream = stream_of(digits)

    class Greedy(Replay):  # a reservoir one image larger than the buffer it was given
        def __init__(self, config, stream, buffer_floats):
            super().__init__(config, stream, buffer_floats + stream.image_floats)
            self.buffer_floats = buffer_floats

    with pytest.raises(BufferOverflow, match="over its buffer of 640"):
        run_stream(Greedy(ContinualConfig(method="replay"), stream, 10 * stream.image_floats), stream)


def test_compress_then_recall_keeps_each_task_as_a_memory_and_beats_chance(digits):
    stream = stream_of(digits, stream="rotations", tasks=2, samples_per_task=200, test_per_task=200)
    config = ContinualConfig(buffer_floats=60 * stream.image_floats, inner_steps=10, final_steps=20, retrain_epochs=50,
                             real_per_step=50)
    method = make_method(config, stream)
    result = run_stream(method, stream)
    assert method.bank.tasks == ["task-00", "task-01"] and method.bank.shared_classes
    images, labels = method.recalled()
    assert len(images) == result["recalled_images"] and set(labels.tolist()) == set(range(10))
    assert result["retained_accuracy"] > 0.3  # chance is 0.1


def test_split_cifar100_on_a_local_parquet_with_its_layout(tmp_path):
    root = write_hub_like_repo(tmp_path / "cifar100", label_column="fine_label", classes=10, n=40,
                               extra={"coarse_label": __import__("datasets").ClassLabel(names=["a", "b"])})
    stream = StreamConfig(stream="split-cifar100", dataset=str(root), tasks=2).load()
    assert [len(t.classes) for t in stream.tasks] == [5, 5]
    assert set(stream.tasks[0].classes).isdisjoint(stream.tasks[1].classes)
    for task in stream.tasks:
        assert set(task.train.labels.tolist()) == set(task.classes) and len(task.train) == 20
        assert set(task.test().labels.tolist()) == set(task.classes)
    # Scored among the task's own classes (task-aware): a network whose top logit is a class of the other task and
    # whose next is the task's first class answers that first class, right for 4 of the task's 20 test images.
    task, other = stream.tasks
    constant = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
    with torch.no_grad():
        constant[1].weight.zero_()
        constant[1].bias.zero_()
        constant[1].bias[other.classes[0]], constant[1].bias[task.classes[0]] = 2.0, 1.0
    assert len(task.test()) == 20 and task_accuracy(constant, task) == pytest.approx(4 / 20)
    # and a stream learner's network, counted here with the other classes' logits masked out
    net = make_method(ContinualConfig(method="online"), stream).classifier()
    data = task.test()
    with torch.no_grad():
        logits = net(data.images)
    outside = torch.ones(10, dtype=torch.bool)
    outside[task.classes] = False
    counted = float((logits.masked_fill(outside, float("-inf")).argmax(1) == data.labels).float().mean())
    assert task_accuracy(net, task) == pytest.approx(counted, abs=1e-6)
    with pytest.raises(ValueError, match="3 five-way tasks need 15"):
        StreamConfig(stream="split-cifar100", dataset=str(root), tasks=3).load()


def test_mnist_streams_have_the_papers_sizes(mnist_dir):
    full = load_train_test(str(mnist_dir), zca=False)  # read once: StreamConfig.load is this plus build_stream
    rotations = build_stream(StreamConfig(stream="rotations", test_per_task=10), *full)
    assert len(rotations.tasks) == 20 and {len(t.train) for t in rotations.tasks} == {1000}
    many = build_stream(StreamConfig(stream="many", test_per_task=10), *full)
    assert len(many.tasks) == 100 and {len(t.train) for t in many.tasks} == {200}
    assert ContinualConfig().buffer_for(rotations) == 156_800 and ContinualConfig().buffer_for(many) == 392_000


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="stream must be one of"):
        StreamConfig(stream="cifar10")
    with pytest.raises(ValueError, match="method must be one of"):
        ContinualConfig(method="gem")
    with pytest.raises(ValueError, match="functional form"):
        ContinualConfig(learner="resnet18")
    with pytest.raises(ValueError, match="buffer_floats must be positive"):
        ContinualConfig(buffer_floats=0)


def test_the_example_keeps_a_stream_as_a_bank_and_loads_it_back(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from hf_rtp import MemoryBank

    example = Path(__file__).resolve().parents[1] / "examples" / "continual.py"
    done = subprocess.run([sys.executable, str(example), "--dataset", "digits", "--tasks", "2", "--samples-per-task",
                           "100", "--test-per-task", "50", "--buffer-floats", "2560", "--memory-share", "2", "--inner-steps", "3",
                           "--final-steps", "3", "--retrain-epochs", "5", "--output", str(tmp_path / "bank")],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "retained accuracy over 2 tasks" in done.stdout
    bank = MemoryBank.from_pretrained(tmp_path / "bank")
    assert bank.tasks == ["task-00", "task-01"] and set(bank.accuracy) == {"task-00", "task-01"}


def test_permuted_pixels_get_full_resolution_bases(digits):
    permutations, rotations = stream_of(digits, stream="permutations"), stream_of(digits, stream="rotations")
    assert ContinualConfig().memory_layout(permutations, 640) == (8, 1)  # 8 x 64 floats <= 80% of 640
    assert ContinualConfig().memory_layout(permutations, 320) == (4, 1)
    assert ContinualConfig().memory_layout(rotations, 640) == (16, 2)
    assert ContinualConfig(num_bases=4, downsample=2).memory_layout(permutations, 640) == (4, 2)
