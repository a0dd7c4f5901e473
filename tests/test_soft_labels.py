"""Learned soft labels (beyond the paper): budget, recall against their formula, exact meta-gradient, saving and
loading, training on them, and the fair random-real row."""

import json

import pytest
import torch
import torch.nn.functional as F

from hf_rtp import AddressableMemory, AddressableMemoryConfig, Distiller, distill_memory
from hf_rtp.configuration_memory import BudgetError, MemoryOptions
from hf_rtp.data import load_image_dataset
from hf_rtp.evaluate import EvalConfig, dataset_tensors, evaluate_memory, random_real, teacher_soft_labels, train_from_scratch
from hf_rtp.hub import CheckpointError
from hf_rtp.learners import create_learner
from hf_rtp.unroll import real_batch_loss, unroll, unroll_reference

from helpers import tiny

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def digits():
    return load_image_dataset("digits", "train")


def small_config(addressing: str = "learned", **kwargs) -> AddressableMemoryConfig:
    if addressing == "one_hot":
        return AddressableMemoryConfig.for_budget((1, 8, 8), CLASSES, ipc=1, downsample=2, addressing="one_hot",
                                                  mean=[0.0], std=[1.0], soft_labels=True, **kwargs)
    return AddressableMemoryConfig(image_shape=[1, 8, 8], class_names=CLASSES, num_bases=4, images_per_query=3,
                                   downsample=2, mean=[0.0], std=[1.0], soft_labels=True, **kwargs)


def test_soft_labels_are_paid_for_out_of_the_budget():
    plain = AddressableMemoryConfig.for_budget((1, 28, 28), [str(i) for i in range(10)], ipc=1, num_bases=16)
    soft = AddressableMemoryConfig.for_budget((1, 28, 28), [str(i) for i in range(10)], ipc=1, num_bases=16, soft_labels=True)
    assert soft.storage_floats() == 16 * 14 * 14 + soft.images_per_query * 10 * 16 + (16 * 10 + 1)
    assert soft.storage_floats() <= soft.budget_floats() < soft.storage_floats() + 10 * 16  # r is the largest that fits
    assert (plain.images_per_query, soft.images_per_query) == (29, 28)
    # one_hot: every image also stores its label vector (n floats), and r shrinks to fit
    one_hot = AddressableMemoryConfig.for_budget((1, 28, 28), [str(i) for i in range(10)], ipc=1, downsample=2,
                                                 addressing="one_hot", soft_labels=True)
    assert one_hot.images_per_query == 3 and one_hot.storage_floats() == 30 * 196 + 30 * 10 + 1 <= 7840
    with pytest.raises(BudgetError, match="soft label"):
        AddressableMemoryConfig.for_budget((1, 28, 28), [str(i) for i in range(10)], ipc=1, downsample=1,
                                           addressing="one_hot", soft_labels=True)
    assert MemoryOptions.of(soft).soft_labels is True


def test_soft_labels_need_a_label_addressed_memory():
    from huggingface_hub.errors import StrictDataclassClassValidationError as Invalid

    with pytest.raises(Invalid, match="soft_labels needs a memory addressed by class labels"):
        AddressableMemoryConfig(image_shape=[1, 8, 8], class_names=CLASSES, query_dim=5, mean=[0.0], std=[1.0], soft_labels=True)


@pytest.mark.parametrize("addressing", ["learned", "one_hot"])
def test_recalled_soft_labels_follow_their_formula(addressing):
    torch.manual_seed(0)
    memory = AddressableMemory(small_config(addressing))
    with torch.no_grad():
        memory.label_bases.normal_()
        memory.label_scale.fill_(1.5)
    images, targets = memory.training_set()
    n, r = 3, memory.config.images_per_query
    # independently: image i of class c is labelled softmax(s e_c + (e_c^T A_i) L), A_i one-hot for one_hot addressing
    L, s = memory.label_bases.detach(), 1.5
    expected = []
    for c in range(n):
        for i in range(r):
            coefficient = memory.addressing[i, c].detach() if addressing == "learned" else F.one_hot(torch.tensor(c * r + i), memory.config.num_bases).float()
            expected.append(torch.softmax(s * F.one_hot(torch.tensor(c), n).float() + coefficient @ L, -1))
    torch.testing.assert_close(targets.detach(), torch.stack(expected))
    assert images.shape == (n * r, 1, 8, 8)
    ds = memory.recall()
    assert ds.features["soft_label"].length == n
    torch.testing.assert_close(torch.tensor(ds["soft_label"]), torch.stack(expected))
    assert dataset_tensors(ds)[1].shape == (n * r, n)  # what evaluation trains on: the distributions


def test_a_fresh_memory_starts_from_softened_hard_labels():
    memory = AddressableMemory(small_config())
    _, targets = memory.training_set()
    assert torch.allclose(targets.max(1).values, torch.tensor(0.9)) and torch.equal(targets.argmax(1), torch.arange(3).repeat_interleave(3))


@pytest.mark.parametrize("addressing", ["learned", "one_hot"])
@pytest.mark.parametrize("compile", [False, True])
def test_meta_gradient_reaches_the_labels_exactly(addressing, compile):
    """The engine's gradient for bases, addressing and the label tables equals autograd through the whole unroll;
    leaving out the labels' term (or the labels' effect on the images' term) would fail it."""
    if compile:
        from hf_rtp.host import compiler_available

        if not compiler_available("cpu"):
            pytest.skip("no C++ compiler for torch.compile")
    torch.manual_seed(0)
    memory = AddressableMemory(small_config(addressing)).double()
    with torch.no_grad():
        memory.bases.mul_(10)
        memory.label_bases.normal_()
    net = create_learner("convnet", 1, 3, 8, width=4).double()
    init = [p.double() for p in net.init_params(torch.Generator().manual_seed(1))]
    labels = torch.arange(3)
    r = memory.config.images_per_query
    g = torch.Generator().manual_seed(2)
    picks = [torch.stack([torch.randperm(r, generator=g)[:2] for _ in CLASSES]) for _ in range(6)]

    def step_data(t):
        return memory.images_for_labels(labels, picks[t]), memory.targets_for_labels(labels, picks[t])

    outer = real_batch_loss(net.functional, torch.randn(12, 1, 8, 8, generator=g, dtype=torch.float64), torch.arange(12) % 3)
    params = list(memory.parameters())
    engine = unroll(net.functional, init, step_data, params, outer, 6, lr=0.1, momentum=0.9, compile=compile,
                    soft_targets=True)
    reference = unroll_reference(net.functional, init, step_data, params, outer, 6, lr=0.1, momentum=0.9)
    names = [name for name, _ in memory.named_parameters()]
    assert {"label_bases", "label_scale"} <= set(names)
    for name, a, b in zip(names, engine.grads, reference.grads):
        assert float(b.abs().max()) > 0, name
        assert float((a - b).norm() / b.norm()) < (1e-7 if compile else 1e-9), name


def test_soft_labels_round_trip_bit_exactly_and_are_checked_on_load(tmp_path, digits):
    torch.manual_seed(0)
    memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8, soft_labels=True)
    with torch.no_grad():
        memory.label_bases.normal_()
    memory.save_pretrained(tmp_path / "m")
    loaded = AddressableMemory.from_pretrained(tmp_path / "m")
    assert loaded.config.soft_labels
    (x0, t0), (x1, t1) = memory.training_set(), loaded.training_set()
    assert torch.equal(x0, x1) and torch.equal(t0, t1)
    card = (tmp_path / "m" / "README.md").read_text()
    assert "learned soft labels" in card and "soft_label" in card
    # a config that says soft_labels with weights that lack them (or the reverse) is refused, never re-initialised
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "soft_labels": False}))
    with pytest.raises(CheckpointError, match="unexpected tensor 'label_bases'"):
        AddressableMemory.from_pretrained(tmp_path / "m")
    plain = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8)
    plain.save_pretrained(tmp_path / "p")
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    (tmp_path / "p" / "config.json").write_text(json.dumps({**config, "soft_labels": True}))
    with pytest.raises(CheckpointError, match="missing tensor 'label_bases'"):
        AddressableMemory.from_pretrained(tmp_path / "p")


def test_training_on_one_hot_distributions_equals_training_on_ids(digits):
    images, ids = digits.images[:40], digits.labels[:40]
    config = EvalConfig(models=1, epochs=3, width=8, batch_size=16, progress=False)
    a = train_from_scratch(images, ids, 10, config, seed=0)
    b = train_from_scratch(images, F.one_hot(ids, 10).float(), 10, config, seed=0)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_distiller_learns_the_labels_and_random_real_gets_teacher_labels(tmp_path, digits):
    torch.manual_seed(0)
    train, test = digits, load_image_dataset("digits", "test")
    memory = AddressableMemory.for_dataset(train, ipc=1, num_bases=8, soft_labels=True)
    start = memory.label_bases.detach().clone()
    memory = distill_memory(tiny(tmp_path / "run", steps=4, label_lr=0.1, final_models=0), memory, train)
    assert not torch.equal(memory.label_bases.detach(), start)
    assert memory.config.distillation["label_lr"] == 0.1
    # resume continues the same run, the labels' own rate and optimizer state included: 4 steps then 2 more are
    # bit for bit 6 steps at once
    resumed = distill_memory(tiny(tmp_path / "run", steps=6, label_lr=0.1, final_models=0, resume=True),
                             AddressableMemory.for_dataset(train, ipc=1, num_bases=8, soft_labels=True), train)
    torch.manual_seed(0)
    whole = distill_memory(tiny(tmp_path / "whole", steps=6, label_lr=0.1, final_models=0),
                           AddressableMemory.for_dataset(train, ipc=1, num_bases=8, soft_labels=True), train)
    assert resumed.config.distillation["outer_steps"] == 6
    for name, value in whole.state_dict().items():  # the best-by-validation memories
        assert torch.equal(resumed.state_dict()[name], value), name
    def log(folder):  # every step's outer loss and gradient norm (step 6's follows from step 5's update), no clock
        return [{k: v for k, v in json.loads(l).items() if k != "seconds"}
                for l in (tmp_path / folder / "metrics.jsonl").read_text().splitlines()]

    assert [l["step"] for l in log("run") if "loss" in l] == [1, 2, 3, 4, 5, 6] and log("run") == log("whole")
    record = evaluate_memory(memory, test, EvalConfig(models=1, epochs=2, width=8, teacher_epochs=1, teacher_width=8,
                                                      progress=False), train=train)
    assert "soft, from a ConvNet-8" in record["random_real_labels"] and record["random_real_images"] == 10


def test_label_lr_is_the_rate_the_soft_labels_learn_at(tmp_path, digits):
    """Adam moves each parameter by about its learning rate per step: with label_lr=1e-6 the label tables stay put
    while the bases move at lr=0.05; without label_lr the labels move at lr too."""
    def run(name, **settings):
        torch.manual_seed(0)
        memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8, soft_labels=True)
        start = {k: v.detach().clone() for k, v in memory.state_dict().items()}
        memory = distill_memory(tiny(tmp_path / name, steps=2, eval_every=0, final_models=0, **settings), memory, digits)
        return {k: float((v - start[k]).abs().max()) for k, v in memory.state_dict().items()}, memory

    moved, memory = run("slow", label_lr=1e-6)
    assert moved["bases"] > 0.02 and moved["addressing"] > 0.02
    assert moved["label_bases"] < 1e-4 and moved["label_scale"] < 1e-4, moved
    assert memory.config.distillation["label_lr"] == 1e-6
    moved, memory = run("default")
    assert moved["label_bases"] > 0.02 and moved["label_scale"] > 0.02, moved
    assert memory.config.distillation["label_lr"] == 0.05  # lr, as the option's help says


def test_teacher_labels_are_a_trained_networks_predictions(digits):
    images, labels = random_real(digits, 1, seed=0)
    soft = teacher_soft_labels(digits, images, EvalConfig(teacher_epochs=15, teacher_width=16, progress=False), "cpu")
    assert soft.shape == (10, 10) and torch.allclose(soft.sum(1), torch.ones(10))
    assert float((soft.argmax(1) == labels).float().mean()) >= 0.8  # a teacher, not noise
    assert float(soft.max(1).values.min()) < 1.0  # and soft


def test_inner_learners_take_turns_and_bad_ones_are_refused(tmp_path, digits):
    """`inner_learner="convnet+mlp"`: the memory is distilled through both networks, one per unroll."""
    torch.manual_seed(0)
    memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8)
    def used_after(steps):
        memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8)
        distiller = Distiller(tiny(tmp_path / f"run{steps}", steps=steps, final_models=0, inner_learner="convnet+mlp-16"),
                              memory, digits)
        assert [type(loop.learner).__name__ for loop in distiller.inner] == ["ConvNet", "MLP"]
        memory = distiller.train()
        return [loop.buffers.used for loop in distiller.inner], memory

    assert used_after(1)[0] == [True, False]  # step 0: the ConvNet
    used, memory = used_after(2)
    assert used == [True, True]  # step 1: the MLP
    assert memory.config.distillation["inner_learner"] == "convnet+mlp-16"
    for bad in ("resnet18", "mlp-x", "convnet+", "vit-0"):
        with pytest.raises(ValueError, match="inner_learner"):
            tiny(tmp_path / "bad", inner_learner=bad)
