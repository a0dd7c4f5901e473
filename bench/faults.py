"""Reliability as a measured figure: kill -9 a short real run at N moments, resume it, compare bit for bit.

    python bench/faults.py                      # 30 kills (seeded), writes bench/results/faults.json
    python bench/faults.py --kills 3 --output /tmp/f.json

One uninterrupted run of `hf-rtp distill` (digits, tiny settings, one thread) is the reference. Then, for each kill,
the same run starts afresh in its own folder and is killed with SIGKILL at a moment drawn from the seed:
- half at a random time into the run (anywhere: data loading, unrolls, validation, checkpoints, final evaluation),
- half at a random call of a write the run makes (a checkpoint tensor file, a rename or the `latest` pointer update,
  the final memory's save), the process killing itself at that instant from inside (a hook installed by this script
  in the child), so the moments where files are half-written are certainly among the kills.
The killed run is then resumed with `--resume` (started again when it died before it recorded its settings) until it
finishes, and its final memory, its last checkpoint and its metrics (without the clock) must equal the reference's
bit for bit. A kill loses at most one checkpoint interval: the steps between the last step it logged and the step
its resume continued from.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, add_result_options, write_result

RESULTS = ROOT / "bench" / "results"
RUN = ["--steps", "8", "--unroll-steps", "4", "--learner-width", "16", "--eval-width", "16", "--eval-every", "4",
       "--eval-epochs", "10", "--checkpoint-every", "2", "--final-models", "1", "--final-epochs", "10", "--no-progress"]
HOOKS = ("checkpoint_file", "rename", "final_save")

CHILD = """
import json, os, signal, sys
target, at = sys.argv[1], int(sys.argv[2])  # target "count": kill nothing, print how often each hook was called
calls = {}

def kill_at(name, function):
    def wrapped(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        if name == target and calls[name] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return function(*args, **kwargs)
    return wrapped

import hf_rtp.run_dir as run_dir
from hf_rtp import AddressableMemory
run_dir.save_file = kill_at("checkpoint_file", run_dir.save_file)
run_dir.os.replace = kill_at("rename", run_dir.os.replace)  # checkpoint folder renames, `latest`, the final memory
AddressableMemory.save_pretrained = kill_at("final_save", AddressableMemory.save_pretrained)
from hf_rtp.cli import main
code = main(sys.argv[3:])
print("HOOK_CALLS " + json.dumps(calls))
sys.exit(code)
"""


def env() -> dict[str, str]:
    # One thread: sums in the same order in every process, so resumed and uninterrupted runs can be equal bit for bit.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def distill(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hf_rtp.cli", "distill", "--output-dir", str(out), *RUN, *extra],
                          capture_output=True, text=True, cwd=ROOT, env=env())


def outcome(out: Path) -> dict:
    """What must match the reference: the final memory's tensors, the last checkpoint's, and the metrics without
    the clock."""
    from safetensors.torch import load_file

    latest = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    metrics = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
               for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {"memory": load_file(out / "memory" / "model.safetensors"),
            "checkpoint": load_file(latest / "memory.safetensors"), "best": load_file(latest / "best.safetensors"),
            "state": {k: v for k, v in json.loads((latest / "state.json").read_text()).items() if k != "elapsed"},
            "metrics": metrics}


def same(a: dict, b: dict) -> bool:
    import torch

    tensors = all(a[k].keys() == b[k].keys() and all(torch.equal(a[k][n], b[k][n]) for n in a[k])
                  for k in ("memory", "checkpoint", "best"))
    return tensors and a["state"] == b["state"] and a["metrics"] == b["metrics"]


def last_logged_step(out: Path) -> int:
    path = out / "metrics.jsonl"
    if not path.exists():
        return 0
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip() and line.endswith("}")]
    return max(steps, default=0)


def resumed_from(out: Path) -> int:
    """The step a resume will continue from: the newest checkpoint folder that is complete (what the run loads)."""
    root = out / "checkpoints"
    steps = [int(p.name[5:]) for p in root.glob("step-*") if p.is_dir() and (p / "state.json").exists()] if root.exists() else []
    return max(steps, default=0)


def kill(out: Path, how: str, value: float | int) -> str:
    """Start a fresh run in `out` and kill it: `time` after `value` seconds, or at the value-th call of hook `how`."""
    if how == "time":
        child = subprocess.Popen([sys.executable, "-m", "hf_rtp.cli", "distill", "--output-dir", str(out), *RUN],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env())
        try:
            child.wait(timeout=value)
            return "finished before the kill"
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
            return "killed"
    child = subprocess.run([sys.executable, "-c", CHILD, how, str(int(value)), "distill", "--output-dir", str(out), *RUN],
                           capture_output=True, text=True, cwd=ROOT, env=env())
    return "killed" if child.returncode == -signal.SIGKILL else "finished before the kill"


def resume(out: Path) -> int:
    """Resume until the run finishes; returns how many resumes it took."""
    for attempt in range(1, 4):
        done = distill(out, "--resume") if (out / "settings.json").exists() else distill(out, "--overwrite-output-dir")
        if done.returncode == 0:
            return attempt
    raise RuntimeError(f"{out} did not finish after 3 resumes: {done.stderr[-2000:]}")


def reference_run(out: Path) -> tuple[float, dict[str, int]]:
    """The uninterrupted run, through the hooks in counting mode: its wall time and how often it calls each hooked
    write (so kill points can be drawn among them)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, "count", "0", "distill", "--output-dir", str(out), *RUN],
                          capture_output=True, text=True, cwd=ROOT, env=env())
    if done.returncode != 0:
        raise SystemExit(f"the reference run failed: {done.stderr[-2000:]}")
    line = [l for l in done.stdout.splitlines() if l.startswith("HOOK_CALLS ")][-1]
    return time.perf_counter() - start, json.loads(line.split(" ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=30, help="kills that land, each resumed (half by time, half at a write)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--kinds", nargs="+", choices=["time", *HOOKS], default=["time", *HOOKS],
                        help="kinds of kill, taken in turn (default: time alternating with each write hook)")
    parser.add_argument("--keep", action="store_true", help="keep the run folders (in a temporary folder, printed)")
    add_result_options(parser, RESULTS / "faults.json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="hf_rtp_faults_"))
    reference_seconds, calls = reference_run(work / "reference")
    reference = outcome(work / "reference")
    rows = []
    hooks = [k for k in args.kinds if k != "time"]
    # time kills alternate with the write hooks in turn, so half of the kills are certainly mid-write
    kinds = [k for pair in zip(["time"] * len(hooks), hooks) for k in pair] if "time" in args.kinds and hooks else args.kinds
    i = 0
    while sum(r["status"] == "killed" for r in rows) < args.kills and i < 2 * args.kills:
        # a time kill that lands after the run finished is drawn again: the figure counts kills that landed
        out = work / f"kill-{i:03d}"
        how = kinds[sum(r["status"] == "killed" for r in rows) % len(kinds)]
        if how == "time":
            value = round(rng.uniform(0.5, 0.9 * reference_seconds), 2)  # within the run, so the kill lands
        else:
            value = rng.randint(1, calls[how])
        status = kill(out, how, value)
        logged, kept = last_logged_step(out), resumed_from(out)
        resumes = resume(out)
        equal = same(outcome(out), reference)
        rows.append({"kill": i, "how": how, "at": value, "status": status, "last_logged_step": logged,
                     "resumed_from_step": kept, "steps_lost": max(0, logged - kept), "resumes": resumes,
                     "bit_identical": equal})
        print(f"kill {i:2d}: {how:>15} at {value:<6} {status:<24} logged {logged} resumed from {kept} -> "
              f"{'bit-identical' if equal else 'DIFFERENT'}", flush=True)
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
        i += 1
    killed = [r for r in rows if r["status"] == "killed"]
    record = {
        "run": "hf-rtp distill " + " ".join(RUN), "checkpoint_every": 2, "seed": args.seed,
        "reference_seconds": round(reference_seconds, 1), "hook_calls": calls, "kills": len(rows), "killed": len(killed),
        "bit_identical": sum(r["bit_identical"] for r in rows),
        "max_steps_lost": max((r["steps_lost"] for r in killed), default=0),
        "by_kind": {kind: sum(r["how"] == kind and r["status"] == "killed" for r in rows) for kind in ("time", *HOOKS)},
        "rows": rows,
    }
    write_result(args.output, record, args)
    print(f"{record['killed']} kills in {record['kills']} runs, {record['bit_identical']} bit-identical after resume, "
          f"at most {record['max_steps_lost']} step(s) lost (checkpoint interval 2); wrote {args.output}")
    if args.keep:
        print(f"run folders in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
