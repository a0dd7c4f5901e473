"""The outer loop: learn a memory by back-propagation through unrolled inner training (Alg. 1), on Accelerate.

Every process runs its own unroll(s) from its own fresh learner init each outer step; meta-gradients are
averaged with an explicit all-reduce (DDP cannot do double backward), so parameters stay identical on every
rank. All randomness of an unroll comes from a generator seeded by (seed, step, unroll id): a run is
reproducible, a resumed run continues exactly, and N processes x L unrolls draw the same unrolls as 1 process x
N*L (equal to float rounding; bit for bit with 2 ranks and the same thread count, where the sums are the same).
Only the main process validates; the others wait at the next all-reduce.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .augment import Augmentation, identity, parse_strategy
from .data import ImageClassificationData
from .evaluate import EvalConfig, accuracy, train_from_scratch
from .learners import ConvNet, functional_learner
from .modeling_memory import AddressableMemory
from .unroll import InnerStep, _Flat, real_batch_loss, unroll


@dataclass
class DistillConfig:
    steps: int = field(default=2000, metadata={"help": 'Outer steps (meta-gradient updates of the memory). The paper runs 50k on a GPU.'})
    max_minutes: float | None = field(default=None, metadata={"help": 'Stop after this much wall-clock time (checked between outer steps; counts across resumes).'})
    unroll_steps: int = field(default=150, metadata={"help": 'T: inner SGD steps per unroll (150 for IPC 1/10 and 200 for IPC 50 in the paper).'})
    window: int | None = field(default=None, metadata={"help": 'Differentiate only the last W inner steps (truncated BPTT); None differentiates all T.'})
    random_window: bool = field(default=False, metadata={"help": 'With `window`, end each unroll at a random step in [W, T] (random truncated BPTT).'})
    inner_lr: float = field(default=0.01, metadata={"help": 'Inner SGD learning rate (fixed, as in the paper).'})
    inner_momentum: float = field(default=0.9, metadata={"help": "Inner SGD momentum; 0.9 is one of the paper's two findings (fig 4)."})
    learner_width: int = field(default=128, metadata={"help": 'Width of the ConvNet trained in the inner loop (evaluation uses `eval_width`).'})
    learner_depth: int | None = field(default=None, metadata={"help": 'ConvNet depth; None picks it from the resolution (3 for 28/32 px).'})
    classes_per_step: int | None = field(default=None, metadata={"help": 'Classes sampled per unroll; None uses all classes (as the paper does for CIFAR-10).'})
    real_per_class: int = field(default=64, metadata={"help": 'Real images per sampled class in the outer loss.'})
    synthetic_per_class: int = field(default=32, metadata={"help": 'Recalled images per sampled class in each inner step (capped by r).'})
    augment: str | None = field(default=None, metadata={"help": "Differentiable augmentation drawn once per unroll and applied to every inner step's recalled images and to the real batch: DSA ops joined by _ (e.g. flip_rotate, the paper's CIFAR setting) or a named strategy (cifar, dsa, digits); None for none."})
    compile: bool = field(default=False, metadata={"help": "torch.compile the per-step work of the unroll and the validation networks (about 1.5x faster on CPU after a one-off compile of under a minute; needs a C++ compiler or Triton)."})
    inner_loops: int = field(default=1, metadata={"help": 'Independent unrolls per process per outer step, averaged.'})
    optimizer: str = field(default="sgd", metadata={"help": "Outer optimizer for bases and addressing: `sgd` (the authors') or `adam`."})
    lr: float = field(default=0.1, metadata={"help": 'Outer learning rate.'})
    momentum: float = field(default=0.5, metadata={"help": 'Outer SGD momentum (ignored by Adam).'})
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
    progress: bool = field(default=True, metadata={"help": 'Show a tqdm progress bar.'})

    def __post_init__(self):
        positive = ("steps", "unroll_steps", "real_per_class", "synthetic_per_class", "inner_loops", "learner_width",
                    "eval_models", "eval_epochs", "eval_width", "keep_checkpoints")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "checkpoint_every", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.classes_per_step is not None and self.classes_per_step < 1:
            raise ValueError(f"classes_per_step must be >= 1 (or None for all classes), got {self.classes_per_step}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.inner_lr <= 0 or self.lr <= 0:
            raise ValueError(f"learning rates must be positive, got inner_lr={self.inner_lr}, lr={self.lr}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ValueError(f"clip_grad_norm must be positive (None: no clipping), got {self.clip_grad_norm}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.window is not None and not 1 <= self.window:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.random_window and self.window is None:
            raise ValueError("random_window needs a window")
        parse_strategy(self.augment)  # fail early on an unknown op


# Fields that may change between a run and its resumption without changing what is computed.
_RESUMABLE_CHANGES = {"steps", "max_minutes", "resume", "overwrite_output_dir", "output_dir", "progress", "checkpoint_every",
                      "keep_checkpoints"}


def unroll_generator(seed: int, step: int, unroll_id: int) -> torch.Generator:
    """A generator that depends only on (seed, step, unroll id), mixed so nearby ids are unrelated."""
    state = np.random.SeedSequence([seed, step, unroll_id]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def check_same_space(memory: AddressableMemory, data: ImageClassificationData) -> None:
    """The memory's pixels must live where the data's do: same classes, normalisation and ZCA, else its recall,
    pictures and evaluation would be silently wrong. `AddressableMemory.for_dataset` makes a matching memory."""
    config, problems = memory.config, []
    if config.class_names != data.class_names:
        problems.append(f"classes {config.class_names[:4]}... vs the data's {data.class_names[:4]}...")
    data_zca = data.zca.regularization if data.zca is not None else None
    if config.zca_regularization != data_zca:
        problems.append(f"ZCA regulariser {config.zca_regularization} vs the data's {data_zca}")
    elif data.zca is not None and not torch.equal(memory.zca_scales.cpu(), data.zca.scales):
        problems.append("a different ZCA whitening (fitted on other data)")
    elif data.zca is None and (any(abs(a - b) > 1e-6 for a, b in zip(config.mean, data.mean)) or
                               any(abs(a - b) > 1e-6 for a, b in zip(config.std, data.std))):
        problems.append(f"normalisation mean {config.mean} std {config.std} vs the data's {data.mean} {data.std}")
    if problems:
        raise ValueError("the memory and the dataset disagree: " + "; ".join(problems) +
                         ". Build the memory with AddressableMemory.for_dataset(data, ...)")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Distiller:
    """Trains `memory` on `train` (a held-out share becomes the validation set). `train()` returns the memory
    with the best validation accuracy seen, also saved to `<output_dir>/memory`."""

    def __init__(
        self,
        config: DistillConfig,
        memory: AddressableMemory,
        train: ImageClassificationData,
        validation: ImageClassificationData | None = None,
        accelerator=None,
    ):
        from accelerate import Accelerator

        if tuple(train.image_shape) != tuple(memory.config.image_shape):
            raise ValueError(f"dataset images are {train.image_shape} but the memory recalls {tuple(memory.config.image_shape)}")
        if train.num_classes != memory.config.num_classes:
            raise ValueError(f"dataset has {train.num_classes} classes but the memory has {memory.config.num_classes}")
        if memory.config.query_dim != memory.config.num_classes:
            raise ValueError("the Distiller trains memories addressed by class labels (query_dim == classes)")
        check_same_space(memory, train)
        self.config = config
        self.accelerator = accelerator or Accelerator()
        self.device = self.accelerator.device
        if validation is None:
            train, validation = train.split_validation(config.validation_fraction, seed=config.seed)
        self.train_data = replace(train, images=train.images.to(self.device), labels=train.labels.to(self.device), _per_class=None)
        self.validation = validation
        self.memory = memory.to(self.device).train()
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast

            for p in self.memory.parameters():  # start every rank from rank 0's memory
                p.data.copy_(broadcast(p.data.clone(), from_process=0))
        c, h, w = memory.config.image_shape
        self.learner = ConvNet(c, memory.config.num_classes, (h, w), width=config.learner_width, depth=config.learner_depth).to(self.device)
        self.learner_fn = functional_learner(self.learner)
        # Built once, so compiled step functions are reused by every unroll.
        self.inner_step = InnerStep(self.learner_fn, _Flat(list(self.learner.parameters())), compile=config.compile)
        params = list(self.memory.parameters())
        if config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=config.lr)
        else:
            self.optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
        self.output_dir = Path(config.output_dir)
        self.step = 0
        self.elapsed = 0.0
        self.best: dict[str, Any] = {"accuracy": -1.0, "step": -1, "state": None}
        self.validated_step = -1
        self._prepared = False

    # ---- one outer step ---------------------------------------------------------------------------------

    def _unroll_once(self, generator: torch.Generator) -> tuple[float, list[torch.Tensor]]:
        cfg, mcfg = self.config, self.memory.config
        n = mcfg.num_classes
        k = n if cfg.classes_per_step is None else min(cfg.classes_per_step, n)
        classes = torch.sort(torch.randperm(n, generator=generator)[:k]).values
        real_x, real_y = self.train_data.sample(classes.tolist(), cfg.real_per_class, generator)
        # One op and one draw per unroll, shared by every inner step and the real batch (DSA's Siamese use).
        augment = Augmentation.draw(cfg.augment, 1, generator, shared=True) or identity
        real_x = augment(real_x)
        init = [p.to(self.device) for p in self.learner.init_params(generator)]
        r = mcfg.images_per_query
        s = min(cfg.synthetic_per_class, r)
        steps = cfg.unroll_steps
        if cfg.random_window:
            steps = int(torch.randint(min(cfg.window, steps), steps + 1, (1,), generator=generator))
        picks = torch.stack([torch.rand(k, r, generator=generator).argsort(1)[:, :s] for _ in range(steps)]).to(self.device)
        classes = classes.to(self.device)
        labels = classes.repeat_interleave(s)

        def step_data(t: int):
            return augment(self.memory.images_for_labels(classes, picks[t])), labels

        result = unroll(
            self.learner_fn,
            init,
            step_data,
            list(self.memory.parameters()),
            # Chunks the size of an inner minibatch reuse its compiled shape; on a CPU small chunks are also faster
            # per image (cache), on a GPU one big batch is.
            real_batch_loss(self.learner_fn, real_x, real_y, chunk=len(labels) if self.device.type == "cpu" else len(real_y)),
            steps,
            lr=cfg.inner_lr,
            momentum=cfg.inner_momentum,
            window=cfg.window,
            inner_step=self.inner_step,
        )
        return result.loss, result.grads

    def meta_step(self) -> dict[str, float]:
        """One outer step: unrolls on every process, all-reduced mean meta-gradient, clip, update."""
        cfg = self.config
        params = list(self.memory.parameters())
        total = [torch.zeros_like(p) for p in params]
        loss = torch.zeros((), device=self.device)
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        for j in range(cfg.inner_loops):
            unroll_loss, grads = self._unroll_once(unroll_generator(cfg.seed, self.step, rank * cfg.inner_loops + j))
            loss += unroll_loss
            for acc, g in zip(total, grads):
                acc.add_(g)
        if world > 1:
            total = [self.accelerator.reduce(g, reduction="sum") for g in total]
            loss = self.accelerator.reduce(loss, reduction="sum")
        count = world * cfg.inner_loops
        for p, g in zip(params, total):
            p.grad = g / count
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm if cfg.clip_grad_norm is not None else math.inf)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"loss": float(loss) / count, "grad_norm": float(norm)}

    # ---- validation -------------------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> float:
        """Accuracy on the held-out validation split of fresh ConvNets trained on the recalled set."""
        cfg = self.config
        images, labels = self.memory(labels=torch.arange(self.memory.config.num_classes, device=self.device))
        eval_cfg = EvalConfig(models=cfg.eval_models, epochs=cfg.eval_epochs, width=cfg.eval_width,
                              seed=cfg.seed + 7919 * self.step, augment=cfg.augment, progress=False, compile=cfg.compile,
                              micro_batch=64 if self.device.type == "cpu" else None)
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

    def _checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    def _checkpoints(self) -> list[Path]:
        """Finished checkpoint folders, oldest step first."""
        root = self._checkpoint_dir()
        found = [p for p in root.glob("step-*") if p.is_dir() and p.name[5:].isdigit()] if root.exists() else []
        return sorted(found, key=lambda p: int(p.name[5:]))

    def _latest(self) -> Path | None:
        latest = self._checkpoint_dir() / "latest"
        return self._checkpoint_dir() / latest.read_text().strip() if latest.exists() else None

    def save_checkpoint(self) -> Path:
        """Write memory, optimizer, step, clock and best-so-far to a new folder, then point `latest` at it.

        The folder is complete before its name appears, and `latest` is replaced atomically, so a run killed at
        any moment resumes from the last finished checkpoint."""
        root = self._checkpoint_dir()
        final = root / f"step-{self.step:07d}"
        if self.accelerator.is_main_process and self._latest() != final:  # the same step twice holds the same state
            root.mkdir(parents=True, exist_ok=True)
            tmp = root / f".{final.name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            save_file({k: v.contiguous() for k, v in self.memory.state_dict().items()}, tmp / "memory.safetensors")
            if self.best["state"] is not None:
                save_file(self.best["state"], tmp / "best.safetensors")
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            state = {"step": self.step, "elapsed": self.elapsed, "best_accuracy": self.best["accuracy"],
                     "best_step": self.best["step"], "validated_step": self.validated_step,
                     "config": asdict(self.config), "memory_config": self.memory.config.to_dict()}
            (tmp / "state.json").write_text(json.dumps(state, indent=1, default=str))
            shutil.rmtree(final, ignore_errors=True)  # a leftover of an overwritten run, never the latest
            os.replace(tmp, final)
            _atomic_write_text(root / "latest", final.name)
            for old in self._checkpoints()[: -self.config.keep_checkpoints]:
                if old != final:
                    shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return final

    def load_checkpoint(self) -> bool:
        """Restore the latest checkpoint in output_dir; False when there is none."""
        folder = self._latest()
        if folder is None:
            return False
        state = json.loads((folder / "state.json").read_text())
        if state["memory_config"]["image_shape"] != self.memory.config.image_shape or any(
            state["memory_config"][k] != getattr(self.memory.config, k) for k in ("num_bases", "images_per_query", "downsample", "addressing")
        ):
            raise ValueError(f"checkpoint {folder} holds a different memory layout; resume with the options of the run that "
                             f"wrote it, or start afresh in another output_dir")
        changed = [f.name for f in fields(self.config)
                   if f.name not in _RESUMABLE_CHANGES and state["config"].get(f.name) != getattr(self.config, f.name)]
        if changed:
            raise ValueError(f"resuming {folder} with different settings would not continue the same run: {changed}")
        self.memory.load_state_dict({k: v.to(self.device) for k, v in load_file(folder / "memory.safetensors").items()})
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.validated_step = state.get("validated_step", -1)
        best_file = folder / "best.safetensors"
        self.best = {"accuracy": state["best_accuracy"], "step": state["best_step"],
                     "state": load_file(best_file, device=str(self.device)) if best_file.exists() else None}
        return True

    # ---- metrics ------------------------------------------------------------------------------------------

    def _metrics_path(self) -> Path:
        return self.output_dir / "metrics.jsonl"

    def _trim_metrics(self) -> None:
        """After a resume, drop log lines of steps that will be run again, and end-of-run validations."""
        path = self._metrics_path()
        if self.accelerator.is_main_process and path.exists():
            lines = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
            kept = [l for l in lines if l["step"] <= self.step and not l.get("final")]
            _atomic_write_text(path, "".join(json.dumps(l) + "\n" for l in kept))

    def _log(self, metrics: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            with self._metrics_path().open("a") as f:
                f.write(json.dumps(metrics) + "\n")

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
        """Resume from output_dir's latest checkpoint (with `resume`), or check it holds no earlier run. `train()`
        calls it; call it first to act between that check and the training (the CLI saves its settings there)."""
        if self._prepared:
            return
        if self.accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator.wait_for_everyone()
        if self.config.resume and self.load_checkpoint():
            self._trim_metrics()
        else:
            self._start_afresh()
        self._prepared = True

    def train(self) -> AddressableMemory:
        cfg = self.config
        self.prepare()
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
        return self._finish()

    def _start_afresh(self) -> None:
        """A new run: refuse to mix with an earlier run's checkpoints unless told to overwrite them."""
        if self.accelerator.is_main_process:
            if self._checkpoints() or self._latest() is not None:
                if not self.config.overwrite_output_dir:
                    raise FileExistsError(
                        f"{self._checkpoint_dir()} holds checkpoints of an earlier run: pass resume=True (--resume) to "
                        f"continue it, overwrite_output_dir=True (--overwrite-output-dir) to delete them, or another output_dir"
                    )
                shutil.rmtree(self._checkpoint_dir())
            if self._metrics_path().exists():
                self._metrics_path().unlink()
        self.accelerator.wait_for_everyone()

    def _finish(self) -> AddressableMemory:
        """Load the best-by-validation state, record how it was made, save it as <output_dir>/memory."""
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
            "optimizer": self.config.optimizer,
            "augment": self.config.augment,
            "lr": self.config.lr,
            "processes": self.accelerator.num_processes,
            "minutes": round(self.elapsed / 60, 2),
            "seed": self.config.seed,
        }
        self.memory.eval()
        if self.accelerator.is_main_process:
            target = self.output_dir / "memory"
            tmp = self.output_dir / ".memory.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            self.memory.save_pretrained(tmp)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        self.accelerator.wait_for_everyone()
        return self.memory
