"""Memories at the data's scale: the standardising last step of recall, the real-data start, and what they give a
user (a recalled set that a transformers.Trainer takes as it is)."""

import json

import pytest
import torch
import torch.nn.functional as F

from hf_rtp import AddressableMemory, AddressableMemoryConfig, Distiller, distill_memory
from hf_rtp.initialization import init_from_real
from hf_rtp.data import load_image_dataset
from hf_rtp.evaluate import dataset_tensors
from hf_rtp.learners import MLP, ViT, create_learner
from hf_rtp.host import compiler_available
from hf_rtp.unroll import real_batch_loss, unroll, unroll_reference

from helpers import assert_same, state, tiny


@pytest.fixture(scope="module")
def digits():
    return load_image_dataset("digits")


def per_image(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = images.detach().double().flatten(1)
    return flat.mean(1), flat.std(1, unbiased=False)


def test_for_dataset_measures_the_data_per_image_statistics(digits):
    memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8)
    mean, std = per_image(digits.images)
    assert memory.config.output_norm == "standardize"
    assert memory.config.output_mean == pytest.approx(float(mean.mean()), abs=1e-9)
    assert memory.config.output_std == pytest.approx(float(std.pow(2).mean().sqrt()), rel=1e-9)
    assert AddressableMemory.for_dataset(digits, ipc=1, num_bases=8, output_norm="none").config.output_norm == "none"


@pytest.mark.parametrize("addressing", ["learned", "one_hot"])
def test_standardized_recall_is_eqn2_then_one_affine_map_per_image(digits, addressing):
    torch.manual_seed(0)
    memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8, addressing=addressing)
    plain = AddressableMemory(AddressableMemoryConfig(**{**memory.config.to_dict(), "output_norm": "none"}))
    plain.load_state_dict(memory.state_dict())
    labels = torch.arange(10)
    raw = plain(labels=labels).images.double()  # eqn 2 as in the paper
    out = memory(labels=labels).images.double()
    cfg = memory.config
    flat = raw.flatten(1)
    expected = (flat - flat.mean(1, keepdim=True)) / (flat.var(1, unbiased=False, keepdim=True) + 1e-8).sqrt()
    torch.testing.assert_close(out.flatten(1), expected * cfg.output_std + cfg.output_mean, rtol=1e-5, atol=1e-5)
    mean, std = per_image(out)
    assert torch.allclose(mean, torch.full_like(mean, cfg.output_mean), atol=1e-5)
    assert torch.allclose(std, torch.full_like(std, cfg.output_std), rtol=1e-4)
    # the random tables alone recall images of about a tenth of the data's contrast: the problem this solves
    assert float(per_image(raw)[1].mean()) < 0.3 * cfg.output_std


def test_memories_saved_before_output_norm_load_and_recall_as_before(tmp_path, digits):
    torch.manual_seed(0)
    old = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8, output_norm="none")
    old.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("output_norm", "output_mean", "output_std"):  # what a memory of an earlier release has on disk
        config.pop(key)
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = AddressableMemory.from_pretrained(tmp_path)
    assert loaded.config.output_norm == "none"
    labels = torch.arange(10)
    assert torch.equal(loaded(labels=labels).images, old(labels=labels).images)


def test_a_standardizing_memory_round_trips(tmp_path, digits):
    torch.manual_seed(0)
    memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8)
    memory.save_pretrained(tmp_path)
    loaded = AddressableMemory.from_pretrained(tmp_path)
    assert (loaded.config.output_norm, loaded.config.output_mean, loaded.config.output_std) == (
        "standardize", memory.config.output_mean, memory.config.output_std)
    assert torch.equal(loaded(labels=torch.arange(10)).images, memory(labels=torch.arange(10)).images)
    card = (tmp_path / "README.md").read_text()
    assert "output_norm=\"standardize\"" in card and "--standardize" not in card


def test_bad_output_norm_is_refused():
    from huggingface_hub.errors import StrictDataclassClassValidationError as Invalid

    with pytest.raises(Invalid, match="output_norm"):
        AddressableMemoryConfig(image_shape=[1, 8, 8], class_names=["a", "b"], mean=[0.0], std=[1.0], output_norm="zscore")
    with pytest.raises(Invalid, match="output_std"):
        AddressableMemoryConfig(image_shape=[1, 8, 8], class_names=["a", "b"], mean=[0.0], std=[1.0], output_norm="standardize", output_std=0.0)


def test_meta_gradient_through_the_standardizing_recall_equals_whole_graph_autograd():
    torch.manual_seed(0)
    cfg = AddressableMemoryConfig(image_shape=[1, 8, 8], class_names=["a", "b", "c"], num_bases=4, images_per_query=3,
                                  downsample=2, mean=[0.0], std=[1.0], output_norm="standardize", output_std=0.9)
    memory = AddressableMemory(cfg).double()
    net = create_learner("convnet", 1, 3, 8, width=4).double()
    init = net.init_params(torch.Generator().manual_seed(1))
    init = [p.double() for p in init]
    labels = torch.arange(3)
    picks = [torch.randperm(3, generator=torch.Generator().manual_seed(t))[:2].expand(3, 2) for t in range(8)]

    def step_data(t):
        return memory.images_for_labels(labels, picks[t]), labels.repeat_interleave(2)

    g = torch.Generator().manual_seed(2)
    outer = real_batch_loss(net.functional, torch.randn(12, 1, 8, 8, generator=g, dtype=torch.float64), torch.arange(12) % 3)
    params = list(memory.parameters())
    engine = unroll(net.functional, init, step_data, params, outer, 8, lr=0.1, momentum=0.9)
    reference = unroll_reference(net.functional, init, step_data, params, outer, 8, lr=0.1, momentum=0.9)
    assert all(g.abs().max() > 0 for g in reference.grads)
    for a, b in zip(engine.grads, reference.grads):
        assert float((a - b).norm() / b.norm()) < 1e-9


def assert_meta_gradient_equals_whole_graph(net) -> None:
    """The engine's meta-gradient through 6 steps of `net` (float64, 8x8 images, 3 classes) equals autograd's."""
    cfg = AddressableMemoryConfig(image_shape=[1, 8, 8], class_names=["a", "b", "c"], num_bases=4, images_per_query=2,
                                  downsample=2, mean=[0.0], std=[1.0], output_norm="standardize")
    memory = AddressableMemory(cfg).double()
    init = [p.double() for p in net.init_params(torch.Generator().manual_seed(3))]
    labels = torch.arange(3)

    def step_data(t):
        return memory.images_for_labels(labels, torch.tensor([[t % 2]] * 3)), labels

    outer = real_batch_loss(net.functional, torch.randn(9, 1, 8, 8, dtype=torch.float64), torch.arange(9) % 3)
    params = list(memory.parameters())
    engine = unroll(net.functional, init, step_data, params, outer, 6, lr=0.1, momentum=0.9)
    reference = unroll_reference(net.functional, init, step_data, params, outer, 6, lr=0.1, momentum=0.9)
    for a, b in zip(engine.grads, reference.grads):
        assert float(b.abs().max()) > 0 and float((a - b).norm() / b.norm()) < 1e-9


def test_mlp_learner_functional_and_meta_gradient():
    torch.manual_seed(0)
    net = MLP(1, 3, 8, hidden=6).double()
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    assert torch.equal(net(x), net.functional(list(net.parameters()), x))
    assert [p.shape for p in net.init_params()] == [p.shape for p in net.parameters()]
    assert isinstance(create_learner("mlp", 1, 3, 8), MLP) and create_learner("mlp-32", 1, 3, 8).linears[0].out_features == 32
    assert_meta_gradient_equals_whole_graph(net)


def test_vit_learner_functional_init_and_meta_gradient():
    """The unroll's ViT: its functional form is its forward, its init is timm's, and the engine's meta-gradient
    through attention and LayerNorm equals autograd through the whole unroll."""
    torch.manual_seed(0)
    net = ViT(1, 3, 8, dim=8, depth=2, patch=4).double()
    fresh = net.init_params(torch.Generator().manual_seed(1))
    assert [p.shape for p in fresh] == [p.shape for p in net.parameters()]
    assert torch.equal(fresh[0], net.init_params(torch.Generator().manual_seed(1))[0])  # seeded
    assert net.position is list(net.parameters())[0]
    assert float(fresh[0].abs().max()) <= 0.04 and float(fresh[0].std()) > 0.005  # truncated normal, std 0.02
    net.reset_parameters(torch.Generator().manual_seed(1))
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    # the module's own layers (Conv2d, LayerNorm, Linear, attention by hand) give the same logits as `functional`
    tokens = net.embed(x).flatten(2).transpose(1, 2) + net.position
    for ln1, qkv, proj, ln2, fc1, fc2 in net.blocks:
        q, k, v = qkv(ln1(tokens)).view(5, 4, 3, 1, 8).permute(2, 0, 3, 1, 4)
        tokens = tokens + proj((torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5, -1) @ v).transpose(1, 2).reshape(5, 4, 8))
        tokens = tokens + fc2(F.gelu(fc1(ln2(tokens))))
    assert torch.allclose(net(x), net.head(net.norm(tokens).mean(1)), atol=1e-12)
    assert isinstance(create_learner("vit", 1, 3, 28), ViT) and create_learner("vit-96", 1, 3, 28, depth=1).dim == 96
    with pytest.raises(ValueError, match="divisible by 4"):
        ViT(1, 3, 30)
    assert_meta_gradient_equals_whole_graph(net)


@pytest.mark.parametrize("addressing", ["learned", "one_hot"])
def test_real_init_recalls_real_images_of_each_class(digits, addressing):
    torch.manual_seed(0)
    memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8, downsample=1, addressing=addressing)
    init_from_real(memory, digits, torch.Generator().manual_seed(0))
    recalled, labels = memory(labels=torch.arange(10))
    # every recalled image is closest (cosine, after centring) to the real images of its own class
    real = digits.images.flatten(1)
    prototypes = torch.stack([real[digits.labels == c].mean(0) for c in range(10)])
    centred = lambda x: F.normalize(x - x.mean(1, keepdim=True), dim=1)  # noqa: E731
    nearest = (centred(recalled.detach().flatten(1)) @ centred(prototypes).T).argmax(1)
    assert float((nearest == labels).float().mean()) > 0.8
    if addressing == "one_hot":  # at ds=1 the bases are the chosen real images themselves
        hits = [(digits.images.flatten(1) == b.flatten()).all(1).any() for b in memory.bases.detach()]
        assert all(hits)
    else:  # learned: A_i[c] M is the projection of a real image onto the span of the bases
        b = memory.bases.detach().flatten(1).double()
        raw = torch.einsum("rk,kd->rd", memory.addressing.detach()[:, 0].double(), b)  # class 0's r images
        projected = raw @ torch.linalg.pinv(b) @ b
        torch.testing.assert_close(raw, projected, rtol=1e-6, atol=1e-6)
        rms_b, rms_a = b.pow(2).mean().sqrt(), memory.addressing.detach().double().pow(2).mean().sqrt()
        assert float(rms_b / rms_a) == pytest.approx(1.0, rel=1e-4)


def test_real_init_is_refused_for_other_data(digits, tmp_path):
    memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8)
    other = AddressableMemoryConfig.for_budget((1, 8, 8), [str(i) for i in range(10)], ipc=1, num_bases=8,
                                               mean=[0.5], std=[0.5])
    with pytest.raises(ValueError, match="does not match"):
        init_from_real(AddressableMemory(other), digits, torch.Generator().manual_seed(0))
    assert memory.config.query_dim == 10


def test_distiller_starts_from_real_data_and_a_resume_does_not_restart(digits, tmp_path):
    torch.manual_seed(0)
    memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8)
    distiller = Distiller(tiny(tmp_path / "run", init="real", steps=2), memory, digits)
    expected = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8)
    init_from_real(expected, distiller.train_data, torch.Generator().manual_seed(0))
    distiller.prepare()
    assert_same(state(distiller.memory), state(expected))
    distiller._release()
    distiller.train()
    trained = state(distiller.memory)
    resumed = Distiller(tiny(tmp_path / "run", init="real", steps=2, resume=True),
                        AddressableMemory.for_dataset(digits, ipc=1, num_bases=8), digits)
    resumed.prepare()  # loads the checkpoint: the real-data start must not overwrite it
    assert resumed.step == 2
    assert not all(torch.equal(a, b) for a, b in zip(state(resumed.memory).values(), state(expected).values()))
    resumed._release()
    assert trained.keys() == state(resumed.memory).keys()


def test_compile_defaults_to_where_a_compiler_exists(digits, tmp_path):
    import shutil

    assert isinstance(compiler_available("cpu"), bool)
    assert compiler_available("cpu") == any(shutil.which(c) for c in ("g++", "c++", "clang++")) or bool(
        __import__("os").environ.get("CXX"))
    memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8)
    config = tiny(tmp_path / "run", compile=None)
    assert Distiller(config, memory, digits).compile == compiler_available("cpu")


def test_recalled_set_trains_a_transformers_resnet_with_trainer_as_is(tmp_path, digits):
    """The user's path: recall() straight into transformers.Trainer, no normalisation of any kind. The recalled
    images must have the statistics of the data the network will be tested on (checked), and train (loss finite)."""
    from transformers import ResNetConfig, ResNetForImageClassification, Trainer, TrainingArguments

    torch.manual_seed(0)
    memory = Distiller(tiny(tmp_path / "run", steps=2, init="real"),
                       AddressableMemory.for_dataset(digits, ipc=1, num_bases=8), digits).train()
    recalled = memory.recall()
    images, _ = dataset_tensors(recalled)
    test_mean, test_std = per_image(digits.images)
    mean, std = per_image(images)
    # each recalled image at the data's per-image scale (the old default's recalls were at about a tenth of it)
    assert float(mean.mean()) == pytest.approx(float(test_mean.mean()), abs=1e-4)
    assert float(std.pow(2).mean().sqrt()) == pytest.approx(float(test_std.pow(2).mean().sqrt()), rel=1e-3)
    assert float(images.std()) == pytest.approx(float(digits.images.std()), rel=0.25)

    config = ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=10,
                          id2label=memory.config.id2label, label2id=memory.config.label2id)
    model = ResNetForImageClassification(config)
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), num_train_epochs=2, per_device_train_batch_size=16,
                             learning_rate=1e-3, report_to=[], save_strategy="no", use_cpu=True, logging_steps=1,
                             disable_tqdm=True, seed=0)
    result = Trainer(model=model, args=args, train_dataset=recalled.with_format("torch")).train()
    assert result.training_loss == result.training_loss and result.training_loss > 0  # finite, something learned from


def test_unroll_length_schedule(digits, tmp_path):
    memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8)
    distiller = Distiller(tiny(tmp_path / "run", unroll_steps=6, unroll_steps_start=2, unroll_warmup=4, steps=3), memory, digits)
    assert [distiller.unroll_length(s) for s in range(7)] == [2, 3, 4, 5, 6, 6, 6]
    distiller.train()
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["unroll_steps"] for m in logged if "loss" in m] == [2, 3, 4]
    for bad in (dict(unroll_steps_start=2), dict(unroll_warmup=3), dict(unroll_steps_start=9, unroll_warmup=3)):
        with pytest.raises(ValueError, match="unroll_steps_start|T schedule"):
            tiny(tmp_path / "x", unroll_steps=6, **bad)


def test_a_run_started_before_output_norm_resumes_with_the_paper_recall(digits, tmp_path):
    from hf_rtp.cli import build_parser
    from hf_rtp.presets import resolve_run_options

    run = tmp_path / "run"
    distill_memory(tiny(run, steps=2), AddressableMemory.for_dataset(digits, ipc=1, num_bases=8, output_norm="none"), digits)
    settings = json.loads((run / "settings.json").read_text())
    del settings["memory"]["output_norm"]  # what a run folder of an earlier release holds
    (run / "settings.json").write_text(json.dumps(settings))
    _, options, config = resolve_run_options(build_parser().parse_args(["distill", "--resume", "--output-dir", str(run)]))
    assert options.output_norm == "none" and config.resume
    memory = AddressableMemory.for_dataset(digits, **vars(options))
    resumed = Distiller(tiny(run, steps=3, resume=True), memory, digits)
    resumed.train()
    assert resumed.step == 3 and resumed.memory.config.output_norm == "none"
