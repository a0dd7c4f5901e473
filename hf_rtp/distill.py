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
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from .augment import parse_strategy
from .data import ImageClassificationData
from .evaluate import EvalConfig
from .initialization import init_from_real
from .learners import create_learner, learner_specs
from .modeling_memory import AddressableMemory
from .objectives import objective_for
from .options import check_fields
from .outer_step import NonFiniteError, OuterStep, build_optimizer, outer_rates
from .query_head import start_encoder
from .host import compiler_available
from .session import RunSession, run_settings
from .unroll import InnerLoop

__all__ = ["DistillConfig", "Distiller", "NonFiniteError", "run_settings", "unroll_generator"]


@dataclass
class DistillConfig:
    steps: int = field(default=2000, metadata={"min": 0, "resumable": True, "help": "Outer steps (meta-gradient updates of the memory). The paper runs 50k on a GPU. 0: none; the start (e.g. --init real) is validated, scored and saved as it is."})
    max_minutes: float | None = field(default=None, metadata={"resumable": True, "help": "Wall-clock limit of the run (counts across resumes): the outer loop starts no step it expects to end past it (a one-off compile counts; runs shorter than COMPILE_PAYS_MINUTES run eager unless compile is asked for), and the final evaluation then gets as long again: it trains as many of final_models as fit (at least one)."})
    unroll_steps: int = field(default=150, metadata={"min": 1, "help": 'T: inner SGD steps per unroll (150 for IPC 1/10 and 200 for IPC 50 in the paper).'})
    window: int | None = field(default=None, metadata={"min": 1, "help": 'Differentiate only the last W inner steps (truncated BPTT); None differentiates all T.'})
    random_window: bool = field(default=False, metadata={"help": 'With `window`, end each unroll at a random step in [W, T] (random truncated BPTT).'})
    unroll_steps_start: int | None = field(default=None, metadata={"help": "A schedule for T: start the unrolls at this many steps and grow T linearly to `unroll_steps` over the first `unroll_warmup` outer steps (short unrolls are cheap while the memory is far from good); None: always `unroll_steps`."})
    unroll_warmup: int = field(default=0, metadata={"min": 0, "help": "Outer steps over which T grows from `unroll_steps_start` to `unroll_steps`."})
    inner_lr: float = field(default=0.01, metadata={"help": 'Inner SGD learning rate (fixed, as in the paper).'})
    inner_momentum: float = field(default=0.9, metadata={"help": "Inner SGD momentum; 0.9 is one of the paper's two findings (fig 4)."})
    inner_learner: str = field(default="convnet", metadata={"help": "The network trained in the inner loop: `convnet` (the paper's, `learner_width` wide), `convnet-<width>`, `mlp` (2 x 100), `mlp-<hidden>`, `vit` (a 2-block ViT of width 64 on 4x4 patches), `vit-<width>`, or several joined by + (e.g. `convnet+mlp`) that take turns, one per unroll, so the memory is distilled for all of them (the network a memory will train, e.g. continual learning's MLP). Validation stays the ConvNet protocol."})
    learner_width: int = field(default=128, metadata={"min": 1, "help": 'Width of the ConvNet trained in the inner loop (evaluation uses `eval_width`).'})
    learner_depth: int | None = field(default=None, metadata={"min": 1, "help": 'ConvNet depth; None picks it from the resolution (3 for 28/32 px).'})
    classes_per_step: int | None = field(default=None, metadata={"min": 1, "help": 'Classes sampled per unroll; None uses all classes (as the paper does for CIFAR-10).'})
    real_per_class: int = field(default=64, metadata={"min": 1, "help": 'Real images per sampled class in the outer loss.'})
    shots: int = field(default=1, metadata={"min": 1, "help": "Image-addressed memories (a query head): k shot images per class that make its query in each training episode (N = classes_per_step classes per episode)."})
    eval_episodes: int = field(default=20, metadata={"min": 1, "help": "Image-addressed memories: few-shot episodes (N-way, k = shots) drawn from the validation split per validation."})
    synthetic_per_class: int = field(default=32, metadata={"min": 1, "help": 'Recalled images per sampled class in each inner step (capped by r).'})
    augment: str | None = field(default=None, metadata={"help": "Differentiable augmentation drawn once per unroll and applied to every inner step's recalled images and to the real batch: DSA ops joined by _ (e.g. flip_rotate, the paper's CIFAR setting) or a named strategy (cifar, dsa, digits); None for none."})
    compile: bool | None = field(default=None, metadata={"help": "torch.compile the per-step work of the unroll and the validation networks (about 1.4x faster on CPU after a one-off compile of under a minute). None: on where a compiler exists (a C++ compiler on CPU, Triton on a GPU)."})
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = field(default="default", metadata={"help": "torch.compile's mode for the unroll's per-step work: `reduce-overhead` replays it as CUDA graphs (on an H100 at T=150, 0.32 s per outer step against 0.70 s compiled and 1.52 s eager; GPU only, check your gradients on your setup)."})
    init: Literal["auto", "random", "real"] = field(default="auto", metadata={"help": "How a new memory starts: `random` tables (Xavier, the paper) or `real` images of the training split at the data's scale (one_hot: the images; learned: bases spanning real images and addressing that recalls some of them; image-addressed: bases spanning real images, a query projection fitted to the classes of real images and standardised, and addressing fitted so each class's queries recall real images of it). `auto`: `real` for a memory addressed by images (from random tables they stayed at chance), `random` otherwise."})
    query_encoder_start: Literal["random", "pretrained", "supervised"] = field(default="supervised", metadata={"help": "Image-addressed memories: where the query head's encoder starts: `supervised` training as a classifier of the training split first (the few-shot baselines' recipe: AdamW 1e-3, --query-encoder-epochs epochs; the default: it won on MNIST's validation split, 85.3% against 28.8% from `random` after 60 outer steps, bench/results/image_starts.json), timm's `pretrained` weights (from the Hub by name, or --query-encoder-weights offline), or timm's `random` init."})
    query_fit: Literal["classes", "images"] = field(default="classes", metadata={"help": "Image-addressed memories starting from real images: what a query first recalls. `classes`: real images of its image's class (the head's projection regresses the class, the addressing maps each class to its images; best on the classes distilled). `images`: the image it was made from, seen through the bases (the projection and addressing fitted together, reduced-rank least squares; with --query-pixels this carries over to classes the memory never saw)."})
    query_encoder_weights: str | None = field(default=None, metadata={"help": "A local weights file, or a folder holding model.safetensors / pytorch_model.bin, for --query-encoder-start pretrained (timm's pretrained-config mechanism: it adapts the first convolution to the image's channels and drops the classifier)."})
    query_encoder_epochs: int = field(default=5, metadata={"min": 1, "help": "Epochs of the supervised start (--query-encoder-start supervised)."})
    query_encoder_lr: float | None = field(default=None, metadata={"help": "Outer learning rate of the query head's encoder (its projection learns at `lr`); 0 freezes the encoder. None: frozen after a supervised or pretrained start (fine-tuned at the outer lr 0.01, a supervised encoder collapsed to chance on MNIST's validation split), `lr` after a random one."})
    query_projection_lr: float | None = field(default=None, metadata={"help": "Outer learning rate of the query head's projection; 0 freezes it (with --query-fit images, a frozen projection keeps recalling what a shot shows, which classes never distilled need: the meta-gradient on the distilled classes otherwise turns it into a classifier of them). None: `lr`."})
    inner_loops: int = field(default=1, metadata={"min": 1, "help": 'Independent unrolls per process per outer step, averaged.'})
    optimizer: Literal["sgd", "adam"] = field(default="sgd", metadata={"help": "Outer optimizer for bases and addressing: `sgd` (the authors') or `adam`."})
    lr: float = field(default=0.1, metadata={"help": 'Outer learning rate.'})
    momentum: float = field(default=0.5, metadata={"help": 'Outer SGD momentum (ignored by Adam).'})
    label_lr: float | None = field(default=None, metadata={"help": "Outer learning rate of a memory's learned soft labels (--soft-labels); None: `lr`."})
    clip_grad_norm: float | None = field(default=2.0, metadata={"help": 'Clip the meta-gradient norm (None: no clipping).'})
    validation_fraction: float = field(default=0.1, metadata={"help": 'Share of the training split held out for validation (never the test split).'})
    eval_every: int = field(default=100, metadata={"min": 0, "help": 'Validate every this many outer steps (0: only at the end).'})
    eval_models: int = field(default=1, metadata={"min": 1, "help": 'Fresh networks trained on the recalled set per validation.'})
    eval_epochs: int = field(default=300, metadata={"min": 1, "help": 'Epochs of each validation training run.'})
    eval_width: int = field(default=128, metadata={"min": 1, "help": 'ConvNet width used for validation (and by default for the final evaluation).'})
    checkpoint_every: int = field(default=50, metadata={"min": 0, "resumable": True, "help": 'Write a resumable checkpoint every this many outer steps (0: only at the end).'})
    keep_checkpoints: int = field(default=2, metadata={"min": 1, "resumable": True, "help": 'Most recent checkpoints kept on disk.'})
    output_dir: str = field(default="outputs/distill", metadata={"resumable": True, "help": 'Where checkpoints, metrics.jsonl and the best memory go.'})
    resume: bool = field(default=False, metadata={"resumable": True, "help": 'Continue from the latest checkpoint in `output_dir`.'})
    overwrite_output_dir: bool = field(default=False, metadata={"resumable": True, "help": "Start afresh even if `output_dir` holds an earlier run's checkpoints (they are deleted)."})
    seed: int = field(default=0, metadata={"min": 0, "help": 'Seed of everything random (learner inits, class and image sampling, validation split).'})
    final_models: int = field(default=10, metadata={"min": 0, "resumable": True, "help": "Networks trained from scratch on the best memory for the final test evaluation, when a test split is given (0: none); for an image-addressed memory, few-shot episodes of the test split, one network each."})
    final_epochs: int = field(default=300, metadata={"min": 1, "resumable": True, "help": "Epochs of each final evaluation network."})
    push_to_hub: str | None = field(default=None, metadata={"resumable": True, "help": "Hub repo id to upload the final memory to (with its model card and pictures)."})
    push_dataset: bool = field(default=False, metadata={"resumable": True, "help": "With push_to_hub, also upload the recalled Dataset to <repo_id>-recalled."})
    report_to: Literal["none", "tensorboard", "wandb", "trackio"] = field(default="none", metadata={"resumable": True, "help": "Also send the metrics to this Accelerate tracker (they always go to metrics.jsonl)."})
    progress: bool = field(default=True, metadata={"resumable": True, "help": "Show progress bars."})

    def encoder_lr(self) -> float:
        """The query encoder's outer learning rate: `query_encoder_lr`, or by default 0 (frozen) after a supervised
        or pretrained start and `lr` after a random one (`outer_step.outer_rates`)."""
        return outer_rates(asdict(self))["query_encoder"]

    def __post_init__(self):
        check_fields(self)  # minimum values and choices, from the fields' declarations
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.query_encoder_lr is not None and not self.query_encoder_lr >= 0:
            raise ValueError(f"query_encoder_lr must be >= 0 (0 freezes the encoder; None: lr), got {self.query_encoder_lr}")
        if self.query_projection_lr is not None and not self.query_projection_lr >= 0:
            raise ValueError(f"query_projection_lr must be >= 0 (0 freezes the projection; None: lr), got "
                             f"{self.query_projection_lr}")
        if self.query_encoder_weights is not None and self.query_encoder_start != "pretrained":
            raise ValueError("query_encoder_weights are the weights of --query-encoder-start pretrained")
        if self.inner_lr <= 0 or self.lr <= 0 or (self.label_lr is not None and self.label_lr <= 0):
            raise ValueError(f"learning rates must be positive, got inner_lr={self.inner_lr}, lr={self.lr}, label_lr={self.label_lr}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ValueError(f"clip_grad_norm must be positive (None: no clipping), got {self.clip_grad_norm}")
        if self.unroll_steps_start is not None and not 1 <= self.unroll_steps_start <= self.unroll_steps:
            raise ValueError(f"unroll_steps_start must be in [1, unroll_steps={self.unroll_steps}], got {self.unroll_steps_start}")
        if (self.unroll_warmup > 0) != (self.unroll_steps_start is not None):
            raise ValueError(f"a T schedule needs both unroll_steps_start and unroll_warmup >= 1 (got {self.unroll_steps_start}, "
                             f"{self.unroll_warmup})")
        if self.random_window and self.window is None:
            raise ValueError("random_window needs a window")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be positive (None: no time limit), got {self.max_minutes}")
        if self.report_to != "none" and importlib.util.find_spec(self.report_to) is None:  # the tracker's package
            raise ValueError(f"report_to={self.report_to!r} needs the `{self.report_to}` package: pip install {self.report_to}")
        if self.push_dataset and not self.push_to_hub:
            raise ValueError("push_dataset needs push_to_hub (the memory's repo id)")
        if not parse_strategy(self.augment):  # fail early on an unknown op
            self.augment = None  # one spelling of "no augmentation" ("none" from the CLI), so records and reports agree
        learner_specs(self.inner_learner, unrolled=True)  # and on an unknown inner learner


# torch.compile's one-off compile takes 1-4 minutes on a CPU and then saves about a third of each step, so it only
# pays back in runs several times longer: with compile=None, shorter time limits run eager.
COMPILE_PAYS_MINUTES = 15.0


def unroll_generator(seed: int, step: int, unroll_id: int) -> torch.Generator:
    """A generator that depends only on (seed, step, unroll id), mixed so nearby ids are unrelated."""
    state = np.random.SeedSequence([seed, step, unroll_id]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


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
    """Trains `memory` on `train` (a held-out share becomes the validation set, unless `validation` is given) for
    what its objective says (objectives.py: labels, or few-shot episodes for a memory with a query head), leaving
    the run in `config.output_dir` (see RunSession). `train()` returns the memory with the best validation accuracy
    seen; `pipeline.distill` also evaluates, saves and pushes it."""

    def __init__(
        self,
        config: DistillConfig,
        memory: AddressableMemory,
        train: ImageClassificationData,
        validation: ImageClassificationData | None = None,
        accelerator=None,
    ):
        from accelerate import Accelerator

        memory.check_data(train)
        train.check_finite()
        if train.num_classes < 2:
            raise ValueError(f"{train.name or 'the data'} has a single class ({train.class_names}): there is nothing to tell apart")
        self.config = config
        self.accelerator = accelerator or Accelerator(
            log_with=None if config.report_to == "none" else config.report_to, project_dir=config.output_dir)
        if self.accelerator.is_main_process:
            for line in _launch_warnings(self.accelerator):
                warnings.warn(line, stacklevel=2)
        self.device = self.accelerator.device
        self.session = RunSession(config, run_settings(config, memory, train), self.accelerator)
        self.run = self.session.run
        self.full_train = train
        if validation is None:
            train, validation = train.split_validation(config.validation_fraction, seed=config.seed)
        if len(validation) == 0:
            raise ValueError(f"{train.name or 'the data'} has too few images ({len(self.full_train)}) for a validation split of "
                             f"{config.validation_fraction:g} per class: every class needs at least 2 images")
        validation.check_finite()
        self.train_data, self.validation = train.to(self.device), validation
        if config.classes_per_step is not None and config.classes_per_step > memory.config.num_classes:
            raise ValueError(f"classes_per_step={config.classes_per_step} but the memory holds {memory.config.num_classes} "
                             f"classes: at most {memory.config.num_classes} (None: all of them)")
        self.memory = memory.to(self.device).train()
        if config.query_fit != "classes" and not (memory.config.addressed_by_images and self.init == "real"):
            raise ValueError(f"query_fit={config.query_fit!r} fits the query head of a memory addressed by images that "
                             f"starts from real images (--query-encoder, --init real or auto)")
        self.objective = objective_for(self.memory, self.train_data, validation, config.classes_per_step,
                                       config.real_per_class, config.shots, config.eval_episodes, config.seed,
                                       config.push_dataset)
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast

            for p in self.memory.parameters():  # start every rank from rank 0's memory
                p.data.copy_(broadcast(p.data.clone(), from_process=0))
        c, h, w = memory.config.image_shape
        self.compile = config.compile if config.compile is not None else compiler_available(self.device)
        self.notes: list[str] = []  # what the run decided that a person should hear (the pipeline prints them)
        if config.compile is None and self.compile and config.max_minutes is not None and config.max_minutes < COMPILE_PAYS_MINUTES:
            self.compile = False
            self.notes.append(f"compile off: a {config.max_minutes:g}-minute run is shorter than the one-off compile "
                              f"(1-4 CPU-minutes) pays back in (about {COMPILE_PAYS_MINUTES:g}); --compile forces it")
        # Built once each, so compiled step functions and buffers are reused by every unroll.
        self.inner = [
            InnerLoop(create_learner(name, c, self.objective.outputs, (h, w), width=config.learner_width,
                                     depth=config.learner_depth if name.startswith("convnet") else None).to(self.device),
                      lr=config.inner_lr, momentum=config.inner_momentum, window=config.window, compile=self.compile,
                      compile_mode=None if config.compile_mode == "default" else config.compile_mode)
            for name in learner_specs(config.inner_learner, unrolled=True)
        ]
        self.optimizer = build_optimizer(self.memory, config.optimizer, config.lr, config.momentum,
                                         outer_rates(asdict(config)))
        world = self.accelerator.num_processes
        self.outer_step = OuterStep(self.objective, self.inner, self.optimizer, config.synthetic_per_class,
                                    augment=config.augment, random_window=config.random_window,
                                    clip_grad_norm=config.clip_grad_norm, processes=world,
                                    reduce=(lambda t: self.accelerator.reduce(t, reduction="sum")) if world > 1 else None)
        self.step = 0
        self.elapsed = 0.0
        self._step_times: list[float] = []  # this process's outer steps (without validation), in seconds
        self._validation_seconds = 0.0
        self.best: dict[str, Any] = {"accuracy": -1.0, "step": -1, "state": None}
        self.validated_step = -1
        self._prepared = False

    # ---- one outer step ---------------------------------------------------------------------------------

    def unroll_length(self, step: int | None = None) -> int:
        """T of the unrolls at outer step `step` (default: the next one): `unroll_steps`, or the schedule's value."""
        cfg = self.config
        step = self.step if step is None else step
        if cfg.unroll_steps_start is None:
            return cfg.unroll_steps
        fraction = min(1.0, step / cfg.unroll_warmup)
        return round(cfg.unroll_steps_start + fraction * (cfg.unroll_steps - cfg.unroll_steps_start))

    def meta_step(self) -> dict[str, float]:
        """One outer step: this process's unrolls, each from a generator seeded by (seed, step, unroll id), the
        learners taking turns across processes and steps; see OuterStep."""
        cfg, rank, world = self.config, self.accelerator.process_index, self.accelerator.num_processes
        unrolls = []
        for j in range(cfg.inner_loops):
            unroll_id = rank * cfg.inner_loops + j
            turn = self.step * world * cfg.inner_loops + unroll_id  # every rank and loop of a step differ
            unrolls.append((unroll_generator(cfg.seed, self.step, unroll_id), turn))
        length = self.unroll_length()
        try:
            metrics = self.outer_step(unrolls, length)
        except NonFiniteError as error:
            raise NonFiniteError(self.session.divergence(self.step + 1, str(error))) from None
        self.step += 1
        if cfg.unroll_steps_start is not None:
            metrics["unroll_steps"] = length
        return metrics

    # ---- validation -------------------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> float:
        """The objective's validation score of the memory now (fresh networks trained on its recall)."""
        cfg = self.config
        eval_cfg = EvalConfig(models=cfg.eval_models, epochs=cfg.eval_epochs, width=cfg.eval_width,
                              seed=cfg.seed + 7919 * self.step, augment=cfg.augment, progress=False, compile=self.compile,
                              micro_batch=64 if self.device.type == "cpu" else None)
        return self.objective.validate(eval_cfg, self.device)

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
        """Memory, optimizer, step, clock and best-so-far (see RunSession)."""
        state = {"elapsed": self.elapsed, "best_accuracy": self.best["accuracy"], "best_step": self.best["step"],
                 "validated_step": self.validated_step}
        self.session.save_checkpoint(self.step, self.memory.state_dict(), self.optimizer.state_dict(), self.best["state"],
                                     state)

    def _restore(self, checkpoint) -> None:
        self.memory.load_state_dict(checkpoint.memory)
        self.optimizer.load_state_dict(checkpoint.optimizer)
        state = checkpoint.state
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.validated_step = state.get("validated_step", -1)
        self.best = {"accuracy": state["best_accuracy"], "step": state["best_step"], "state": checkpoint.best}

    def load_checkpoint(self) -> bool:
        """Restore the latest checkpoint in output_dir; False when there is none."""
        checkpoint = self.run.load_checkpoint(self.device)
        if checkpoint is not None:
            self._restore(checkpoint)
        return checkpoint is not None

    # ---- the loop -----------------------------------------------------------------------------------------

    def _next_step_seconds(self) -> float:
        """What the next outer step is expected to take: the median of this process's recent steps (its first, which
        compiles and warms up, left out while others exist), plus the last validation if the next step validates."""
        times = self._step_times[1:] or self._step_times
        expected = sorted(times[-5:])[len(times[-5:]) // 2] if times else 0.0
        cfg = self.config
        if cfg.eval_every and (self.step + 1) % cfg.eval_every == 0:
            expected += self._validation_seconds
        return expected

    def steps_within_limit(self) -> int:
        """The steps this run will reach: `steps`, or fewer when `max_minutes` comes first at the current pace."""
        cfg = self.config
        if cfg.max_minutes is None or not self._step_times:
            return cfg.steps
        times = self._step_times[1:] or self._step_times
        pace = sum(times[-5:]) / len(times[-5:]) + (self._validation_seconds / cfg.eval_every if cfg.eval_every else 0)
        left = 60 * cfg.max_minutes - self.elapsed
        return max(self.step, min(cfg.steps, self.step + int(left // max(pace, 1e-9))))

    def _should_stop(self) -> bool:
        cfg = self.config
        # the time limit holds: no step starts that is expected to end past it
        stop = self.step >= cfg.steps or (cfg.max_minutes is not None and
                                          self.elapsed + self._next_step_seconds() > 60 * cfg.max_minutes)
        if self.accelerator.num_processes > 1:
            # Clocks differ between ranks: the main process decides, so no rank waits alone in an all-reduce.
            flag = torch.tensor(float(stop and self.accelerator.is_main_process), device=self.device)
            stop = bool(self.accelerator.reduce(flag, reduction="sum") > 0)
        return stop

    def prepare(self) -> None:
        """Resume from output_dir's latest checkpoint (with `resume`), or start afresh there (refusing to mix with an
        earlier run's checkpoints) and record the run's settings. `train()` calls it; it takes the run's lock."""
        if self._prepared:
            return
        self.session.__enter__()
        try:
            checkpoint = self.session.start(self.device)
            if checkpoint is not None:
                self._restore(checkpoint)
            else:
                cfg, mc = self.config, self.memory.config
                started = time.perf_counter()  # the start's one-off work counts against max_minutes too
                if mc.addressed_by_images:  # the head's encoder first: the real-image start standardises its queries
                    mc.query_encoder_start = start_encoder(
                        self.memory.query_head, mc.query_encoder, mc.query_encoder_kwargs, cfg.query_encoder_start,
                        cfg.query_encoder_weights, self.train_data, cfg.query_encoder_epochs, cfg.seed)
                if self.init == "real":
                    # Every rank draws the same images (same seed, same data), so the memories stay identical.
                    init_from_real(self.memory, self.train_data, torch.Generator().manual_seed(cfg.seed),
                                   query_fit=cfg.query_fit)
                self.elapsed += time.perf_counter() - started
            self.accelerator.wait_for_everyone()
        except BaseException:
            self.session.__exit__(None, None, None)
            raise
        self._prepared = True

    @property
    def init(self) -> str:
        """How a new memory starts: `config.init`, or by default real images for a memory addressed by images."""
        if self.config.init != "auto":
            return self.config.init
        return "real" if self.memory.config.addressed_by_images else "random"

    def _release(self) -> None:
        if self._prepared:
            self.session.__exit__(None, None, None)
            self._prepared = False

    def train(self) -> AddressableMemory:
        """Run the outer loop to `steps` (or `max_minutes`) and return the memory with the best validation accuracy,
        with how it was made in `config.distillation`."""
        self.prepare()
        try:
            return self._train()
        finally:
            self._release()

    def _train(self) -> AddressableMemory:
        cfg = self.config
        show = cfg.progress and self.accelerator.is_main_process
        for note in self.notes:  # what the run decided is said even with --no-progress
            if self.accelerator.is_main_process:
                tqdm.write(note)
        # The bar's total is the real bound: `steps`, or what fits in max_minutes at the pace so far.
        bar = tqdm(total=cfg.steps, initial=self.step, desc="distill", disable=not show)
        postfix: dict[str, str] = {}
        while not self._should_stop():
            started = time.perf_counter()
            if self.compile and not self._step_times:
                bar.set_description("distill (compiling: first step)", refresh=True)
            metrics: dict[str, Any] = {"step": self.step + 1, **self.meta_step()}
            self._step_times.append(time.perf_counter() - started)
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.accelerator.is_main_process:
                before = time.perf_counter()
                if self.compile and not self._validation_seconds:
                    bar.set_description("distill (compiling: first validation)", refresh=True)
                self._record_validation(metrics)
                self._validation_seconds = time.perf_counter() - before
                postfix["val"] = f"{100 * metrics['val_accuracy']:.1f}%"
            bar.set_description("distill", refresh=False)
            self.elapsed += time.perf_counter() - started
            metrics["seconds"] = round(self.elapsed, 3)
            self.session.log(metrics)
            postfix["loss"] = f"{metrics['loss']:.3f}"
            bar.set_postfix(postfix, refresh=False)
            if cfg.max_minutes is not None:
                bar.total = self.steps_within_limit()
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
            self.session.log(metrics)
        return self._finish()

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
        cfg = self.config
        self.memory.config.distillation = {
            "outer_steps": self.step, "best_step": best["step"], "val_accuracy": round(best["accuracy"], 4),
            "unroll_steps": cfg.unroll_steps, "window": cfg.window, "inner_momentum": cfg.inner_momentum,
            "learner_width": cfg.learner_width,
            **({"inner_learner": cfg.inner_learner} if cfg.inner_learner != "convnet" else {}),
            "optimizer": cfg.optimizer, "init": self.init, "compile": self.compile, "augment": cfg.augment, "lr": cfg.lr,
            **({"label_lr": cfg.label_lr or cfg.lr} if self.memory.config.soft_labels else {}),
            **({"query_fit": cfg.query_fit, "query_projection_lr": outer_rates(asdict(cfg))["query_projection"],
                "query_encoder_lr": cfg.encoder_lr()} if self.memory.config.addressed_by_images else {}),
            "processes": self.accelerator.num_processes, "minutes": round(self.elapsed / 60, 2), "seed": cfg.seed,
        }
        return self.memory.eval()
