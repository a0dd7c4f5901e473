"""Where an image-addressed memory's query encoder should start, chosen on the validation split (issue 25).

    python bench/image_starts.py                                   # three starts, seed 0, 60 outer steps each
    python bench/image_starts.py --starts supervised-frozen --seeds 1 2
    python bench/image_starts.py --classes 0 1 2 3 4 --output bench/results/image_starts_0to4.json

Each start is one `hf-rtp distill` run of the few-shot configuration of bench/run_all.sh (MNIST, IPC 1, resnet10t
head, 16-d queries, 5-way 1-shot episodes, T=50) with the same outer steps, differing only in where the head's
encoder starts and how fast it learns:
- `random`: timm's initialisation, learned at the outer lr (the configuration of the first few-shot table);
- `supervised`: trained first as a classifier of the training split (the few-shot baselines' backbone recipe, one
  epoch), then fine-tuned through the meta-gradient at the outer lr (0.01; `--query-encoder-lr` is explicit since
  its default became frozen after a supervised start, the choice these runs made);
- `supervised-slow`: the same start, the encoder at a tenth of the outer lr;
- `supervised-frozen`: the same start, the encoder frozen (only the projection, the bases and the addressing learn).
timm's pretrained weights (`--query-encoder-start pretrained`) need the Hub: not measured offline.
Scored by the run's own validation (few-shot episodes of the held-out share of the training split, never the test
split): the best and the last validation accuracy of each run, and whether it ever left chance. Every run is a row
of the JSON (the losers too); rows merge, keyed by (start, seed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import MNIST_HUB_ID, RESULTS, ROOT, add_result_options, repo_relative, resolve_dataset, write_result

# The few-shot memory of bench/run_all.sh (issue 12's command), apart from the start and the step budget; `--preset
# none`: that command predates the MNIST preset's reaching local copies (its turn-taking learner and augmentation).
COMMON = ["--preset", "none", "--ipc", "1", "--query-encoder", "resnet10t", "--query-dim", "16", "--classes-per-step", "5", "--shots", "1",
          "--unroll-steps", "50", "--learner-width", "32", "--synthetic-per-class", "4", "--real-per-class", "32",
          "--optimizer", "adam", "--lr", "0.01", "--init", "real", "--eval-epochs", "150", "--eval-width", "32",
          "--final-models", "0", "--no-progress", "--overwrite-output-dir"]
STARTS = {
    "random": ["--query-encoder-start", "random"],
    "supervised": ["--query-encoder-start", "supervised", "--query-encoder-epochs", "1", "--query-encoder-lr", "0.01"],
    "supervised-slow": ["--query-encoder-start", "supervised", "--query-encoder-epochs", "1", "--query-encoder-lr", "0.001"],
    "supervised-frozen": ["--query-encoder-start", "supervised", "--query-encoder-epochs", "1", "--query-encoder-lr", "0"],
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", nargs="+", default=["supervised-frozen", "supervised", "random"], choices=list(STARTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=60, help="outer steps of every run (equal for all starts)")
    parser.add_argument("--eval-every", type=int, default=30)
    parser.add_argument("--eval-episodes", type=int, default=20, help="validation episodes per validation")
    parser.add_argument("--classes", nargs="*", default=None, help="distil on these classes only (default: all)")
    parser.add_argument("--dataset", default=MNIST_HUB_ID)
    parser.add_argument("--runs-dir", default=str(RESULTS / "runs" / "image-starts"))
    add_result_options(parser, RESULTS / "image_starts.json", mergeable=True)
    args = parser.parse_args(argv)
    chance = 1 / 5
    rows = []
    record = {"dataset": args.dataset, "steps": args.steps, "eval_every": args.eval_every,
              "eval_episodes": args.eval_episodes, "classes": args.classes, "common_options": COMMON,
              "starts": STARTS, "chance": chance, "rows": rows}  # every start's options (rows merge)
    for name in args.starts:
        for seed in args.seeds:
            out = f"{args.runs_dir}/{name}-seed{seed}" + ("-" + "".join(args.classes) if args.classes else "")
            command = ["hf-rtp", "distill", "--dataset", resolve_dataset(args.dataset), *COMMON, *STARTS[name],
                       "--steps", str(args.steps), "--eval-every", str(args.eval_every),
                       "--eval-episodes", str(args.eval_episodes), "--seed", str(seed), "--output-dir", out]
            if args.classes:
                command += ["--classes", ",".join(args.classes)]
            started = time.perf_counter()
            print(f"{name} seed {seed}: " + " ".join(command), flush=True)
            code = subprocess.run(command, cwd=ROOT).returncode
            if code:  # hf-rtp has said why, in one line: no traceback of this script on top of it
                sys.exit(f"image_starts.py: error: the {name} run (seed {seed}) stopped with exit status {code}; the rows "
                         f"before it are in {args.output}")
            minutes = (time.perf_counter() - started) / 60
            curve = [(m["step"], m["val_accuracy"]) for m in map(json.loads, open(f"{out}/metrics.jsonl"))
                     if m.get("val_accuracy") is not None]
            best = max(acc for _, acc in curve)
            row = {"start": name, "seed": seed, "validation": curve, "best": best, "last": curve[-1][1],
                   "left_chance": best > chance + 0.05, "minutes": minutes, "run": repo_relative(out),
                   "distill_command": " ".join(command[:3] + [args.dataset]
                                               + [repo_relative(out) if word == out else word for word in command[4:]])}
            rows.append(row)
            print(f"{name} seed {seed}: validation {', '.join(f'{100 * a:.1f}' for _, a in curve)} "
                  f"(best {100 * best:.1f}%), {minutes:.1f} min", flush=True)
            write_result(args.output, record, args, row_key=lambda r: (r["start"], r["seed"]))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main(sys.argv[1:])
