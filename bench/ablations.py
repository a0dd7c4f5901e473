"""The paper's findings at CPU scale, each at equal storage budget and equal wall-clock time, over seeds.

    python bench/ablations.py                          # embedded digits, 2 seeds, 1.5 minutes per run
    python bench/ablations.py --dataset ../shared/data/mnist --ipc 1 --minutes 5 --seeds 0 1

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
import platform
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
BASE = dict(unroll_steps=50, inner_momentum=0.9, learner_width=32, synthetic_per_class=4, real_per_class=32, optimizer="adam",
            lr=0.01, eval_every=25, eval_epochs=100, eval_width=32, checkpoint_every=0)
MEMORY = dict(num_bases=8, downsample=2, addressing="learned")
ABLATIONS = [
    ("momentum (fig 4)", {}, {"inner_momentum": 0.0}),
    ("long unroll (sec 4.2)", {}, {"unroll_steps": 10}),
    ("downsampled bases (Table 2)", {}, {"memory": {"downsample": 1}}),
    ("addressing vs per-class (Table 2)", {}, {"memory": {"addressing": "one_hot", "downsample": 1}}),
]


def one_run(dataset, ipc, settings, memory_kwargs, minutes, seed, eval_config, out):
    import torch

    from hf_rtp import AddressableMemory, DistillConfig, Distiller
    from hf_rtp.evaluate import evaluate_recalled

    train, test = dataset
    torch.manual_seed(seed)
    memory = AddressableMemory.for_dataset(train, ipc=ipc, **memory_kwargs)
    config = DistillConfig(steps=100_000, max_minutes=minutes, seed=seed, output_dir=str(out), progress=False,
                           overwrite_output_dir=True, **settings)
    memory = Distiller(config, memory, train).train()
    result = evaluate_recalled(memory, test, eval_config)
    return {"accuracy": result.mean, "runs": result.runs, "outer_steps": memory.config.distillation["outer_steps"],
            "storage_floats": memory.config.storage_floats(), "images": result.images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--ipc", type=float, default=2, help="budget in images per class (2 lets ds=1 fit on digits)")
    parser.add_argument("--minutes", type=float, default=1.5, help="wall-clock distillation budget per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--models", type=int, default=3, help="ConvNet-128s per evaluation")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--only", nargs="*", default=None, help="run only ablations whose name starts with these words")
    parser.add_argument("--output", default=str(RESULTS / "ablations.json"))
    args = parser.parse_args()

    import torch

    from hf_rtp.data import load_train_test
    from hf_rtp.evaluate import EvalConfig

    dataset = load_train_test(args.dataset)
    eval_config = EvalConfig(models=args.models, epochs=args.epochs, compile=False, progress=False)
    cache: dict[str, dict] = {}
    rows = []
    for name, a, b in ABLATIONS:
        if args.only and not any(name.startswith(w) for w in args.only):
            continue
        summary = {"finding": name}
        for label, override in (("A", a), ("B", b)):
            settings = {**BASE, **{k: v for k, v in override.items() if k != "memory"}}
            memory_kwargs = {**MEMORY, **override.get("memory", {})}
            key = json.dumps([settings, memory_kwargs], sort_keys=True)
            if key not in cache:  # setting A is the same run for every finding
                runs = [one_run(dataset, args.ipc, settings, memory_kwargs, args.minutes, seed, eval_config,
                                RESULTS / "runs" / f"ablation-{len(cache)}-{seed}") for seed in args.seeds]
                accs = [r["accuracy"] for r in runs]
                cache[key] = {"settings": settings, "memory": memory_kwargs, "mean": float(np.mean(accs)),
                              "std": float(np.std(accs)), "seeds": runs}
            summary[label] = cache[key]
            print(f"{name:36s} {label}: {100 * cache[key]['mean']:.2f} +- {100 * cache[key]['std']:.2f}%", flush=True)
        gap = summary["A"]["mean"] - summary["B"]["mean"]
        pooled = float(np.sqrt((summary["A"]["std"] ** 2 + summary["B"]["std"] ** 2) / 2))
        summary["holds"] = bool(gap > pooled)
        summary["gap"] = gap
        rows.append(summary)

    print(f"\n{'finding':36s} {'A (paper)':>16s} {'B':>16s}  holds here")
    for r in rows:
        print(f"{r['finding']:36s} {100 * r['A']['mean']:7.2f} +- {100 * r['A']['std']:4.2f} {100 * r['B']['mean']:7.2f} +- "
              f"{100 * r['B']['std']:4.2f}  {'yes' if r['holds'] else 'no'}")
    record = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, no GPU",
              "command": "python bench/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "dataset": args.dataset, "ipc": args.ipc, "minutes_per_run": args.minutes, "seeds": args.seeds,
              "evaluation": f"{args.models} ConvNet-128 x {args.epochs} epochs, test split", "rows": rows}
    Path(args.output).write_text(json.dumps(record, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
