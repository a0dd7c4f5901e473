import pytest
import torch

from hf_rtp import AddressableMemory, AddressableMemoryConfig
from hf_rtp.data import load_train_test
from hf_rtp.evaluate import EvalConfig, accuracy_on, evaluate_images, evaluate_memory, evaluate_recalled, random_real, train_from_scratch

QUICK = dict(models=2, epochs=15, width=16, progress=False)


@pytest.fixture(scope="module")
def digits():
    return load_train_test("digits")


def test_random_real_baseline_takes_ipc_images_per_class(digits):
    train, _ = digits
    images, labels = random_real(train, ipc=2, seed=0)
    assert images.shape == (20, 1, 8, 8) and torch.bincount(labels).tolist() == [2] * 10
    again, _ = random_real(train, ipc=2, seed=0)
    assert torch.equal(images, again)


def test_real_images_train_networks_far_above_chance_with_mean_and_std(digits):
    train, test = digits
    images, labels = random_real(train, ipc=10, seed=0)
    result = evaluate_images(images, labels, test, EvalConfig(**QUICK))
    assert len(result.runs) == 2 and result.images == 100
    assert result.mean > 0.6 and result.std == pytest.approx(float(torch.tensor(result.runs, dtype=torch.float64).std(unbiased=False)))
    assert "2 models" in str(result)
    same = evaluate_images(images, labels, test, EvalConfig(**QUICK))
    assert same.runs == result.runs  # seeded inits and minibatch order


def test_memory_and_its_recalled_dataset_score_the_same(digits):
    train, test = digits
    memory = AddressableMemory(AddressableMemoryConfig.for_budget(train.image_shape, train.class_names, ipc=1, num_bases=8,
                                                                  mean=train.mean, std=train.std))
    direct = evaluate_recalled(memory, test, EvalConfig(**QUICK))
    via_dataset = evaluate_recalled(memory.recall(preview=True), test, EvalConfig(**QUICK))
    assert direct.runs == via_dataset.runs


def test_evaluate_memory_records_results_for_the_model_card(digits):
    train, test = digits
    memory = AddressableMemory(AddressableMemoryConfig.for_budget(train.image_shape, train.class_names, ipc=1, num_bases=8,
                                                                  mean=train.mean, std=train.std))
    record = evaluate_memory(memory, test, EvalConfig(**QUICK), train=train)
    assert memory.config.evaluation == record
    assert record["models"] == 2 and record["split"] == "test" and record["learner"] == "ConvNet-16"
    assert record["random_real_images"] == 10
    # the record holds what the protocol measures: the same numbers as scoring the recall and the baseline directly
    assert record["accuracy"]["runs"] == evaluate_recalled(memory, test, EvalConfig(**QUICK)).runs
    assert record["random_real"]["runs"] == evaluate_images(*random_real(train, 1, seed=0), test, EvalConfig(**QUICK)).runs


def test_cross_architecture_with_a_timm_student(digits):
    train, test = digits
    images, labels = random_real(train, ipc=5, seed=0)
    config = EvalConfig(models=1, epochs=3, learner="resnet10t", progress=False)
    result = evaluate_images(images, labels, test, config)
    from hf_rtp.evaluate import accuracy, train_from_scratch

    net = train_from_scratch(images, labels, 10, config, seed=config.seed)
    assert type(net).__name__ == "ResNet" and result.config["learner"] == "resnet10t"
    assert result.runs == [accuracy(net, test)]  # the score is that network's, trained reproducibly


def test_shape_mismatch_is_refused(digits):
    _, test = digits
    with pytest.raises(ValueError, match=r"training images are \(1, 4, 4\) but test images are \(1, 8, 8\)"):
        evaluate_images(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), test, EvalConfig(**QUICK))


def test_recalled_dataset_without_labels_is_refused(digits):
    _, test = digits
    memory = AddressableMemory(AddressableMemoryConfig(image_shape=[1, 8, 8], class_names=[str(i) for i in range(10)], mean=[0.0], std=[1.0]))
    with pytest.raises(ValueError, match="missing \\['label'\\]"):
        evaluate_recalled(memory.recall(queries=torch.eye(10)), test, EvalConfig(**QUICK))


def test_micro_batches_give_the_same_training(digits):
    from hf_rtp.evaluate import train_from_scratch

    train, _ = digits
    images, labels = random_real(train, ipc=10, seed=0)
    config = dict(epochs=3, width=16, batch_size=64, progress=False)
    whole = train_from_scratch(images, labels, 10, EvalConfig(**config), seed=0)
    parts = train_from_scratch(images, labels, 10, EvalConfig(micro_batch=16, **config), seed=0)
    for a, b in zip(whole.parameters(), parts.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # the same updates, summed in another order


def test_bad_evaluation_settings():
    with pytest.raises(ValueError, match="models"):
        EvalConfig(models=0)
    with pytest.raises(ValueError, match="micro_batch"):
        EvalConfig(micro_batch=0)


def test_record_carries_the_protocol_and_the_command_that_repeats_it(digits):
    from hf_rtp.hub import reproduce_command

    train, test = digits
    memory = AddressableMemory.for_dataset(train, ipc=1, num_bases=8)
    record = evaluate_memory(memory, test, EvalConfig(models=1, epochs=2, width=16, seed=3, augment="digits", progress=False))
    assert record["protocol"]["augment"] == "digits" and record["protocol"]["seed"] == 3
    command = reproduce_command(record, "user/x")
    assert command == "hf-rtp evaluate user/x --models 1 --epochs 2 --width 16 --seed 3 --augment digits --no-random-real"


def test_timm_students_take_their_own_depth_and_patch_size():
    from hf_rtp.learners import create_learner

    vit = create_learner("vit_tiny_patch16_224", 1, 10, (8, 8), patch_size=4, depth=2)
    assert len(vit.blocks) == 2 and vit.patch_embed.proj.kernel_size == (4, 4)
    assert vit(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_training_recipe_schedule_reaches_the_peak_and_decays():
    from hf_rtp.evaluate import _optimizer_and_schedule

    net = torch.nn.Linear(2, 2)
    config = EvalConfig(epochs=10, lr=0.1, optimizer="adamw", schedule="cosine", warmup_epochs=2, weight_decay=0.05, progress=False)
    optimizer, schedule = _optimizer_and_schedule(net, config, steps_per_epoch=3)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["weight_decay"] == 0.05
    lrs = []
    for _ in range(30):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.1 / 6) and lrs[5] == pytest.approx(0.1)  # linear warm-up over 2 epochs x 3 steps
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:])) and lrs[-1] < 0.002  # cosine down towards 0
    constant, _ = _optimizer_and_schedule(net, EvalConfig(progress=False), steps_per_epoch=3)
    assert isinstance(constant, torch.optim.SGD) and constant.param_groups[0]["lr"] == 0.01  # the protocol's default


def test_input_size_resizes_for_the_student_in_training_and_testing(digits):
    from hf_rtp.evaluate import accuracy, train_from_scratch
    from hf_rtp.learners import ConvNet, Resized

    train, test = digits
    images, labels = random_real(train, ipc=2, seed=0)
    config = EvalConfig(models=1, epochs=2, width=16, input_size=16, progress=False)
    net = train_from_scratch(images, labels, 10, config, seed=0)
    assert isinstance(net, Resized) and net.size == (16, 16)
    assert net.net.classifier.in_features == ConvNet(1, 10, 16, width=16).classifier.in_features  # built for 16 px
    assert net(test.images[:3]).shape == (3, 10)  # 8x8 test images go through the same resize
    result = evaluate_images(images, labels, test, config)
    assert result.runs == [accuracy(net, test)] and result.config["input_size"] == 16


@pytest.mark.parametrize("bad, message", [({"optimizer": "lion"}, "optimizer must be"), ({"schedule": "step"}, "schedule must be"),
                                          ({"warmup_epochs": 5, "epochs": 5}, "warmup_epochs must be"),
                                          ({"input_size": 2}, "input_size must be"), ({"noise": -0.5}, "noise must be"),
                                          ({"noise": float("nan")}, "noise must be")])
def test_bad_recipes_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        EvalConfig(**bad)


def test_reproduce_command_parses_back_to_the_same_recipe(digits):
    """The command on the card, fed to the CLI's own parser, rebuilds exactly the EvalConfig that made the numbers."""
    import shlex

    from hf_rtp.cli import build_parser
    from hf_rtp.evaluate import PROTOCOL_FIELDS
    from hf_rtp.hub import reproduce_command
    from hf_rtp.options import build, given

    train, test = digits
    memory = AddressableMemory.for_dataset(train, ipc=1, num_bases=8)
    config = EvalConfig(models=1, epochs=2, learner="convnet-8", optimizer="adamw", lr=0.001, schedule="cosine",
                        warmup_epochs=1, input_size=12, standardize=True, learner_kwargs={"depth": 1}, progress=False)
    record = evaluate_memory(memory, test, config)
    argv = shlex.split(reproduce_command(record, "user/mnist-ipc1"))[1:]
    args = build_parser().parse_args(argv)
    rebuilt = build(EvalConfig, given(args, EvalConfig))
    assert args.memory == "user/mnist-ipc1" and args.random_real is False
    assert {k: getattr(rebuilt, k) for k in PROTOCOL_FIELDS} == {k: getattr(config, k) for k in PROTOCOL_FIELDS}


def test_standardize_restores_the_data_scale_and_the_convnet_does_not_care(digits):
    """The ConvNet's instance norm makes it blind to a set's contrast, which is why distilled images may drift to
    any scale; standardize gives other students the test data's scale back and leaves the ConvNet's training alone."""
    from hf_rtp.evaluate import standardized, train_from_scratch

    train, test = digits
    images, labels = random_real(train, ipc=3, seed=0)
    faint = 0.05 * images + 0.3
    out = standardized(faint)
    assert out.mean().abs() < 1e-5 and (out.std() - 1).abs() < 1e-2
    torch.testing.assert_close(out, standardized(images), atol=1e-4, rtol=1e-4)  # one affine map: structure kept
    config = dict(models=1, epochs=5, width=16, progress=False)
    plain = train_from_scratch(images, labels, 10, EvalConfig(**config), seed=0)
    scaled = train_from_scratch(10 * images, labels, 10, EvalConfig(**config), seed=0)
    torch.testing.assert_close(plain(test.images[:50]), scaled(test.images[:50]), atol=2e-3, rtol=2e-3)
    fixed = train_from_scratch(faint, labels, 10, EvalConfig(standardize=True, **config), seed=0)
    reference = train_from_scratch(standardized(images), labels, 10, EvalConfig(**config), seed=0)
    torch.testing.assert_close(fixed(test.images[:50]), reference(test.images[:50]), atol=1e-3, rtol=1e-3)


def test_training_noise_keeps_one_tasks_features_out_of_anothers_images():
    """Why `noise` exists. A bank's joint network trains on each task's recall, which lies in the span of that task's
    few bases; a test image of task A also has parts along task B's bases, which a network trained without noise
    reads as B's features (bench/results/continual_retrain_*_validation.json: Permuted MNIST's joint network scores
    65% on test images projected onto their own task's span, 52% on the images). Here B's recall is faint, so a
    network fits it with large weights; noise in training keeps those weights to what the faint signal is worth (at
    a cost to task B, the trade the retraining recipe's noise is tuned on validation for)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.linalg.qr(torch.randn(64, 4, generator=g))[0].T.split(2)  # two tasks' spans, in 64 pixels
    codes = torch.randn(2, 100, 2, generator=g)
    images = torch.cat([codes[0] @ a, 0.1 * codes[1] @ b]).reshape(200, 1, 8, 8)  # task B's recall: faint
    labels = (torch.cat([codes[0, :, 0], codes[1, :, 0]]) > 0).long()
    test_codes = torch.randn(500, 2, generator=g)
    test = (test_codes @ a + torch.randn(500, 2, generator=g) @ b).reshape(500, 1, 8, 8)  # task A, with a part on B's
    test_labels = (test_codes[:, 0] > 0).long()
    scores = {}
    for noise in (0.0, 0.3):
        config = EvalConfig(models=1, epochs=50, lr=0.05, batch_size=50, learner="mlp", noise=noise, progress=False)
        net = train_from_scratch(images, labels, 2, config, seed=0)
        scores[noise] = accuracy_on(net, test, test_labels)
        assert accuracy_on(net, images[:100], labels[:100]) > 0.9  # both learn task A
    assert scores[0.3] > scores[0.0] + 0.1, scores
    # the same seed draws the same noise: training stays reproducible
    again = train_from_scratch(images, labels, 2, config, seed=0)
    assert accuracy_on(again, test, test_labels) == scores[0.3]
