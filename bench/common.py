"""What every benchmark script shares: where the data and results live, how it was run, and how its JSON is written.

Each script records the command line that produced its JSON (`command`) and the machine it ran on (`machine`), so
every table of the results page (docs/results.md) names how to rebuild it. `--note TEXT` stores a remark about the
run (`note`); `--merge` adds this run's rows to the JSON already at `--output` instead of replacing it (a run that
adds a student, or reruns one that hit a time limit), and the merged file lists every command that contributed
(`commands`, oldest first).
bench/report.py reads nothing else than what these scripts write.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
MNIST_HUB_ID = "ylecun/mnist"

# The keys write_result adds to every record, next to the script's own.
COMMON_KEYS = ("command", "commands", "machine", "note")


def mnist_dir() -> Path:
    """The local MNIST parquet (same files as the Hub repo): $HF_RTP_MNIST_DIR, else ../shared/data/mnist next to
    the checkout (the project's machines have it; a device machine gets it carried in)."""
    return Path(os.environ.get("HF_RTP_MNIST_DIR") or ROOT.parent / "shared" / "data" / "mnist")


def resolve_dataset(name: str) -> str:
    """The name to load: the local MNIST copy for its Hub id when present (works offline), else the name as given.
    Commands name the Hub id, so the same command line runs here, on a device machine and online."""
    if name == MNIST_HUB_ID and (mnist_dir() / "train-00000-of-00001.parquet").exists():
        return str(mnist_dir())
    return name


def default_device() -> str:
    """Where a script trains by default: the library's choice (cuda if available)."""
    from hf_rtp.evaluate import default_device as package_default

    return package_default()


def describe_machine(device: str = "cpu") -> str:
    """One line naming the machine, e.g. 'x86_64, 2 CPU cores, torch 2.14.1, no GPU'."""
    import torch

    line = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"{line}, {torch.cuda.get_device_name(torch.device(device))}"
    # a GPU machine running a CPU benchmark says so: its timings are not a GPU's
    return f"{line}, {'CPU only' if torch.cuda.is_available() else 'no GPU'}"


def repo_relative(path: str | Path) -> str:
    """A path as results record it: relative to the repository when inside it (never this machine's absolute path)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def command_line(argv: Sequence[str] | None = None) -> str:
    """How this script was invoked, as one would type it in the repo root: `python bench/x.py ARGS` (shell-quoted).

    The interpreter's path and the environment are left out: run_all.sh and gpu_checks.sh set those up.
    """
    argv = [a for a in (sys.argv if argv is None else argv) if a != "--overwrite"]  # it changes where, not what
    script = Path(argv[0]).resolve()
    if script.is_relative_to(ROOT):
        script = script.relative_to(ROOT)
    return shlex.join(["python", str(script), *argv[1:]])


OVERWRITE_ENV = "BENCH_OVERWRITE"


def is_committed(path: Path) -> bool:
    """Whether `path` is a file git tracks in this checkout (False outside a git checkout)."""
    import subprocess

    try:
        done = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], cwd=ROOT, capture_output=True)
    except OSError:
        return False
    return done.returncode == 0


def add_result_options(parser: argparse.ArgumentParser, default_output: Path | str | None = None, *,
                       mergeable: bool = False, merge_by_default: bool = False) -> None:
    """--note, --output (when default_output is given) and, for scripts whose rows can be combined, --merge.

    merge_by_default: the script's file is a table of independent runs (bench/mnist.py): every run merges its row,
    --no-merge starts the file afresh.
    """
    parser.add_argument("--note", default=None, help="a remark about this run, stored under 'note' and shown in docs/results.md")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a committed result (or its rows); without it a run that would change one writes "
                             "<name>.new.json beside it (bench/run_all.sh, which regenerates everything, sets "
                             f"{OVERWRITE_ENV}=1)")
    if default_output is not None:
        parser.add_argument("--output", default=str(default_output), help="the JSON to write (default: %(default)s)")
    if merge_by_default:
        parser.add_argument("--merge", action=argparse.BooleanOptionalAction, default=True,
                            help="add this run's row to --output (--no-merge: replace the file)")
    elif mergeable:
        parser.add_argument("--merge", action="store_true",
                            help="add this run's rows to the JSON at --output (same row: replaced) instead of replacing it; "
                                 "the file keeps every contributing command under 'commands'")


def write_result(path: Path | str, record: dict[str, Any], args: argparse.Namespace, *, device: str = "cpu",
                 row_key: Callable[[dict], Hashable] | None = None, sort_rows: bool = False) -> dict[str, Any]:
    """Write record as JSON at path, with the command line, the machine and --note; with --merge, combined with the
    file already there. Returns what was written.

    Merging: this run's rows replace the old rows with the same row_key (in place) and the others are appended
    (sorted by row_key when sort_rows); the other keys are this run's; `commands` lists the contributing commands,
    oldest first, and notes are joined. Writing the same run again changes nothing, so a script may write after
    every row (a run cut off by a time limit keeps what it finished).
    """
    path = Path(path)
    out: dict[str, Any] = {"command": command_line()}
    note = getattr(args, "note", None)
    merged_from = path  # a .new.json written beside a committed result still merges with that result
    path = _unless_it_replaces_a_committed_result(path, record, args, row_key)
    if getattr(args, "merge", False) and (path.exists() or merged_from.exists()):
        old = json.loads((path if path.exists() else merged_from).read_text())
        # a command run again moves to the end instead of being listed twice
        out["commands"] = [c for c in old.get("commands", [old["command"]]) if c != out["command"]] + [out["command"]]
        note = join_notes(old.get("note"), note)
        if "rows" in record:
            record = {**record, "rows": merge_rows(old.get("rows", []), record["rows"], row_key, sort_rows)}
    out["machine"] = describe_machine(device)
    if note:
        out["note"] = note
    out.update(record)
    write_json(path, out)
    return out


def _unless_it_replaces_a_committed_result(path: Path, record: dict[str, Any], args: argparse.Namespace,
                                           row_key: Callable[[dict], Hashable] | None) -> Path:
    """`path`, or `<name>.new.json` beside it when writing there would replace a committed result (the whole file,
    or a row of it with other contents) and neither --overwrite nor $BENCH_OVERWRITE says to. Adding rows to a
    committed table is not replacing it."""
    if getattr(args, "overwrite", False) or os.environ.get(OVERWRITE_ENV) or not path.exists() or not is_committed(path):
        return path
    if getattr(args, "merge", False) and row_key is not None and "rows" in record:
        old = {row_key(r): r for r in json.loads(path.read_text()).get("rows", [])}
        if all(row_key(r) not in old or old[row_key(r)] == r for r in record["rows"]):
            return path
    new = path.with_name(f"{path.stem}.new{path.suffix}")
    if not getattr(args, "_told_new", False):
        print(f"{path} is a committed result: writing {new} instead (--overwrite replaces it)", flush=True)
        args._told_new = True
    return new


def merge_rows(old: list[dict], new: list[dict], key: Callable[[dict], Hashable] | None, sort: bool = False) -> list[dict]:
    """old with the rows of new that share a key replaced in place, new ones appended; no key: appended."""
    if key is None:
        rows = old + new
    else:
        fresh = {key(r): r for r in new}
        rows = [fresh.pop(key(r), r) for r in old] + list(fresh.values())
    return sorted(rows, key=key) if sort and key is not None else rows


def join_notes(old: str | None, new: str | None) -> str | None:
    """Both notes, old first; a note already there is not repeated."""
    if not old or not new or new in old:
        return old or new
    return f"{old}; {new}"


def write_json(path: Path | str, data: Any) -> None:
    """Atomic: a temporary file in the same folder, then a rename, so a reader (or a run killed mid-write) never
    sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
