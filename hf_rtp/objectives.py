"""What an unroll trains on: the outer loop's one extension point.

An objective binds a memory to the data it is distilled for. Each unroll of an outer step asks it to `draw` a real
batch and the queries that address the memory for it, then to turn that draw and the picked addressing matrices
into the engine's `UnrollInputs` (the recalled images and their targets per inner step, the real batch, the leaves
to differentiate). It also scores the memory for validation and runs its final evaluation. Three kinds:

- `LabelObjective`: a memory addressed by class labels (sec 4): some classes, their real images for the outer
  loss, and each class's recall (eqn 2) with its hard label or its learned soft label;
- `EpisodeObjective`: image addressing (sec 5.3.2): an N-way k-shot episode, whose shots make the queries and whose
  other images (labels 0..N-1) make the outer loss; the query head learns through the queries;
- `TaskObjective`: one task of a continual stream (sec 5.2): a task memory of a few classes, addressed by the
  stream's global class ids, for a network with one output per class of the stream; the real batch is what the
  stream delivers (`feed`).

The outer step (outer_step.py) and the Distiller never ask which kind they hold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data import ImageClassificationData
from .episodes import draw_episode, draw_episodes, episode_accuracy, few_shot_evaluation
from .evaluate import EvalConfig, accuracy, accuracy_on, evaluate_memory, train_from_scratch
from .modeling_memory import AddressableMemory
from .unroll import UnrollInputs

Augment = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Draw:
    """One unroll's real batch and what addresses the memory for it."""

    real_images: torch.Tensor
    real_labels: torch.Tensor
    queries: torch.Tensor
    """Class ids (N,) for label and task memories, shots (N, k, C, H, W) for an episode."""
    rehearsal_seed: int | None = None
    """A task objective with rehearsal: the seed of this unroll's picks from the earlier memories' recall."""

    @property
    def way(self) -> int:
        """N, the queries of this unroll (each recalls the picked images of its r)."""
        return len(self.queries)


class Objective(Protocol):
    """What the outer loop needs to know of what it distils for."""

    memory: AddressableMemory
    outputs: int
    """Outputs of the inner network (classes it tells apart)."""

    def draw(self, generator: torch.Generator) -> Draw: ...

    def inputs(self, draw: Draw, picks: torch.Tensor, augment: Augment, reference: bool = False) -> UnrollInputs:
        """The unroll of `draw`: inner step t trains on the images `picks[t]` (T, N, s) of each query, through
        `augment`; `reference` builds them for whole-graph autograd over the memory's parameters (tests)."""
        ...

    def validate(self, config: EvalConfig, device: torch.device | str) -> float: ...

    def evaluate(self, test: ImageClassificationData, config: EvalConfig, train: ImageClassificationData | None = None,
                 device: torch.device | str | None = None) -> dict[str, Any]:
        """The final evaluation on `test`, recorded in `memory.config.evaluation` (the model card shows it)."""
        ...


def label_inputs(memory: AddressableMemory, classes: torch.Tensor, picks: torch.Tensor, real_images: torch.Tensor,
                 real_labels: torch.Tensor, augment: Augment | None = None, targets: torch.Tensor | None = None,
                 place: torch.Tensor | None = None) -> UnrollInputs:
    """An unroll on the recall of `classes` (class ids of the memory): inner step t trains on image `picks[t]`
    (T, N, s) of each class (eqn 2, then `augment`) with the class's label (`targets`, default `classes`, per image)
    or its learned soft label (spread over the network's outputs by `place`, an (n, outputs) 0/1 matrix, when
    given). The leaves are the memory's parameters."""
    augment = augment or (lambda x: x)
    soft = memory.config.soft_labels
    labels = (classes if targets is None else targets).repeat_interleave(picks.shape[-1])

    def recall(t: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = augment(memory.images_for_labels(classes, picks[t]))
        if not soft:
            return images, labels
        distribution = memory.targets_for_labels(classes, picks[t])
        return images, distribution if place is None else distribution @ place

    return UnrollInputs(recall, real_images, real_labels, list(memory.parameters()), steps=len(picks),
                        batch_size=len(labels), soft_targets=soft)


def episode_inputs(memory: AddressableMemory, shots: torch.Tensor, picks: torch.Tensor, real_images: torch.Tensor,
                   real_labels: torch.Tensor, augment: Augment | None = None, reference: bool = False) -> UnrollInputs:
    """An episode of image addressing: `shots` (N, k, C, H, W) make one query per class (the mean of
    y = projection(encoder(x)) over its shots); inner step t trains on the recalled images `picks[t]` (T, N, s) with
    episode labels 0..N-1. The queries are computed once per unroll; the engine treats them as one more leaf, and
    their gradient goes back through the head once, after the unroll (not once per inner step)."""
    augment = augment or (lambda x: x)
    n = shots.shape[0]
    labels = torch.arange(n, device=shots.device).repeat_interleave(picks.shape[-1])
    with torch.enable_grad():
        queries = memory.shot_queries(shots)
    if reference:  # whole-graph autograd from the loss to every parameter, head included
        def recall(t: int) -> tuple[torch.Tensor, torch.Tensor]:
            return augment(memory.synthesize(memory.coefficients(queries, picks[t]))), labels

        return UnrollInputs(recall, real_images, real_labels, list(memory.parameters()), steps=len(picks),
                            batch_size=len(labels))
    leaf = queries.detach().requires_grad_(True)
    groups = memory.parameter_groups()
    tables, head = groups["tables"], groups["query_projection"] + groups["query_encoder"]

    def recall(t: int) -> tuple[torch.Tensor, torch.Tensor]:
        return augment(memory.synthesize(memory.coefficients(leaf, picks[t]))), labels

    def to_parameters(grads: list[torch.Tensor]) -> list[torch.Tensor]:
        *table_grads, query_grad = grads
        head_grads = torch.autograd.grad(queries, head, grad_outputs=query_grad, allow_unused=True)
        by_param = {id(p): g for p, g in zip(tables, table_grads)}
        by_param.update({id(p): torch.zeros_like(p) if g is None else g for p, g in zip(head, head_grads)})
        return [by_param[id(p)] for p in memory.parameters()]

    return UnrollInputs(recall, real_images, real_labels, tables + [leaf], steps=len(picks), batch_size=len(labels),
                        to_parameters=to_parameters)


class LabelObjective:
    """A memory addressed by class labels, distilled on `train` (a few classes per unroll, `real_per_class` real
    images each) and validated by fresh networks trained on its whole recall and tested on `validation`."""

    def __init__(self, memory: AddressableMemory, train: ImageClassificationData, validation: ImageClassificationData,
                 classes_per_step: int | None = None, real_per_class: int = 64):
        config = memory.config
        if config.addressed_by_images or config.query_dim != config.num_classes:
            raise ValueError("a label objective trains memories addressed by class labels (query_dim == classes); a "
                             "memory of raw query vectors has nothing to build its queries from")
        self.memory, self.train, self.validation = memory, train, validation
        self.outputs = config.num_classes
        self.way = self.outputs if classes_per_step is None else min(classes_per_step, self.outputs)
        self.real_per_class = real_per_class

    def draw(self, generator: torch.Generator) -> Draw:
        classes = torch.sort(torch.randperm(self.outputs, generator=generator)[: self.way]).values
        real_x, real_y = self.train.sample(classes.tolist(), self.real_per_class, generator)
        return Draw(real_x, real_y, classes.to(real_x.device))

    def inputs(self, draw: Draw, picks: torch.Tensor, augment: Augment, reference: bool = False) -> UnrollInputs:
        return label_inputs(self.memory, draw.queries, picks, augment(draw.real_images), draw.real_labels, augment)

    @torch.no_grad()
    def validate(self, config: EvalConfig, device: torch.device | str) -> float:
        """Accuracy on the validation split of `config.models` fresh networks trained on the whole recall."""
        images, targets = self.memory.training_set()  # targets: class ids, or learned soft labels
        scores = []
        for i in range(config.models):
            with torch.enable_grad():
                net = train_from_scratch(images.detach(), targets, self.outputs, config, config.seed + i, device)
            scores.append(accuracy(net, self.validation, device=device))
        return float(np.mean(scores))

    def evaluate(self, test, config, train=None, device=None):
        """Fresh networks on the recall, next to random real images of the same budget when `train` is given."""
        return evaluate_memory(self.memory, test, config, train=train, device=device)


class EpisodeObjective:
    """An image-addressed memory, distilled on N-way k-shot episodes of `train` (labels 0..N-1 inside an episode)
    and validated on the same `eval_episodes` episodes of `validation` every time, so the scores compare."""

    def __init__(self, memory: AddressableMemory, train: ImageClassificationData, validation: ImageClassificationData,
                 way: int, shots: int = 1, real_per_class: int = 64, eval_episodes: int = 20, seed: int = 0):
        if not memory.config.addressed_by_images:
            raise ValueError("an episode objective trains memories addressed by images (a query head)")
        if way < 2:
            raise ValueError(f"an episode needs at least 2 classes (classes_per_step={way})")
        self.memory, self.train, self.validation = memory, train, validation
        self.way = self.outputs = way
        self.shots, self.real_per_class, self.eval_episodes, self.seed = shots, real_per_class, eval_episodes, seed

    def draw(self, generator: torch.Generator) -> Draw:
        episode = draw_episode(self.train, self.way, self.shots, self.real_per_class, generator)
        device = self.memory.device
        return Draw(episode.images, episode.labels.to(device), episode.shots.to(device))

    def inputs(self, draw: Draw, picks: torch.Tensor, augment: Augment, reference: bool = False) -> UnrollInputs:
        return episode_inputs(self.memory, draw.queries, picks, augment(draw.real_images), draw.real_labels, augment,
                              reference=reference)

    @torch.no_grad()
    def validate(self, config: EvalConfig, device: torch.device | str) -> float:
        """Mean accuracy over the validation episodes of a fresh network trained on each episode's recall."""
        episodes = draw_episodes(self.validation, self.way, self.shots, 50, self.eval_episodes, self.seed + 104729)
        return float(np.mean([episode_accuracy(self.memory, e, config, device) for e in episodes]))

    def evaluate(self, test, config, train=None, device=None):
        """`config.models` few-shot episodes of `test`, one fresh network each."""
        return few_shot_evaluation(self.memory, test, self.way, self.shots, config.models, config, config.seed,
                                   device=device)


class TaskObjective:
    """One task of a continual stream: `memory` holds the task's classes (its own ids 0..n-1), which are the stream's
    global ids `classes`; the network has `outputs` outputs, one per class of the stream, and trains on the memory's
    class i as global class classes[i], the label the stream's images carry. The real batch of the next unroll is
    what `feed` was last given (the stream's minibatch and the buffered images).

    Rehearsal (`rehearsal`, the earlier task memories' recall as fixed (images, targets), and `rehearse_per_step`):
    each inner step also trains on that many images drawn from it, so the memory is distilled for a network that
    trains on the whole bank (the joint recall mode) rather than on this task alone. Retention (`retain_per_step`):
    each outer loss also scores the unrolled network on that many images of the earlier recall (with their class
    ids), so the memory is also distilled not to undo what the earlier memories teach: the earlier tasks' real
    images are gone, and their recall is what stands for them."""

    def __init__(self, memory: AddressableMemory, classes: Sequence[int], outputs: int,
                 validation: ImageClassificationData | None = None,
                 rehearsal: tuple[torch.Tensor, torch.Tensor] | None = None, rehearse_per_step: int = 0,
                 retain_per_step: int = 0):
        if memory.config.addressed_by_images or memory.config.num_classes != len(classes):
            raise ValueError(f"a task memory is addressed by the labels of its {len(classes)} classes")
        self.memory, self.outputs, self.validation = memory, outputs, validation
        self.classes = torch.tensor(list(classes), dtype=torch.long)
        self.local = torch.full((outputs,), -1, dtype=torch.long)
        self.local[self.classes] = torch.arange(len(classes))
        # soft labels: the memory's distribution over its classes, placed at their global outputs
        self.place = F.one_hot(self.classes, outputs).to(memory.bases.dtype)
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None
        held = rehearsal is not None and len(rehearsal[0]) > 0
        self.rehearse_per_step = rehearse_per_step if held else 0
        self.retain_per_step = retain_per_step if held else 0
        if self.retain_per_step and (memory.config.soft_labels or rehearsal[1].is_floating_point()):
            raise ValueError("retain_per_step scores the earlier recall by its class ids: it needs memories without "
                             "soft labels")
        self.rehearsal = rehearsal if self.rehearse_per_step or self.retain_per_step else None
        if self.rehearsal is not None and memory.config.soft_labels and not self.rehearsal[1].is_floating_point():
            self.rehearsal = (rehearsal[0], F.one_hot(rehearsal[1], outputs).to(memory.bases.dtype))

    def feed(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """The real batch (global class ids) of the next unroll."""
        self.batch = images, labels

    def draw(self, generator: torch.Generator) -> Draw:
        if self.batch is None:
            raise RuntimeError("a task objective draws the batch it was fed: call feed(images, labels) first")
        images, labels = self.batch
        seed = int(torch.randint(2**62, (1,), generator=generator)) if self.rehearsal is not None else None
        return Draw(images, labels, self.classes, seed)

    def inputs(self, draw: Draw, picks: torch.Tensor, augment: Augment, reference: bool = False) -> UnrollInputs:
        inputs = label_inputs(self.memory, self.local[draw.queries], picks, augment(draw.real_images), draw.real_labels,
                              augment, targets=draw.queries, place=self.place)
        if draw.rehearsal_seed is None:
            return inputs
        old_images, old_targets = self.rehearsal
        picker = torch.Generator().manual_seed(draw.rehearsal_seed)
        rows = torch.randint(len(old_images), (len(picks), self.rehearse_per_step), generator=picker)
        if self.retain_per_step:  # drawn after the rehearsal rows, which stay what they were without retention
            kept = torch.randint(len(old_images), (self.retain_per_step,), generator=picker)
            device = inputs.real_images.device
            inputs = replace(inputs, real_images=torch.cat([inputs.real_images, augment(old_images[kept].to(device))]),
                             real_labels=torch.cat([inputs.real_labels, old_targets[kept].to(device)]))
        if not self.rehearse_per_step:
            return inputs
        own = inputs.recall

        def recall(t: int) -> tuple[torch.Tensor, torch.Tensor]:
            images, targets = own(t)
            return (torch.cat([images, augment(old_images[rows[t]].to(images.device))]),
                    torch.cat([targets, old_targets[rows[t]].to(targets.device)]))

        return replace(inputs, recall=recall, batch_size=inputs.batch_size + self.rehearse_per_step)

    def training_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's whole recall with global targets: class ids, or soft labels over the stream's classes."""
        with torch.no_grad():
            images, targets = self.memory.training_set()
        targets = targets @ self.place if targets.is_floating_point() else self.classes[targets]
        return images.detach(), targets

    @torch.no_grad()
    def score(self, data: ImageClassificationData, config: EvalConfig, device: torch.device | str | None = None) -> list[float]:
        """Accuracy on `data`'s images of the task's classes, choosing among those classes only, of `config.models`
        fresh networks trained on the task's recall."""
        images, targets = self.training_set()
        keep = (data.labels[:, None] == self.classes[None]).any(1)
        classes, local = self.classes.to(device or "cpu"), self.local[data.labels[keep]]
        scores = []
        for i in range(config.models):
            with torch.enable_grad():
                net = train_from_scratch(images, targets, self.outputs, config, config.seed + i, device)
            scores.append(accuracy_on(lambda x: net(x)[:, classes], data.images[keep], local, device=device or "cpu"))
        return scores

    def validate(self, config: EvalConfig, device: torch.device | str) -> float:
        if self.validation is None:
            raise ValueError("this task objective was given no validation data")
        return float(np.mean(self.score(self.validation, config, device)))

    def evaluate(self, test, config, train=None, device=None):
        """Fresh networks on the task's recall alone, scored on `test` among the task's classes (task identity known)."""
        runs = self.score(test, config, device)
        record = {"split": test.split or "test", "models": config.models, "epochs": config.epochs,
                  "learner": config.learner, "accuracy": {"mean": float(np.mean(runs)), "std": float(np.std(runs)),
                                                          "runs": runs}}
        self.memory.config.evaluation = record
        return record


def objective_for(memory: AddressableMemory, train: ImageClassificationData, validation: ImageClassificationData,
                  classes_per_step: int | None = None, real_per_class: int = 64, shots: int = 1, eval_episodes: int = 20,
                  seed: int = 0, push_dataset: bool = False) -> LabelObjective | EpisodeObjective:
    """The objective a Distiller run trains `memory` for (DistillConfig's fields of the same names): few-shot
    episodes for a memory with a query head, labels otherwise."""
    if memory.config.addressed_by_images:
        if push_dataset:  # found now, not after the run
            raise ValueError("push_dataset uploads the recall of every class; a memory addressed by images recalls "
                             "only from pictures")
        way = train.num_classes if classes_per_step is None else min(classes_per_step, train.num_classes)
        return EpisodeObjective(memory, train, validation, way, shots, real_per_class, eval_episodes, seed)
    return LabelObjective(memory, train, validation, classes_per_step, real_per_class)
