"""Task streams and continual learners: determinism, sizes, the single pass, and the buffer's accounting."""

import pytest
import torch

from hf_rtp.continual import Permutation, Rotation, StreamConfig, build_stream, task_accuracy
from hf_rtp.outer_step import NonFiniteError
from hf_rtp.continual.learners import network, per_sample_squared_gradients
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
    # what each holds: nothing for online; EWC's sample of the current task (for its Fisher) fills the buffer (its
    # Fisher and anchor are state, reported apart); replay's reservoir fills it; the memories take a part of it,
    # the raw images of a task the rest
    weights = sum(p.numel() for p in net.parameters())
    if method == "online":
        assert result["max_stored_floats"] == 0 and result["state_floats"] == 0
    if method in ("replay", "ewc"):
        assert result["max_stored_floats"] == buffer
        assert result["state_floats"] == (2 * weights if method == "ewc" else 0)
    if method == "compress-then-recall":
        assert result["max_stored_floats"] >= sum(result["memory_floats"]) > 0  # the memories were counted
        # each task's memory: 1/5 of the buffer, the smallest share that leaves the last task room for 10 raw images
        assert learner.memory_floats == buffer // 5 and all(f <= buffer // 5 for f in result["memory_floats"])
        assert len(result["minutes_per_task"]) == 3 and "backward_transfer" not in result
        # the per-task mode: task t scored by the network trained on memory t alone
        own = learner.task_classifiers()
        with torch.no_grad():
            counted = [float((n(t.test().images).argmax(1) == t.test().labels).float().mean())
                       for n, t in zip(own, stream.tasks)]
        assert result["per_task"]["accuracy"] == pytest.approx(counted, abs=1e-6)
        assert result["per_task"]["retained_accuracy"] == pytest.approx(sum(counted) / 3, abs=1e-6)
    else:
        assert len(result["just_learned"]) == 3 and "backward_transfer" in result


def test_a_buffer_too_small_for_a_memory_is_refused_before_the_stream(digits):
    stream = stream_of(digits)
    with pytest.raises(BudgetError, match="buffer \\(100 / 4 = 25 floats\\) holds no memory of 1 bases"):
        make_method(ContinualConfig(buffer_floats=100), stream)
    # a memory fits, but not beside a raw image of each class at the last task, whatever the share
    with pytest.raises(ValueError, match="leaves room for 1 raw images .* \\(a larger buffer is needed\\)"):
        make_method(ContinualConfig(buffer_floats=400), stream)
    # a share that leaves the last task no raw image beside all the memories
    with pytest.raises(ValueError, match="memory_share=4 leaves room for 7 raw images of the last task .* fewer than its "
                                         "10 classes \\(use memory_share >= 5\\)"):
        make_method(ContinualConfig(buffer_floats=30 * stream.image_floats, memory_share=4), stream)


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
                           "100", "--test-per-task", "50", "--buffer-floats", "2560", "--memory-share", "3", "--inner-steps", "3",
                           "--final-steps", "3", "--retrain-epochs", "5", "--output", str(tmp_path / "bank")],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "retained accuracy over 2 tasks" in done.stdout
    bank = MemoryBank.from_pretrained(tmp_path / "bank")
    assert bank.tasks == ["task-00", "task-01"] and set(bank.accuracy) == {"task-00", "task-01"}
    assert bank.recipe["retrain_noise"] == 2.0  # the example retrains with noise unless told otherwise
    assert bank.stream["stream"] == "rotations" and [t["name"] for t in bank.stream["tasks"]] == bank.tasks


@pytest.mark.parametrize("kind", ["rotations", "permutations"])
def test_a_banks_stream_definition_rebuilds_each_tasks_test_set(digits, tmp_path, kind):
    """What lets anyone re-score a committed bank: bank.json's stream definition gives back every task's test set,
    pixel for pixel, without replaying the stream's random generator."""
    import json

    from hf_rtp import MemoryBank
    from hf_rtp.continual import task_test_set

    stream = StreamConfig(stream=kind, dataset="digits", tasks=2, samples_per_task=60, test_per_task=80, seed=3).load()
    config = ContinualConfig(buffer_floats=40 * stream.image_floats, inner_steps=2, final_steps=1, retrain_epochs=1)
    learner = make_method(config, stream)
    result = run_stream(learner, stream)
    learner.bank.save_pretrained(tmp_path / "bank")
    definition = json.loads((tmp_path / "bank" / "bank.json").read_text())["stream"]
    assert definition == MemoryBank.from_pretrained(tmp_path / "bank").stream
    assert MemoryBank.from_pretrained(tmp_path / "bank").recipe == config.retraining() == {
        "learner": "mlp", "retrain_epochs": 1, "retrain_lr": 0.01, "retrain_batch": 256, "retrain_noise": 0.0, "seed": 0}
    for task in stream.tasks:
        rebuilt = task_test_set(definition, task.name)
        assert torch.equal(rebuilt.images, task.test().images) and torch.equal(rebuilt.labels, task.test().labels)
    # and the bank scores, in both recall modes, exactly what the run reported
    from hf_rtp.continual import score_bank

    scored = score_bank(MemoryBank.from_pretrained(tmp_path / "bank"), config, projected=True)
    assert scored["joint"]["accuracy"] == result["accuracy"]
    assert scored["per-task"]["accuracy"] == result["per_task"]["accuracy"]
    # the span probe: a memory's recall spans at most its K bases and the constant, and is its own projection there
    from hf_rtp.continual.scoring import project, recall_span

    recall = learner.recalls[0].training_set()[0]
    span = recall_span(recall)
    assert scored["projected"]["span_dims"][0] == len(span) <= learner.layout[0] + 1
    assert torch.allclose(project(recall, span), recall, atol=1e-5)
    test = stream.tasks[0].test().images
    assert not torch.allclose(project(test, span), test, atol=1e-2)  # a real image is not
    assert len(scored["projected"]["joint"]["accuracy"]) == len(stream.tasks)
    key = "rotation_degrees" if kind == "rotations" else "permutation"
    assert all(key in t["transform"] for t in definition["tasks"])
    with pytest.raises(ValueError, match="no task named 'task-09'"):
        task_test_set(definition, "task-09")
    with pytest.raises(ValueError, match="not a stream definition"):
        task_test_set({"stream": kind}, "task-00")


def test_permuted_pixels_get_full_resolution_bases(digits):
    permutations, rotations = stream_of(digits, stream="permutations"), stream_of(digits, stream="rotations")
    # the most bases that leave room for 4 addressing matrices (10 classes x K floats each)
    assert ContinualConfig().memory_layout(permutations, 640) == (4, 1)  # 4 x (64 + 40) <= 640 < 8 x (64 + 40)
    assert ContinualConfig().memory_layout(permutations, 320) == (2, 1)
    assert ContinualConfig().memory_layout(rotations, 640) == (8, 2)  # 8 x (16 + 40) <= 640 < 16 x (16 + 40)
    assert ContinualConfig(num_bases=4, downsample=2).memory_layout(permutations, 640) == (4, 2)


def test_each_glance_is_one_sgd_step_on_the_minibatch(digits):
    """glances=2: two SGD steps per minibatch (La-MAML's --glances), checked against steps taken by hand."""
    stream = stream_of(digits, tasks=1, samples_per_task=30)
    learner = make_method(ContinualConfig(method="online", glances=2, lr=0.05), stream)
    run_stream(learner, stream)
    net = network("mlp", stream, 0)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    for images, labels in stream.batches(stream.tasks[0]):
        for _ in range(2):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(images), labels).backward()
            optimizer.step()
    for mine, theirs in zip(net.parameters(), learner.net.parameters()):
        assert torch.equal(mine, theirs)


def test_ewc_fisher_is_the_mean_of_per_sample_squared_gradients(digits):
    stream = stream_of(digits, tasks=1, samples_per_task=20)
    net = network("mlp-16", stream, 0)
    images, labels = stream.tasks[0].train.images[:12], stream.tasks[0].train.labels[:12]
    fisher = per_sample_squared_gradients(net, images, labels, chunk=5)  # chunks of 5: 5 + 5 + 2
    expected = [torch.zeros_like(p) for p in net.parameters()]
    for x, y in zip(images, labels):  # one sample at a time, plain autograd
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(net(x[None]), y[None]), list(net.parameters()))
        for e, g in zip(expected, grads):
            e += g.pow(2) / len(labels)
    for f, e in zip(fisher, expected):
        assert torch.allclose(f, e, rtol=1e-5, atol=1e-10)
    # not the square of the batch gradient (what the earlier estimate was)
    batch = torch.autograd.grad(torch.nn.functional.cross_entropy(net(images), labels), list(net.parameters()))
    assert not torch.allclose(fisher[0], batch[0].pow(2))


@pytest.mark.parametrize("method,option", [("online", {"lr": 1e30}), ("replay", {"lr": 1e30}),
                                           ("ewc", {"ewc_lambda": 1e38, "lr": 1.0})])
def test_a_diverging_baseline_stops_with_a_clear_error(digits, method, option):
    stream = stream_of(digits, tasks=2, samples_per_task=40)
    with pytest.raises(NonFiniteError, match=f"{method}: the loss became .*lower the learning rate"):
        run_stream(make_method(ContinualConfig(method=method, **option), stream), stream)


def tiny_task_unroll(soft: bool = False):
    """A 3-class task memory (global classes 2, 3, 4 of 5) in float64, 20 images of earlier recall, an MLP inner
    loop with its init, the picks of a 6-step unroll and a real batch: what the rehearsal and retention tests share."""
    from hf_rtp import AddressableMemory, AddressableMemoryConfig
    from hf_rtp.learners import MLP
    from hf_rtp.unroll import InnerLoop

    torch.manual_seed(0)
    config = AddressableMemoryConfig(image_shape=[1, 8, 8], class_names=["a", "b", "c"], num_bases=4, images_per_query=3,
                                     downsample=2, mean=[0.0], std=[1.0], soft_labels=soft)
    memory = AddressableMemory(config).double()
    with torch.no_grad():
        memory.bases.mul_(10)
    g = torch.Generator().manual_seed(2)
    old = torch.randn(20, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(5, (20,), generator=g)
    loop = InnerLoop(MLP(1, 5, (8, 8), hidden=16).double(), lr=0.1, momentum=0.9, keep_memory=False)
    init = [p.double() for p in loop.init_params(torch.Generator().manual_seed(1))]
    picks = torch.stack([torch.stack([torch.randperm(3, generator=g)[:2] for _ in range(3)]) for _ in range(6)])
    real = torch.randn(9, 1, 8, 8, generator=g, dtype=torch.float64), torch.tensor([2, 3, 4] * 3)
    return memory, old, loop, init, picks, real


@pytest.mark.parametrize("soft", [False, True])
def test_rehearsal_in_the_unroll_keeps_the_meta_gradient_exact(soft):
    """rehearse_per_step: each inner step also trains on fixed images of earlier memories; the engine's gradient
    must still equal autograd through the whole unroll, and the rehearsed images must change it."""
    from hf_rtp.objectives import TaskObjective

    memory, old, loop, init, picks, real = tiny_task_unroll(soft)

    def run(rehearse, reference=False):
        objective = TaskObjective(memory, [2, 3, 4], 5, rehearsal=old, rehearse_per_step=rehearse)
        objective.feed(*real)
        draw = objective.draw(torch.Generator().manual_seed(3))
        return loop.run(objective.inputs(draw, picks, lambda x: x), init, reference=reference)

    engine, reference = run(4), run(4, reference=True)
    assert engine.loss == pytest.approx(reference.loss, rel=1e-12)
    for a, b in zip(engine.grads, reference.grads):
        assert float((a - b).norm() / b.norm().clamp_min(1e-30)) < 1e-9
    alone = run(0)
    assert float((alone.grads[0] - engine.grads[0]).norm() / engine.grads[0].norm()) > 1e-3


def test_retention_scores_the_unroll_on_the_earlier_recall_too():
    """retain_per_step: the outer loss's real batch gains that many images of the earlier memories' recall, with
    their class ids; the rehearsal rows of the inner steps stay what they were without it; the meta-gradient stays
    exact and the retained images change it; soft labels are refused (the earlier recall is scored by class id)."""
    from hf_rtp.objectives import TaskObjective

    memory, old, loop, init, picks, real = tiny_task_unroll()

    def inputs(rehearse, retain):
        objective = TaskObjective(memory, [2, 3, 4], 5, rehearsal=old, rehearse_per_step=rehearse,
                                  retain_per_step=retain)
        objective.feed(*real)
        return objective.inputs(objective.draw(torch.Generator().manual_seed(3)), picks, lambda x: x)

    both, rehearsed, retained = inputs(4, 7), inputs(4, 0), inputs(0, 7)
    assert both.real_images.shape[0] == 9 + 7 and torch.equal(both.real_images[:9], real[0])
    for image, label in zip(both.real_images[9:], both.real_labels[9:]):  # rows of the earlier recall, its labels
        row = int(torch.nonzero((old[0] == image).flatten(1).all(1))[0])
        assert int(label) == int(old[1][row])
    assert retained.real_images.shape[0] == 9 + 7 and rehearsed.real_images.shape[0] == 9
    for t in range(len(picks)):  # the inner steps' rehearsal is unchanged by retention
        assert torch.equal(both.recall(t)[0], rehearsed.recall(t)[0])
    assert retained.batch_size == 6 and both.batch_size == 6 + 4  # 3 classes x 2 picks, and the rehearsed 4

    engine = loop.run(inputs(4, 7), init)
    reference = loop.run(inputs(4, 7), init, reference=True)
    assert engine.loss == pytest.approx(reference.loss, rel=1e-12)
    for a, b in zip(engine.grads, reference.grads):
        assert float((a - b).norm() / b.norm().clamp_min(1e-30)) < 1e-9
    alone = loop.run(inputs(4, 0), init)
    assert float((alone.grads[0] - engine.grads[0]).norm() / engine.grads[0].norm()) > 1e-3
    with pytest.raises(ValueError, match="soft_labels"):
        ContinualConfig(retain_per_step=10, soft_labels=True)


def test_warm_start_unrolls_from_the_network_the_earlier_memories_train(digits):
    """warm_start: every unroll of a later task starts from the joint mode's network on the earlier memories' recall
    (the same weights `joint_network` trains), not from a fresh draw; the first task has nothing to start from."""
    from hf_rtp.continual.learners import WarmStart, joint_network

    stream = stream_of(digits, tasks=2, samples_per_task=40)
    config = ContinualConfig(steps_per_batch=0, final_steps=1, inner_steps=2, retrain_epochs=2, warm_start=True)
    method = make_method(config, stream)
    first, second = stream.tasks
    method.begin_task(first)
    for images, labels in stream.batches(first):
        method.observe(images, labels)
    assert not isinstance(method.distiller.outer.inner[0], WarmStart)  # no earlier memory: a fresh draw
    method.end_task(first)
    method.begin_task(second)
    for images, labels in stream.batches(second):
        method.observe(images, labels)
    inner = method.distiller.outer.inner[0]
    expected = list(joint_network(config, method.recalls, stream.num_classes).parameters())
    for drawn in (inner.init_params(torch.Generator().manual_seed(s)) for s in (0, 1)):  # every unroll, same start
        assert all(torch.equal(a, b) for a, b in zip(drawn, expected))
    fresh = method.inner.init_params(torch.Generator().manual_seed(0))
    assert not torch.equal(fresh[0], expected[0])
    method.end_task(second)
    assert 0 <= run_stream(make_method(config, stream), stream)["retained_accuracy"] <= 1
    with pytest.raises(ValueError, match="inner learner's parameters"):
        WarmStart(method.inner, expected[:-1])
