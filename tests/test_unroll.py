"""The engine's meta-gradient against autograd through the whole unroll, and against finite differences."""

import pytest
import torch

from hf_rtp import AddressableMemory, AddressableMemoryConfig
from hf_rtp.learners import ConvNet
from hf_rtp.unroll import real_batch_loss, unroll, unroll_reference

CLASSES = ["a", "b", "c"]


def problem(addressing: str, steps: int, dtype=torch.float64, seed: int = 0, device: str = "cpu"):
    """A tiny distillation problem: memory, learner, per-step minibatches, real batch."""
    torch.manual_seed(seed)
    if addressing == "learned":
        cfg = AddressableMemoryConfig(image_shape=[1, 8, 8], class_names=CLASSES, num_bases=4, images_per_query=3,
                                      downsample=2, mean=[0.0], std=[1.0])
    else:
        cfg = AddressableMemoryConfig.for_budget((1, 8, 8), CLASSES, ipc=1, downsample=2, addressing="one_hot", mean=[0.0], std=[1.0])
    memory = AddressableMemory(cfg).to(dtype)
    with torch.no_grad():
        memory.bases.mul_(10)  # away from the tiny xavier scale so the gradients are not all near zero
    memory = memory.to(device)
    net = ConvNet(1, 3, 8, width=4).to(dtype).to(device)
    init = [p.to(device) for p in net.init_params(torch.Generator().manual_seed(seed + 1))]
    g = torch.Generator().manual_seed(seed + 2)
    r = cfg.images_per_query
    specs = [torch.stack([torch.randperm(r, generator=g)[:2] for _ in CLASSES]).to(device) for _ in range(steps)]
    labels = torch.arange(3, device=device)

    def step_data(t):
        return memory.images_for_labels(labels, specs[t]), labels.repeat_interleave(2)

    real = torch.randn(12, 1, 8, 8, generator=g, dtype=dtype).to(device), (torch.arange(12) % 3).to(device)
    return memory, net, init, step_data, real_batch_loss(net.functional, *real)


def relative_error(a, b):
    return max(float((x - y).norm() / y.norm().clamp_min(1e-30)) for x, y in zip(a, b))


@pytest.mark.parametrize("addressing", ["learned", "one_hot"])
@pytest.mark.parametrize("steps", [1, 20])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_engine_equals_whole_graph_autograd(addressing, steps, momentum):
    memory, net, init, step_data, outer = problem(addressing, steps)
    params = list(memory.parameters())
    engine = unroll(net.functional, init, step_data, params, outer, steps, lr=0.1, momentum=momentum)
    reference = unroll_reference(net.functional, init, step_data, params, outer, steps, lr=0.1, momentum=momentum)
    assert engine.loss == pytest.approx(reference.loss, rel=1e-12)
    assert all(g.abs().max() > 0 for g in reference.grads)
    assert relative_error(engine.grads, reference.grads) < 1e-9  # float64: equal up to rounding
    assert relative_error(engine.params, reference.params) < 1e-10


def test_truncated_window_equals_reference_with_the_same_window():
    memory, net, init, step_data, outer = problem("learned", 20)
    params = list(memory.parameters())
    engine = unroll(net.functional, init, step_data, params, outer, 20, lr=0.1, momentum=0.9, window=6)
    reference = unroll_reference(net.functional, init, step_data, params, outer, 20, lr=0.1, momentum=0.9, window=6)
    full = unroll_reference(net.functional, init, step_data, params, outer, 20, lr=0.1, momentum=0.9)
    assert relative_error(engine.grads, reference.grads) < 1e-9
    assert relative_error(engine.grads, full.grads) > 1e-2  # the window really drops the earlier steps
    assert engine.loss == pytest.approx(full.loss, rel=1e-12)  # but the forward run is the same


@pytest.mark.parametrize("wrong", ["dropped momentum", "wrong lr", "one step short"])
def test_errors_of_the_size_of_a_wrong_term_are_far_above_the_tolerance(wrong):
    """The gradient moves by more than 1e-2 (relative) when momentum, step size or step count is off: seven orders
    of magnitude above the 1e-9 the engine must meet, so a reverse pass with such a mistake cannot pass."""
    memory, net, init, step_data, outer = problem("learned", 20)
    params = list(memory.parameters())
    reference = unroll_reference(net.functional, init, step_data, params, outer, 20, lr=0.1, momentum=0.9)
    kwargs = dict(lr=0.1, momentum=0.9, steps=20)
    kwargs.update({"dropped momentum": dict(momentum=0.0), "wrong lr": dict(lr=-0.1), "one step short": dict(steps=19)}[wrong])
    broken = unroll(net.functional, init, step_data, params, outer, **kwargs)
    assert relative_error(broken.grads, reference.grads) > 1e-2


def test_float32_engine_is_close_to_float64_reference():
    memory, net, init, step_data, outer = problem("learned", 20, dtype=torch.float64)
    params = list(memory.parameters())
    reference = unroll_reference(net.functional, init, step_data, params, outer, 20, lr=0.1, momentum=0.9)
    memory.float()
    net.float()
    engine = unroll(net.functional, [p.float() for p in init],
                    lambda t: tuple(x.float() if x.is_floating_point() else x for x in step_data(t)),
                    list(memory.parameters()), lambda w: outer([p.double() for p in w]).float(), 20, lr=0.1, momentum=0.9)
    assert relative_error([g.double() for g in engine.grads], reference.grads) < 1e-3


def test_meta_gradient_matches_finite_differences_on_a_four_parameter_toy():
    """One 1x1x2 base and one 2x1 addressing matrix (4 numbers), a linear learner, 25 momentum steps."""
    torch.manual_seed(0)
    cfg = AddressableMemoryConfig(image_shape=[1, 1, 2], class_names=["a", "b"], num_bases=1, images_per_query=1,
                                  downsample=1, mean=[0.0], std=[1.0])
    memory = AddressableMemory(cfg).double()
    with torch.no_grad():
        memory.bases.copy_(torch.tensor([[[[0.7, -1.2]]]]))
        memory.addressing.copy_(torch.tensor([[[1.5], [-0.8]]]))
    assert sum(p.numel() for p in memory.parameters()) == 4

    def learner(params, x):
        weight, bias = params
        return x.flatten(1) @ weight.T + bias

    init = [torch.tensor([[0.3, -0.2], [0.1, 0.4]], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)]
    labels = torch.tensor([0, 1])

    def step_data(t):
        return memory.images_for_labels(labels, torch.zeros(2, 1, dtype=torch.long)), labels

    real_x = torch.tensor([[[[1.0, -1.0]]], [[[-0.5, 0.9]]], [[[0.8, -0.2]]]], dtype=torch.float64)
    outer = real_batch_loss(learner, real_x, torch.tensor([0, 1, 0]))
    params = list(memory.parameters())
    engine = unroll(learner, init, step_data, params, outer, 25, lr=0.3, momentum=0.9)

    eps = 1e-6
    for p, grad in zip(params, engine.grads):
        for j in range(p.numel()):
            with torch.no_grad():
                p.view(-1)[j] += eps
                up = unroll(learner, init, step_data, params, outer, 25, lr=0.3, momentum=0.9).loss
                p.view(-1)[j] -= 2 * eps
                down = unroll(learner, init, step_data, params, outer, 25, lr=0.3, momentum=0.9).loss
                p.view(-1)[j] += eps
            numeric = (up - down) / (2 * eps)
            assert grad.view(-1)[j].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host snapshots differ from device ones only with a GPU learner")
def test_snapshots_may_live_in_host_memory():
    memory, net, init, step_data, outer = problem("learned", 5, device="cuda")
    params = list(memory.parameters())
    here = unroll(net.functional, init, step_data, params, outer, 5)
    host = unroll(net.functional, init, step_data, params, outer, 5, snapshot_device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(here.grads, host.grads))


def test_bad_unroll_arguments():
    memory, net, init, step_data, outer = problem("learned", 2)
    with pytest.raises(ValueError, match="at least one step"):
        unroll(net.functional, init, step_data, list(memory.parameters()), outer, 0)
    with pytest.raises(ValueError, match="window"):
        unroll(net.functional, init, step_data, list(memory.parameters()), outer, 2, window=0)


def test_compiled_engine_equals_whole_graph_autograd():
    """torch.compile fuses the per-step work (the fast path on CPU); it must not change the gradient."""
    memory, net, init, step_data, outer = problem("learned", 6)
    params = list(memory.parameters())
    engine = unroll(net.functional, init, step_data, params, outer, 6, lr=0.1, momentum=0.9, compile=True)
    reference = unroll_reference(net.functional, init, step_data, params, outer, 6, lr=0.1, momentum=0.9)
    assert relative_error(engine.grads, reference.grads) < 1e-7  # fused kernels reorder float64 sums


def test_real_batch_gradient_in_chunks_equals_one_graph():
    memory, net, init, step_data, outer = problem("learned", 1)
    from hf_rtp.unroll import FlatParams, InnerStep, RealBatchLoss

    chunked = RealBatchLoss(net.functional, outer.images, outer.labels, chunk=5)  # 12 images: chunks of 5, 5, 2
    flat = FlatParams(init)
    w = flat.flatten(init)
    loss, grad = chunked.value_and_grad(w, InnerStep(net.functional, flat))
    leaf = w.clone().requires_grad_(True)
    whole = outer(flat.unflatten(leaf))
    torch.testing.assert_close(loss, whole.detach())
    torch.testing.assert_close(grad, torch.autograd.grad(whole, leaf)[0])


def test_memory_parameters_must_require_grad():
    memory, net, init, step_data, outer = problem("learned", 2)
    with pytest.raises(ValueError, match="require grad"):
        unroll(net.functional, init, step_data, [p.detach() for p in memory.parameters()], outer, 2)
