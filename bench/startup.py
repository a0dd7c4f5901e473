"""What `hf-rtp` costs to start: `--help`, `info` on a memory and on a bank, `distill --help`, each next to a bare
`python -c "import torch"` measured in the same run (best of --repeats, each a fresh process); writes
bench/results/startup.json.

    python bench/startup.py
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

from common import RESULTS, ROOT, add_result_options, write_result

MEMORY = "bench/results/memories/mnist-ipc1-memory-preset-200"
BANK = "bench/results/memories/continual-rotations-bank"


def seconds(command: list[str], repeats: int) -> float:
    """The fastest of `repeats` runs of `command` in a fresh process (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()[-300:]}")
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    add_result_options(parser, RESULTS / "startup.json")
    args = parser.parse_args()
    cli = [shutil.which("hf-rtp") or "hf-rtp"]
    commands = {
        "import torch": [sys.executable, "-c", "import torch"],
        "hf-rtp --help": [*cli, "--help"],
        "hf-rtp info MEMORY": [*cli, "info", MEMORY],
        "hf-rtp info BANK": [*cli, "info", BANK],
        "hf-rtp distill --help": [*cli, "distill", "--help"],
    }
    measured = {name: seconds(command, args.repeats) for name, command in commands.items()}
    torch_seconds = measured["import torch"]
    rows = [{"measured": name, "seconds": round(s, 3), "vs_import_torch": round(s / torch_seconds, 2)}
            for name, s in measured.items()]
    for row in rows:
        print(f"{row['measured']:<24} {row['seconds']:6.2f} s  {row['vs_import_torch']:.2f}x import torch")
    write_result(args.output, {"repeats": args.repeats, "memory": MEMORY, "bank": BANK, "rows": rows}, args)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
