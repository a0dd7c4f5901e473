"""A bank of addressable memories, one per task, saved and recalled together (sec 5.2 and 5.3.1).

Continual learning keeps each task of a stream as a small memory; new classifiers are built later from the classes
of several memories (classes never seen together in one task). `MemoryBank` holds those memories, recalls any mix
of their classes as one `datasets.Dataset` with a global `ClassLabel`, and saves them as one folder or Hub repo:

    bank.json                 the index: tasks in order, their subfolders, class names, storage and accuracy
    README.md                 a card listing the tasks
    <task>/                   each memory as `AddressableMemory.save_pretrained` writes it

Two kinds of bank. With disjoint classes (the default) every class name belongs to one task, so a request names
classes and the bank finds their memories (task extrapolation, sec 5.3.1). With `shared_classes=True` every task
holds the same label space seen under another transform (Rotated or Permuted MNIST: each task holds the digits
0-9): a class name then recalls that class from every task (or from the tasks asked for).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Sequence

import datasets
import numpy as np
import torch
from datasets import ClassLabel

from .hub import CheckpointError, _looks_local, upload_folder
from .modeling_memory import AddressableMemory

INDEX_NAME = "bank.json"
FORMAT = "hf_rtp.MemoryBank"
_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


class MemoryBank:
    """Memories by task name, in the order they were added. `accuracy` records, per task, what was measured for it
    (e.g. a fresh learner's test accuracy on that task), shown on the card."""

    def __init__(self, shared_classes: bool = False, stream: dict | None = None, recipe: dict | None = None):
        self.shared_classes = shared_classes
        self.memories: dict[str, AddressableMemory] = {}
        self.accuracy: dict[str, float] = {}
        # The stream the tasks came from (`TaskStream.definition()`: source data, split, each task's transform), so
        # anyone can rebuild a task's test set (`hf_rtp.continual.task_test_set`) and re-score the bank.
        self.stream = stream
        # How the run that made the bank trained networks on its recall (ContinualConfig's network, retrain_* and
        # seed), so re-scoring repeats it unless told otherwise: a bank's score depends on that recipe.
        self.recipe = recipe

    # ---- contents ---------------------------------------------------------------------------------------

    def add(self, task: str, memory: AddressableMemory, accuracy: float | None = None) -> None:
        """Add `memory` as task `task` (a name that can be a folder: letters, digits, `-`, `_`, `.`)."""
        if not isinstance(task, str) or not _TASK_NAME.match(task):
            raise ValueError(f"task names become folder names: letters, digits, '-', '_' and '.', starting with a "
                             f"letter or digit, at most 96 characters; got {task!r}")
        if task in self.memories:
            raise ValueError(f"the bank already holds a task named {task!r}")
        if memory.config.addressed_by_images:
            raise ValueError(f"task {task!r}: a bank recalls by class names; a memory addressed by images has none")
        memory.check_finite()  # a bank is saved whole: nothing non-finite gets in
        if self.memories:
            first_name, first = next(iter(self.memories.items()))
            if tuple(memory.config.image_shape) != tuple(first.config.image_shape):
                raise ValueError(f"task {task!r} recalls images of shape {tuple(memory.config.image_shape)}, the bank's "
                                 f"{first_name!r} {tuple(first.config.image_shape)}: one dataset cannot hold both")
            differences = memory.pixel_space().differences(first.pixel_space())
            if differences:
                raise ValueError(f"task {task!r} recalls in another pixel space than {first_name!r} "
                                 f"({'; '.join(differences)}): their images could not train one network")
        if not self.shared_classes:
            held = self.class_owners()
            for name in memory.config.class_names:
                if name in held:
                    raise ValueError(f"class {name!r} of task {task!r} is already held by task {held[name]!r}: tasks of "
                                     "a bank with disjoint classes cannot share a class name (MemoryBank(shared_classes="
                                     "True) is for streams whose tasks all hold the same classes, e.g. Rotated MNIST)")
        self.memories[task] = memory
        if accuracy is not None:
            self.accuracy[task] = float(accuracy)

    @property
    def tasks(self) -> list[str]:
        return list(self.memories)

    def __len__(self) -> int:
        return len(self.memories)

    def __repr__(self) -> str:
        kind = "shared classes" if self.shared_classes else "disjoint classes"
        source = f", stream={self.stream.get('stream')!r} ({self.stream.get('dataset')}, {self.stream.get('split')} split)" \
            if self.stream else ""
        shown = self.tasks[:4] + (["..."] if len(self) > 4 else [])
        return (f"MemoryBank({len(self)} tasks {shown}, {len(self.class_names)} classes ({kind}), "
                f"{self.storage_floats():,} floats{source})")

    def class_owners(self) -> dict[str, str]:
        """Class name -> the first task that holds it."""
        owners: dict[str, str] = {}
        for task, memory in self.memories.items():
            for name in memory.config.class_names:
                owners.setdefault(name, task)
        return owners

    @property
    def class_names(self) -> list[str]:
        """Every class the bank holds, in order of first appearance: the global label space of `recall`."""
        return list(self.class_owners())

    def storage_floats(self) -> int:
        """Floats the bank stores: the sum of its memories' (eqn 4)."""
        return sum(memory.config.storage_floats() for memory in self.memories.values())

    # ---- recall -----------------------------------------------------------------------------------------

    def _requests(self, classes: Sequence[str] | None, tasks: Sequence[str] | None) -> list[tuple[str, list[str]]]:
        """(task, class names) pairs that answer a request, in task order."""
        if not self.memories:
            raise ValueError("the bank holds no memories yet")
        if isinstance(classes, str) or isinstance(tasks, str):
            raise ValueError("classes and tasks are lists of names, not a single string")
        if tasks is not None:
            unknown = [t for t in tasks if t not in self.memories]
            if unknown:
                raise ValueError(f"no task named {', '.join(map(repr, unknown))}; the bank holds {self.tasks}")
        if tasks is not None and not tasks:
            raise ValueError("tasks=[] asks for no task: pass task names, or None for all")
        chosen = list(tasks) if tasks is not None else self.tasks
        if classes is None:
            return [(t, list(self.memories[t].config.class_names)) for t in chosen]
        classes = [str(c) for c in classes]
        if not classes:
            raise ValueError("classes=[] asks for no class: pass class names, or None for all")
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes must be distinct, got {classes}")
        requests = []
        for t in chosen:
            names = self.memories[t].config.class_names
            wanted = [c for c in classes if c in names]
            if wanted:
                requests.append((t, wanted))
        found = {c for _, wanted in requests for c in wanted}
        missing = [c for c in classes if c not in found]
        if missing:
            where = f"tasks {list(tasks)}" if tasks is not None else "the bank"
            raise ValueError(f"no memory in {where} holds class {', '.join(map(repr, missing))}; it holds "
                             f"{sorted({n for t in chosen for n in self.memories[t].config.class_names}, key=str)}")
        return requests

    @torch.no_grad()
    def recall(self, classes: Sequence[str] | None = None, tasks: Sequence[str] | None = None,
               preview: bool = False) -> datasets.Dataset:
        """The recall (eqn 2) of `classes` (names; default: all) from the memories that hold them (or from `tasks`
        only) as one Dataset: `pixel_values`, `label` (a ClassLabel over the requested classes, in the order asked,
        or the bank's `class_names` when all are requested: the label convention of every recall, see
        `AddressableMemory.recall`), `task` (which memory made the row), `address`, `soft_label` (over the same
        classes) when any memory learned soft labels, and with `preview=True` a contrast-stretched uint8 `image`."""
        requests = self._requests(classes, tasks)
        names = [str(c) for c in classes] if classes is not None else \
            list(dict.fromkeys(n for _, wanted in requests for n in wanted))
        soft = any(self.memories[t].config.soft_labels for t, _ in requests)
        parts = []
        for task, wanted in requests:
            memory = self.memories[task]
            part = memory.recall(classes=wanted, preview=preview)
            local = np.asarray(part["label"], dtype=np.int64)  # ids into `wanted` (recall's label convention)
            columns = {"pixel_values": np.asarray(part["pixel_values"], dtype=np.float32),
                       "label": np.array([names.index(wanted[i]) for i in local], dtype=np.int64),
                       "task": [task] * len(local), "address": np.asarray(part["address"], dtype=np.int64)}
            if soft:  # each memory's distribution over its own classes, placed among the global ones
                spread = np.zeros((len(local), len(names)), np.float32)
                if memory.config.soft_labels:  # over `wanted`, mass on the memory's other classes already dropped
                    mine = np.asarray(part["soft_label"], dtype=np.float32)
                    for j, name in enumerate(wanted):
                        spread[:, names.index(name)] += mine[:, j]
                else:
                    spread[np.arange(len(local)), columns["label"]] = 1.0
                columns["soft_label"] = spread
            if preview:
                columns["image"] = list(part["image"])
            parts.append(columns)
        c, h, w = next(iter(self.memories.values())).config.image_shape
        features = {"pixel_values": datasets.Array3D(shape=(c, h, w), dtype="float32"), "label": ClassLabel(names=names),
                    "task": datasets.Value("string"), "address": datasets.Value("int64")}
        if soft:
            features["soft_label"] = datasets.List(datasets.Value("float32"), length=len(names))
        if preview:
            features["image"] = datasets.Image()
        joined = {key: sum((p[key] for p in parts), []) if key in ("task", "image") else np.concatenate([p[key] for p in parts])
                  for key in features}
        return datasets.Dataset.from_dict(joined, features=datasets.Features(features))

    # ---- files and the Hub ------------------------------------------------------------------------------

    def index(self) -> dict[str, Any]:
        index = {
            "format": FORMAT, "version": 1, "shared_classes": self.shared_classes, "class_names": self.class_names,
            "storage_floats": self.storage_floats(),
            "tasks": [{"name": task, "subfolder": task, "class_names": list(memory.config.class_names),
                       "storage_floats": memory.config.storage_floats(), "accuracy": self.accuracy.get(task)}
                      for task, memory in self.memories.items()],
        }
        if self.stream is not None:
            index["stream"] = self.stream
        if self.recipe is not None:
            index["recipe"] = self.recipe
        return index

    def save_pretrained(self, save_directory: str | os.PathLike, repo_id: str | None = None, pictures: bool = True) -> Path:
        """Write the bank to `save_directory`: the index, a card (its snippet loads `repo_id`, default the folder),
        and each memory in its task's subfolder (with its pictures unless `pictures=False`: about 0.2 MB a task)."""
        if not self.memories:
            raise ValueError("the bank holds no memories: nothing to save")
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_tasks(folder)
        for task, memory in self.memories.items():
            memory.save_pretrained(folder / task, pictures=pictures)
        (folder / INDEX_NAME).write_text(json.dumps(self.index(), indent=2) + "\n")
        (folder / "README.md").write_text(self.card(repo_id or str(folder)))
        return folder

    def _remove_stale_tasks(self, folder: Path) -> None:
        """Saving over an earlier bank removes the task folders its bank.json listed that this bank no longer holds
        (as transformers removes stale weight shards), so the folder never holds memories its index does not list.
        Only folders the old index names and that hold a saved memory are touched."""
        import shutil

        try:
            old = json.loads((folder / INDEX_NAME).read_text())
            listed = [entry["subfolder"] for entry in old["tasks"]]
        except (OSError, ValueError, KeyError, TypeError):
            return  # no earlier bank here (or not one we can read): nothing of ours to remove
        for subfolder in listed:
            path = folder / str(subfolder)
            if (subfolder not in self.memories and isinstance(subfolder, str) and _TASK_NAME.match(subfolder)
                    and (path / "config.json").is_file()):
                shutil.rmtree(path)

    def push_to_hub(self, repo_id: str, **upload: Any) -> str:
        """Upload the saved bank to model repo `repo_id` in one commit; returns the commit URL."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(Path(tmp) / "bank", repo_id=repo_id)
            return upload_folder(Path(tmp) / "bank", repo_id,
                                 **{"commit_message": f"Upload a bank of {len(self)} addressable memories", **upload})

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> "MemoryBank":
        """Load a bank from a folder or Hub id (`revision`, `token`, `cache_dir` as for transformers). Each memory
        is loaded with `AddressableMemory.from_pretrained`'s checks; an index that disagrees with them is refused."""
        index_file = _index_file(path, kwargs)
        try:
            index = json.loads(Path(index_file).read_text())
        except (OSError, ValueError) as error:
            raise CheckpointError(f"{index_file} is not valid JSON: {error}") from error
        if not isinstance(index, dict) or index.get("format") != FORMAT or not isinstance(index.get("tasks"), list):
            raise CheckpointError(f"{index_file} is not a MemoryBank index (format {FORMAT!r} with a task list)")
        stream = index.get("stream")
        if stream is not None and not isinstance(stream, dict):
            raise CheckpointError(f"{index_file}: 'stream' must be a stream definition (an object), got {type(stream).__name__}")
        recipe = index.get("recipe")
        if recipe is not None and not isinstance(recipe, dict):
            raise CheckpointError(f"{index_file}: 'recipe' must be the retraining settings (an object), got {type(recipe).__name__}")
        bank = cls(shared_classes=bool(index.get("shared_classes", False)), stream=stream, recipe=recipe)
        for entry in index["tasks"]:
            try:
                task, subfolder, names = entry["name"], entry["subfolder"], list(entry["class_names"])
            except (KeyError, TypeError) as error:
                raise CheckpointError(f"{index_file}: a task entry lacks name, subfolder or class_names: {entry!r}") from error
            if not isinstance(subfolder, str) or not _TASK_NAME.match(subfolder):
                raise CheckpointError(f"{index_file}: task {task!r} has an unsafe subfolder {subfolder!r}")
            memory = AddressableMemory.from_pretrained(path, subfolder=subfolder, **kwargs)
            if list(memory.config.class_names) != names:
                raise CheckpointError(f"{index_file} says task {task!r} holds {names}, its memory holds "
                                      f"{list(memory.config.class_names)}")
            try:
                bank.add(task, memory.eval(), entry.get("accuracy"))
            except ValueError as error:
                raise CheckpointError(f"{path}: {error}") from error
        return bank

    # ---- card -------------------------------------------------------------------------------------------

    def card(self, source: str = "<this repo or folder>") -> str:
        kind = ("every task holds the same classes (a stream of transformed copies of one label space)"
                if self.shared_classes else "each class belongs to one task")
        rows = "\n".join(
            f"| {task} | {', '.join(memory.config.class_names)} | {memory.config.storage_floats():,} | "
            f"{'-' if task not in self.accuracy else f'{100 * self.accuracy[task]:.2f}%'} |"
            for task, memory in self.memories.items())
        return f"""---
library_name: hf_rtp
tags:
- hf_rtp
- dataset-distillation
- addressable-memory
- memory-bank
---

# A bank of {len(self)} addressable memories

One memory per task ({kind}), {self.storage_floats():,} floats in all; each subfolder is an `AddressableMemory`
(see its own card). Recall any classes as one `datasets.Dataset` and train any network on it:

```python
from hf_rtp import MemoryBank

bank = MemoryBank.from_pretrained("{source}")
train = bank.recall(classes={self.class_names[:2]!r})  # pixel_values, label (global ClassLabel), task
```

| task | classes | stored floats | accuracy |
|---|---|---|---|
{rows}
"""


def _index_file(path: str | os.PathLike, kwargs: dict[str, Any]) -> str:
    if os.path.isdir(path):
        local = Path(path, INDEX_NAME)
        if not local.is_file():
            raise CheckpointError(f"{path} holds no {INDEX_NAME}: not a saved MemoryBank (MemoryBank.save_pretrained "
                                  "writes one)")
        return str(local)
    if _looks_local(path):
        raise CheckpointError(f"no such folder: {path} (a saved bank is a folder, or a Hub id such as user/name)")
    from transformers.utils import cached_file

    try:
        return cached_file(str(path), INDEX_NAME, **{k: kwargs[k] for k in ("cache_dir", "revision", "token") if k in kwargs})
    except OSError as error:
        raise CheckpointError(f"cannot fetch {INDEX_NAME} of {path}: {error}") from error
