"""A distillation run's folder: the one owner of everything a run writes to disk.

    <output_dir>/settings.json        every option of the run (data, memory, distill), written when it starts
    <output_dir>/metrics.jsonl        one JSON line per outer step (and per end-of-run validation)
    <output_dir>/checkpoints/step-N/  memory.safetensors, best.safetensors, optimizer.pt, state.json
    <output_dir>/checkpoints/latest   the name of the newest complete checkpoint
    <output_dir>/memory/              the final memory: weights, config, model card, pictures (written once)
    <output_dir>/.lock                the process that runs here (JSON: pid, host, start time), while it runs

Every write is atomic (a complete temporary file or folder renamed into place), so a run killed at any moment
leaves the last complete checkpoint and, once written, a complete memory. Only the main process calls the
writing methods.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .modeling_memory import AddressableMemory

SETTINGS_FILE = "settings.json"
LOCK_FILE = ".lock"
FRESH_LOCK_SECONDS = 5.0  # an empty lock this young is being written by its owner: live
METRICS_FILE = "metrics.jsonl"
MEMORY_DIR = "memory"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunLockedError(RuntimeError):
    """Another live process is running in this output dir."""


def _process_start(pid: int) -> str | None:
    """When process `pid` started (Linux /proc, in clock ticks since boot), to tell a live run from a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(owner: dict[str, Any]) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process cannot be checked from here: assume it runs
    pid = int(owner.get("pid", -1))
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: a number no process id can be
        return False
    except PermissionError:
        return True
    start = _process_start(pid)
    return start is None or owner.get("start") in (None, start)


def _is_this_process(owner: dict[str, Any] | None) -> bool:
    return owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()


def _disk_full(error: OSError, what: str, folder: Path, kept: str) -> OSError:
    """A full disk as one line that names the folder and what is still intact."""
    if error.errno == errno.ENOSPC:
        return OSError(errno.ENOSPC, f"no space left on device while writing {what} in {folder} ({kept})")
    return error


def _check_shapes(what: str, tensors: dict[str, torch.Tensor] | None, expected: dict[str, tuple[int, ...]]) -> None:
    """Refuse checkpoint tensors that are not the run's memory's (names and shapes), naming the first differences."""
    if tensors is None:
        return
    problems = [f"{k!r} has shape {tuple(v.shape)}, not {tuple(expected[k])}" for k, v in tensors.items()
                if k in expected and tuple(v.shape) != tuple(expected[k])]
    problems += [f"it lacks {k!r}" for k in expected if k not in tensors]
    problems += [f"unexpected tensor {k!r}" for k in tensors if k not in expected]
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise ValueError(f"its {what} does not fit this run's memory: " + "; ".join(problems[:3]) + more)


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
    def __init__(self, path: str | os.PathLike, expected: dict[str, tuple[int, ...]] | None = None):
        self.path = Path(path)
        self._written: Path | None = None  # the checkpoint this object wrote last
        # name -> shape of the run's memory tensors, when known: a checkpoint of other tensors is broken
        self.expected = expected

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

    def save_checkpoint(self, step: int, memory: dict[str, torch.Tensor], optimizer: dict[str, Any],
                        best: dict[str, torch.Tensor] | None, state: dict[str, Any], keep: int) -> Path:
        """Write a new checkpoint folder, then point `latest` at it; keep the newest `keep`.

        The folder is complete before its name appears, and `latest` is replaced atomically, so a run killed at any
        moment resumes from the last finished checkpoint."""
        root = self.checkpoint_root
        final = root / f"step-{step:07d}"
        if self._written == final:  # the same step twice in one run holds the same state (a resumed run rewrites it)
            return final
        bad = [k for k, v in memory.items() if not bool(torch.isfinite(v).all())]
        if bad:
            raise FloatingPointError(f"refusing to checkpoint step {step}: the memory has non-finite values in {bad}")
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            save_file({k: v.detach().contiguous() for k, v in memory.items()}, tmp / "memory.safetensors")
            if best is not None:
                save_file({k: v.detach().contiguous() for k, v in best.items()}, tmp / "best.safetensors")
            torch.save(optimizer, tmp / "optimizer.pt")
            (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=1, default=str))
        except OSError as error:
            shutil.rmtree(tmp, ignore_errors=True)
            latest = self.latest()
            kept = f"the previous checkpoint {latest.name} is intact" if latest else "no checkpoint was written yet"
            raise _disk_full(error, f"checkpoint {final.name}", root, kept) from error
        shutil.rmtree(final, ignore_errors=True)  # a leftover of an overwritten run, never the latest
        os.replace(tmp, final)
        atomic_write_text(root / "latest", final.name)
        self._written = final
        for old in self.checkpoints()[:-keep]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self, device: torch.device | str = "cpu") -> Checkpoint | None:
        """The newest intact checkpoint, or None when there is none at all.

        Complete folders newer than `latest` count (a kill between the folder's rename and the pointer's update); a
        broken one (truncated file, unreadable state, non-finite memory, or a memory of other tensors or shapes than
        `expected`) is skipped with a warning that names what was broken, and the next older one is used. Tensors are
        loaded without pickle (safetensors; the optimizer state with weights_only)."""
        candidates = list(reversed(self.checkpoints()))
        broken = []
        latest = self.latest()
        if latest is not None and not latest.is_dir():
            broken.append(f"`latest` names {latest.name}, which does not exist")
        if not candidates:
            if broken:
                raise FileNotFoundError(f"no checkpoint to resume in {self.checkpoint_root}: " + "; ".join(broken))
            return None
        for folder in candidates:
            try:
                checkpoint = self._read_checkpoint(folder, device, self.expected)
            except Exception as error:  # anything unreadable: fall back, but say what
                broken.append(f"{folder.name}: {error}")
                continue
            if broken:
                warnings.warn(f"resuming from {folder.name}; skipped a broken newer checkpoint: " + "; ".join(broken), stacklevel=2)
            return checkpoint
        raise FileNotFoundError(f"no intact checkpoint to resume in {self.checkpoint_root}: " + "; ".join(broken) +
                                " (--overwrite-output-dir starts afresh)")

    def checkpoint_at(self, step: int, device: torch.device | str = "cpu") -> Checkpoint | None:
        """The checkpoint of outer step `step` (e.g. to score a run's memory along its steps), or None when that
        step's folder was not kept; a broken one raises, naming what is broken."""
        folder = self.checkpoint_root / f"step-{step:07d}"
        return self._read_checkpoint(folder, device, self.expected) if folder.is_dir() else None

    @staticmethod
    def _read_checkpoint(folder: Path, device: torch.device | str,
                         expected: dict[str, tuple[int, ...]] | None = None) -> Checkpoint:
        state = json.loads((folder / "state.json").read_text())
        memory = load_file(folder / "memory.safetensors", device=str(device))
        bad = [k for k, v in memory.items() if not bool(torch.isfinite(v).all())]
        if bad:
            raise FloatingPointError(f"its memory has non-finite values in {bad}")
        best_file = folder / "best.safetensors"
        best = load_file(best_file, device=str(device)) if best_file.exists() else None
        if expected is not None:  # other shapes would stop the resume in load_state_dict: broken, like a truncated file
            for what, tensors in (("memory", memory), ("best memory", best)):
                _check_shapes(what, tensors, expected)
        return Checkpoint(
            folder=folder,
            memory=memory,
            optimizer=torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True),
            best=best,
            state=state,
        )

    # ---- metrics ------------------------------------------------------------------------------------------

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    def log(self, metrics: dict[str, Any]) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(metrics) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        """The logged lines; a last line cut short by a kill mid-write is dropped (it is logged again on resume)."""
        if not self.metrics_path.exists():
            return []
        lines = [line for line in self.metrics_path.read_text().splitlines() if line.strip()]
        parsed = []
        for i, line in enumerate(lines):
            try:
                parsed.append(json.loads(line))
            except ValueError:
                if i != len(lines) - 1:
                    raise
        return parsed

    def trim_metrics(self, step: int) -> None:
        """After a resume from `step`: drop the lines of steps that will run again, and end-of-run validations."""
        if self.metrics_path.exists():
            kept = [m for m in self.metrics() if m["step"] <= step and not m.get("final")]
            atomic_write_text(self.metrics_path, "".join(json.dumps(m) + "\n" for m in kept))

    # ---- one run at a time ------------------------------------------------------------------------------------

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    def lock_owner(self) -> dict[str, Any] | None:
        """Who holds the lock (pid, host, start, since), or None when there is none or it names no process (empty,
        half-written, or garbage: `check_unlocked` judges those by their age)."""
        try:
            owner = json.loads(self.lock_path.read_text())
        except (OSError, ValueError):  # ValueError: not JSON, or not text at all
            return None
        pid = owner.get("pid") if isinstance(owner, dict) else None
        if not isinstance(pid, int) or isinstance(pid, bool) or pid < 1 or not isinstance(owner.get("host"), str):
            return None  # JSON, but not a run's id (a process id and host): as unreadable as garbage
        return owner

    def check_unlocked(self) -> None:
        """Refuse (RunLockedError) when a live process runs here; cheap, so entry points call it before loading data.

        A lock file that is empty or unreadable (garbage included) and younger than FRESH_LOCK_SECONDS is live: its
        owner created it and has not yet written its id (two runs starting microseconds apart would otherwise both take
        it). Older, it is what a run killed in that instant left, or not a run's lock at all: stale, and `acquire` takes
        it over with a warning."""
        owner = self.lock_owner()
        if owner is None and self.lock_path.exists():
            age = self._lock_age()
            if age < FRESH_LOCK_SECONDS:
                raise RunLockedError(f"{self.path} is being locked by another run at this moment (its lock file "
                                     f"{self.lock_path} is {age:.1f} s old and not yet written, or unreadable): wait "
                                     f"for it, or use another output_dir")
        if owner is not None and _alive(owner) and not _is_this_process(owner):
            raise RunLockedError(
                f"{self.path} is in use by process {owner.get('pid')} on {owner.get('host')} (running since "
                f"{owner.get('since')}): wait for it to finish, or use another output_dir")

    def _lock_age(self) -> float:
        try:
            return time.time() - self.lock_path.stat().st_mtime
        except OSError:
            return FRESH_LOCK_SECONDS

    def acquire(self) -> None:
        """Take the run's lock, holding this process's id; a stale lock of a process that no longer runs (a killed
        run) is taken over with a warning. Creation is atomic (O_EXCL), so of two runs starting at once one wins."""
        self.path.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid()),
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self.check_unlocked()
                owner = self.lock_owner()
                if _is_this_process(owner):
                    return  # ours already
                if owner is None:  # check_unlocked let it through: stale, as old as FRESH_LOCK_SECONDS or more
                    warnings.warn(f"taking over the lock of {self.path}: its lock file {self.lock_path} names no process "
                                  f"(empty or unreadable, {self._lock_age():.0f} s old), left by a run killed while "
                                  f"taking it, or not a lock at all", stacklevel=2)
                else:
                    warnings.warn(f"taking over the lock of {self.path} from process {owner.get('pid')}, which no "
                                  "longer runs (a killed run)", stacklevel=2)
                self.lock_path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
            return
        self.check_unlocked()
        raise RunLockedError(f"could not take the lock of {self.path}: another run took it at the same moment")

    def release(self) -> None:
        if _is_this_process(self.lock_owner()):
            self.lock_path.unlink(missing_ok=True)

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
        try:
            memory.save_pretrained(tmp)
        except OSError as error:
            shutil.rmtree(tmp, ignore_errors=True)
            kept = "the previous memory/ is intact" if target.exists() else "the checkpoints are intact"
            raise _disk_full(error, "the final memory", self.path, kept) from error
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
        return target
