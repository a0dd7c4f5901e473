"""The evaluation protocol: train fresh networks from scratch on a (recalled) set, test on held-out data.

Defaults follow the authors' code: 10 ConvNets x 300 epochs, SGD lr 0.01 momentum 0.9,
batch 640, no weight decay, no schedule; report mean +- std. The same function scores random real images of
the same storage budget, the baseline every distilled set has to beat.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

import datasets

from .augment import batch_augmenter
from .data import ImageClassificationData
from .learners import ConvNet, Resized, create_learner, seeded_learner
from .modeling_memory import AddressableMemory
from .options import fields_with, flags


@dataclass
class EvalConfig:
    models: int = field(default=10, metadata={"protocol": True, "help": "Fresh networks trained per evaluation (the paper uses 20, the authors' code 10)."})
    epochs: int = field(default=300, metadata={"protocol": True, "help": 'Training epochs over the evaluated set.'})
    optimizer: Literal["sgd", "adamw"] = field(default="sgd", metadata={"protocol": True, "help": "`sgd` (the RTP protocol) or `adamw` (what from-scratch ViTs need)."})
    lr: float = field(default=0.01, metadata={"protocol": True, "help": 'Peak learning rate.'})
    momentum: float = field(default=0.9, metadata={"protocol": True, "help": 'SGD momentum (ignored by AdamW).'})
    weight_decay: float = field(default=0.0, metadata={"protocol": True, "help": 'Weight decay (0 in the RTP protocol; DC/DSA use 5e-4 with SGD).'})
    schedule: Literal["constant", "cosine"] = field(default="constant", metadata={"protocol": True, "help": "Learning-rate schedule after warm-up: `constant` (the RTP protocol) or `cosine` (to 0)."})
    warmup_epochs: int = field(default=0, metadata={"protocol": True, "help": 'Linear learning-rate warm-up over this many epochs.'})
    standardize: bool = field(default=False, metadata={"protocol": True, "help": "Rescale the training images per channel to zero mean and unit std over the set, the scale the normalised test data has. Distilled images can drift to any contrast because the ConvNet's instance norm ignores it; students without that invariance (BatchNorm ResNets, ViTs) need it back."})
    input_size: int | None = field(default=None, metadata={"protocol": True, "help": "Bilinearly resize images to this many pixels a side before the network, in training and testing (e.g. 128 for a stride-32 ResNet on 28 px images); None keeps them."})
    batch_size: int = field(default=640, metadata={"protocol": True, "help": 'Training minibatch size (the whole set when smaller).'})
    learner: str = field(default="convnet", metadata={"protocol": True, "help": '`convnet`, `convnet-<width>`, `mlp`, `vit` (the small ViT the unroll can also train), or a timm model name for cross-architecture evaluation.'})
    learner_kwargs: dict = field(default_factory=dict, metadata={"protocol": True, "help": "Extra timm.create_model arguments for a timm learner, e.g. {\"patch_size\": 4} for a ViT on 28x28 images."})
    width: int = field(default=128, metadata={"protocol": True, "help": 'ConvNet width.'})
    seed: int = field(default=0, metadata={"protocol": True, "help": 'Seed of network inits and minibatch order: model i uses seed + i.'})
    augment: str | None = field(default=None, metadata={"protocol": True, "help": "DSA augmentation with per-image parameters on every training batch (e.g. flip_rotate, dsa); None for none."})
    noise: float = field(default=0.0, metadata={"protocol": True, "help": "Std of Gaussian noise added to every training image at every step, in normalised pixel units (0: none). It teaches the network to ignore directions its training set does not span: a network retrained on a bank of task memories otherwise reads other tasks' features into a task's test images (docs/continual.md)."})
    micro_batch: int | None = field(default=None, metadata={"help": "Accumulate each ConvNet minibatch's gradient over micro-batches of this size: the same update, less cache pressure (faster on a CPU, e.g. 64)."})
    compile: bool = field(default=False, metadata={"help": "torch.compile the training networks (about 1.5x faster on CPU; compiled once per shape and reused across models)."})
    teacher_epochs: int = field(default=1, metadata={"help": "For a memory with learned soft labels: epochs of the teacher ConvNet trained on the full training split, whose predictions label the random real images (so both rows train on soft labels)."})
    teacher_width: int = field(default=64, metadata={"help": "Width of that teacher ConvNet."})
    test_batch_size: int = field(default=1024, metadata={"help": 'Batch size when testing.'})
    progress: bool = field(default=True, metadata={"help": "Show progress bars (models, and epochs within each)."})
    max_minutes: float | None = field(default=None, metadata={"help": "Start no new model after this many minutes: at least one is trained, and random real images then train as many models as the memory did, so the two rows stay paired; the record says how many ran. None: all `models`."})

    def __post_init__(self):
        for name in ("models", "epochs", "batch_size", "test_batch_size", "teacher_epochs", "teacher_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.micro_batch is not None and self.micro_batch < 1:
            raise ValueError(f"micro_batch must be >= 1 (or None), got {self.micro_batch}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}), got {self.warmup_epochs}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be positive (None: no time limit), got {self.max_minutes}")
        if not 0 <= self.noise < math.inf:
            raise ValueError(f"noise must be a finite std >= 0 (0: none), got {self.noise}")
        if self.input_size is not None and self.input_size < 4:
            raise ValueError(f"input_size must be >= 4 pixels (or None), got {self.input_size}")


@dataclass
class EvalResult:
    mean: float
    std: float
    runs: list[float]
    images: int
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{100 * self.mean:.2f} +- {100 * self.std:.2f}% ({len(self.runs)} models, {self.images} images)"

    def summary(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "runs": self.runs, "images": self.images}


def _seeded_learner(config: EvalConfig, shape: Sequence[int], num_classes: int, seed: int, device) -> nn.Module:
    size = (config.input_size, config.input_size) if config.input_size else tuple(shape[1:])
    net = seeded_learner(config.learner, shape[0], num_classes, size, seed, width=config.width, **config.learner_kwargs)
    return (Resized(net, size) if config.input_size else net).to(device)


def _optimizer_and_schedule(net: nn.Module, config: EvalConfig, steps_per_epoch: int):
    if config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    warmup, total = config.warmup_epochs * steps_per_epoch, config.epochs * steps_per_epoch

    def factor(step: int) -> float:  # multiplies the peak lr at optimizer step `step` (0-based)
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
        return 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def default_device() -> str:
    """Where students train when not told: the GPU when there is one (as Accelerate picks for distillation)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def train_from_scratch(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, config: EvalConfig, seed: int, device=None
) -> nn.Module:
    """Train one fresh network on (images, labels) with the protocol's settings (SGD, constant lr by default).
    `labels` are class ids (N,) or distributions over the classes (N, num_classes), e.g. learned soft labels."""
    device = device or images.device
    images, labels = images.to(device), labels.to(device)
    if config.standardize:
        images = standardized(images)
    net = _seeded_learner(config, images.shape[1:], num_classes, seed, device)
    net.train()
    model = torch.compile(net) if config.compile else net
    n = len(labels)
    optimizer, schedule = _optimizer_and_schedule(net, config, math.ceil(n / config.batch_size))
    generator = torch.Generator().manual_seed(seed)
    augment = batch_augmenter(config.augment, generator)
    epochs = tqdm(range(config.epochs), desc=f"train model (seed {seed})", disable=not config.progress, leave=False)
    for _ in epochs:
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, config.batch_size):
            rows = order[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            x, y = augment(images[rows]), labels[rows]
            if config.noise:  # drawn on the CPU generator, so a seed gives the same noise on any device
                x = x + config.noise * torch.randn(x.shape, generator=generator).to(device)
            # Only the ConvNet (instance norm, no cross-image coupling) gets exactly the same update in parts.
            step = config.micro_batch if config.micro_batch and isinstance(net, ConvNet) else len(rows)
            for xs, ys in zip(x.split(step), y.split(step)):
                loss = F.cross_entropy(model(xs), ys, reduction="sum") / len(rows)  # the mean over the minibatch
                loss.backward()
            optimizer.step()
            schedule.step()
    return net.eval()


def standardized(images: torch.Tensor) -> torch.Tensor:
    """`images` shifted and scaled per channel to mean 0, std 1 over the whole set (one affine map for all images,
    so their relative contrast is kept)."""
    mean = images.mean(dim=(0, 2, 3), keepdim=True)
    std = images.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)
    return (images - mean) / std


def accuracy(net: nn.Module, data: ImageClassificationData, batch_size: int = 1024, device=None) -> float:
    return accuracy_on(net, data.images, data.labels, batch_size, device)


@torch.no_grad()
def accuracy_on(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024, device=None) -> float:
    """Share of `images` whose argmax logit is their label."""
    device = device or next(net.parameters()).device
    correct = 0
    for start in range(0, len(labels), batch_size):
        x = images[start : start + batch_size].to(device)
        y = labels[start : start + batch_size].to(device)
        correct += int((net(x).argmax(1) == y).sum())
    return correct / max(1, len(labels))


def evaluate_images(
    images: torch.Tensor, labels: torch.Tensor, test: ImageClassificationData, config: EvalConfig | None = None, device=None
) -> EvalResult:
    """Train `config.models` fresh networks on (images, labels); their accuracy on `test`, mean +- std."""
    config = config or EvalConfig()
    if images.shape[1:] != test.images.shape[1:]:
        raise ValueError(f"training images are {tuple(images.shape[1:])} but test images are {tuple(test.images.shape[1:])}")
    start = time.perf_counter()
    runs = []
    bar = tqdm(range(config.models), desc="evaluate", disable=not config.progress, leave=False)
    for i in bar:
        if runs and config.max_minutes is not None and time.perf_counter() - start >= 60 * config.max_minutes:
            bar.write(f"evaluate: {len(runs)} of {config.models} models within --max-minutes {config.max_minutes:g}")
            break
        net = train_from_scratch(images, labels, test.num_classes, config, config.seed + i, device)
        runs.append(accuracy(net, test, config.test_batch_size))
        bar.set_postfix(acc=f"{100 * np.mean(runs):.2f}%")
    return EvalResult(
        mean=float(np.mean(runs)),
        std=float(np.std(runs)),
        runs=runs,
        images=len(labels),
        seconds=time.perf_counter() - start,
        config=asdict(config),
    )


def dataset_tensors(dataset: datasets.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixel_values, targets) tensors of a recalled Dataset: its `soft_label` distributions when it has them (a
    memory with learned soft labels), else its `label` ids."""
    missing = {"pixel_values", "label"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"a recalled dataset needs columns pixel_values and label; missing {sorted(missing)}")
    target = "soft_label" if "soft_label" in dataset.column_names else "label"
    torch_view = dataset.with_format("torch", columns=["pixel_values", target])[:]
    targets = torch_view[target].float() if target == "soft_label" else torch_view[target].long()
    return torch_view["pixel_values"].float(), targets


def recalled_tensors(memory: AddressableMemory) -> tuple[torch.Tensor, torch.Tensor]:
    """Every class's recalled images and training targets (eqn 2; class ids, or learned soft labels), as float32 CPU
    tensors with no graph."""
    with torch.no_grad():
        images, targets = memory.training_set()
    return images.detach().float().cpu(), (targets.float() if targets.is_floating_point() else targets).cpu()


def evaluate_recalled(
    recalled: datasets.Dataset | AddressableMemory, test: ImageClassificationData, config: EvalConfig | None = None, device=None
) -> EvalResult:
    """Score a recalled Dataset (or a memory, recalled on the fly) with the retrain-from-scratch protocol."""
    if isinstance(recalled, AddressableMemory):
        images, labels = recalled_tensors(recalled)
    else:
        images, labels = dataset_tensors(recalled)
    return evaluate_images(images, labels, test, config, device)


def random_real(train: ImageClassificationData, ipc: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`ipc` random real images per class: the same storage budget as a memory of `ipc` images per class."""
    per_class = max(1, math.floor(ipc + 1e-9))
    return train.sample(range(train.num_classes), per_class, torch.Generator().manual_seed(seed))


def teacher_soft_labels(
    train: ImageClassificationData, images: torch.Tensor, config: EvalConfig, device=None
) -> torch.Tensor:
    """Soft labels for `images` from a teacher trained on the whole of `train`: a ConvNet of `teacher_width`,
    `teacher_epochs` epochs of SGD (lr 0.01, momentum 0.9, batch 256), its softmax at temperature 1. What random real
    images get when the memory they are compared with learns soft labels, so that both rows train on soft labels."""
    device = device or default_device()
    generator = torch.Generator().manual_seed(config.seed)
    net = create_learner("convnet", train.image_shape[0], train.num_classes, tuple(train.image_shape[1:]),
                         width=config.teacher_width)
    net.reset_parameters(generator)
    net.to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    n = len(train)
    for _ in tqdm(range(config.teacher_epochs), desc="teacher", disable=not config.progress, leave=False):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, 256):
            rows = order[start : start + 256]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(net(train.images[rows].to(device)), train.labels[rows].to(device)).backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        return net(images.to(device)).softmax(-1).float().cpu()


# Fields that decide the numbers (what `hf-rtp evaluate` needs to repeat them), from the fields' "protocol" role; the
# rest only change speed or output.
PROTOCOL_FIELDS = fields_with(EvalConfig, "protocol")


def evaluate_memory(
    memory: AddressableMemory,
    test: ImageClassificationData,
    config: EvalConfig | None = None,
    train: ImageClassificationData | None = None,
    device=None,
) -> dict[str, Any]:
    """Evaluate a memory (and, given `train`, random real images at its budget) and record the result in
    `memory.config.evaluation`, which the model card shows. Returns that record."""
    config = config or EvalConfig()
    distilled = evaluate_recalled(memory, test, config, device)
    if len(distilled.runs) < config.models:  # stopped by max_minutes: the baseline trains as many, paired by seed
        config = replace(config, models=len(distilled.runs), max_minutes=None)
    record: dict[str, Any] = {
        "split": test.split or "test",
        "models": config.models,
        "epochs": config.epochs,
        "learner": config.learner if not config.learner == "convnet" else f"ConvNet-{config.width}",
        "accuracy": distilled.summary(),
        # everything that decides the numbers, so `hf-rtp evaluate` can repeat them (see reproduce_command)
        "protocol": {k: getattr(config, k) for k in PROTOCOL_FIELDS if k not in ("models", "epochs")},
        "flags": [f"--models {config.models}", f"--epochs {config.epochs}",
                  *flags(config, [k for k in PROTOCOL_FIELDS if k not in ("models", "epochs")])],
    }
    if train is None:
        record["flags"].append("--no-random-real")
    else:
        images, labels = random_real(train, memory.config.budget_ipc(), config.seed)
        if memory.config.soft_labels:
            labels = teacher_soft_labels(train, images, config, device)
            record["random_real_labels"] = (f"soft, from a ConvNet-{config.teacher_width} trained {config.teacher_epochs} "
                                            f"epoch(s) on the full training split")
        baseline = evaluate_images(images, labels, test, config, device)
        record["random_real"] = baseline.summary()
        record["random_real_images"] = baseline.images
    memory.config.evaluation = record
    return record
