"""Accuracy per CPU-hour on MNIST: the addressable memory, the per-class synthetic set (vanilla BPTT) at the same
storage budget, and random real images at the same budget, each distilled for a fixed wall-clock budget and
evaluated with fresh ConvNet-128s on the 10k test split.

    python bench/mnist.py --ipc 1 --method memory --minutes 30
    python bench/mnist.py --ipc 1 --method per_class --minutes 30
    python bench/mnist.py --ipc 1 --method random_real
    python bench/mnist.py --plot            # accuracy-vs-time PNG from the runs so far

Each run adds its row to bench/results/mnist.json (one row per --ipc, --method and --tag; --no-merge starts the file
afresh) and saves its memory (with model card) under bench/results/memories/. Distillation is tuned on the
validation split (10% of train) only (`TUNE=1 bench/run_all.sh`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from common import (MNIST_HUB_ID, RESULTS, ROOT, add_result_options, command_line, default_device, describe_machine,
                    resolve_dataset, write_result)

# The CLI's MNIST preset (hf_rtp/presets.py), chosen on the validation split: `hf-rtp distill --dataset
# ylecun/mnist` and this script run the same settings but the budget, which this script's --minutes and --steps set
# (by default the minutes alone, as the rows recorded before the preset had a step budget ran). --settings overrides
# any of them (memory or distill options).
BUDGET = {"memory": dict(num_bases=16, downsample=2, addressing="learned"),
          "per_class": dict(downsample=1, addressing="one_hot")}
RUN_ONLY = ("steps", "max_minutes", "final_models")  # this script sets these itself


def row_key(row: dict) -> tuple:
    """One row per (budget, method, variant): a rerun replaces its row."""
    return row["ipc"], row["method"], row.get("tag", "")


def run(args, device: str) -> dict:
    import torch

    from hf_rtp import AddressableMemory, DistillConfig, distill_memory
    from hf_rtp.configuration_memory import MemoryOptions
    from hf_rtp.data import load_train_test
    from hf_rtp.evaluate import EvalConfig, evaluate_images, evaluate_memory, random_real
    from hf_rtp.options import build
    from hf_rtp.presets import MNIST, PRESETS, PRESETS_BY_IPC

    torch.set_num_threads(args.threads)
    train, test = load_train_test(resolve_dataset(args.dataset))
    train.name = args.dataset  # a local copy has the Hub repo's layout: record the Hub id on the card
    on_cpu = device == "cpu"  # micro-batches and compile pay off on a CPU only
    eval_config = EvalConfig(models=args.models, epochs=args.epochs, seed=args.seed, micro_batch=64 if on_cpu else None, compile=on_cpu)
    # each row keeps its own command and machine: the file gathers many runs
    row = {"ipc": args.ipc, "method": args.method, "command": command_line(), "machine": describe_machine(device),
           "dataset": args.dataset}
    if args.tag:
        row["tag"] = args.tag
    if args.method == "random_real":
        images, labels = random_real(train, args.ipc, args.seed)
        result = evaluate_images(images, labels, test, eval_config, device)
        row.update(accuracy=result.summary(), images=result.images, storage_floats=images[0].numel() * len(images))
        return row

    torch.manual_seed(args.seed)
    preset = {k: v for k, v in PRESETS[MNIST].items() if k not in RUN_ONLY}
    settings = {**preset, **json.loads(args.settings or "{}")}
    # K: --num-bases, else the preset's for this budget (as `hf-rtp distill --ipc N` picks it), else BUDGET's
    by_ipc = PRESETS_BY_IPC[MNIST].get(args.ipc, {}) if args.method == "memory" else {}
    budget = {**settings, **BUDGET[args.method], **by_ipc, **({"num_bases": args.num_bases} if args.num_bases else {}), "ipc": args.ipc}
    options = build(MemoryOptions, budget)
    memory = AddressableMemory.for_dataset(train, **vars(options))
    out = RESULTS / "runs" / f"mnist-ipc{args.ipc:g}-{args.method}{'-' + args.tag if args.tag else ''}"
    resume = args.resume or bool(args.resume_from)
    if args.resume_from:  # continue another run under this run's name, leaving that one as it is
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(args.resume_from, out)
    distill = {k: v for k, v in settings.items() if k in DistillConfig.__dataclass_fields__}
    settings = {**settings, "output_norm": options.output_norm}  # recorded: how the memory recalls
    config = DistillConfig(steps=args.steps, max_minutes=args.minutes, output_dir=str(out), seed=args.seed, final_models=0,
                           progress=not args.no_progress, resume=resume, overwrite_output_dir=not resume, **distill)
    started = time.perf_counter()
    if args.evaluate_run:  # the run finished (elsewhere, or its process was stopped after distilling): evaluate its memory
        if not (out / "memory" / "config.json").exists():
            raise SystemExit(f"--evaluate-run: {out} holds no finished run (no memory/ folder)")
        memory = AddressableMemory.from_pretrained(out / "memory")
        resume = True  # its distillation time is the Distiller's record, not this process's
    else:
        memory = distill_memory(config, memory, train)
    distill_seconds = time.perf_counter() - started
    curve = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [{"minutes": round(c["seconds"] / 60, 3), "val_accuracy": c["val_accuracy"]} for c in curve if "val_accuracy" in c and "seconds" in c]
    if args.validation_only:  # tuning: never look at the test split
        row.update(settings=settings, distillation=memory.config.distillation, curve=curve,
                   best_val_accuracy=memory.config.distillation["val_accuracy"])
        return row
    evaluate_memory(memory, test, eval_config, device=device)
    folder = RESULTS / "memories" / f"mnist-ipc{args.ipc:g}-{args.method}{'-' + args.tag if args.tag else ''}"
    memory.save_pretrained(folder)  # weights, config, model card, pictures
    row.update(
        accuracy=memory.config.evaluation["accuracy"],
        images=memory.config.images_per_query * memory.config.num_classes,
        storage_floats=memory.config.storage_floats(),
        num_bases=memory.config.num_bases, images_per_query=memory.config.images_per_query,
        downsample=memory.config.downsample, settings=settings, distillation=memory.config.distillation,
        # a resumed run's budget counts across resumes: its distillation time is the Distiller's running total
        distill_minutes=memory.config.distillation["minutes"] if resume else round(distill_seconds / 60, 2),
    )
    if resume and not args.evaluate_run:
        row["resumed_minutes"] = round(distill_seconds / 60, 2)  # this process's share
    row.update(curve=curve, memory_folder=str(folder.relative_to(ROOT)))
    return row


def plot(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = json.loads(path.read_text())["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
    for ax, ipc in zip(axes[0], (1, 10)):
        for r in (r for r in rows if r["ipc"] == ipc and "accuracy" in r):
            name = r["method"] + (f", {r['tag']}" if r.get("tag") else "")
            if r.get("curve"):
                ax.plot([c["minutes"] for c in r["curve"]], [100 * c["val_accuracy"] for c in r["curve"]], marker="o",
                        ms=3, label=f"{name} (validation)")
            ax.axhline(100 * r["accuracy"]["mean"], ls="--", lw=1, color=ax.lines[-1].get_color() if r.get("curve") else "grey",
                       label=f"{name}: test {100 * r['accuracy']['mean']:.1f}%")
        ax.set_title(f"MNIST, {ipc} image(s) per class budget")
        ax.set_xlabel("distillation wall-clock minutes (2 CPU cores)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = path.with_name("mnist_accuracy_vs_time.png")
    fig.savefig(out, dpi=100)
    return out


SPEEDUPS = {  # tag -> label: the accuracy-per-CPU-minute comparisons, grouped by the machine each file records
    # side by side on the device's CPU (bench/gpu_checks.sh)
    "old-defaults": "old defaults (random tables, paper recall)",
    "preset": "MNIST preset (real-data start, standardized recall)",
    "preset-no-compile": "MNIST preset, not compiled",
    "preset-T-schedule": "MNIST preset, T from 10 to 50 over 100 steps",
    # one after another, each alone, on the 2-core machine (bench/run_all.sh)
    "preset-2core": "MNIST preset",
    "soft-labels": "MNIST preset + learned soft labels (label lr 0.1)",
    "soft-labels-lr0.01": "MNIST preset + learned soft labels (label lr 0.01)",
    "width64": "MNIST preset, inner ConvNet-64 (validated every 10 steps)",
    "width128": "MNIST preset, inner ConvNet-128 (validated every 5 steps)",
}


def by_machine(runs: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """machine -> {label: record}: only runs on the same machine are compared."""
    groups: dict[str, dict[str, dict]] = {}
    for label, record in runs.items():
        groups.setdefault(record["machine"], {})[label] = record
    return groups


def speedup_runs(results: Path) -> dict[str, dict]:
    """label -> record of the SPEEDUPS runs found in results/speedups/ (one JSON file per run)."""
    runs = {}
    for tag, label in SPEEDUPS.items():
        path = results / "speedups" / f"{tag}.json"
        if path.exists():
            runs[label] = json.loads(path.read_text())
    return runs


def plot_speedups(results: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = by_machine(speedup_runs(results))
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(groups), figsize=(7 * len(groups), 4.5), squeeze=False)
    for ax, (machine, runs) in zip(axes[0], groups.items()):
        for label, r in runs.items():
            curve = r["rows"][0]["curve"]
            ax.plot([c["minutes"] for c in curve], [100 * c["val_accuracy"] for c in curve], marker="o", ms=3, label=label)
        ax.set_title(f"MNIST IPC 1, validation accuracy per CPU-minute (2 threads each)\n{machine}", fontsize=8)
        ax.set_xlabel("distillation wall-clock minutes (compile included)")
        ax.set_ylabel("validation accuracy, ConvNet-32 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = results / "mnist_speedups.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ipc", type=float, default=1)
    parser.add_argument("--method", choices=["memory", "per_class", "random_real"], default="memory")
    parser.add_argument("--minutes", type=float, default=30, help="wall-clock distillation budget")
    parser.add_argument("--steps", type=int, default=100_000,
                        help="outer-step budget (default: %(default)s, i.e. --minutes decides); the run stops at whichever comes first")
    parser.add_argument("--num-bases", type=int, default=None, help="K for --method memory (default: the CLI preset's for --ipc: 16, or 128 at --ipc 10)")
    parser.add_argument("--models", type=int, default=5, help="ConvNet-128s trained for the test evaluation")
    parser.add_argument("--epochs", type=int, default=300, help="epochs per evaluation network")
    parser.add_argument("--settings", default=None, help="JSON overrides of the DistillConfig settings")
    parser.add_argument("--dataset", default=MNIST_HUB_ID, help="default: %(default)s (its local copy when present, see bench/common.py)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--resume", action="store_true", help="continue this run (same --ipc, --method, --tag)")
    parser.add_argument("--resume-from", default=None, metavar="RUN_DIR",
                        help="continue a copy of another run's folder under this run's name (e.g. a longer budget, --tag)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--plot", action="store_true", help="only redraw the accuracy-vs-time PNG")
    parser.add_argument("--tag", default="", help="name of a variant (e.g. a tuning pilot), kept as its own row")
    parser.add_argument("--validation-only", action="store_true", help="tuning run: report validation accuracy only")
    parser.add_argument("--evaluate-run", action="store_true",
                        help="do not distil: evaluate the memory of this run's finished folder (same --ipc, --method, --tag), "
                             "e.g. on a faster machine, and write its row")
    add_result_options(parser, RESULTS / "mnist.json", merge_by_default=True)
    args = parser.parse_args()
    path = Path(args.output)
    if not args.plot:
        device = default_device()  # the Distiller's Accelerator picks the same
        row = run(args, device)
        write_result(path, {"rows": [row]}, args, device=device, row_key=row_key, sort_rows=True)
        if args.validation_only:
            print(f"MNIST ipc {args.ipc:g} {args.method} {args.tag}: best validation {100 * row['best_val_accuracy']:.2f}% "
                  f"after {row['distillation']['outer_steps']} steps")
            return
        acc = row["accuracy"]
        print(f"MNIST ipc {args.ipc:g} {args.method}: {100 * acc['mean']:.2f} +- {100 * acc['std']:.2f}% "
              f"({row['images']} images, {row['storage_floats']} floats)")
    print(f"wrote {plot(path)}")
    speedups = plot_speedups(path.parent)
    if speedups:
        print(f"wrote {speedups}")


if __name__ == "__main__":
    main()
