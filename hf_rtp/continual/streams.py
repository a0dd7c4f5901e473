"""Task streams for continual learning (sec 5.2), deterministic from a seed.

A stream is a sequence of tasks, each a small training set seen once, in minibatches of 10, and a test set:
- `rotations`: Rotated MNIST, 20 tasks x 1000 training images, task t rotated by one fixed angle drawn in its
  slice [180 t/T, 180 (t+1)/T) of 0-180 degrees (GEM's generator);
- `permutations`: Permuted MNIST, 20 tasks x 1000, one fixed pixel permutation per task;
- `many`: MANY Permutations, 100 tasks x 200;
- `split-cifar100`: 20 five-way tasks of CIFAR-100 classes (a seeded class order), each with all training images
  of its classes (by Hub id `uoft-cs/cifar100` for users who are online, or a local copy with that layout).
The MNIST streams draw their tasks' training images without replacement from MNIST's training split (local parquet
or `ylecun/mnist`); each task's test set is its transform of the whole test split (or of a held-out share of the
training split with `split="validation"`, for tuning). Every task is scored among its own classes (all ten digits
for the MNIST streams; the task's five classes for Split CIFAR-100, the task-aware setting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Literal

import torch
from torch import nn

from ..data import ImageClassificationData, load_train_test

STREAMS = ("rotations", "permutations", "many", "split-cifar100")
STREAM_FORMAT = "hf_rtp.TaskStream"
# stream -> (tasks, training images per task, default dataset); None: all images of the task's classes
STREAM_DEFAULTS: dict[str, tuple[int, int | None, str]] = {
    "rotations": (20, 1000, "ylecun/mnist"),
    "permutations": (20, 1000, "ylecun/mnist"),
    "many": (100, 200, "ylecun/mnist"),
    "split-cifar100": (20, None, "uoft-cs/cifar100"),
}
# La-MAML's buffers for these streams, in samples (x the image's floats: 156,800 and 392,000 floats on MNIST)
BUFFER_SAMPLES = {"rotations": 200, "permutations": 200, "many": 500, "split-cifar100": 200}


@dataclass
class StreamConfig:
    """Which task stream, and how it is drawn."""

    stream: Literal["rotations", "permutations", "many", "split-cifar100"] = field(default="rotations", metadata={"help": "The task stream: Rotated MNIST, Permuted MNIST, MANY permutations, or Split CIFAR-100."})
    dataset: str | None = field(default=None, metadata={"help": "Hub id or local folder of the source data (default: ylecun/mnist, or uoft-cs/cifar100 for split-cifar100)."})
    tasks: int | None = field(default=None, metadata={"help": "Number of tasks (default: 20, or 100 for many)."})
    samples_per_task: int | None = field(default=None, metadata={"help": "Training images per task (default: 1000, 200 for many, all of the task's classes for split-cifar100)."})
    batch_size: int = field(default=10, metadata={"help": "Minibatch size of the single pass over each task."})
    test_per_task: int | None = field(default=None, metadata={"help": "Score each task on this many test images (default: the whole test split, transformed)."})
    split: Literal["test", "validation"] = field(default="test", metadata={"help": "`validation` scores on a held-out 10% of the training split (for tuning) and streams the rest."})
    seed: int = field(default=0, metadata={"help": "Seed of the tasks' transforms, images and order."})

    def __post_init__(self):
        if self.stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, got {self.stream!r}")
        for name in ("tasks", "samples_per_task", "test_per_task"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or None), got {value}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.split not in ("test", "validation"):
            raise ValueError(f"split must be 'test' or 'validation', got {self.split!r}")

    @property
    def num_tasks(self) -> int:
        return self.tasks or STREAM_DEFAULTS[self.stream][0]

    @property
    def source(self) -> str:
        return self.dataset or STREAM_DEFAULTS[self.stream][2]

    def load(self) -> "TaskStream":
        """Load the source data and build the stream."""
        train, test = load_train_test(self.source, zca=False)  # an MLP on raw (normalised) pixels: no whitening
        if self.split == "validation":
            train, test = train.split_validation(0.1, seed=self.seed)
        return build_stream(self, train, test)


class Rotation:
    """Rotate images by a fixed angle (degrees, bilinear); corners fill with the data's background (pixel 0)."""

    def __init__(self, degrees: float, mean: list[float], std: list[float]):
        self.degrees = float(degrees)
        self.fill = [(0.0 - m) / s for m, s in zip(mean, std)]  # pixel value 0 in the normalised space

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2.functional import rotate

        return rotate(images, self.degrees, interpolation=InterpolationMode.BILINEAR, fill=self.fill)

    def __repr__(self) -> str:
        return f"Rotation({self.degrees:.2f} deg)"


class Permutation:
    """Shuffle the pixels of every image by one fixed permutation (the same for every channel)."""

    def __init__(self, order: torch.Tensor):
        self.order = order

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        flat = images.flatten(2)
        return flat[:, :, self.order.to(images.device)].view_as(images)

    def __repr__(self) -> str:
        return f"Permutation({len(self.order)} pixels)"


def identity(images: torch.Tensor) -> torch.Tensor:
    return images


def transform_definition(transform: Callable[[torch.Tensor], torch.Tensor]) -> dict:
    """A task's transform as JSON: {"rotation_degrees": a}, {"permutation": [pixel order]} or {"identity": true}."""
    if isinstance(transform, Rotation):
        return {"rotation_degrees": transform.degrees}
    if isinstance(transform, Permutation):
        return {"permutation": transform.order.tolist()}
    if transform is identity:
        return {"identity": True}
    raise ValueError(f"{transform!r} cannot be written down as a stream's transform")


def transform_from_definition(definition: dict, mean: list[float], std: list[float]) -> Callable[[torch.Tensor], torch.Tensor]:
    if "rotation_degrees" in definition:
        return Rotation(float(definition["rotation_degrees"]), mean, std)
    if "permutation" in definition:
        return Permutation(torch.tensor(definition["permutation"], dtype=torch.long))
    if definition.get("identity"):
        return identity
    raise ValueError(f"unknown transform in a stream definition: {sorted(definition)}")


def tasks_from_definition(definition: dict, dataset: str | None = None) -> list[Task]:
    """The tasks of a stream definition (e.g. `bank.stream` of a bank saved by compress-then-recall) with their test
    sets: the source's test split (or the validation share, for a stream tuned on validation) under each task's
    recorded transform. Their training images are not rebuilt (`train` is None). `dataset` replaces the recorded
    source (a local copy of the same data)."""
    check_definition(definition)
    config = StreamConfig(stream=definition["stream"], dataset=dataset or definition["dataset"], split=definition["split"],
                          seed=int(definition["seed"]), test_per_task=definition.get("test_per_task"))
    train, test = load_train_test(config.source, zca=False)
    if config.split == "validation":
        train, test = train.split_validation(0.1, seed=config.seed)
    test = _test_subset(config, test, torch.Generator().manual_seed(config.seed))
    tasks = []
    for index, entry in enumerate(definition["tasks"]):
        source = test
        if definition["stream"] == "split-cifar100":
            source = test.subset(torch.cat([test.per_class_indices()[c] for c in entry["classes"]]).sort().values, test.split)
        tasks.append(Task(index, entry["name"], None, list(entry["classes"]),
                          transform_from_definition(entry["transform"], train.mean, train.std), source))
    return tasks


def task_test_set(definition: dict, task: str, dataset: str | None = None) -> ImageClassificationData:
    """Task `task`'s test set, rebuilt from a stream definition (see `tasks_from_definition`)."""
    names = [t["name"] for t in check_definition(definition)["tasks"]]
    if task not in names:  # said before any data is loaded
        raise ValueError(f"no task named {task!r} in the stream; it has {names}")
    return next(t for t in tasks_from_definition(definition, dataset) if t.name == task).test()


def check_definition(definition: dict) -> dict:
    """`definition` if it is a stream definition (`TaskStream.definition()`), else one ValueError saying what it is not."""
    if not isinstance(definition, dict) or definition.get("format") != STREAM_FORMAT:
        raise ValueError(f"not a stream definition (format {STREAM_FORMAT!r}): a bank saved by compress-then-recall holds one")
    if not isinstance(definition.get("tasks"), list) or not all(isinstance(t, dict) and "name" in t for t in definition["tasks"]):
        raise ValueError("a stream definition lists its tasks, each with a name")
    return definition


def _test_subset(config: StreamConfig, test: ImageClassificationData, generator: torch.Generator) -> ImageClassificationData:
    """The stream's test images: all, or `test_per_task` of them (the generator's first draw)."""
    if config.test_per_task is not None and config.test_per_task < len(test):
        return test.subset(torch.randperm(len(test), generator=generator)[: config.test_per_task].sort().values)
    return test


@dataclass
class Task:
    """One task: its training images in stream order (already transformed), the classes it is scored among
    (global ids), and its test set, transformed when asked for (a whole transformed test split per task would
    not fit in memory for 100 tasks)."""

    index: int
    name: str
    train: ImageClassificationData | None  # None for a task rebuilt from a saved definition (its test set only)
    classes: list[int]
    transform: Callable[[torch.Tensor], torch.Tensor]
    test_source: ImageClassificationData

    def test(self) -> ImageClassificationData:
        return replace(self.test_source, images=self.transform(self.test_source.images), _per_class=None)


@dataclass
class TaskStream:
    name: str
    tasks: list[Task]
    class_names: list[str]
    batch_size: int = 10
    config: StreamConfig | None = None

    def definition(self) -> dict:
        """What rebuilds every task's test set anywhere (`task_test_set`), stored in a bank's bank.json: the source
        data and split, the seed, and each task's classes, training-set size and transform, stated outright (the
        rotation angle, or the permutation itself), so no random generator has to be replayed."""
        config = self.config or StreamConfig(stream=self.name)
        return {"format": STREAM_FORMAT, "stream": self.name, "dataset": config.source, "split": config.split,
                "seed": config.seed, "batch_size": self.batch_size, "test_per_task": config.test_per_task,
                "class_names": list(self.class_names),
                "tasks": [{"name": t.name, "classes": list(t.classes), "train_images": len(t.train),
                           "transform": transform_definition(t.transform)} for t in self.tasks]}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.tasks[0].train.image_shape

    @property
    def image_floats(self) -> int:
        return math.prod(self.image_shape)

    def batches(self, task: Task) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The task's single pass: its training images in order, `batch_size` at a time."""
        for start in range(0, len(task.train), self.batch_size):
            yield task.train.images[start : start + self.batch_size], task.train.labels[start : start + self.batch_size]


def build_stream(config: StreamConfig, train: ImageClassificationData, test: ImageClassificationData) -> TaskStream:
    """The stream `config` describes, from already loaded (train, test) splits."""
    generator = torch.Generator().manual_seed(config.seed)
    tasks_n = config.num_tasks
    per_task = config.samples_per_task or STREAM_DEFAULTS[config.stream][1]
    test = _test_subset(config, test, generator)
    tasks = []
    if config.stream == "split-cifar100":
        way = 5
        if train.num_classes < tasks_n * way:
            raise ValueError(f"{train.name or 'the data'} has {train.num_classes} classes; {tasks_n} five-way tasks "
                             f"need {tasks_n * way}")
        order = torch.randperm(train.num_classes, generator=generator)[: tasks_n * way].view(tasks_n, way)
        for t, classes in enumerate(order.tolist()):
            rows = torch.cat([train.per_class_indices()[c] for c in classes])
            rows = rows[torch.randperm(len(rows), generator=generator)]
            if per_task is not None:
                if per_task > len(rows):
                    raise ValueError(f"task {t} has {len(rows)} training images, fewer than samples_per_task={per_task}")
                rows = rows[:per_task]
            test_rows = torch.cat([test.per_class_indices()[c] for c in classes]).sort().values
            tasks.append(Task(t, f"task-{t:02d}", train.subset(rows, "train"), classes, identity,
                              test.subset(test_rows, test.split)))
    else:
        if tasks_n * per_task > len(train):
            raise ValueError(f"{tasks_n} tasks x {per_task} images need {tasks_n * per_task} training images; "
                             f"{train.name or 'the data'} has {len(train)}")
        rows = torch.randperm(len(train), generator=generator)
        pixels = math.prod(train.image_shape[1:])
        for t in range(tasks_n):
            if config.stream == "rotations":
                low, high = 180.0 * t / tasks_n, 180.0 * (t + 1) / tasks_n
                transform = Rotation(low + (high - low) * float(torch.rand((), generator=generator)), train.mean, train.std)
            else:
                transform = Permutation(torch.randperm(pixels, generator=generator))
            mine = train.subset(rows[t * per_task : (t + 1) * per_task], "train")
            tasks.append(Task(t, f"task-{t:02d}", replace(mine, images=transform(mine.images)),
                              list(range(train.num_classes)), transform, test))
    return TaskStream(config.stream, tasks, list(train.class_names), config.batch_size, config)


@torch.no_grad()
def task_accuracy(net: nn.Module, task: Task, batch_size: int = 1024, device=None) -> float:
    """Accuracy of `net` on `task`'s test set, choosing among the task's classes only."""
    data = task.test()
    device = device or next(net.parameters()).device
    classes = torch.tensor(task.classes, device=device)
    position = torch.full((max(task.classes) + 1,), -1, dtype=torch.long, device=device)
    position[classes] = torch.arange(len(classes), device=device)
    net.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        images = data.images[start : start + batch_size].to(device)
        labels = position[data.labels[start : start + batch_size].to(device)]
        correct += int((net(images)[:, classes].argmax(1) == labels).sum())
    return correct / max(1, len(data))


def retained_accuracy(final: list[float]) -> float:
    """RA: the mean accuracy over all tasks of the final network."""
    return sum(final) / len(final)


def backward_transfer(final: list[float], just_learned: list[float]) -> float:
    """BTI: the mean change of each task's accuracy from right after it was learned to the end (negative:
    forgetting), over the first T-1 tasks as GEM and La-MAML define it (the last task has had no time to change).
    0 for a single task."""
    if len(final) < 2:
        return 0.0
    return sum(f - j for f, j in zip(final[:-1], just_learned[:-1])) / (len(final) - 1)
