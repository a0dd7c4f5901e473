import pytest
import torch

from hf_rtp.augment import OPS, Augmentation, batch_augmenter, parse_strategy


def draw(op, n, shared=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(200):  # draw until the strategy picks `op` (one-op strategy: first try)
        aug = Augmentation.draw(op, n, g, shared=shared)
        if aug.op == op:
            return aug
    raise AssertionError(op)


@pytest.mark.parametrize("op", OPS)
def test_every_op_is_differentiable(op):
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    aug = draw(op, 2)
    assert aug(x).shape == x.shape
    assert torch.autograd.gradcheck(aug, (x,))


@pytest.mark.parametrize("op", OPS)
def test_a_shared_draw_transforms_every_image_the_same_way(op):
    x = torch.randn(4, 3, 8, 8)
    aug = draw(op, 4, shared=True, seed=1)
    together = aug(x)
    for i in range(4):
        torch.testing.assert_close(together[i : i + 1], aug(x[i : i + 1]))


def test_per_image_draws_differ():
    aug = draw("rotate", 8, shared=False)
    assert len(aug.params["angle"]) == 8 and aug.params["angle"].std() > 0


def test_geometric_ops_do_what_they_say():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    flip = Augmentation("flip", {"flip": torch.tensor([True])})
    torch.testing.assert_close(flip(x), x.flip(3))
    still = Augmentation("rotate", {"angle": torch.tensor([0.0])})
    torch.testing.assert_close(still(x), x, atol=1e-5, rtol=0)
    quarter = Augmentation("rotate", {"angle": torch.tensor([90.0])})
    torch.testing.assert_close(quarter(x), torch.rot90(x, 1, (2, 3)), atol=1e-4, rtol=0)
    hole = Augmentation("cutout", {"cx": torch.tensor([0.5]), "cy": torch.tensor([0.5])})(torch.ones(1, 1, 4, 4))
    assert hole.sum() == 16 - 4 and hole[0, 0, 1:3, 1:3].sum() == 0


def test_strategies_and_errors():
    assert parse_strategy("flip_rotate") == ("flip", "rotate")
    assert parse_strategy("cifar") == ("flip", "rotate")
    assert "flip" not in parse_strategy("digits")
    assert parse_strategy(None) == () and parse_strategy("none") == ()
    with pytest.raises(ValueError, match="unknown augmentation \\['mixup'\\]"):
        parse_strategy("flip_mixup")
    x = torch.randn(3, 1, 4, 4)
    assert batch_augmenter(None, torch.Generator())(x) is x


def test_engine_replays_the_augmentation_exactly():
    """A shared draw applied at every inner step: the engine's gradient still equals whole-graph autograd."""
    from tests.test_unroll import problem, relative_error

    from hf_rtp.unroll import unroll, unroll_reference

    memory, net, init, step_data, outer = problem("learned", 8)
    aug = Augmentation("rotate", {"angle": torch.tensor([11.0], dtype=torch.float64)})

    def augmented(t):
        images, labels = step_data(t)
        return aug(images), labels

    params = list(memory.parameters())
    engine = unroll(net.functional, init, augmented, params, outer, 8, lr=0.1, momentum=0.9)
    reference = unroll_reference(net.functional, init, augmented, params, outer, 8, lr=0.1, momentum=0.9)
    plain = unroll_reference(net.functional, init, step_data, params, outer, 8, lr=0.1, momentum=0.9)
    assert relative_error(engine.grads, reference.grads) < 1e-9
    assert relative_error(plain.grads, reference.grads) > 1e-3
