"""The inner loop (T steps of SGD with momentum on recalled images) and its exact meta-gradient.

Forward, t = 0..T-1:  v_{t+1} = m v_t + g_t(w_t, phi);  w_{t+1} = w_t - lr v_{t+1};  loss L(w_T) on real data.
`unroll` differentiates L with respect to the memory parameters phi by walking the steps backwards from stored
weight snapshots (Maclaurin et al. 2015, Alg. 2): per step it recomputes that step's loss and takes one
vector-Jacobian product of g_t, so activation memory does not grow with T. `unroll_reference` keeps the whole
autograd graph instead; the tests check that both agree.

`InnerLoop` is the public face its callers (the outer step and bench/unroll.py) use: a learner, its compiled
per-step functions built once, and `run`, one unroll of the `UnrollInputs` an objective drew (objectives.py says
what an unroll trains on; this module knows nothing of memories).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .learners import FunctionalLearner, functional_learner
from .host import keep_host_memory

# recall(t) -> (images, labels) of inner step t; differentiable w.r.t. the memory parameters, deterministic in t.
StepData = Callable[[int], tuple[torch.Tensor, torch.Tensor]]
# w_T -> scalar outer loss (cross-entropy on a real batch).
OuterLoss = Callable[[Sequence[torch.Tensor]], torch.Tensor]


@dataclass
class UnrollResult:
    loss: float
    """Outer loss L(w_T)."""
    grads: list[torch.Tensor]
    """dL/dphi, one tensor per memory parameter (zeros where a parameter was not used)."""
    params: list[torch.Tensor]
    """The final inner weights w_T (detached)."""


@dataclass
class UnrollInputs:
    """What one unroll trains on, as an objective draws it (see objectives.py): the engine needs nothing else."""

    recall: StepData
    """t -> (images, targets) of inner step t, differentiable with respect to `leaves`."""
    real_images: torch.Tensor
    """The real batch of the outer loss L(w_T)."""
    real_labels: torch.Tensor
    leaves: list[torch.Tensor]
    """The tensors the engine differentiates (the memory's parameters, or stand-ins such as an episode's queries)."""
    steps: int
    """T, the inner steps of this unroll."""
    batch_size: int
    """Recalled images per inner step."""
    soft_targets: bool = False
    """The targets of `recall` depend on `leaves` too (learned soft labels)."""
    to_parameters: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None
    """Gradients of `leaves` -> gradients of the memory's parameters, in `parameters()` order (None: the same)."""


def inner_loss(learner: FunctionalLearner, params: Sequence[torch.Tensor], images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The one loss of the engine, inner steps and outer batch alike: mean cross-entropy of the learner's logits
    against class ids, or against distributions over the classes (a memory's learned soft labels)."""
    return F.cross_entropy(learner(params, images), labels)


class RealBatchLoss:
    """Mean cross-entropy of the unrolled network on a real batch: L(w_T).

    Called on a parameter list it returns the loss (one graph, for the reference); `value_and_grad` takes the
    gradient in chunks of `chunk` images, so a large real batch does not set the engine's peak memory.
    """

    def __init__(self, learner: FunctionalLearner, images: torch.Tensor, labels: torch.Tensor, chunk: int = 128):
        self.learner, self.images, self.labels, self.chunk = learner, images, labels, chunk

    def __call__(self, params: Sequence[torch.Tensor]) -> torch.Tensor:
        return inner_loss(self.learner, params, self.images, self.labels)

    def value_and_grad(self, w: torch.Tensor, step: "InnerStep") -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and gradient at flat weights `w`, chunk by chunk through the inner step's (compiled) function."""
        loss, grad = torch.zeros((), dtype=w.dtype, device=w.device), torch.zeros_like(w)
        n = len(self.labels)
        for start in range(0, n, self.chunk):
            x, y = self.images[start : start + self.chunk], self.labels[start : start + self.chunk]
            part_loss, part_grad = step.value_and_grad(w, x, y)  # mean over the chunk
            grad.add_(part_grad, alpha=len(y) / n)
            loss += part_loss * (len(y) / n)
        return loss, grad


def real_batch_loss(learner: FunctionalLearner, images: torch.Tensor, labels: torch.Tensor, chunk: int = 128) -> RealBatchLoss:
    return RealBatchLoss(learner, images, labels, chunk)


def _window(steps: int, window: int | None) -> int:
    """First step whose gradient path is differentiated (0 = full BPTT)."""
    if steps < 1:
        raise ValueError(f"the unroll needs at least one step, got {steps}")
    if window is None or window >= steps:
        return 0
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return steps - window


class FlatParams:
    """Views a list of tensors as one flat vector, so per-step state is a single tensor (cheap to store)."""

    def __init__(self, tensors: Sequence[torch.Tensor]):
        self.shapes = [t.shape for t in tensors]
        self.sizes = [t.numel() for t in tensors]

    def flatten(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat([t.reshape(-1) for t in tensors])

    def unflatten(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [piece.view(shape) for piece, shape in zip(flat.split(self.sizes), self.shapes)]


def _snapshot_store(rows: int, size: int, like: torch.Tensor, device: str | torch.device | None) -> torch.Tensor:
    """Room for the weight snapshots: on the learner's device when they fit comfortably, else in host memory."""
    if device is None:
        device = like.device
        if like.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(like.device)
            if rows * size * like.element_size() > 0.5 * free:
                device = "cpu"
    store = torch.empty(rows, size, dtype=like.dtype, device=device)
    return store.pin_memory() if store.device.type == "cpu" and like.device.type == "cuda" else store


class UnrollBuffers:
    """The engine's per-unroll state (weights, velocity, its adjoint, the T weight snapshots), allocated once and
    reused by every unroll of the same shape: on a CPU, freeing and re-allocating the snapshot store (about T x the
    learner's size) each outer step costs millions of page faults."""

    def __init__(self, snapshot_device: str | torch.device | None = None):
        self.snapshot_device = snapshot_device
        self._store: torch.Tensor | None = None
        self._state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def used(self) -> bool:
        """Whether an unroll has run on these buffers (they are allocated by the first one)."""
        return self._state is not None

    def get(self, rows: int, start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(w = start, v = 0, a store for `rows` snapshots), reusing earlier allocations when they fit."""
        if self._state is None or self._state[0].shape != start.shape or self._state[0].dtype != start.dtype \
                or self._state[0].device != start.device:
            self._state = (torch.empty_like(start), torch.empty_like(start), torch.empty_like(start))
            self._store = None
        w, v, _ = self._state
        w.copy_(start)
        v.zero_()
        if self._store is None or self._store.shape[0] < rows:
            self._store = None  # free the old store before allocating the larger one
            self._store = _snapshot_store(rows, start.numel(), start, self.snapshot_device)
        return w, v, self._store[:rows]

    def dv(self) -> torch.Tensor:
        """The adjoint of the velocity, zeroed (the shape of the weights `get` was last called with)."""
        assert self._state is not None
        return self._state[2].zero_()


class InnerStep:
    """The two per-step computations of the engine.

    `value_and_grad(w, x, y)` is (L, g_t = dL/dw) on flat weights w; `reverse(w, x, y, dv)` is the gradient of
    dv . g_t with respect to (w, x): the Hessian-vector product H dv and the vector-Jacobian product with the
    recalled images, which the caller carries on to the memory parameters; `reverse_soft` also returns the gradient
    with respect to y, for learned soft labels (y a distribution over classes). Eagerly they are two autograd calls
    (lowest overhead for small networks); with `compile=True` they are torch.func transforms run through
    torch.compile (fused elementwise work; about 1.5x faster on CPU for the ConvNet, a one-off compile per shape).
    """

    def __init__(self, learner: FunctionalLearner, flat: FlatParams, compile: bool = False, compile_mode: str | None = None):
        def loss(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return inner_loss(learner, flat.unflatten(w), x, y)

        if not compile:
            self.value_and_grad = functools.partial(self._eager_value_and_grad, loss)
            self.reverse = functools.partial(self._eager_reverse, loss, False)
            self.reverse_soft = functools.partial(self._eager_reverse, loss, True)
            return
        gradient = torch.func.grad(loss)

        def directional(w, x, y, dv):
            return (gradient(w, x, y) * dv).sum()

        # compile_mode: torch.compile's mode, e.g. "reduce-overhead" (CUDA graphs on a GPU, where the unroll is bound
        # by kernel launches). Outputs are used before the next call, as CUDA graphs' reused output buffers require.
        grad_and_value = torch.compile(torch.func.grad_and_value(loss), dynamic=False, mode=compile_mode)

        def value_and_grad(w, x, y):
            grad, value = grad_and_value(w, x, y)
            return value, grad

        self.value_and_grad = value_and_grad
        self.reverse = torch.compile(torch.func.grad(directional, argnums=(0, 1)), dynamic=False, mode=compile_mode)
        # compiled on first use only (memories with soft labels)
        self.reverse_soft = torch.compile(torch.func.grad(directional, argnums=(0, 1, 2)), dynamic=False, mode=compile_mode)

    @staticmethod
    def _eager_value_and_grad(loss, w, x, y):
        with torch.enable_grad():
            leaf = w.detach().requires_grad_(True)
            value = loss(leaf, x, y)
            (grad,) = torch.autograd.grad(value, leaf)
        return value.detach(), grad

    @staticmethod
    def _eager_reverse(loss, soft, w, x, y, dv):
        with torch.enable_grad():
            leaf = w.detach().requires_grad_(True)
            inputs = [leaf, x.detach().requires_grad_(True)]
            if soft:
                inputs.append(y.detach().requires_grad_(True))
            (grad,) = torch.autograd.grad(loss(leaf, inputs[1], inputs[2] if soft else y), leaf, create_graph=True)
            return torch.autograd.grad(grad, inputs, grad_outputs=dv)


def unroll(
    learner: FunctionalLearner,
    init_params: Sequence[torch.Tensor],
    step_data: StepData,
    memory_params: Sequence[torch.Tensor],
    outer_loss: OuterLoss,
    steps: int,
    lr: float = 0.01,
    momentum: float = 0.9,
    window: int | None = None,
    snapshot_device: str | torch.device | None = None,
    compile: bool = False,
    inner_step: InnerStep | None = None,
    buffers: "UnrollBuffers | None" = None,
    soft_targets: bool = False,
) -> UnrollResult:
    """Run `steps` inner steps and return L(w_T) and its exact gradient w.r.t. `memory_params` (the leaves).

    With `window` W < steps, only the last W steps are differentiated (truncated BPTT): earlier steps shape w and v
    but pass no gradient to the memory. Snapshots go to `snapshot_device` (default: the learner's device if they
    take under half its free memory, else host memory). Pass an `inner_step` to reuse compiled functions across
    unrolls; otherwise one is built (compiled when `compile`). Pass `buffers` to keep the snapshot store and the
    per-step state allocated across unrolls (a fresh allocation of the store each outer step costs page faults).
    `soft_targets`: the targets `step_data` returns depend on the leaves too (learned soft labels), so each step's
    vector-Jacobian product also runs through them.
    """
    first = _window(steps, window)
    if not memory_params or not all(p.requires_grad for p in memory_params):
        raise ValueError("memory_params must be a non-empty list of tensors that require grad (the memory's parameters)")
    flat = FlatParams(init_params)
    step = inner_step or InnerStep(learner, flat, compile=compile)
    buffers = buffers or UnrollBuffers(snapshot_device)
    start = flat.flatten([p.detach() for p in init_params])
    w, v, snapshots = buffers.get(steps - first, start)

    # Forward: ordinary training, no graph kept beyond one step.
    with torch.no_grad():
        for t in range(steps):
            if t >= first:
                snapshots[t - first].copy_(w, non_blocking=True)
            images, labels = step_data(t)
            v.mul_(momentum).add_(step.value_and_grad(w, images, labels)[1])
            w.sub_(v, alpha=lr)

    if isinstance(outer_loss, RealBatchLoss):
        loss, dw = outer_loss.value_and_grad(w, step)
    else:
        final = w.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = outer_loss(flat.unflatten(final))
            (dw,) = torch.autograd.grad(loss, final)
    dv = buffers.dv()
    dphi = [torch.zeros_like(p) for p in memory_params]

    # Reverse: carry dL/dw and dL/dv back one step at a time, recomputing each step's gradient g_t.
    for t in reversed(range(first, steps)):
        dv.add_(dw, alpha=-lr)  # w_{t+1} = w_t - lr v_{t+1}
        w_t = snapshots[t - first].to(w.device, non_blocking=True)
        with torch.enable_grad():
            images, labels = step_data(t)
            if soft_targets:  # learned soft labels: they get a gradient too
                hessian_dv, *recalled_grads = step.reverse_soft(w_t, images.detach(), labels.detach(), dv)
                recalled = [images, labels]
            else:
                hessian_dv, *recalled_grads = step.reverse(w_t, images.detach(), labels, dv)
                recalled = [images]
            # carry d(dv . g_t)/d(images, labels) on to the bases, addressing and label tables
            grads = torch.autograd.grad(recalled, memory_params, grad_outputs=recalled_grads, allow_unused=True)
        dw.add_(hessian_dv)
        for acc, grad in zip(dphi, grads):
            if grad is not None:
                acc.add_(grad)
        dv.mul_(momentum)  # v_{t+1} = m v_t + g_t
    return UnrollResult(loss=float(loss.detach()), grads=dphi, params=flat.unflatten(w.detach().clone()))


def unroll_reference(
    learner: FunctionalLearner,
    init_params: Sequence[torch.Tensor],
    step_data: StepData,
    memory_params: Sequence[torch.Tensor],
    outer_loss: OuterLoss,
    steps: int,
    lr: float = 0.01,
    momentum: float = 0.9,
    window: int | None = None,
) -> UnrollResult:
    """The same gradient by plain autograd through the whole unrolled graph (memory grows with T): for tests."""
    first = _window(steps, window)
    params = [p.detach().clone() for p in init_params]
    velocity = [torch.zeros_like(p) for p in params]
    with torch.enable_grad():
        for t in range(steps):
            if t < first:  # before the window: plain training, nothing kept
                leaves = [p.detach().requires_grad_(True) for p in params]
                with torch.no_grad():
                    images, labels = step_data(t)
                grads = torch.autograd.grad(inner_loss(learner, leaves, images, labels), leaves)
            else:
                if t == first:
                    params = [p.detach().requires_grad_(True) for p in params]
                images, labels = step_data(t)
                grads = torch.autograd.grad(inner_loss(learner, params, images, labels), params, create_graph=True)
            velocity = [momentum * v + g for v, g in zip(velocity, grads)]
            params = [p - lr * v for p, v in zip(params, velocity)]
        loss = outer_loss(params)
        grads = torch.autograd.grad(loss, list(memory_params), allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(memory_params, grads)]
    return UnrollResult(loss=float(loss.detach()), grads=list(grads), params=[p.detach() for p in params])


class InnerLoop:
    """The inner learner (a module with `init_params(generator)`, e.g. the ConvNet) trained by T steps of SGD with
    momentum, with its per-step functions and buffers built once, so compiled code and memory are reused by every
    unroll. On a CPU (`keep_memory`) it also asks malloc to keep freed memory (see `keep_host_memory`)."""

    def __init__(self, learner: nn.Module, lr: float = 0.01, momentum: float = 0.9, window: int | None = None,
                 compile: bool = False, compile_mode: str | None = None, keep_memory: bool = True):
        self.learner, self.lr, self.momentum, self.window = learner, lr, momentum, window
        if keep_memory and next(learner.parameters()).device.type == "cpu":
            keep_host_memory()
        self.functional = functional_learner(learner)
        self.step = InnerStep(self.functional, FlatParams(list(learner.parameters())), compile=compile, compile_mode=compile_mode)
        self.buffers = UnrollBuffers()

    def init_params(self, generator: torch.Generator) -> list[torch.Tensor]:
        """A fresh initialisation of the learner, drawn from `generator`, on the learner's device."""
        device = next(self.learner.parameters()).device
        return [p.to(device) for p in self.learner.init_params(generator)]

    def run(self, inputs: "UnrollInputs", init: Sequence[torch.Tensor], reference: bool = False) -> UnrollResult:
        """One unroll of `inputs` (what an objective drew: see objectives.py) from weights `init`: L(w_T) and its
        exact gradient with respect to `inputs.leaves`, carried on to the memory's parameters by
        `inputs.to_parameters` (`reference`: by whole-graph autograd, for tests)."""
        # Chunks the size of an inner minibatch reuse its compiled shape; on a CPU small chunks are also faster per
        # image (cache), on a GPU one big batch is.
        chunk = inputs.batch_size if inputs.real_images.device.type == "cpu" else len(inputs.real_labels)
        outer = real_batch_loss(self.functional, inputs.real_images, inputs.real_labels, chunk=chunk)
        if reference:
            result = unroll_reference(self.functional, init, inputs.recall, inputs.leaves, outer, inputs.steps,
                                      lr=self.lr, momentum=self.momentum, window=self.window)
        else:
            result = unroll(self.functional, init, inputs.recall, inputs.leaves, outer, inputs.steps, lr=self.lr,
                            momentum=self.momentum, window=self.window, inner_step=self.step, buffers=self.buffers,
                            soft_targets=inputs.soft_targets)
        if inputs.to_parameters is not None:
            result.grads = inputs.to_parameters(result.grads)
        return result
