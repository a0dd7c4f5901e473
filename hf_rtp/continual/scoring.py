"""Re-scoring a saved bank of task memories: anyone with the bank (a folder or Hub repo) scores it as the stream's
run did, in both recall modes, from what its bank.json records (the stream's source, split and task transforms)."""

from __future__ import annotations

from typing import Any

from ..bank import MemoryBank
from ..objectives import TaskObjective
from .learners import ContinualConfig, joint_network, task_networks
from .streams import retained_accuracy, task_accuracy, tasks_from_definition


def score_bank(bank: MemoryBank, config: ContinualConfig, dataset: str | None = None) -> dict[str, Any]:
    """Retrain and score a compress-then-recall bank with `config`'s `retrain_*` settings and network: `joint` (one
    network on everything recalled, every task scored by it) and `per-task` (each task by the network of its own
    memory). Seeded as the run was (`config.seed`), so a bank scores what its run reported. `dataset` replaces the
    recorded source (e.g. a local copy of ylecun/mnist)."""
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
    together = [task_accuracy(joint, t) for t in tasks]
    own = [task_accuracy(net, t) for net, t in zip(task_networks(config, recalls, len(names)), tasks)]
    return {"tasks": [t.name for t in tasks],
            "joint": {"accuracy": together, "retained_accuracy": retained_accuracy(together)},
            "per-task": {"accuracy": own, "retained_accuracy": retained_accuracy(own)}}
