"""A distillation run's session with its directory: the lock, starting afresh or resuming, checkpoints, metrics and
trackers, seen from one process of the run (only the main process writes; the others wait for it).

The Distiller keeps the loop; this keeps the run's bookkeeping, so that resuming, refusing a second live run and
refusing to mix two runs in one folder have one home.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, fields
from typing import Any

import torch

from .configuration_memory import MemoryOptions
from .data import ImageClassificationData
from .modeling_memory import AddressableMemory
from .options import fields_with
from .outer_step import outer_rates
from .run_dir import Checkpoint, RunDirectory


# Learning rates a resume may lower (never raise): after a divergence the way on from the last good checkpoint, since
# resuming at the same rate diverges the same way. The lower rates are recorded in settings.json under `changes`.
LOWERABLE_RATES = ("lr", "label_lr", "query_projection_lr", "query_encoder_lr")
# The key of `run_settings` that holds the memory's tensor shapes: the session keeps them to tell a checkpoint of
# other shapes as broken, and does not write them to settings.json (they follow from the options).
TENSORS = "tensors"


def run_settings(config: Any, memory: AddressableMemory, train: ImageClassificationData) -> dict[str, dict[str, Any]]:
    """Every option of a run, as `settings.json` records it: how the data was loaded, how the memory was sized,
    the DistillConfig, and a fingerprint of the data. `hf-rtp distill --resume` rebuilds the run from it. Plus, for
    the session only, the shapes of the memory's tensors (`TENSORS`)."""
    return {"data": dict(train.source or {"dataset": train.name}), "memory": asdict(MemoryOptions.of(memory.config)),
            "distill": asdict(config), "fingerprint": train.fingerprint(),
            TENSORS: {name: tuple(t.shape) for name, t in memory.state_dict().items()}}


def group_rates(distill: dict[str, Any], memory: dict[str, Any]) -> list[float]:
    """The outer learning rate of each optimizer group of a run (its `distill` and `memory` settings), in the order
    `outer_step.build_optimizer` makes them from `AddressableMemory.parameter_groups`: tables, soft labels, query
    projection, query encoder (a frozen projection or encoder, rate 0, has no group). The rates and their defaults
    are `outer_step.outer_rates`."""
    rates = outer_rates(distill)
    roles = ["tables"] + (["labels"] if memory.get("soft_labels") else [])
    if memory.get("query_encoder") is not None:
        roles += ["query_projection", "query_encoder"]
    return [rates[role] for role in roles if rates[role] != 0 or role in ("tables", "labels")]


class RunSession:
    """`config.output_dir` (a DistillConfig's) as one run's home: `with session:` holds its lock (re-entrant), `start()` resumes or
    starts afresh, `log`/`save_checkpoint` write, `end()` closes the trackers."""

    def __init__(self, config: Any, settings: dict[str, dict[str, Any]], accelerator):
        self.config, self.accelerator = config, accelerator
        self.settings = {k: v for k, v in settings.items() if k != TENSORS}
        self.run = RunDirectory(config.output_dir, expected=settings.get(TENSORS))  # see TENSORS
        self.main = accelerator.is_main_process
        self._depth = 0

    # ---- the lock ---------------------------------------------------------------------------------------------

    def __enter__(self) -> "RunSession":
        if self.main and self._depth == 0:
            self.run.acquire()  # refuses a second live run here; takes over the lock of a killed one
        self._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self.main and self._depth == 0:
            self.run.release()

    # ---- starting or resuming ---------------------------------------------------------------------------------

    def check_resumable(self, saved: dict[str, dict[str, Any]]) -> dict[str, list[Any]]:
        """A resume must continue the same computation: same memory layout, same settings but the resumable ones and
        lower learning rates (LOWERABLE_RATES). Returns the rates it lowers, name -> [then, now]."""
        where = str(self.run.path)
        # a run started before output_norm existed recalled as the paper does
        saved_memory = {"output_norm": "none", "soft_labels": False, **saved["memory"]}
        if saved_memory != self.settings["memory"]:
            raise ValueError(f"{where} holds a different memory layout ({saved_memory} vs {self.settings['memory']}); "
                             f"resume with the options of the run that wrote it, or start afresh in another output_dir")
        resumable = fields_with(type(self.config), "resumable")
        changed = [f.name for f in fields(self.config)
                   if f.name not in resumable and saved["distill"].get(f.name) != getattr(self.config, f.name)]
        rates = {name: [saved["distill"].get(name), getattr(self.config, name)]
                 for name in changed if name in LOWERABLE_RATES}
        if rates:
            then = group_rates(saved["distill"], saved_memory)
            now = group_rates(asdict(self.config), self.settings["memory"])
            if len(then) == len(now) and all(b <= a for a, b in zip(then, now)):
                changed = [name for name in changed if name not in rates]  # every group's rate stays or goes down
            else:
                raise ValueError(f"resuming {where} may lower its learning rates, not raise them or freeze or unfreeze "
                                 f"a group: {', '.join(f'{k} {a} then, {b} now' for k, (a, b) in rates.items())}")
        if changed:
            raise ValueError(f"resuming {where} with different settings would not continue the same run: {changed}")
        then, now = saved.get("fingerprint"), self.settings["fingerprint"]
        if then is not None and then != now:
            differs = [k for k in now if then.get(k) != now[k]]
            raise ValueError(f"{where} was distilled from other data ({', '.join(f'{k}: {then.get(k)} then, {now[k]} now' for k in differs)}): "
                             f"resume it on the data it started with, or start afresh in another output_dir")
        return rates

    def start(self, device: torch.device | str) -> Checkpoint | None:
        """With `resume`: check the run may continue and return its latest checkpoint (None, with a warning, when
        it stopped before its first). Else: refuse to mix with an earlier run (unless told to overwrite), record
        the settings, return None. Starts the trackers."""
        checkpoint, lowered = None, {}
        if self.config.resume:
            saved = self.run.read_settings()
            if saved is None and not self.run.checkpoints():
                raise FileNotFoundError(f"nothing to resume in {self.run.path}: no run was started there "
                                        f"(start one without --resume)")
            if saved is not None:
                lowered = self.check_resumable(saved)
            checkpoint = self.run.load_checkpoint(device)
            if checkpoint is None and self.main:
                warnings.warn(f"{self.run.path} has no checkpoint yet (the run stopped before its first one): resuming "
                              f"from step 0", stacklevel=3)
            if checkpoint is not None:
                self._set_rates(checkpoint)
        if self.main:
            if checkpoint is not None:
                self.run.trim_metrics(checkpoint.state["step"])
                if lowered:  # the run goes on at the lower rates: a later --resume reads them from here
                    saved["distill"].update({name: now for name, (_, now) in lowered.items()})
                    saved.setdefault("changes", []).append({"step": checkpoint.state["step"], **lowered})
                    self.run.write_settings(saved)
            else:
                self.run.clear(overwrite=self.config.overwrite_output_dir)
                self.run.write_settings(self.settings)
            if self.config.report_to != "none":
                flat = {f"{section}.{k}": v for section, values in self.settings.items() for k, v in values.items()}
                self.accelerator.init_trackers(self.run.path.name, config={k: v for k, v in flat.items()
                                                                           if isinstance(v, (int, float, str, bool))})
        return checkpoint

    def _set_rates(self, checkpoint: Checkpoint) -> None:
        """The optimizer state restores its groups' learning rates too: make them this run's, so that a lower --lr on
        resume is the rate the run goes on at (a no-op when they are unchanged)."""
        groups = checkpoint.optimizer.get("param_groups", [])
        rates = group_rates(asdict(self.config), self.settings["memory"])
        if len(groups) == len(rates):  # else the optimizer's load_state_dict names the mismatch
            for group, rate in zip(groups, rates):
                group["lr"] = rate

    # ---- writing ----------------------------------------------------------------------------------------------

    def log(self, metrics: dict[str, Any]) -> None:
        if self.main:
            self.run.log(metrics)
            if self.config.report_to != "none":
                self.accelerator.log({k: v for k, v in metrics.items() if k != "step" and not isinstance(v, bool)},
                                     step=metrics["step"])

    def save_checkpoint(self, step: int, memory: dict[str, torch.Tensor], optimizer: dict[str, Any],
                        best: dict[str, torch.Tensor] | None, state: dict[str, Any]) -> None:
        """Written by the main process (atomically, see RunDirectory); every process waits for it."""
        if self.main:
            self.run.save_checkpoint(step, memory, optimizer, best, state, keep=self.config.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    def divergence(self, step: int, what: str) -> str:
        """What to tell a user whose run diverged at `step`, and what to do about it."""
        cfg, latest = self.config, self.run.latest()
        # resuming at the same rates diverges the same way: the way on is a lower outer rate (LOWERABLE_RATES)
        also = [f"--{name.replace('_', '-')} {getattr(cfg, name) / 2:g}" for name in LOWERABLE_RATES[1:]
                if getattr(cfg, name, None)]
        return (f"step {step}: {what}. Nothing of this step was applied or saved. Likely cause: a learning rate too large "
                f"(lr={cfg.lr} with {cfg.optimizer}, inner_lr={cfg.inner_lr}), or non-finite data. To go on from "
                f"{'the last good checkpoint, ' + latest.name if latest else 'the start (no checkpoint yet)'}, resume "
                f"with a lower learning rate: --resume --lr {cfg.lr / 2:g}{''.join(' ' + a for a in also)} (a lower "
                f"inner_lr changes what is distilled: start afresh for that).")

    def end(self) -> None:
        if self.main and self.config.report_to != "none":
            self.accelerator.end_training()
