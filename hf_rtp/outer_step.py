"""One outer step (Alg. 1's body): draw, unroll, clip, check, update.

Used by the Distiller (one memory, several processes) and by compress-then-recall's task memories alike, so every
memory gets the same recipe: the objective's draw, a differentiable augmentation shared by the recall and the real
batch, the learners taking turns, the exact meta-gradient, gradient clipping, and a divergence guard that applies
nothing non-finite.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch

from .augment import Augmentation, identity
from .objectives import Objective
from .unroll import InnerLoop, UnrollResult


def outer_rates(settings: Mapping[str, Any]) -> dict[str, float]:
    """The outer learning rate of each role of `AddressableMemory.parameter_groups`, from a run's distill settings (a
    DistillConfig as a dict, or the `distill` record of a saved run, which may predate some fields): `tables` at
    `lr`; `labels` at `label_lr` (None: lr); `query_projection` at `query_projection_lr` (None: lr); and
    `query_encoder` at `query_encoder_lr`, by default 0 (frozen) after a supervised or pretrained start and lr after a
    random one (runs saved before the start was recorded started random). One home for these defaults: the
    optimizer is built from them and a resumed run's rates are checked against them. A rate of 0 freezes the group."""
    lr = settings["lr"]
    encoder = settings.get("query_encoder_lr")
    if encoder is None:
        encoder = lr if settings.get("query_encoder_start", "random") == "random" else 0.0
    return {"tables": lr,
            "labels": lr if settings.get("label_lr") is None else settings["label_lr"],
            "query_projection": lr if settings.get("query_projection_lr") is None else settings["query_projection_lr"],
            "query_encoder": encoder}


class NonFiniteError(FloatingPointError):
    """The outer loss, the meta-gradient or the updated memory stopped being finite: the run diverged."""


def build_optimizer(memory, name: str, lr: float, momentum: float = 0.0,
                    group_lr: dict[str, float | None] | None = None) -> torch.optim.Optimizer:
    """`sgd` (with `momentum`) or `adam` over the memory's parameter groups (`parameter_groups`), each at `lr` unless
    `group_lr` names another rate for it (e.g. `labels` for learned soft labels); a rate of 0 leaves the group out
    (frozen, e.g. a pretrained query encoder)."""
    group_lr = group_lr or {}
    groups = [{"params": params, **({"lr": group_lr[role]} if group_lr.get(role) is not None else {})}
              for role, params in memory.parameter_groups().items() if group_lr.get(role) != 0]
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


class OuterStep:
    """Meta-gradient steps of `objective.memory` through `inner` learners (taking turns by unroll), by `optimizer`.

    `augment`: a DSA strategy drawn once per unroll; `synthetic_per_class`: recalled images of each query per inner
    step (at most r); `random_window`: end each unroll at a random step in [window, T]; `clip_grad_norm`: None for no
    clipping; `reduce`: sums a tensor over processes (None: one process).
    """

    def __init__(self, objective: Objective, inner: Sequence[InnerLoop], optimizer: torch.optim.Optimizer,
                 synthetic_per_class: int, augment: str | None = None, random_window: bool = False,
                 clip_grad_norm: float | None = None, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 processes: int = 1):
        self.objective, self.inner, self.optimizer = objective, list(inner), optimizer
        self.memory = objective.memory
        self.synthetic_per_class, self.augment, self.random_window = synthetic_per_class, augment, random_window
        self.clip_grad_norm, self.reduce, self.processes = clip_grad_norm, reduce, processes

    def unroll(self, generator: torch.Generator, turn: int, steps: int, reference: bool = False) -> UnrollResult:
        """One unroll of at most `steps` inner steps, all of its randomness drawn from `generator`; `turn` says which
        inner learner."""
        inner = self.inner[turn % len(self.inner)]
        draw = self.objective.draw(generator)
        # One op and one draw per unroll, shared by every inner step and the real batch (DSA's Siamese use).
        augment = Augmentation.draw(self.augment, 1, generator, shared=True) or identity
        init = inner.init_params(generator)
        r = self.memory.config.images_per_query
        s = min(self.synthetic_per_class, r)
        if self.random_window:
            steps = int(torch.randint(min(inner.window, steps), steps + 1, (1,), generator=generator))
        picks = torch.stack([torch.rand(draw.way, r, generator=generator).argsort(1)[:, :s] for _ in range(steps)])
        inputs = self.objective.inputs(draw, picks.to(self.memory.device), augment, reference=reference)
        return inner.run(inputs, init, reference=reference)

    def __call__(self, unrolls: Sequence[tuple[torch.Generator, int]], steps: int) -> dict[str, Any]:
        """Average the meta-gradients of `unrolls` ((generator, turn) each, on this process) over every process,
        clip, and update the memory. Raises NonFiniteError when the loss or the gradient is not finite (nothing is
        applied) or when the update made the memory so (the caller keeps its last good checkpoint)."""
        params = list(self.memory.parameters())
        total = [torch.zeros_like(p) for p in params]
        loss = torch.zeros((), device=self.memory.device)
        for generator, turn in unrolls:
            result = self.unroll(generator, turn, steps)
            loss += result.loss
            for acc, g in zip(total, result.grads):
                acc.add_(g)
        if self.reduce is not None:
            total = [self.reduce(g) for g in total]
            loss = self.reduce(loss)
        count = self.processes * len(unrolls)
        # Every process holds the same reduced values, so every process stops at the same step.
        names = [name for name, _ in self.memory.named_parameters()]
        bad = [name for name, g in zip(names, total) if not bool(torch.isfinite(g).all())]
        if not math.isfinite(float(loss)) or bad:
            raise NonFiniteError(f"the outer loss is {float(loss) / count}" if not math.isfinite(float(loss))
                                 else f"the meta-gradient of {bad} is not finite")
        for p, g in zip(params, total):
            p.grad = g / count
        norm = torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm if self.clip_grad_norm is not None else math.inf)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        bad = [name for name, p in zip(names, params) if not bool(torch.isfinite(p).all())]
        if bad:
            raise NonFiniteError(f"the update made {bad} non-finite")
        return {"loss": float(loss) / count, "grad_norm": float(norm)}
