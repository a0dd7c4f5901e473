"""The outer loop: learn a memory by back-propagation through unrolled inner training (Alg. 1), on Accelerate.

Every process runs its own unroll(s) from its own fresh learner init each outer step; meta-gradients are
averaged with an explicit all-reduce (DDP cannot do double backward), so parameters stay identical on every
rank. All randomness of an unroll comes from a generator seeded by (seed, step, unroll id): a run is
reproducible, a resumed run continues exactly, and N processes x L unrolls draw the same unrolls as 1 process x
N*L (equal to float rounding; bit for bit with 2 ranks and the same thread count, where the sums are the same).
Only the main process validates and writes (through `RunDirectory`); the others wait at the next all-reduce.
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from .augment import Augmentation, identity, parse_strategy
from .configuration_memory import MemoryOptions
from .data import ImageClassificationData
from .evaluate import EvalConfig, accuracy, evaluate_memory, train_from_scratch
from .episodes import draw_episode, episode_accuracy, few_shot_evaluation
from .learners import create_learner
from .modeling_memory import AddressableMemory
from .run_dir import RunDirectory
from .unroll import InnerLoop, compiler_available

TRACKERS = ("none", "tensorboard", "wandb", "trackio")
# The package each tracker needs (import name), checked before any work starts.
_TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}


@dataclass
class DistillConfig:
    steps: int = field(default=2000, metadata={"help": 'Outer steps (meta-gradient updates of the memory). The paper runs 50k on a GPU.'})
    max_minutes: float | None = field(default=None, metadata={"help": 'Stop after this much wall-clock time (checked between outer steps; counts across resumes).'})
    unroll_steps: int = field(default=150, metadata={"help": 'T: inner SGD steps per unroll (150 for IPC 1/10 and 200 for IPC 50 in the paper).'})
    window: int | None = field(default=None, metadata={"help": 'Differentiate only the last W inner steps (truncated BPTT); None differentiates all T.'})
    random_window: bool = field(default=False, metadata={"help": 'With `window`, end each unroll at a random step in [W, T] (random truncated BPTT).'})
    unroll_steps_start: int | None = field(default=None, metadata={"help": "A schedule for T: start the unrolls at this many steps and grow T linearly to `unroll_steps` over the first `unroll_warmup` outer steps (short unrolls are cheap while the memory is far from good); None: always `unroll_steps`."})
    unroll_warmup: int = field(default=0, metadata={"help": "Outer steps over which T grows from `unroll_steps_start` to `unroll_steps`."})
    inner_lr: float = field(default=0.01, metadata={"help": 'Inner SGD learning rate (fixed, as in the paper).'})
    inner_momentum: float = field(default=0.9, metadata={"help": "Inner SGD momentum; 0.9 is one of the paper's two findings (fig 4)."})
    inner_learner: str = field(default="convnet", metadata={"help": "The network trained in the inner loop: `convnet` (the paper's, `learner_width` wide), `convnet-<width>`, `mlp` (2 x 100), `mlp-<hidden>`, `vit` (a 2-block ViT of width 64 on 4x4 patches), `vit-<width>`, or several joined by + (e.g. `convnet+mlp`) that take turns, one per unroll, so the memory is distilled for all of them (the network a memory will train, e.g. continual learning's MLP). Validation stays the ConvNet protocol."})
    learner_width: int = field(default=128, metadata={"help": 'Width of the ConvNet trained in the inner loop (evaluation uses `eval_width`).'})
    learner_depth: int | None = field(default=None, metadata={"help": 'ConvNet depth; None picks it from the resolution (3 for 28/32 px).'})
    classes_per_step: int | None = field(default=None, metadata={"help": 'Classes sampled per unroll; None uses all classes (as the paper does for CIFAR-10).'})
    real_per_class: int = field(default=64, metadata={"help": 'Real images per sampled class in the outer loss.'})
    shots: int = field(default=1, metadata={"help": "Image-addressed memories (a query head): k shot images per class that make its query in each training episode (N = classes_per_step classes per episode)."})
    eval_episodes: int = field(default=20, metadata={"help": "Image-addressed memories: few-shot episodes (N-way, k = shots) drawn from the validation split per validation."})
    synthetic_per_class: int = field(default=32, metadata={"help": 'Recalled images per sampled class in each inner step (capped by r).'})
    augment: str | None = field(default=None, metadata={"help": "Differentiable augmentation drawn once per unroll and applied to every inner step's recalled images and to the real batch: DSA ops joined by _ (e.g. flip_rotate, the paper's CIFAR setting) or a named strategy (cifar, dsa, digits); None for none."})
    compile: bool | None = field(default=None, metadata={"help": "torch.compile the per-step work of the unroll and the validation networks (about 1.4x faster on CPU after a one-off compile of under a minute). None: on where a compiler exists (a C++ compiler on CPU, Triton on a GPU)."})
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = field(default="default", metadata={"help": "torch.compile's mode for the unroll's per-step work: `reduce-overhead` replays it as CUDA graphs (on an H100 at T=150, 0.32 s per outer step against 0.70 s compiled and 1.52 s eager; GPU only, check your gradients on your setup)."})
    init: Literal["random", "real"] = field(default="random", metadata={"help": "How a new memory starts: `random` tables (Xavier, the paper) or `real` images of the training split at the data's scale (one_hot: the images; learned: bases spanning real images and addressing that recalls some of them; image-addressed: bases spanning real images and a query head standardised on them)."})
    inner_loops: int = field(default=1, metadata={"help": 'Independent unrolls per process per outer step, averaged.'})
    optimizer: Literal["sgd", "adam"] = field(default="sgd", metadata={"help": "Outer optimizer for bases and addressing: `sgd` (the authors') or `adam`."})
    lr: float = field(default=0.1, metadata={"help": 'Outer learning rate.'})
    momentum: float = field(default=0.5, metadata={"help": 'Outer SGD momentum (ignored by Adam).'})
    label_lr: float | None = field(default=None, metadata={"help": "Outer learning rate of a memory's learned soft labels (--soft-labels); None: `lr`."})
    clip_grad_norm: float | None = field(default=2.0, metadata={"help": 'Clip the meta-gradient norm (None: no clipping).'})
    validation_fraction: float = field(default=0.1, metadata={"help": 'Share of the training split held out for validation (never the test split).'})
    eval_every: int = field(default=100, metadata={"help": 'Validate every this many outer steps (0: only at the end).'})
    eval_models: int = field(default=1, metadata={"help": 'Fresh networks trained on the recalled set per validation.'})
    eval_epochs: int = field(default=300, metadata={"help": 'Epochs of each validation training run.'})
    eval_width: int = field(default=128, metadata={"help": 'ConvNet width used for validation (and by default for the final evaluation).'})
    checkpoint_every: int = field(default=50, metadata={"help": 'Write a resumable checkpoint every this many outer steps (0: only at the end).'})
    keep_checkpoints: int = field(default=2, metadata={"help": 'Most recent checkpoints kept on disk.'})
    output_dir: str = field(default="outputs/distill", metadata={"help": 'Where checkpoints, metrics.jsonl and the best memory go.'})
    resume: bool = field(default=False, metadata={"help": 'Continue from the latest checkpoint in `output_dir`.'})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Start afresh even if `output_dir` holds an earlier run's checkpoints (they are deleted)."})
    seed: int = field(default=0, metadata={"help": 'Seed of everything random (learner inits, class and image sampling, validation split).'})
    final_models: int = field(default=10, metadata={"help": "Networks trained from scratch on the best memory for the final test evaluation, when a test split is given (0: none); for an image-addressed memory, few-shot episodes of the test split, one network each."})
    final_epochs: int = field(default=300, metadata={"help": "Epochs of each final evaluation network."})
    push_to_hub: str | None = field(default=None, metadata={"help": "Hub repo id to upload the final memory to (with its model card and pictures)."})
    push_dataset: bool = field(default=False, metadata={"help": "With push_to_hub, also upload the recalled Dataset to <repo_id>-recalled."})
    report_to: Literal["none", "tensorboard", "wandb", "trackio"] = field(default="none", metadata={"help": "Also send the metrics to this Accelerate tracker (they always go to metrics.jsonl)."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self):
        positive = ("steps", "unroll_steps", "real_per_class", "synthetic_per_class", "inner_loops", "learner_width", "shots",
                    "eval_episodes",
                    "eval_models", "eval_epochs", "eval_width", "keep_checkpoints", "final_epochs")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "checkpoint_every", "seed", "final_models"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.classes_per_step is not None and self.classes_per_step < 1:
            raise ValueError(f"classes_per_step must be >= 1 (or None for all classes), got {self.classes_per_step}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.inner_lr <= 0 or self.lr <= 0 or (self.label_lr is not None and self.label_lr <= 0):
            raise ValueError(f"learning rates must be positive, got inner_lr={self.inner_lr}, lr={self.lr}, label_lr={self.label_lr}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ValueError(f"clip_grad_norm must be positive (None: no clipping), got {self.clip_grad_norm}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.window is not None and not 1 <= self.window:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.unroll_steps_start is not None and not 1 <= self.unroll_steps_start <= self.unroll_steps:
            raise ValueError(f"unroll_steps_start must be in [1, unroll_steps={self.unroll_steps}], got {self.unroll_steps_start}")
        if self.unroll_warmup < 0 or (self.unroll_warmup > 0) != (self.unroll_steps_start is not None):
            raise ValueError(f"a T schedule needs both unroll_steps_start and unroll_warmup >= 1 (got {self.unroll_steps_start}, "
                             f"{self.unroll_warmup})")
        if self.random_window and self.window is None:
            raise ValueError("random_window needs a window")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be positive (None: no time limit), got {self.max_minutes}")
        if self.compile_mode not in ("default", "reduce-overhead", "max-autotune"):
            raise ValueError(f"compile_mode must be 'default', 'reduce-overhead' or 'max-autotune', got {self.compile_mode!r}")
        if self.init not in ("random", "real"):
            raise ValueError(f"init must be 'random' or 'real', got {self.init!r}")
        if self.report_to not in TRACKERS:
            raise ValueError(f"report_to must be one of {TRACKERS}, got {self.report_to!r}")
        if self.report_to != "none" and importlib.util.find_spec(_TRACKER_PACKAGES[self.report_to]) is None:
            package = _TRACKER_PACKAGES[self.report_to]
            raise ValueError(f"report_to={self.report_to!r} needs the `{package}` package: pip install {package}")
        if self.push_dataset and not self.push_to_hub:
            raise ValueError("push_dataset needs push_to_hub (the memory's repo id)")
        if not parse_strategy(self.augment):  # fail early on an unknown op
            self.augment = None  # one spelling of "no augmentation" ("none" from the CLI), so records and reports agree
        inner_learner_names(self.inner_learner)  # and on an unknown inner learner


# Fields that may change between a run and its resumption without changing what is computed.
RESUMABLE_CHANGES = {"steps", "max_minutes", "resume", "overwrite_output_dir", "output_dir", "progress", "checkpoint_every",
                     "keep_checkpoints", "final_models", "final_epochs", "push_to_hub", "push_dataset", "report_to"}


def inner_learner_names(spec: str) -> list[str]:
    """`convnet+mlp` -> ["convnet", "mlp"], refusing what has no functional form for the unroll."""
    names = spec.split("+")
    for name in names:
        kind, _, width = name.partition("-")
        if kind not in ("convnet", "mlp", "vit") or (width and not (width.isdigit() and int(width) > 0)):
            raise ValueError(f"inner_learner {name!r} is not one of convnet, convnet-<width>, mlp, mlp-<hidden>, vit, vit-<width> "
                             f"(joined by + to take turns): the unroll needs a network with a functional form")
    return names


def unroll_generator(seed: int, step: int, unroll_id: int) -> torch.Generator:
    """A generator that depends only on (seed, step, unroll id), mixed so nearby ids are unrelated."""
    state = np.random.SeedSequence([seed, step, unroll_id]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


class NonFiniteError(FloatingPointError):
    """The outer loss, the meta-gradient or the updated memory stopped being finite: the run diverged."""


def run_settings(config: DistillConfig, memory: AddressableMemory, train: ImageClassificationData) -> dict[str, dict[str, Any]]:
    """Every option of a run, as `settings.json` records it: how the data was loaded, how the memory was sized,
    the DistillConfig, and a fingerprint of the data. `hf-rtp distill --resume` rebuilds the run from it."""
    return {"data": dict(train.source or {"dataset": train.name}), "memory": asdict(MemoryOptions.of(memory.config)),
            "distill": asdict(config), "fingerprint": train.fingerprint()}


def _launch_warnings(accelerator) -> list[str]:
    """Launch settings that would silently do something other than asked."""
    found = []
    if accelerator.mixed_precision != "no":
        found.append(f"mixed precision {accelerator.mixed_precision!r} is ignored: distillation runs in float32 (the "
                     "meta-gradient through a long unroll needs it)")
    if (os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") and "MASTER_PORT" in os.environ
            and "WORLD_SIZE" not in os.environ and accelerator.num_processes == 1):
        found.append("`accelerate launch --cpu --num_processes N` started a single process; for N CPU processes use "
                     "`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N`")
    return found


class Distiller:
    """Trains `memory` on `train` (a held-out share becomes the validation set) and leaves the run in
    `config.output_dir` (see `RunDirectory`). `train()` returns the memory with the best validation accuracy seen;
    given `test`, it is evaluated there first, so `<output_dir>/memory` carries the measured accuracy on its card."""

    def __init__(
        self,
        config: DistillConfig,
        memory: AddressableMemory,
        train: ImageClassificationData,
        test: ImageClassificationData | None = None,
        validation: ImageClassificationData | None = None,
        accelerator=None,
    ):
        from accelerate import Accelerator

        memory.check_data(train)
        train.check_finite()
        if test is not None:
            memory.check_data(test)
            test.check_finite()
        if train.num_classes < 2:
            raise ValueError(f"{train.name or 'the data'} has a single class ({train.class_names}): there is nothing to tell apart")
        self.by_images = memory.config.addressed_by_images
        if memory.config.query_dim != memory.config.num_classes and not self.by_images:
            raise ValueError("the Distiller trains memories addressed by class labels (query_dim == classes) or by "
                             "images (a query head); a memory of raw query vectors has nothing to build its queries from")
        if self.by_images and config.push_dataset:  # found now, not after the run
            raise ValueError("push_dataset uploads the recall of every class; a memory addressed by images recalls only "
                             "from pictures")
        # N: the classes of one unroll (an episode for image addressing, whose labels are then 0..N-1)
        self.way = train.num_classes if config.classes_per_step is None else min(config.classes_per_step, train.num_classes)
        if self.by_images and self.way < 2:
            raise ValueError(f"an episode needs at least 2 classes (classes_per_step={config.classes_per_step})")
        self.config = config
        self.accelerator = accelerator or Accelerator(
            log_with=None if config.report_to == "none" else config.report_to, project_dir=config.output_dir)
        if self.accelerator.is_main_process:
            for line in _launch_warnings(self.accelerator):
                warnings.warn(line, stacklevel=2)
        self.device = self.accelerator.device
        self.run = RunDirectory(config.output_dir)
        self.settings = run_settings(config, memory, train)
        self.test, self.full_train = test, train
        if validation is None:
            train, validation = train.split_validation(config.validation_fraction, seed=config.seed)
        if len(validation) == 0:
            raise ValueError(f"{train.name or 'the data'} has too few images ({len(self.full_train)}) for a validation split of "
                             f"{config.validation_fraction:g} per class: every class needs at least 2 images")
        validation.check_finite()
        self.train_data = train.to(self.device)
        self.validation = validation
        self.memory = memory.to(self.device).train()
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast

            for p in self.memory.parameters():  # start every rank from rank 0's memory
                p.data.copy_(broadcast(p.data.clone(), from_process=0))
        c, h, w = memory.config.image_shape
        self.compile = config.compile if config.compile is not None else compiler_available(self.device)
        # Built once each, so compiled step functions and buffers are reused by every unroll.
        outputs = self.way if self.by_images else memory.config.num_classes
        self.inner = [
            InnerLoop(create_learner(name, c, outputs, (h, w), width=config.learner_width,
                                     depth=config.learner_depth if name.startswith("convnet") else None).to(self.device),
                      lr=config.inner_lr, momentum=config.inner_momentum, window=config.window, compile=self.compile,
                      compile_mode=None if config.compile_mode == "default" else config.compile_mode)
            for name in inner_learner_names(config.inner_learner)
        ]
        label_params = [p for name, p in self.memory.named_parameters() if name.startswith("label_")]
        groups = [{"params": [p for name, p in self.memory.named_parameters() if not name.startswith("label_")]}]
        if label_params:  # learned soft labels: their own learning rate
            groups.append({"params": label_params, "lr": config.label_lr if config.label_lr is not None else config.lr})
        if config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(groups, lr=config.lr)
        else:
            self.optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
        self.step = 0
        self.elapsed = 0.0
        self.best: dict[str, Any] = {"accuracy": -1.0, "step": -1, "state": None}
        self.validated_step = -1
        self._prepared = False

    # ---- one outer step ---------------------------------------------------------------------------------

    def _unroll_once(self, generator: torch.Generator, unroll_id: int) -> tuple[float, list[torch.Tensor]]:
        cfg, mcfg = self.config, self.memory.config
        inner = self.inner[unroll_id % len(self.inner)]  # several inner learners take turns
        n, k = mcfg.num_classes, self.way
        if self.by_images:  # an episode: shots make the queries, other images of the classes the outer loss
            episode = draw_episode(self.train_data, k, cfg.shots, cfg.real_per_class, generator)
            real_x, real_y = episode.images, episode.labels.to(self.device)
        else:
            classes = torch.sort(torch.randperm(n, generator=generator)[:k]).values
            real_x, real_y = self.train_data.sample(classes.tolist(), cfg.real_per_class, generator)
        # One op and one draw per unroll, shared by every inner step and the real batch (DSA's Siamese use).
        augment = Augmentation.draw(cfg.augment, 1, generator, shared=True) or identity
        init = inner.init_params(generator)
        r = mcfg.images_per_query
        s = min(cfg.synthetic_per_class, r)
        steps = self.unroll_length()
        if cfg.random_window:
            steps = int(torch.randint(min(cfg.window, steps), steps + 1, (1,), generator=generator))
        picks = torch.stack([torch.rand(k, r, generator=generator).argsort(1)[:, :s] for _ in range(steps)]).to(self.device)
        if self.by_images:
            result = inner.unroll_images(self.memory, episode.shots.to(self.device), picks, augment(real_x), real_y, init,
                                         augment)
        else:
            result = inner.unroll_memory(self.memory, classes.to(self.device), picks, augment(real_x), real_y, init, augment)
        return result.loss, result.grads

    def unroll_length(self, step: int | None = None) -> int:
        """T of the unrolls at outer step `step` (default: the next one): `unroll_steps`, or the schedule's value."""
        cfg = self.config
        step = self.step if step is None else step
        if cfg.unroll_steps_start is None:
            return cfg.unroll_steps
        fraction = min(1.0, step / cfg.unroll_warmup)
        return round(cfg.unroll_steps_start + fraction * (cfg.unroll_steps - cfg.unroll_steps_start))

    def meta_step(self) -> dict[str, float]:
        """One outer step: unrolls on every process, all-reduced mean meta-gradient, clip, update."""
        cfg = self.config
        length = self.unroll_length()
        params = list(self.memory.parameters())
        total = [torch.zeros_like(p) for p in params]
        loss = torch.zeros((), device=self.device)
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        for j in range(cfg.inner_loops):
            unroll_id = rank * cfg.inner_loops + j
            # which learner: every rank and loop of a step differ, and successive steps go on turning
            turn = self.step * world * cfg.inner_loops + unroll_id
            unroll_loss, grads = self._unroll_once(unroll_generator(cfg.seed, self.step, unroll_id), turn)
            loss += unroll_loss
            for acc, g in zip(total, grads):
                acc.add_(g)
        if world > 1:
            total = [self.accelerator.reduce(g, reduction="sum") for g in total]
            loss = self.accelerator.reduce(loss, reduction="sum")
        count = world * cfg.inner_loops
        # Every rank holds the same reduced values, so every rank stops at the same step.
        names = [name for name, _ in self.memory.named_parameters()]
        bad = [name for name, g in zip(names, total) if not bool(torch.isfinite(g).all())]
        if not math.isfinite(float(loss)) or bad:
            what = f"the outer loss is {float(loss) / count}" if not math.isfinite(float(loss)) else f"the meta-gradient of {bad} is not finite"
            raise NonFiniteError(self._divergence(what))
        for p, g in zip(params, total):
            p.grad = g / count
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm if cfg.clip_grad_norm is not None else math.inf)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        bad = [name for name, p in zip(names, params) if not bool(torch.isfinite(p).all())]
        if bad:
            raise NonFiniteError(self._divergence(f"the update made {bad} non-finite"))
        self.step += 1
        metrics = {"loss": float(loss) / count, "grad_norm": float(norm)}
        if cfg.unroll_steps_start is not None:
            metrics["unroll_steps"] = length
        return metrics

    def _divergence(self, what: str) -> str:
        cfg = self.config
        latest = self.run.latest()
        return (f"step {self.step + 1}: {what}. Nothing of this step was applied or saved. Likely cause: a learning rate "
                f"too large (lr={cfg.lr} with {cfg.optimizer}, inner_lr={cfg.inner_lr}), or non-finite data. --resume "
                f"continues from {'the last good checkpoint, ' + latest.name if latest else 'the start (no checkpoint yet)'}.")

    # ---- validation -------------------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> float:
        """Accuracy on the held-out validation split of fresh ConvNets trained on the recalled set."""
        cfg = self.config
        eval_cfg = EvalConfig(models=cfg.eval_models, epochs=cfg.eval_epochs, width=cfg.eval_width,
                              seed=cfg.seed + 7919 * self.step, augment=cfg.augment, progress=False, compile=self.compile,
                              micro_batch=64 if self.device.type == "cpu" else None)
        if self.by_images:  # few-shot: the same validation episodes every time, so the scores compare across steps
            generator = torch.Generator().manual_seed(cfg.seed + 104729)
            episodes = [draw_episode(self.validation, self.way, cfg.shots, 50, generator) for _ in range(cfg.eval_episodes)]
            return float(np.mean([episode_accuracy(self.memory, e, eval_cfg, self.device) for e in episodes]))
        images, labels = self.memory.training_set()  # labels: class ids, or learned soft labels
        scores = []
        for i in range(cfg.eval_models):
            with torch.enable_grad():
                net = train_from_scratch(images.detach(), labels, self.memory.config.num_classes, eval_cfg, eval_cfg.seed + i, self.device)
            scores.append(accuracy(net, self.validation, device=self.device))
        return float(np.mean(scores))

    def _record_validation(self, metrics: dict[str, Any]) -> None:
        """Validate now; keep the memory if it is the best so far (ties keep the earlier one)."""
        acc = self.validate()
        self.validated_step = self.step
        metrics["val_accuracy"] = acc
        if acc > self.best["accuracy"]:
            state = {k: v.detach().clone() for k, v in self.memory.state_dict().items()}
            self.best = {"accuracy": acc, "step": self.step, "state": state}

    # ---- checkpoints ------------------------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        """Memory, optimizer, step, clock and best-so-far, written by the main process (see RunDirectory)."""
        if self.accelerator.is_main_process:
            state = {"elapsed": self.elapsed, "best_accuracy": self.best["accuracy"], "best_step": self.best["step"],
                     "validated_step": self.validated_step}
            self.run.save_checkpoint(self.step, self.memory.state_dict(), self.optimizer.state_dict(), self.best["state"],
                                     state, keep=self.config.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    def _check_resumable(self, saved: dict[str, dict[str, Any]], where: str) -> None:
        """A resume must continue the same computation: same memory layout, same settings but the harmless ones."""
        # a run started before output_norm existed recalled as the paper does
        saved_memory = {"output_norm": "none", "soft_labels": False, **saved["memory"]}
        if saved_memory != self.settings["memory"]:
            raise ValueError(f"{where} holds a different memory layout ({saved_memory} vs {self.settings['memory']}); "
                             f"resume with the options of the run that wrote it, or start afresh in another output_dir")
        changed = [f.name for f in fields(self.config)
                   if f.name not in RESUMABLE_CHANGES and saved["distill"].get(f.name) != getattr(self.config, f.name)]
        if changed:
            raise ValueError(f"resuming {where} with different settings would not continue the same run: {changed}")
        then, now = saved.get("fingerprint"), self.settings["fingerprint"]
        if then is not None and then != now:
            differs = [k for k in now if then.get(k) != now[k]]
            raise ValueError(f"{where} was distilled from other data ({', '.join(f'{k}: {then.get(k)} then, {now[k]} now' for k in differs)}): "
                             f"resume it on the data it started with, or start afresh in another output_dir")

    def load_checkpoint(self) -> bool:
        """Restore the latest checkpoint in output_dir; False when there is none."""
        checkpoint = self.run.load_checkpoint(self.device)
        if checkpoint is None:
            return False
        self.memory.load_state_dict(checkpoint.memory)
        self.optimizer.load_state_dict(checkpoint.optimizer)
        state = checkpoint.state
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.validated_step = state.get("validated_step", -1)
        self.best = {"accuracy": state["best_accuracy"], "step": state["best_step"], "state": checkpoint.best}
        return True

    # ---- the loop -----------------------------------------------------------------------------------------

    def _should_stop(self) -> bool:
        cfg = self.config
        stop = self.step >= cfg.steps or (cfg.max_minutes is not None and self.elapsed >= 60 * cfg.max_minutes)
        if self.accelerator.num_processes > 1:
            # Clocks differ between ranks: the main process decides, so no rank waits alone in an all-reduce.
            flag = torch.tensor(float(stop and self.accelerator.is_main_process), device=self.device)
            stop = bool(self.accelerator.reduce(flag, reduction="sum") > 0)
        return stop

    def prepare(self) -> None:
        """Resume from output_dir's latest checkpoint (with `resume`), or start afresh there (refusing to mix with an
        earlier run's checkpoints) and record the run's settings. `train()` calls it."""
        if self._prepared:
            return
        if self.accelerator.is_main_process:
            self.run.acquire()  # refuses a second live run here; takes over the lock of a killed one
        try:
            self._start_or_resume()
        except BaseException:
            self._release()
            raise
        self._prepared = True

    def _release(self) -> None:
        if self.accelerator.is_main_process:
            self.run.release()

    def _start_or_resume(self) -> None:
        if self.config.resume:
            saved = self.run.read_settings()
            if saved is None and not self.run.checkpoints():
                raise FileNotFoundError(f"nothing to resume in {self.run.path}: no run was started there "
                                        f"(start one without --resume)")
            if saved is not None:
                self._check_resumable(saved, str(self.run.path))
        resumed = self.config.resume and self.load_checkpoint()
        if self.config.resume and not resumed and self.accelerator.is_main_process:
            warnings.warn(f"{self.run.path} has no checkpoint yet (the run stopped before its first one): resuming from "
                          f"step 0", stacklevel=2)
        if self.accelerator.is_main_process:
            if resumed:
                self.run.trim_metrics(self.step)
            else:
                self.run.clear(overwrite=self.config.overwrite_output_dir)
                self.run.write_settings(self.settings)
            if self.config.report_to != "none":
                flat = {f"{section}.{k}": v for section, values in self.settings.items() for k, v in values.items()}
                self.accelerator.init_trackers(self.run.path.name, config={k: v for k, v in flat.items()
                                                                           if isinstance(v, (int, float, str, bool))})
        if not resumed and self.config.init == "real":
            # Every rank draws the same images (same seed, same data), so the memories stay identical.
            self.memory.init_from_real(self.train_data, torch.Generator().manual_seed(self.config.seed))
        self.accelerator.wait_for_everyone()

    def _log(self, metrics: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            self.run.log(metrics)
            if self.config.report_to != "none":
                self.accelerator.log({k: v for k, v in metrics.items() if k != "step" and not isinstance(v, bool)},
                                     step=metrics["step"])

    def train(self) -> AddressableMemory:
        """Run the outer loop to `steps` (or `max_minutes`), then keep the best memory by validation, evaluate it on
        `test` when given, save it to <output_dir>/memory with its card and pictures, and push it if asked."""
        self.prepare()
        try:
            return self._train()
        finally:
            self._release()

    def _train(self) -> AddressableMemory:
        cfg = self.config
        bar = tqdm(total=cfg.steps, initial=self.step, desc="distill", disable=not (cfg.progress and self.accelerator.is_main_process))
        postfix: dict[str, str] = {}
        while not self._should_stop():
            started = time.perf_counter()
            metrics: dict[str, Any] = {"step": self.step + 1, **self.meta_step()}
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.accelerator.is_main_process:
                self._record_validation(metrics)
                postfix["val"] = f"{100 * metrics['val_accuracy']:.1f}%"
            self.elapsed += time.perf_counter() - started
            metrics["seconds"] = round(self.elapsed, 3)
            self._log(metrics)
            postfix["loss"] = f"{metrics['loss']:.3f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
        bar.close()
        # Checkpoint first: an end-of-run validation off the eval_every schedule must not enter the state a later
        # --resume continues from, or the resumed run would differ from an uninterrupted one.
        self.save_checkpoint()
        if self.accelerator.is_main_process and self.validated_step != self.step:
            metrics = {"step": self.step, "final": True}
            self._record_validation(metrics)
            self._log(metrics)
        memory = self._finish()
        if self.accelerator.is_main_process:
            final = EvalConfig(models=cfg.final_models or 1, epochs=cfg.final_epochs, width=cfg.eval_width, seed=cfg.seed,
                               augment=cfg.augment, progress=cfg.progress)
            if self.test is not None and cfg.final_models and self.by_images:  # few-shot episodes of the test split
                few_shot_evaluation(memory, self.test, self.way, cfg.shots, cfg.final_models, final, cfg.seed,
                                    device=self.device)
            elif self.test is not None and cfg.final_models:
                evaluate_memory(memory, self.test, final, train=self.full_train, device=self.device)
            self.run.save_memory(memory)
            if cfg.push_to_hub:
                memory.push_to_hub(cfg.push_to_hub, push_dataset=cfg.push_dataset)
            if cfg.report_to != "none":
                self.accelerator.end_training()
        self.accelerator.wait_for_everyone()
        return memory

    def _finish(self) -> AddressableMemory:
        """Load the best-by-validation state and record how it was made (shown on the model card)."""
        best = self.best
        if self.accelerator.num_processes > 1:
            # Only the main process validated: give every rank its choice.
            from accelerate.utils import broadcast_object_list

            payload = [best if self.accelerator.is_main_process else None]
            broadcast_object_list(payload, from_process=0)
            best = payload[0]
        if best["state"] is not None:
            self.memory.load_state_dict({k: v.to(self.device) for k, v in best["state"].items()})
        self.memory.config.distillation = {
            "outer_steps": self.step,
            "best_step": best["step"],
            "val_accuracy": round(best["accuracy"], 4),
            "unroll_steps": self.config.unroll_steps,
            "window": self.config.window,
            "inner_momentum": self.config.inner_momentum,
            "learner_width": self.config.learner_width,
            **({"inner_learner": self.config.inner_learner} if self.config.inner_learner != "convnet" else {}),
            "optimizer": self.config.optimizer,
            "init": self.config.init,
            "compile": self.compile,
            "augment": self.config.augment,
            "lr": self.config.lr,
            **({"label_lr": self.config.label_lr or self.config.lr} if self.memory.config.soft_labels else {}),
            "processes": self.accelerator.num_processes,
            "minutes": round(self.elapsed / 60, 2),
            "seed": self.config.seed,
        }
        return self.memory.eval()
