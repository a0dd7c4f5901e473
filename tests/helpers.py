"""Small shared pieces of the tests: tiny memories and runs on the embedded digits, state comparison."""

from __future__ import annotations

import torch

from hf_rtp import AddressableMemory, AddressableMemoryConfig
from hf_rtp.distill import DistillConfig

# hf-rtp distill options for a run of a few seconds on digits.
TINY_CLI = ["--steps", "4", "--unroll-steps", "3", "--eval-every", "2", "--eval-epochs", "3", "--learner-width", "8",
            "--eval-width", "8", "--final-models", "2", "--final-epochs", "5", "--no-compile", "--no-progress"]


def fresh_memory(data, seed: int = 0, **kwargs) -> AddressableMemory:
    """A new memory for `data` (1 image per class, 8 bases unless told), drawn from `seed`."""
    torch.manual_seed(seed)
    kwargs = {"num_bases": 8, **kwargs}
    cfg = AddressableMemoryConfig.for_budget(data.image_shape, data.class_names, ipc=1, mean=data.mean, std=data.std,
                                             dataset_name=data.name or None, **kwargs)
    return AddressableMemory(cfg)


def tiny(output_dir, **overrides) -> DistillConfig:
    """A DistillConfig of a few seconds: 6 outer steps of T=4 with a width-8 learner."""
    settings = dict(steps=6, unroll_steps=4, learner_width=8, real_per_class=8, synthetic_per_class=3, eval_every=2,
                    eval_epochs=3, eval_width=8, checkpoint_every=2, output_dir=str(output_dir), optimizer="adam", lr=0.05,
                    compile=False, progress=False)
    settings.update(overrides)
    return DistillConfig(**settings)


def state(memory: AddressableMemory) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in memory.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
