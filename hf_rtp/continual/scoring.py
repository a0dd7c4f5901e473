"""Re-scoring a saved bank of task memories: anyone with the bank (a folder or Hub repo) scores it as the stream's
run did, in both recall modes, from what its bank.json records (the stream's source, split and task transforms)."""

from __future__ import annotations

from typing import Any

import torch

from ..bank import MemoryBank
from ..evaluate import accuracy_on
from ..objectives import TaskObjective
from .learners import ContinualConfig, joint_network, task_networks
from .streams import retained_accuracy, task_accuracy, tasks_from_definition


def score_bank(bank: MemoryBank, config: ContinualConfig, dataset: str | None = None, projected: bool = False) -> dict[str, Any]:
    """Retrain and score a compress-then-recall bank with `config`'s `retrain_*` settings and network: `joint` (one
    network on everything recalled, every task scored by it) and `per-task` (each task by the network of its own
    memory). Seeded as the run was (`config.seed`), so a bank scores what its run reported. `dataset` replaces the
    recorded source (e.g. a local copy of ylecun/mnist).

    `projected` also scores both modes on each task's test images projected onto the span of its memory's recall
    (the few directions its bases span): what the networks know of a task, apart from what the rest of a test image,
    which no recall spans, does to them."""
    if bank.stream is None:
        raise ValueError("the bank records no stream (its bank.json has no 'stream'): the tasks' test sets cannot be "
                         "rebuilt; banks saved by compress-then-recall record it")
    tasks = tasks_from_definition(bank.stream, dataset)
    names = list(bank.stream["class_names"])
    missing = [t.name for t in tasks if t.name not in bank.memories]
    if missing:
        raise ValueError(f"the stream has tasks {missing} that the bank holds no memory of")
    recalls = [TaskObjective(bank.memories[t.name], [names.index(n) for n in bank.memories[t.name].config.class_names],
                             len(names)) for t in tasks]
    joint = joint_network(config, recalls, len(names))
    own_networks = task_networks(config, recalls, len(names))
    together = [task_accuracy(joint, t) for t in tasks]
    own = [task_accuracy(net, t) for net, t in zip(own_networks, tasks)]
    scored = {"tasks": [t.name for t in tasks],
              "joint": {"accuracy": together, "retained_accuracy": retained_accuracy(together)},
              "per-task": {"accuracy": own, "retained_accuracy": retained_accuracy(own)}}
    if projected:
        spans = [recall_span(r.training_set()[0]) for r in recalls]
        tests = [t.test() for t in tasks]
        inside = [project(test.images, span) for test, span in zip(tests, spans)]
        together = [accuracy_on(joint, x, test.labels) for x, test in zip(inside, tests)]
        own = [accuracy_on(net, x, test.labels) for net, x, test in zip(own_networks, inside, tests)]
        scored["projected"] = {"joint": {"accuracy": together, "retained_accuracy": retained_accuracy(together)},
                               "per-task": {"accuracy": own, "retained_accuracy": retained_accuracy(own)},
                               "span_dims": [len(span) for span in spans]}
    return scored


def recall_span(images: torch.Tensor, tolerance: float = 1e-4) -> torch.Tensor:
    """An orthonormal basis (rows) of the pixel directions `images` span: a memory's recall spans at most its K bases
    (eqn 2: every recalled image is a combination of them), plus the constant its normalisation may add."""
    flat = images.reshape(len(images), -1).double()
    _, singular, directions = torch.linalg.svd(flat, full_matrices=False)
    return directions[: int((singular > tolerance * singular[0]).sum())]


def project(images: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """`images` with only their part in the span of the orthonormal rows `span`."""
    flat = images.reshape(len(images), -1).double()
    return (flat @ span.T @ span).to(images.dtype).reshape(images.shape)
