"""Continual learners on a task stream, all held to one buffer counted in floats (sec 5.2, Table 3).

Every method sees each task once, in minibatches (`TaskStream.batches`), through `begin_task` / `observe` /
`end_task`, and is scored by `classifier()` on every task at the end (`run_stream`). What a method stores besides
its network, `stored_floats()`, is checked against the buffer after every minibatch: a method that ever holds more
raises `BufferOverflow`, so no result comes from a larger buffer than stated.

- `online`: fine-tune the network on each minibatch (no buffer); `glances` SGD steps per minibatch;
- `replay`: experience replay, a reservoir of real images (buffer / image size of them); each of the minibatch's
  `glances` steps trains it together with a fresh draw of as many replayed images (La-MAML's ER);
- `ewc`: online EWC, a quadratic penalty lambda/2 sum F (w - w*)^2 with the diagonal Fisher summed over tasks.
  Each task's Fisher is the mean of squared per-sample gradients (the empirical Fisher, true labels) at the
  weights the task ends with, over the task's images held in the buffer while it streams (a reservoir, dropped at
  its end). Fisher and anchor are regulariser state, like the network, not buffer (the literature's convention;
  `state_floats` reports them);
- `compress-then-recall` (the paper's method): while a task streams, the free part of the buffer holds its raw
  images (a class-balanced reservoir) and the task's memory is distilled on them and on each arriving minibatch
  (exact meta-gradients through `InnerLoop`, the network that will be retrained as the inner learner); at the
  task's end the raw images are dropped and the memory stays. The memory being distilled counts against the
  buffer from the task's start, so each memory takes a little less than the paper's 1/T of the buffer by default
  (1/22 on Rotated and Permuted MNIST, 1/103 on MANY): the T-th memory and a raw image of each of the last task's
  classes then fit beside the T-1 finished ones. Two ways to use the bank at test time: `joint`
  (one fresh network trained on everything the bank recalls, scored on every task) and `per-task` (one fresh
  network per task memory, each task scored with its own: this assumes the task's identity at test time).

Every learner's loss is checked after each step: a non-finite loss (a learning rate far too large) stops the run
with `NonFiniteError`, naming the method, instead of scoring a NaN network.
"""

from __future__ import annotations

import math
import time
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..augment import parse_strategy

from ..bank import MemoryBank
from ..configuration_memory import AddressableMemoryConfig, BudgetError
from ..data import ImageClassificationData
from ..evaluate import EvalConfig, train_from_scratch
from ..initialization import init_from_real
from ..learners import create_learner, learner_specs, seeded_learner
from ..modeling_memory import AddressableMemory
from ..objectives import TaskObjective
from ..options import check_fields
from ..outer_step import NonFiniteError, OuterStep, build_optimizer
from ..unroll import InnerLoop
from .streams import BUFFER_SAMPLES, Task, TaskStream, backward_transfer, retained_accuracy, task_accuracy

MethodName = Literal["online", "replay", "ewc", "compress-then-recall"]
METHODS: tuple[str, ...] = typing.get_args(MethodName)


class BufferOverflow(RuntimeError):
    """A continual learner held more floats than its buffer allows."""


@dataclass
class ContinualConfig:
    """A continual learner and its budget (the network is La-MAML's unless changed: an MLP of 2 x 100 units)."""

    method: MethodName = field(default="compress-then-recall", metadata={"help": "The learner: online fine-tuning, experience replay, online EWC, or compress-then-recall (the paper's)."})
    buffer_floats: int | None = field(default=None, metadata={"help": "The buffer, in floats (default: La-MAML's 200 images for rotations/permutations/split-cifar100, 500 for many)."})
    learner: str = field(default="mlp", metadata={"help": "The network: `mlp` (2 x 100 hidden units), `mlp-<hidden>`, or `convnet-<width>`."})
    lr: float = field(default=0.1, metadata={"help": "SGD learning rate of the baselines' network."})
    glances: int = field(default=1, metadata={"min": 1, "help": "SGD steps of the baselines on each arriving minibatch, each with a fresh replay draw (La-MAML's run_experiments.sh uses 5 on Rotated and Permuted MNIST and 10 on MANY)."})
    replay_batch: int = field(default=10, metadata={"min": 1, "help": "Replayed images trained with each minibatch (replay)."})
    ewc_lambda: float = field(default=100.0, metadata={"help": "Strength of the EWC penalty."})
    memory_share: int | None = field(default=None, metadata={"min": 1, "help": "Compress-then-recall: each task's memory takes 1/memory_share of the buffer (default: the smallest share above the number of tasks T with which the memory being distilled and a raw image of each class of the last task fit beside the finished memories: 22 on Rotated/Permuted MNIST, 103 on MANY; the paper's 1/T leaves them no room)."})
    num_bases: int | None = field(default=None, metadata={"min": 1, "help": "Compress-then-recall: bases K of each task's memory (default: the largest of 16, 8, 4, 2, 1 that takes at most 80% of it)."})
    downsample: int | None = field(default=None, metadata={"min": 1, "help": "Compress-then-recall: bases stored at 1/downsample resolution (default: 2, or 1 for permuted pixels, which have no spatial smoothness for the bilinear upsampling to keep)."})
    inner_steps: int = field(default=20, metadata={"min": 1, "help": "Compress-then-recall: inner SGD steps T of each unroll."})
    inner_lr: float = field(default=0.05, metadata={"help": "Compress-then-recall: inner learning rate."})
    synthetic_per_class: int = field(default=4, metadata={"min": 1, "help": "Compress-then-recall: recalled images per class in each inner step."})
    real_per_step: int = field(default=100, metadata={"min": 1, "help": "Compress-then-recall: real images of each outer loss (the minibatch plus buffered ones)."})
    steps_per_batch: int = field(default=1, metadata={"min": 0, "help": "Compress-then-recall: outer steps on each arriving minibatch."})
    final_steps: int = field(default=100, metadata={"min": 0, "help": "Compress-then-recall: outer steps on the buffered images at the task's end."})
    outer_lr: float = field(default=0.01, metadata={"help": "Compress-then-recall: Adam learning rate of the memory."})
    clip_grad_norm: float | None = field(default=None, metadata={"help": "Compress-then-recall: clip each task memory's meta-gradient norm (None: no clipping)."})
    augment: str | None = field(default=None, metadata={"help": "Compress-then-recall: differentiable augmentation drawn once per unroll (DSA ops joined by _, or cifar, dsa, digits; None for none)."})
    soft_labels: bool = field(default=False, metadata={"help": "Compress-then-recall: each task memory learns a soft label for every recalled image (costs K*classes+1 of its floats)."})
    rehearse_per_step: int = field(default=0, metadata={"min": 0, "help": "Compress-then-recall: images of the earlier task memories' recall added to each inner step of a task's unroll, so each memory is distilled for the network that trains on the whole bank (the joint mode); 0: each task alone."})
    retain_per_step: int = field(default=0, metadata={"min": 0, "help": "Compress-then-recall: images of the earlier task memories' recall added to each outer loss, with their class ids, so a memory is also distilled not to undo what the earlier memories teach (the joint mode; needs hard labels); 0: the task's real images alone."})
    warm_start: bool = field(default=False, metadata={"help": "Compress-then-recall: each unroll of a task after the first starts from a network trained (the retraining recipe) on the earlier task memories' recall instead of a fresh init, so the memory is distilled to add its task to a network that knows the earlier ones (the joint mode); with rehearse_per_step, the unroll also keeps training on their recall."})
    retrain_epochs: int = field(default=100, metadata={"min": 1, "help": "Compress-then-recall: epochs of the fresh network on everything recalled."})
    retrain_lr: float = field(default=0.01, metadata={"help": "Compress-then-recall: its SGD (momentum 0.9) learning rate."})
    retrain_batch: int = field(default=256, metadata={"min": 1, "help": "Compress-then-recall: its minibatch size."})
    retrain_noise: float = field(default=0.0, metadata={"help": "Compress-then-recall: std of Gaussian noise added to every recalled image at every retraining step (0: none). A task memory recalls images in the span of its few bases; trained on all of them, the joint network reads the other tasks' features into a task's test images, and noise teaches it to ignore what the recall does not span."})
    seed: int = field(default=0, metadata={"min": 0, "help": "Seed of the network inits, replay draws and unrolls."})

    def __post_init__(self):
        check_fields(self)
        if self.buffer_floats is not None and self.buffer_floats < 1:
            raise ValueError(f"buffer_floats must be positive, got {self.buffer_floats}")
        for name in ("lr", "inner_lr", "outer_lr", "retrain_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.retrain_noise < math.inf:
            raise ValueError(f"retrain_noise must be a finite std >= 0 (0: none), got {self.retrain_noise}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be positive (None: no clipping), got {self.clip_grad_norm}")
        if self.ewc_lambda < 0:
            raise ValueError(f"ewc_lambda must be >= 0, got {self.ewc_lambda}")
        if self.retain_per_step and self.soft_labels:
            raise ValueError("retain_per_step scores the earlier memories' recall by its class ids: it cannot be used "
                             "with soft_labels")
        if not parse_strategy(self.augment):
            self.augment = None
        learner_specs(self.learner, unrolled=True)  # compress-then-recall unrolls it: it needs a functional form

    def memory_layout(self, stream: TaskStream, floats: int) -> tuple[int, int]:
        """(num_bases, downsample) of each task's memory of `floats` floats: as given, or the stream's default.
        Permuted pixels have no spatial smoothness, so their bases are stored at full resolution (a 2x downsampled
        base, upsampled bilinearly, cannot hold a permuted image: compress-then-recall scored 32% on Permuted MNIST
        with them). Default K: the largest of 16, 8, 4, 2, 1 that leaves room for at least 4 addressing matrices
        (4 recalled images per class): 16 on Rotated MNIST (r=24), 8 on Permuted MNIST (r=10), 4 on MANY's
        half-size memories (r=16). More bases beat more addressing matrices in the per-task pilots (Rotated MNIST,
        validation: K=16 78.30% vs K=8 67.26%, bench/results/continual_tasks_rotations.json)."""
        downsample = self.downsample or (1 if stream.name in ("permutations", "many") else 2)
        if self.num_bases:
            return self.num_bases, downsample
        c, h, w = stream.image_shape
        base = c * (h // downsample) * (w // downsample)
        classes = len(stream.tasks[0].classes)  # one addressing matrix: classes x K floats
        return next((k for k in (16, 8, 4, 2) if k * (base + 4 * classes) <= floats), 1), downsample

    def retraining(self) -> dict[str, Any]:
        """What trains a network on a bank's recall (both recall modes), as a bank records it (`MemoryBank.recipe`)."""
        names = ("learner", "retrain_epochs", "retrain_lr", "retrain_batch", "retrain_noise", "seed")
        return {name: getattr(self, name) for name in names}

    def default_share(self, stream: TaskStream, buffer_floats: int | None = None) -> int:
        """The memory share's default: the smallest s > T with which the last task still holds a raw image of each of
        its classes beside all T memories (the one being distilled included); 22 on Rotated/Permuted MNIST, 103 on
        MANY. T + 1 when no share leaves that room."""
        buffer = self.buffer_for(stream) if buffer_floats is None else buffer_floats
        tasks, classes = len(stream.tasks), len(stream.tasks[-1].classes)
        if buffer // stream.image_floats < classes + 1:
            return tasks + 1
        s = tasks + 1
        while (buffer - tasks * (buffer // s)) // stream.image_floats < classes:
            s += 1
        return s

    def buffer_for(self, stream: TaskStream) -> int:
        """The buffer in floats: as given, or La-MAML's for the stream."""
        return self.buffer_floats if self.buffer_floats is not None else BUFFER_SAMPLES[stream.name] * stream.image_floats


def network(name: str, stream: TaskStream, seed: int) -> nn.Module:
    """A fresh network for the stream's images and classes, initialised from `seed` as every student is."""
    c, h, w = stream.image_shape
    return seeded_learner(name, c, stream.num_classes, (h, w), seed)


class ContinualMethod(ABC):
    """The interface every learner implements; `run_stream` drives it."""

    bti_applies = True  # whether a network exists after each task, so accuracy right after learning is defined

    def __init__(self, config: ContinualConfig, stream: TaskStream, buffer_floats: int):
        self.config, self.stream, self.buffer_floats = config, stream, buffer_floats
        self.generator = torch.Generator().manual_seed(config.seed)

    def begin_task(self, task: Task) -> None:
        pass

    @abstractmethod
    def observe(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Learn from one minibatch of the stream (seen once)."""

    def end_task(self, task: Task) -> None:
        pass

    def stored_floats(self) -> int:
        """Floats held in the buffer now (images or memories; not the network)."""
        return 0

    def state_floats(self) -> int:
        """Floats of other state kept across tasks besides the network (EWC's Fisher and anchor)."""
        return 0

    @abstractmethod
    def classifier(self) -> nn.Module:
        """The network scored on every task (compress-then-recall trains a fresh one)."""

    def task_classifiers(self) -> list[nn.Module] | None:
        """One network per task, scoring that task only (the per-task mode, given the task's identity), or None."""
        return None

    def report(self) -> dict[str, Any]:
        """What the method adds to `run_stream`'s result (e.g. minutes per task)."""
        return {}


class Online(ContinualMethod):
    """Plain fine-tuning: one SGD step per minibatch, no buffer."""

    def __init__(self, config, stream, buffer_floats):
        super().__init__(config, stream, buffer_floats)
        self.net = network(config.learner, stream, config.seed)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=config.lr)

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.net(images), labels)

    def train_on(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(images, labels)
        if not bool(torch.isfinite(loss)):
            raise NonFiniteError(f"{self.config.method}: the loss became {float(loss.detach())} (lr={self.config.lr}"
                                 + (f", ewc_lambda={self.config.ewc_lambda}" if self.config.method == "ewc" else "")
                                 + "): the network diverged; lower the learning rate")
        loss.backward()
        self.optimizer.step()

    def observe(self, images, labels):
        for _ in range(self.config.glances):
            self.train_on(images, labels)

    def classifier(self):
        return self.net.eval()


class Reservoir:
    """A reservoir sample of everything offered (Vitter's algorithm R): each image seen so far is held with equal
    probability, at most `capacity` of them."""

    def __init__(self, capacity: int, shape: tuple[int, ...], generator: torch.Generator):
        self.capacity, self.generator, self.seen = capacity, generator, 0
        self.images = torch.empty((capacity, *shape))
        self.labels = torch.empty(capacity, dtype=torch.long)

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def add(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        for x, y in zip(images, labels):
            if self.seen < self.capacity:
                slot = self.seen
            else:
                slot = int(torch.randint(self.seen + 1, (1,), generator=self.generator))
            if slot < self.capacity:
                self.images[slot], self.labels[slot] = x, y
            self.seen += 1

    def draw(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randperm(len(self), generator=self.generator)[:count]
        return self.images[rows], self.labels[rows]


class Replay(Online):
    """Experience replay: each minibatch is trained together with `replay_batch` images from a reservoir."""

    def __init__(self, config, stream, buffer_floats):
        super().__init__(config, stream, buffer_floats)
        self.reservoir = Reservoir(buffer_floats // stream.image_floats, stream.image_shape, self.generator)

    def observe(self, images, labels):
        for _ in range(self.config.glances):  # each glance with a fresh draw from the reservoir, as La-MAML's ER
            if len(self.reservoir):
                old_x, old_y = self.reservoir.draw(self.config.replay_batch)
                self.train_on(torch.cat([images, old_x]), torch.cat([labels, old_y]))
            else:
                self.train_on(images, labels)
        self.reservoir.add(images, labels)

    def stored_floats(self):
        return len(self.reservoir) * self.stream.image_floats


class EWC(Online):
    """Online EWC: at each task's end, the diagonal empirical Fisher (the mean squared per-sample gradient of the
    loss, true labels) over the task's images held in the buffer, at the weights the task ends with, is added to a
    running sum; the penalty keeps the weights near those at the last task's end."""

    def __init__(self, config, stream, buffer_floats):
        super().__init__(config, stream, buffer_floats)
        self.fisher = [torch.zeros_like(p) for p in self.net.parameters()]
        self.anchor: list[torch.Tensor] | None = None
        self.held: Reservoir | None = None

    def begin_task(self, task):
        # the task's images for its Fisher: a uniform sample of the task, as many as the buffer holds
        self.held = Reservoir(self.buffer_floats // self.stream.image_floats, self.stream.image_shape, self.generator)

    def loss(self, images, labels):
        loss = F.cross_entropy(self.net(images), labels)
        if self.anchor is not None:
            penalty = sum((f * (p - a).pow(2)).sum() for f, p, a in zip(self.fisher, self.net.parameters(), self.anchor))
            loss = loss + self.config.ewc_lambda / 2 * penalty
        return loss

    def observe(self, images, labels):
        super().observe(images, labels)
        self.held.add(images, labels)

    def end_task(self, task):
        images, labels = self.held.images[: len(self.held)], self.held.labels[: len(self.held)]
        for f, g in zip(self.fisher, per_sample_squared_gradients(self.net, images, labels)):
            f.add_(g)
        self.anchor = [p.detach().clone() for p in self.net.parameters()]
        self.held = None  # the task's images leave the buffer

    def stored_floats(self):
        return len(self.held) * self.stream.image_floats if self.held is not None else 0

    def state_floats(self):
        return 2 * sum(p.numel() for p in self.net.parameters())


def per_sample_squared_gradients(net: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                                 chunk: int = 256) -> list[torch.Tensor]:
    """The mean over samples of each sample's squared loss gradient, per parameter (torch.func: one vmapped
    gradient per sample, not the square of the batch gradient)."""
    from torch.func import functional_call, grad, vmap

    params = {name: p.detach() for name, p in net.named_parameters()}
    net.eval()

    def loss(p, x, y):
        return F.cross_entropy(functional_call(net, p, (x[None],)), y[None])

    total = {name: torch.zeros_like(p) for name, p in params.items()}
    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    for start in range(0, len(labels), chunk):
        grads = per_sample(params, images[start : start + chunk], labels[start : start + chunk])
        for name, g in grads.items():
            total[name] += g.pow(2).sum(0)
    return [total[name] / max(1, len(labels)) for name, _ in net.named_parameters()]


class TaskDistiller:
    """Distils one task's images into a memory of `floats` floats for a network with `outputs` outputs (one per class
    of the stream, as `inner` has). Each `step(real_x, real_y)` is one step of the outer
    loop (OuterStep: the main loop's recipe, with `config`'s clipping, augmentation and soft labels) of a TaskObjective:
    an unroll of `config.inner_steps` SGD steps of a fresh network on the recall (eqn 2) and the exact meta-gradient
    of its loss on the real images (global class ids). The memory starts from real images of every class."""

    def __init__(self, config: ContinualConfig, images: torch.Tensor, labels: torch.Tensor, classes: list[int],
                 class_names: list[str], floats: int, inner: InnerLoop, generator: torch.Generator,
                 mean: list[float], std: list[float], outputs: int, layout: tuple[int, int] = (16, 2),
                 rehearsal: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.config, self.generator, self.steps = config, generator, 0
        local = torch.full((max(classes) + 1,), -1, dtype=torch.long)
        local[torch.tensor(classes)] = torch.arange(len(classes))
        data = ImageClassificationData(images, local[labels], list(class_names), mean, std, split="buffer")
        ipc = floats / (len(classes) * math.prod(images.shape[1:]))
        try:
            memory = AddressableMemory.for_dataset(data, ipc=ipc, num_bases=layout[0], downsample=layout[1],
                                                   soft_labels=config.soft_labels)
        except BudgetError as error:
            raise BudgetError(f"a task's share of the buffer ({floats} floats) holds no memory of {layout[0]} "
                              f"bases: {error}") from error
        init_from_real(memory, data, generator)
        self.objective = TaskObjective(memory.train(), classes, outputs, rehearsal=rehearsal,
                                       rehearse_per_step=config.rehearse_per_step,
                                       retain_per_step=config.retain_per_step)
        self.outer = OuterStep(self.objective, [inner], build_optimizer(memory, "adam", config.outer_lr),
                               config.synthetic_per_class, augment=config.augment, clip_grad_norm=config.clip_grad_norm)

    @property
    def memory(self) -> AddressableMemory:
        return self.objective.memory

    def step(self, real_x: torch.Tensor, real_y: torch.Tensor) -> float:
        self.objective.feed(real_x, real_y)
        metrics = self.outer([(self.generator, self.steps)], self.config.inner_steps)
        self.steps += 1
        return metrics["loss"]

    def finish(self) -> AddressableMemory:
        self.memory.check_finite()
        return self.memory.eval()


class WarmStart:
    """An inner loop whose every unroll starts from the weights `start` (a network trained on the earlier memories'
    recall) instead of a fresh draw; everything else is `inner`'s."""

    def __init__(self, inner: InnerLoop, start: list[torch.Tensor]):
        fresh = inner.learner.init_params(torch.Generator().manual_seed(0))
        if [tuple(p.shape) for p in fresh] != [tuple(p.shape) for p in start]:
            raise ValueError("a warm start needs the inner learner's parameters, in its order")
        self.inner, self.start = inner, [p.detach().clone() for p in start]

    def init_params(self, generator: torch.Generator) -> list[torch.Tensor]:
        device = next(self.inner.learner.parameters()).device
        return [p.to(device) for p in self.start]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def inner_loop(config: ContinualConfig, shape: tuple[int, int, int], outputs: int) -> InnerLoop:
    """The unrolled network: the learner that will be retrained on the recall, SGD with momentum 0.9."""
    c, h, w = shape
    return InnerLoop(create_learner(config.learner, c, outputs, (h, w)), lr=config.inner_lr, momentum=0.9, compile=False)


def retrain(config: ContinualConfig, images: torch.Tensor, labels: torch.Tensor, outputs: int, seed: int) -> nn.Module:
    """A fresh network trained from scratch on (images, labels): SGD, momentum 0.9, `retrain_*` settings."""
    evaluation = EvalConfig(models=1, epochs=config.retrain_epochs, lr=config.retrain_lr, batch_size=config.retrain_batch,
                            noise=config.retrain_noise, learner=config.learner, progress=False, seed=seed)
    return train_from_scratch(images, labels, outputs, evaluation, seed, "cpu")


class CompressThenRecall(ContinualMethod):
    """The paper's learner: a memory per task, distilled while the task streams, and a fresh network trained on
    their recall at test time (no network is kept across tasks, so BTI does not apply)."""

    bti_applies = False

    def __init__(self, config, stream, buffer_floats):
        super().__init__(config, stream, buffer_floats)
        self.bank = MemoryBank(shared_classes=stream.name != "split-cifar100", stream=stream.definition(),
                               recipe=config.retraining())
        share = config.memory_share or config.default_share(stream, buffer_floats)
        self.memory_floats = buffer_floats // share
        first = stream.tasks[0]
        self.layout = config.memory_layout(stream, self.memory_floats)
        try:  # the memory's layout, found before any task streams: a budget too small is said now, not mid-stream
            AddressableMemoryConfig.for_budget(stream.image_shape, [stream.class_names[c] for c in first.classes],
                                               ipc=self.memory_floats / (len(first.classes) * stream.image_floats),
                                               num_bases=self.layout[0], downsample=self.layout[1])
        except BudgetError as error:
            raise BudgetError(f"a task's share of the buffer ({buffer_floats} / {share} = {self.memory_floats} floats) "
                              f"holds no memory of {self.layout[0]} bases: {error}") from error
        # at the last task, every memory (the one being distilled included) and a raw image of each class must fit
        room = (buffer_floats - len(stream.tasks) * self.memory_floats) // stream.image_floats
        last = len(stream.tasks[-1].classes)
        if room < last:
            fits = config.default_share(stream, buffer_floats)
            raise ValueError(f"memory_share={share} leaves room for {max(room, 0)} raw images of the last task beside the "
                             f"memories of all {len(stream.tasks)} tasks, fewer than its {last} classes "
                             + (f"(use memory_share >= {fits})" if fits > len(stream.tasks) + 1 or share < fits else
                                "(a larger buffer is needed)"))
        self.inner = inner_loop(config, stream.image_shape, stream.num_classes)
        self.minutes: list[float] = []
        self.reservoir: ClassBalancedBuffer | None = None
        self.distiller: TaskDistiller | None = None
        self.recalls: list[TaskObjective] = []  # each finished task memory, addressed by the stream's class ids

    def begin_task(self, task):
        self.started = time.perf_counter()
        free = self.buffer_floats - self.bank.storage_floats() - self.memory_floats  # the memory to be distilled counts
        self.reservoir = ClassBalancedBuffer(free // self.stream.image_floats, self.stream.image_shape, self.generator)
        self.task, self.distiller = task, None

    def observe(self, images, labels):
        self.reservoir.add(images, labels)
        if self.distiller is None:
            held_x, held_y = self.reservoir.all()
            pool_x, pool_y = torch.cat([held_x, images]), torch.cat([held_y, labels])
            if len(set(pool_y.tolist())) < len(self.task.classes):
                return  # some class not seen yet: nothing to start its part of the memory from
            train = self.task.train
            inner = self.inner
            if self.config.warm_start and self.recalls:  # the network the earlier memories train, as the joint mode's
                inner = WarmStart(inner, list(joint_network(self.config, self.recalls, self.stream.num_classes).parameters()))
            self.distiller = TaskDistiller(self.config, pool_x, pool_y, self.task.classes,
                                           [self.stream.class_names[c] for c in self.task.classes], self.memory_floats,
                                           inner, self.generator, train.mean, train.std, self.stream.num_classes,
                                           self.layout, recalled(self.recalls) if self.recalls and (self.config.rehearse_per_step
                                                                         or self.config.retain_per_step) else None)
        for _ in range(self.config.steps_per_batch):
            old_x, old_y = self.reservoir.draw(max(0, self.config.real_per_step - len(images)))
            self.distiller.step(torch.cat([images, old_x]), torch.cat([labels, old_y]))

    def end_task(self, task):
        if self.distiller is None:
            _, held_y = self.reservoir.all()
            missing = sorted(set(task.classes) - set(held_y.tolist()))
            raise ValueError(f"task {task.name}: classes {missing} never appeared in its stream; compress-then-recall "
                             "needs an image of every class")
        for _ in range(self.config.final_steps):
            self.distiller.step(*self.reservoir.draw(self.config.real_per_step))
        memory = self.distiller.finish()
        # what the task memory holds, for its own card: the stream's source and this task's transform
        stream = self.bank.stream or {}
        entry = next((t for t in stream.get("tasks", []) if t["name"] == task.name), {})
        transform = entry.get("transform", {})
        memory.config.dataset_name = stream.get("dataset")
        memory.config.task = {"stream": stream.get("stream"), "name": task.name, "split": stream.get("split"),
                              "transform": {"permutation": "fixed, its pixel order in the bank's bank.json"}
                              if "permutation" in transform else transform}
        self.bank.add(task.name, memory)
        self.recalls.append(self.distiller.objective)
        self.reservoir = None  # the raw images are dropped; the memory keeps the task
        self.distiller = None
        self.minutes.append((time.perf_counter() - self.started) / 60)

    def stored_floats(self):
        held = len(self.reservoir) * self.stream.image_floats if self.reservoir is not None else 0
        working = self.distiller.memory.config.storage_floats() if self.distiller is not None else 0
        return self.bank.storage_floats() + working + held

    def recalled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything the bank recalls, with targets over the stream's classes (global ids, or soft labels)."""
        return recalled(self.recalls)

    def report(self) -> dict[str, Any]:
        return {"minutes_per_task": self.minutes,
                "memory_floats": [m.config.storage_floats() for m in self.bank.memories.values()],
                "recalled_images": sum(m.config.num_classes * m.config.images_per_query for m in self.bank.memories.values())}

    def classifier(self):
        return joint_network(self.config, self.recalls, self.stream.num_classes)

    def task_classifiers(self):
        return task_networks(self.config, self.recalls, self.stream.num_classes)


def recalled(recalls: list[TaskObjective]) -> tuple[torch.Tensor, torch.Tensor]:
    """Everything the task memories recall, with targets over the stream's classes (global ids, or soft labels)."""
    parts = [task.training_set() for task in recalls]
    return torch.cat([images for images, _ in parts]).float(), torch.cat([targets for _, targets in parts])


def joint_network(config: ContinualConfig, recalls: list[TaskObjective], outputs: int) -> nn.Module:
    """The joint recall mode: one fresh network trained on everything the task memories recall."""
    return retrain(config, *recalled(recalls), outputs, config.seed)


def task_networks(config: ContinualConfig, recalls: list[TaskObjective], outputs: int) -> list[nn.Module]:
    """The per-task recall mode: one fresh network per task memory, trained on its recall alone."""
    return [retrain(config, *task.training_set(), outputs, config.seed) for task in recalls]


class ClassBalancedBuffer(Reservoir):
    """Raw images of the current task, at most `capacity`: when full, a new image replaces a random one of the
    class that holds the most (so every class seen keeps a share, even in the last tasks' small buffers)."""

    def add(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        for x, y in zip(images, labels):
            if self.capacity == 0:
                return
            if self.seen < self.capacity:
                slot = self.seen
            else:
                counts = torch.bincount(self.labels, minlength=int(self.labels.max()) + 1)
                largest = torch.nonzero(self.labels == int(counts.argmax())).flatten()
                slot = int(largest[torch.randint(len(largest), (1,), generator=self.generator)])
            self.images[slot], self.labels[slot] = x, y
            self.seen += 1

    def all(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[: len(self)], self.labels[: len(self)]


# One learner per method name (METHODS, the ContinualConfig.method choices).
LEARNERS: dict[str, Callable[..., ContinualMethod]] = {
    "online": Online, "replay": Replay, "ewc": EWC, "compress-then-recall": CompressThenRecall}
assert tuple(LEARNERS) == METHODS


def make_method(config: ContinualConfig, stream: TaskStream) -> ContinualMethod:
    return LEARNERS[config.method](config, stream, config.buffer_for(stream))


def run_stream(method: ContinualMethod, stream: TaskStream, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One single pass over `stream`, then every task scored by the final classifier. The buffer is checked after
    every minibatch and every task's end. Returns per-task accuracies, RA, BTI (where it applies), the largest
    buffer use, and seconds."""
    started = time.perf_counter()
    just_learned, most = [], 0

    def check(where: str) -> None:
        nonlocal most
        held = method.stored_floats()
        most = max(most, held)
        if held > method.buffer_floats:
            raise BufferOverflow(f"{type(method).__name__} holds {held} floats {where}, over its buffer of "
                                 f"{method.buffer_floats}")

    for task in stream.tasks:
        method.begin_task(task)
        check(f"at the start of {task.name}")
        for images, labels in stream.batches(task):
            method.observe(images, labels)
            check(f"during {task.name}")
        method.end_task(task)
        check(f"at the end of {task.name}")
        if method.bti_applies:
            just_learned.append(task_accuracy(method.classifier(), task))
        if progress:
            progress(f"{task.name} done ({time.perf_counter() - started:.0f} s, buffer {method.stored_floats()} floats)")
    net = method.classifier()
    final = [task_accuracy(net, task) for task in stream.tasks]
    result = {"accuracy": final, "retained_accuracy": retained_accuracy(final), "max_stored_floats": most,
              "buffer_floats": method.buffer_floats, "state_floats": method.state_floats(),
              "seconds": time.perf_counter() - started}
    if method.bti_applies:
        result["just_learned"] = just_learned
        result["backward_transfer"] = backward_transfer(final, just_learned)
    own = method.task_classifiers()
    if own is not None:  # the per-task mode: each task scored by its own network (task identity known)
        per_task = [task_accuracy(net, task) for net, task in zip(own, stream.tasks)]
        result["per_task"] = {"accuracy": per_task, "retained_accuracy": retained_accuracy(per_task)}
    result.update(method.report())
    return result
