"""CIFAR-10 IPC 1 end to end: the paper's configuration on a GPU, a reduced one on a CPU.

    python bench/cifar10.py                          # picks `paper` with a GPU, `cpu` otherwise
    accelerate launch bench/cifar10.py --config paper --hours 24
    python bench/cifar10.py --dataset path/to/cifar10-parquet --config cpu --minutes 30

paper (Table 1 / the authors' README command): K=16 bases at ds=2 (r=115), ZCA (0.1), flip_rotate augmentation
shared across each unroll, T=150 inner SGD steps (lr 0.01, momentum 0.9) on 32 recalled images per class, 64 real
images per class, outer SGD lr 0.1 momentum 0.5, clip 2, 50k outer steps; evaluation 10 ConvNet-128s x 300 epochs
with flip_rotate. The paper reports 66.4 +- 0.4%.
cpu: the same memory and preprocessing with a width-32 learner, T=30, 4 recalled and 16 real images per class,
Adam, a wall-clock budget, and 3 x 300-epoch evaluation networks.

Needs the data: `uoft-cs/cifar10` from the Hub (online or cached) or a local folder laid out like it.
Writes bench/results/cifar10.json (or --output) and saves the memory with its model card.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import RESULTS, add_result_options, write_result

# a short run (a check of the GPU path) records the time after each of its first outer steps
TIMED_STEPS = 100
CONFIGS = {
    "paper": dict(distill=dict(steps=50_000, unroll_steps=150, synthetic_per_class=32, real_per_class=64, optimizer="sgd",
                               lr=0.1, momentum=0.5, clip_grad_norm=2.0, augment="flip_rotate", eval_every=500,
                               eval_epochs=300, eval_width=128, checkpoint_every=100),
                  evaluation=dict(models=10, epochs=300, augment="flip_rotate")),
    "cpu": dict(distill=dict(steps=100_000, unroll_steps=30, learner_width=32, synthetic_per_class=4, real_per_class=16,
                             optimizer="adam", lr=0.01, augment="flip_rotate", eval_every=50, eval_epochs=100, eval_width=32,
                             checkpoint_every=50, compile=True),
                evaluation=dict(models=3, epochs=300, augment="flip_rotate", compile=True)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="uoft-cs/cifar10")
    parser.add_argument("--config", choices=sorted(CONFIGS), default=None, help="default: paper with a GPU, else cpu")
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock budget (cpu default 30)")
    parser.add_argument("--hours", type=float, default=None, help="wall-clock budget in hours")
    parser.add_argument("--steps", type=int, default=None, help="outer steps (overrides the config)")
    parser.add_argument("--models", type=int, default=None, help="evaluation networks (overrides the config)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per evaluation network (overrides the config)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the unroll and evaluation (default: the config's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-dir", default=str(RESULTS), help="where runs/ and memories/ go (and cifar10.json by default)")
    parser.add_argument("--no-progress", action="store_true")
    add_result_options(parser)
    parser.add_argument("--output", default=None, help="the JSON to write (default: RESULTS_DIR/cifar10.json)")
    args = parser.parse_args()

    import torch
    from accelerate import Accelerator

    from hf_rtp import AddressableMemory, DistillConfig, distill_memory
    from hf_rtp.data import load_train_test
    from hf_rtp.evaluate import EvalConfig, evaluate_memory

    accelerator = Accelerator()
    name = args.config or ("paper" if torch.cuda.is_available() else "cpu")
    preset = CONFIGS[name]
    minutes = args.hours * 60 if args.hours else args.minutes if args.minutes else (30 if name == "cpu" else None)
    distill = {**preset["distill"], **({"steps": args.steps} if args.steps else {})}
    evaluation = {**preset["evaluation"], **{k: v for k, v in (("models", args.models), ("epochs", args.epochs)) if v}}
    if args.compile is not None:
        distill["compile"] = evaluation["compile"] = args.compile
    train, test = load_train_test(args.dataset, zca=0.1)  # the paper's ZCA for CIFAR-10
    train.name = "uoft-cs/cifar10"
    torch.manual_seed(args.seed)
    memory = AddressableMemory.for_dataset(train, ipc=1, num_bases=16, downsample=2)
    results = Path(args.results_dir)
    out = results / "runs" / f"cifar10-ipc1-{name}"
    config = DistillConfig(max_minutes=minutes, output_dir=str(out), seed=args.seed, progress=not args.no_progress,
                           overwrite_output_dir=True, **distill)
    started = time.perf_counter()
    memory = distill_memory(config, memory, train, accelerator=accelerator)
    seconds = time.perf_counter() - started
    if not accelerator.is_main_process:
        return
    record = evaluate_memory(memory, test, EvalConfig(seed=args.seed, **evaluation), train=train, device=accelerator.device)
    folder = results / "memories" / f"cifar10-ipc1-{name}"
    memory.save_pretrained(folder)  # weights, config, model card, pictures
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    elapsed = [m["seconds"] for m in metrics if "seconds" in m and not m.get("final")][:TIMED_STEPS]
    row = {"config": name, "dataset": args.dataset, "train_images": len(train), "test_images": len(test),
           "distill_minutes": round(seconds / 60, 2), "settings": distill, "evaluation": evaluation, "result": record,
           "paper": {"accuracy": 0.664, "std": 0.004}, "memory_folder": str(folder),
           "elapsed_seconds_after_each_outer_step": elapsed}
    write_result(args.output or results / "cifar10.json", row, args, device=str(accelerator.device))
    acc, real = record["accuracy"], record["random_real"]
    print(f"CIFAR-10 IPC 1 ({name}): distilled {100 * acc['mean']:.2f} +- {100 * acc['std']:.2f}%, random real "
          f"{100 * real['mean']:.2f} +- {100 * real['std']:.2f}% (paper 66.4 +- 0.4%)")


if __name__ == "__main__":
    main()
