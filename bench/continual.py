"""Continual learning on a task stream (sec 5.2, Table 3): compress-then-recall against the baselines, one buffer.

    python bench/continual.py --stream rotations --methods online replay ewc compress-then-recall --seeds 0 1 2
    python bench/continual.py --stream permutations --split validation --methods replay --lr 0.03 --tag lr0.03

Every method sees the same stream (seeded; one pass, minibatches of 10) with the same network (La-MAML's MLP,
2 x 100 hidden units, unless --learner) and the same buffer in floats (La-MAML's: 200 images = 156,800 floats for
rotations/permutations, 500 = 392,000 for many); the buffer is checked after every minibatch. Reported per method:
retained accuracy (RA, mean final accuracy over the tasks) and backward transfer (BTI, where a network exists after
each task), mean +- std over --seeds (seed s draws the stream and the method's inits), minutes per task of
compress-then-recall's distillation. Options are ContinualConfig's and StreamConfig's fields. Writes
bench/results/continual_<stream>.json (the validation split: continual_<stream>_validation.json); rows are merged
by name (the method's, plus --tag).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

from common import RESULTS, add_result_options, command_line, resolve_dataset, write_result


def main(argv: list[str] | None = None) -> None:
    from hf_rtp.continual import StreamConfig
    from hf_rtp.continual import METHODS, ContinualConfig, make_method, run_stream
    from hf_rtp.options import add_options, build, given

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser, StreamConfig, skip=("seed",))
    add_options(parser, ContinualConfig, skip=("seed", "method"))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to run, one row each")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed (stream and inits)")
    parser.add_argument("--tag", default=None, help="added to each row's name (the method's), e.g. lr0.03; a row with the same name is replaced")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--plot", action="store_true", help="only redraw the per-task pictures of the test-split JSONs")
    add_result_options(parser, None, mergeable=True)
    parser.add_argument("--output", default=None, help="the JSON to write (default: bench/results/continual_<stream>[_validation].json)")
    args = parser.parse_args(argv)
    if args.plot:
        for path in sorted(RESULTS.glob("continual_*.json")):
            if not path.stem.endswith("_validation"):
                print(f"wrote {plot(str(path))}")
        return
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    values = {**given(args, StreamConfig), **given(args, ContinualConfig)}
    try:
        stream_config = build(StreamConfig, values)
        method_configs = {m: build(ContinualConfig, {**values, "method": m}) for m in args.methods}
    except ValueError as error:
        parser.error(str(error))
    if stream_config.dataset is None and stream_config.source == "ylecun/mnist":
        stream_config = dataclasses.replace(stream_config, dataset=resolve_dataset("ylecun/mnist"))  # the local copy
    suffix = "_validation" if stream_config.split == "validation" else ""
    output = args.output or str(RESULTS / f"continual_{stream_config.stream}{suffix}.json")
    args.merge = True  # a table of rows, one per method or tag

    rows = []
    record = {"stream": stream_config.stream, "split": stream_config.split, "dataset": stream_config.source,
              "tasks": stream_config.num_tasks, "rows": rows}
    for method in args.methods:
        runs = []
        for seed in args.seeds:
            stream = dataclasses.replace(stream_config, seed=seed).load()
            config = dataclasses.replace(method_configs[method], seed=seed)
            started = time.perf_counter()
            result = run_stream(make_method(config, stream), stream,
                                progress=lambda line: print(f"  {method} seed {seed}: {line}", flush=True))
            result["seed"] = seed
            runs.append(result)
            print(f"{stream.name} {method} seed {seed}: RA {100 * result['retained_accuracy']:.2f}%"
                  + (f", BTI {100 * result['backward_transfer']:.2f}" if "backward_transfer" in result else "")
                  + f" ({time.perf_counter() - started:.0f} s)", flush=True)
        ra = [r["retained_accuracy"] for r in runs]
        row = {"tag": f"{method} {args.tag}" if args.tag else method, "method": method, "command": command_line(),
               "config": dataclasses.asdict(method_configs[method]), "stream_config": dataclasses.asdict(stream_config),
               "buffer_floats": runs[0]["buffer_floats"], "state_floats": runs[0]["state_floats"],
               "retained_accuracy": {"mean": statistics.mean(ra), "std": statistics.pstdev(ra), "runs": ra},
               "runs": runs}
        if "backward_transfer" in runs[0]:
            bti = [r["backward_transfer"] for r in runs]
            row["backward_transfer"] = {"mean": statistics.mean(bti), "std": statistics.pstdev(bti), "runs": bti}
        if "minutes_per_task" in runs[0]:
            minutes = [m for r in runs for m in r["minutes_per_task"]]
            row["minutes_per_task"] = {"mean": statistics.mean(minutes), "max": max(minutes)}
            row["memory_floats"] = runs[0]["memory_floats"][0]
        rows.append(row)
        write_result(output, record, args, row_key=lambda r: r["tag"])
    if stream_config.split == "test":
        print(f"wrote {output} and {plot(output)}")
    else:
        print(f"wrote {output}")


def plot(path: str) -> str:
    """Final accuracy on each task (mean over seeds) for every method in the JSON at `path`, as a PNG beside it."""
    import json
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = json.loads(Path(path).read_text())
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for row in record["rows"]:
        per_task = [statistics.mean(values) for values in zip(*(run["accuracy"] for run in row["runs"]))]
        ra = row["retained_accuracy"]["mean"]
        ax.plot(range(1, len(per_task) + 1), [100 * a for a in per_task], marker=".", label=f"{row['tag']} (RA {100 * ra:.1f})")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("task (in stream order)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"{record['stream']}: accuracy on each task after the whole stream, one buffer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = str(Path(path).with_suffix(".png"))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
