"""Continual learning on a task stream (sec 5.2, Table 3): compress-then-recall against the baselines, one buffer.

    python bench/continual.py --stream rotations --methods online replay ewc compress-then-recall --seeds 0 1 2
    python bench/continual.py --stream permutations --split validation --methods replay --lr 0.03 --tag lr0.03

Every method sees the same stream (seeded; one pass, minibatches of 10) with the same network (La-MAML's MLP,
2 x 100 hidden units, unless --learner) and the same buffer in floats (La-MAML's: 200 images = 156,800 floats for
rotations/permutations, 500 = 392,000 for many); the buffer is checked after every minibatch. Reported per method:
retained accuracy (RA, mean final accuracy over the tasks) and backward transfer (BTI over the first T-1 tasks, as
GEM and La-MAML define it, where a network exists after each task), mean +- std over --seeds (seed s draws the
stream and the method's inits), minutes per task of compress-then-recall's distillation. Compress-then-recall gives
two rows from the same memories: `joint` (one network trained on everything the bank recalls, scored on every
task) and `per-task` (one network per task memory, each task scored by its own: this assumes the task's identity
at test time). Options are ContinualConfig's and StreamConfig's fields. Writes bench/results/continual_<stream>.json
(the validation split: continual_<stream>_validation.json); rows are merged by name (the method's, plus --tag).
`--save-bank DIR` keeps the first seed's bank of memories, with the stream's definition in its bank.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

from common import RESULTS, add_result_options, command_line, repo_relative, resolve_dataset, write_result


def main(argv: list[str] | None = None) -> None:
    from hf_rtp.continual import StreamConfig
    from hf_rtp.continual import METHODS, ContinualConfig, make_method, run_stream
    from hf_rtp.options import add_options, build, given
    from hf_rtp.outer_step import NonFiniteError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser, StreamConfig, skip=("seed",))
    add_options(parser, ContinualConfig, skip=("seed", "method"))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to run, one row each")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed (stream and inits)")
    parser.add_argument("--tag", default=None, help="added to each row's name (the method's), e.g. lr0.03; a row with the same name is replaced")
    parser.add_argument("--grid", default=None, help="a JSON object of ContinualConfig fields to lists of values, e.g. "
                        "'{\"lr\": [0.03, 0.1], \"ewc_lambda\": [10, 100]}': one row per method and combination, "
                        "tagged by it (lr0.03-ewc_lambda10); how the baselines are tuned on the validation split")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--plot", action="store_true", help="only redraw the per-task pictures of the test-split JSONs")
    parser.add_argument("--save-bank", default=None, help="save the first seed's compress-then-recall bank here (bank.json "
                                                          "records the stream: task_test_set rebuilds its test sets)")
    add_result_options(parser, None, mergeable=True)
    parser.add_argument("--output", default=None, help="the JSON to write (default: bench/results/continual_<stream>[_validation].json)")
    args = parser.parse_args(argv)
    if args.plot:
        from hf_rtp.continual import STREAMS

        for path in sorted(RESULTS / f"continual_{stream}.json" for stream in STREAMS):
            if path.exists():  # the streams' test-split tables (not their validation or per-task pilots)
                print(f"wrote {plot(str(path))}")
        return
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    values = {**given(args, StreamConfig), **given(args, ContinualConfig)}
    try:
        stream_config = build(StreamConfig, values)
        grid = grid_points(args.grid)
        method_configs = {(m, tag): build(ContinualConfig, {**values, **point, "method": m})
                          for m in args.methods for tag, point in grid}
    except ValueError as error:
        parser.error(str(error))
    named = stream_config.source  # what results record: the Hub id, or the path given (relative to the repo)
    if stream_config.dataset is None and stream_config.source == "ylecun/mnist":
        stream_config = dataclasses.replace(stream_config, dataset=resolve_dataset("ylecun/mnist"))  # the local copy
    suffix = "_validation" if stream_config.split == "validation" else ""
    output = args.output or str(RESULTS / f"continual_{stream_config.stream}{suffix}.json")
    args.merge = True  # a table of rows, one per method or tag

    rows = []
    record = {"stream": stream_config.stream, "split": stream_config.split, "dataset": repo_relative(named) if named != "ylecun/mnist" else named,
              "tasks": stream_config.num_tasks, "rows": rows}
    for (method, point_tag), method_config in method_configs.items():
        runs, diverged = [], None
        for seed in args.seeds:
            stream = dataclasses.replace(stream_config, seed=seed).load()
            config = dataclasses.replace(method_config, seed=seed)
            started = time.perf_counter()
            learner = make_method(config, stream)
            try:
                result = run_stream(learner, stream,
                                    progress=lambda line: print(f"  {method} seed {seed}: {line}", flush=True))
            except NonFiniteError as error:
                if not args.grid:
                    raise
                diverged = str(error)  # a grid point that diverges is a result too: recorded, and the grid goes on
                print(f"{stream.name} {method} seed {seed}: {diverged}", flush=True)
                break
            result["seed"] = seed
            runs.append(result)
            if args.save_bank and method == "compress-then-recall" and seed == args.seeds[0]:
                for task, accuracy in zip(stream.tasks, result["accuracy"]):
                    learner.bank.accuracy[task.name] = accuracy
                learner.bank.stream["dataset"] = named  # the Hub id, not this machine's copy of it
                learner.bank.save_pretrained(args.save_bank, pictures=False)  # 100 tasks' pictures: 80 MB
                result["bank"] = repo_relative(args.save_bank)
            print(f"{stream.name} {method} seed {seed}: RA {100 * result['retained_accuracy']:.2f}%"
                  + (f", BTI {100 * result['backward_transfer']:.2f}" if "backward_transfer" in result else "")
                  + f" ({time.perf_counter() - started:.0f} s)", flush=True)
        tag = " ".join(t for t in (method, args.tag, point_tag) if t)
        if diverged:
            rows.append({"tag": tag, "method": method, "command": command_line(), "config": dataclasses.asdict(method_config),
                         "stream_config": dataclasses.asdict(stream_config), "diverged": diverged})
            write_result(output, record, args, row_key=lambda r: r["tag"])
            continue
        ra = [r["retained_accuracy"] for r in runs]
        row = {"tag": tag, "method": method, "command": command_line(),
               "recall_mode": "joint" if method == "compress-then-recall" else None,
               "config": dataclasses.asdict(method_config), "stream_config": dataclasses.asdict(stream_config),
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
        if "per_task" in runs[0]:  # the same memories, each task scored by the network of its own memory
            own = [r["per_task"]["retained_accuracy"] for r in runs]
            rows.append({**{k: v for k, v in row.items() if k != "runs"}, "tag": f"{row['tag']} (per-task)",
                         "recall_mode": "per-task", "assumes": "the task's identity at test time",
                         "retained_accuracy": {"mean": statistics.mean(own), "std": statistics.pstdev(own), "runs": own},
                         "runs": [{**r, "accuracy": r["per_task"]["accuracy"], "retained_accuracy": r["per_task"]["retained_accuracy"]}
                                  for r in runs]})
        write_result(output, record, args, row_key=lambda r: r["tag"])
    if stream_config.split == "test":
        print(f"wrote {output} and {plot(output)}")
    else:
        print(f"wrote {output}")


def grid_points(grid: str | None) -> list[tuple[str, dict]]:
    """(tag, fields) for every combination of the --grid lists; [("", {})] without a grid."""
    import itertools
    import json

    if not grid:
        return [("", {})]
    try:
        spec = json.loads(grid)
    except ValueError as error:
        raise ValueError(f"--grid is not JSON: {error}") from error
    if not isinstance(spec, dict) or not spec or not all(isinstance(v, list) and v for v in spec.values()):
        raise ValueError("--grid must be a JSON object of field names to non-empty lists of values")
    points = []
    for values in itertools.product(*spec.values()):
        point = dict(zip(spec, values))
        points.append(("-".join(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in point.items()), point))
    return points


def plot(path: str) -> str:
    """Final accuracy on each task (mean over seeds) for every method in the JSON at `path`, as a PNG beside it."""
    import json
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = json.loads(Path(path).read_text())
    fig, ax = plt.subplots(figsize=(12, 4.2))
    colors = plt.get_cmap("tab20").colors  # one colour per row: the default cycle repeats after 10
    for i, row in enumerate(record["rows"]):
        per_task = [statistics.mean(values) for values in zip(*(run["accuracy"] for run in row["runs"]))]
        ra = row["retained_accuracy"]["mean"]
        ax.plot(range(1, len(per_task) + 1), [100 * a for a in per_task], marker=".", color=colors[i % len(colors)],
                linestyle="--" if row.get("recall_mode") == "per-task" else "-", label=f"{row['tag']} (RA {100 * ra:.1f})")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("task (in stream order)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"{record['stream']}: accuracy on each task after the whole stream, one buffer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves, not over them
    fig.tight_layout()
    out = str(Path(path).with_suffix(".png"))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
