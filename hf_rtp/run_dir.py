"""A distillation run's folder: the one owner of everything a run writes to disk.

    <output_dir>/settings.json        every option of the run (data, memory, distill), written when it starts
    <output_dir>/metrics.jsonl        one JSON line per outer step (and per end-of-run validation)
    <output_dir>/checkpoints/step-N/  memory.safetensors, best.safetensors, optimizer.pt, state.json
    <output_dir>/checkpoints/latest   the name of the newest complete checkpoint
    <output_dir>/memory/              the final memory: weights, config, model card, pictures (written once)

Every write is atomic (a complete temporary file or folder renamed into place), so a run killed at any moment
leaves the last complete checkpoint and, once written, a complete memory. Only the main process calls the
writing methods.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .modeling_memory import AddressableMemory

SETTINGS_FILE = "settings.json"
METRICS_FILE = "metrics.jsonl"
MEMORY_DIR = "memory"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class Checkpoint:
    """What a checkpoint restores: the memory and optimizer state, the best-so-far memory, and the loop's state
    (step, elapsed seconds, best accuracy and step, last validated step)."""

    folder: Path
    memory: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    best: dict[str, torch.Tensor] | None
    state: dict[str, Any]


class RunDirectory:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # ---- settings -----------------------------------------------------------------------------------------

    @property
    def settings_path(self) -> Path:
        return self.path / SETTINGS_FILE

    def read_settings(self) -> dict[str, dict[str, Any]] | None:
        """The options the run started with ({"data": ..., "memory": ..., "distill": ...}), or None."""
        if not self.settings_path.exists():
            return None
        return json.loads(self.settings_path.read_text())

    def write_settings(self, settings: dict[str, dict[str, Any]]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.settings_path, json.dumps(settings, indent=1, default=str))

    # ---- checkpoints --------------------------------------------------------------------------------------

    @property
    def checkpoint_root(self) -> Path:
        return self.path / "checkpoints"

    def checkpoints(self) -> list[Path]:
        """Finished checkpoint folders, oldest step first."""
        root = self.checkpoint_root
        found = [p for p in root.glob("step-*") if p.is_dir() and p.name[5:].isdigit()] if root.exists() else []
        return sorted(found, key=lambda p: int(p.name[5:]))

    def latest(self) -> Path | None:
        pointer = self.checkpoint_root / "latest"
        return self.checkpoint_root / pointer.read_text().strip() if pointer.exists() else None

    def has_run(self) -> bool:
        """Whether an earlier run left checkpoints or settings here."""
        return bool(self.checkpoints()) or self.latest() is not None or self.settings_path.exists()

    def save_checkpoint(self, step: int, memory: dict[str, torch.Tensor], optimizer: dict[str, Any],
                        best: dict[str, torch.Tensor] | None, state: dict[str, Any], keep: int) -> Path:
        """Write a new checkpoint folder, then point `latest` at it; keep the newest `keep`.

        The folder is complete before its name appears, and `latest` is replaced atomically, so a run killed at any
        moment resumes from the last finished checkpoint."""
        root = self.checkpoint_root
        final = root / f"step-{step:07d}"
        if self.latest() == final:  # the same step twice holds the same state
            return final
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file({k: v.detach().contiguous() for k, v in memory.items()}, tmp / "memory.safetensors")
        if best is not None:
            save_file({k: v.detach().contiguous() for k, v in best.items()}, tmp / "best.safetensors")
        torch.save(optimizer, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=1, default=str))
        shutil.rmtree(final, ignore_errors=True)  # a leftover of an overwritten run, never the latest
        os.replace(tmp, final)
        atomic_write_text(root / "latest", final.name)
        for old in self.checkpoints()[:-keep]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self, device: torch.device | str = "cpu") -> Checkpoint | None:
        """The latest checkpoint, or None when there is none. Tensors are loaded without pickle (safetensors; the
        optimizer state with weights_only)."""
        folder = self.latest()
        if folder is None:
            return None
        best_file = folder / "best.safetensors"
        return Checkpoint(
            folder=folder,
            memory=load_file(folder / "memory.safetensors", device=str(device)),
            optimizer=torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True),
            best=load_file(best_file, device=str(device)) if best_file.exists() else None,
            state=json.loads((folder / "state.json").read_text()),
        )

    # ---- metrics ------------------------------------------------------------------------------------------

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    def log(self, metrics: dict[str, Any]) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(metrics) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def trim_metrics(self, step: int) -> None:
        """After a resume from `step`: drop the lines of steps that will run again, and end-of-run validations."""
        if self.metrics_path.exists():
            kept = [m for m in self.metrics() if m["step"] <= step and not m.get("final")]
            atomic_write_text(self.metrics_path, "".join(json.dumps(m) + "\n" for m in kept))

    # ---- starting afresh ------------------------------------------------------------------------------------

    def clear(self, overwrite: bool) -> None:
        """Make room for a new run: refuse to mix with an earlier run's checkpoints unless told to delete them."""
        if self.checkpoints() or self.latest() is not None:
            if not overwrite:
                raise FileExistsError(
                    f"{self.checkpoint_root} holds checkpoints of an earlier run: pass resume=True (--resume) to "
                    f"continue it, overwrite_output_dir=True (--overwrite-output-dir) to delete them, or another output_dir"
                )
            shutil.rmtree(self.checkpoint_root)
        for path in (self.metrics_path, self.settings_path):
            if path.exists():
                path.unlink()
        self.path.mkdir(parents=True, exist_ok=True)

    # ---- the final memory -----------------------------------------------------------------------------------

    @property
    def memory_path(self) -> Path:
        return self.path / MEMORY_DIR

    def save_memory(self, memory: AddressableMemory) -> Path:
        """Write the final memory (weights, config, model card, pictures) to <output_dir>/memory in one piece: the
        new folder is complete before it replaces the old one, and the old one goes only once the new one is in."""
        target, tmp, old = self.memory_path, self.path / ".memory.tmp", self.path / ".memory.old"
        shutil.rmtree(tmp, ignore_errors=True)
        memory.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
        return target
