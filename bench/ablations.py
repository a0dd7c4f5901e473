"""The paper's findings at CPU scale, each at equal storage budget and equal wall-clock time, over seeds.

    python bench/ablations.py                          # embedded digits, 2 seeds, 1.5 minutes per run
    python bench/ablations.py --dataset ylecun/mnist --ipc 1 --minutes 5 --seeds 0 1   # the local copy when present

| finding (paper) | setting A (paper's choice) | setting B |
|---|---|---|
| momentum helps BPTT (fig 4) | inner momentum 0.9 | 0 |
| long unrolls help (sec 4.2) | T = 50 | T = 10 |
| downsampled bases help (Table 2) | ds = 2 | ds = 1 |
| addressing beats per-class images (Table 2) | learned addressing, K bases | per-class set (one-hot) |

Writes bench/results/ablations.json and prints whether each finding holds here (A's mean above B's by more than
their pooled std).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from common import RESULTS, add_result_options, default_device, resolve_dataset, write_result

BASE = dict(unroll_steps=50, inner_momentum=0.9, learner_width=32, synthetic_per_class=4, real_per_class=32, optimizer="adam",
            lr=0.01, eval_every=25, eval_epochs=100, eval_width=32, checkpoint_every=0)
MEMORY = dict(num_bases=8, downsample=2, addressing="learned")
ABLATIONS = [
    ("momentum (fig 4)", {}, {"inner_momentum": 0.0}),
    ("long unroll (sec 4.2)", {}, {"unroll_steps": 10}),
    ("downsampled bases (Table 2)", {}, {"memory": {"downsample": 1}}),
    ("addressing vs per-class (Table 2)", {}, {"memory": {"addressing": "one_hot", "downsample": 1}}),
]


def one_run(dataset, ipc, settings, memory_kwargs, minutes, seed, eval_config, out, device="cpu"):
    import torch

    from hf_rtp import AddressableMemory, DistillConfig, distill_memory
    from hf_rtp.evaluate import evaluate_recalled

    train, test = dataset
    torch.manual_seed(seed)
    memory = AddressableMemory.for_dataset(train, ipc=ipc, **memory_kwargs)
    config = DistillConfig(steps=100_000, max_minutes=minutes, seed=seed, output_dir=str(out), progress=False,
                           overwrite_output_dir=True, **settings)
    memory = distill_memory(config, memory, train)
    result = evaluate_recalled(memory, test, eval_config, device)
    return {"accuracy": result.mean, "runs": result.runs, "outer_steps": memory.config.distillation["outer_steps"],
            "storage_floats": memory.config.storage_floats(), "images": result.images}


def _run_in_process(job: dict) -> dict:
    """One (setting, seed) run in a process of its own (--parallel): loads the data itself, few threads each."""
    import torch

    from hf_rtp.data import load_train_test

    torch.set_num_threads(job.pop("threads"))
    return one_run(load_train_test(resolve_dataset(job.pop("dataset_name"))), **job)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", help="digits, ylecun/mnist (its local copy when present) or any dataset name")
    parser.add_argument("--ipc", type=float, default=2, help="budget in images per class (2 lets ds=1 fit on digits)")
    parser.add_argument("--minutes", type=float, default=1.5, help="wall-clock distillation budget per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--models", type=int, default=3, help="ConvNet-128s per evaluation")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--only", nargs="*", default=None, help="run only ablations whose name starts with these words")
    parser.add_argument("--parallel", type=int, default=1,
                        help="runs at a time, each in its own process (on a GPU all runs can share it at once: equal time, "
                             "equal contention); 1 runs them one after another in this process")
    parser.add_argument("--device", default=None, help="where the evaluation networks train (default: cuda if available)")
    parser.add_argument("--runs-dir", default=str(RESULTS / "runs"), help="where each run's checkpoints and metrics go")
    add_result_options(parser, RESULTS / "ablations.json")
    args = parser.parse_args()

    from hf_rtp.data import load_train_test
    from hf_rtp.evaluate import EvalConfig

    device = args.device or default_device()
    eval_config = EvalConfig(models=args.models, epochs=args.epochs, compile=False, progress=False)
    chosen = [(name, a, b) for name, a, b in ABLATIONS if not args.only or any(name.startswith(w) for w in args.only)]
    settings_of: dict[str, tuple[dict, dict]] = {}  # setting A is the same run for every finding
    for _, a, b in chosen:
        for override in (a, b):
            settings = {**BASE, **{k: v for k, v in override.items() if k != "memory"}}
            memory_kwargs = {**MEMORY, **override.get("memory", {})}
            settings_of.setdefault(json.dumps([settings, memory_kwargs], sort_keys=True), (settings, memory_kwargs))
    jobs = [dict(ipc=args.ipc, settings=settings, memory_kwargs=memory_kwargs, minutes=args.minutes, seed=seed,
                 eval_config=eval_config, out=Path(args.runs_dir) / f"ablation-{i}-{seed}", device=device)
            for i, (settings, memory_kwargs) in enumerate(settings_of.values()) for seed in args.seeds]
    if args.parallel > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        threads = max(1, (os.cpu_count() or 1) // args.parallel)
        with ProcessPoolExecutor(args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_run_in_process, [{**job, "dataset_name": args.dataset, "threads": threads} for job in jobs]))
    else:
        dataset = load_train_test(resolve_dataset(args.dataset))
        results = [one_run(dataset, **job) for job in jobs]
    by_key: dict[str, list[dict]] = {}
    for job, result in zip(jobs, results):
        by_key.setdefault(json.dumps([job["settings"], job["memory_kwargs"]], sort_keys=True), []).append(result)

    rows = []
    for name, a, b in chosen:
        summary = {"finding": name}
        for label, override in (("A", a), ("B", b)):
            settings = {**BASE, **{k: v for k, v in override.items() if k != "memory"}}
            memory_kwargs = {**MEMORY, **override.get("memory", {})}
            runs = by_key[json.dumps([settings, memory_kwargs], sort_keys=True)]
            accs = [r["accuracy"] for r in runs]
            summary[label] = {"settings": settings, "memory": memory_kwargs, "mean": float(np.mean(accs)),
                              "std": float(np.std(accs)), "seeds": runs}
            print(f"{name:36s} {label}: {100 * summary[label]['mean']:.2f} +- {100 * summary[label]['std']:.2f}%", flush=True)
        gap = summary["A"]["mean"] - summary["B"]["mean"]
        pooled = float(np.sqrt((summary["A"]["std"] ** 2 + summary["B"]["std"] ** 2) / 2))
        summary["holds"] = bool(gap > pooled)
        summary["gap"] = gap
        rows.append(summary)

    print(f"\n{'finding':36s} {'A (paper)':>16s} {'B':>16s}  holds here")
    for r in rows:
        print(f"{r['finding']:36s} {100 * r['A']['mean']:7.2f} +- {100 * r['A']['std']:4.2f} {100 * r['B']['mean']:7.2f} +- "
              f"{100 * r['B']['std']:4.2f}  {'yes' if r['holds'] else 'no'}")
    record = {"dataset": args.dataset, "ipc": args.ipc, "minutes_per_run": args.minutes, "seeds": args.seeds,
              "parallel": args.parallel, "evaluation": f"{args.models} ConvNet-128 x {args.epochs} epochs, test split", "rows": rows}
    write_result(args.output, record, args, device=device)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
