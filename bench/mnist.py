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

# CPU settings chosen on the validation split (bench/results/mnist_tuning.json, from `TUNE=1 bench/run_all.sh`): a
# narrow learner in the inner loop buys many more outer steps per hour; the memory is still evaluated by ConvNet-128s.
CPU_SETTINGS = dict(unroll_steps=50, learner_width=32, synthetic_per_class=4, real_per_class=32, optimizer="adam",
                    lr=0.01, eval_every=100, eval_epochs=150, eval_width=32, checkpoint_every=50, compile=True)
BUDGET = {"memory": dict(num_bases=16, downsample=2, addressing="learned"),
          "per_class": dict(downsample=1, addressing="one_hot")}


def row_key(row: dict) -> tuple:
    """One row per (budget, method, variant): a rerun replaces its row."""
    return row["ipc"], row["method"], row.get("tag", "")


def run(args, device: str) -> dict:
    import torch

    from hf_rtp import AddressableMemory, DistillConfig, Distiller
    from hf_rtp.data import load_train_test
    from hf_rtp.evaluate import EvalConfig, evaluate_images, evaluate_memory, random_real

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
    budget = {**BUDGET[args.method], **({"num_bases": args.num_bases} if args.num_bases else {})}
    memory = AddressableMemory.for_dataset(train, ipc=args.ipc, **budget)
    out = RESULTS / "runs" / f"mnist-ipc{args.ipc:g}-{args.method}{'-' + args.tag if args.tag else ''}"
    resume = args.resume or bool(args.resume_from)
    if args.resume_from:  # continue another run under this run's name, leaving that one as it is
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(args.resume_from, out)
    settings = {**CPU_SETTINGS, **json.loads(args.settings or "{}")}
    config = DistillConfig(steps=100_000, max_minutes=args.minutes, output_dir=str(out), seed=args.seed,
                           progress=not args.no_progress, resume=resume, overwrite_output_dir=not resume, **settings)
    started = time.perf_counter()
    memory = Distiller(config, memory, train).train()
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
    if resume:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ipc", type=float, default=1)
    parser.add_argument("--method", choices=["memory", "per_class", "random_real"], default="memory")
    parser.add_argument("--minutes", type=float, default=30, help="wall-clock distillation budget")
    parser.add_argument("--num-bases", type=int, default=None, help="K for --method memory (default 16)")
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


if __name__ == "__main__":
    main()
