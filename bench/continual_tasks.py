"""How good is one task's memory? Compress-then-recall on the first tasks of a stream, scored task by task (validation).

    python bench/continual_tasks.py --stream rotations --first-tasks 3
    python bench/continual_tasks.py --stream rotations --first-tasks 3 --tag T50 --settings '{"inner_steps": 50}'

The first `--first-tasks` tasks of the stream stream through compress-then-recall exactly as in bench/continual.py
(same buffer, each memory the share of the buffer it gets in the whole stream), then each task is scored on its own
held-out images (the validation split: tuning never sees the test split) by the network trained from scratch
(`retrain_*` settings, the stream's network) on
- `memory`: that task's memory alone (the per-task recall mode),
- `random_real`: random raw images of that task with the memory's floats (class-balanced, seeded),
- `all_real`: all the task's raw training images (the upper bound of this recipe),
with the CPU-minutes its distillation took. Rows are merged by --tag into
bench/results/continual_tasks_<stream>.json, so every configuration tried stays in the file, the losers too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time

from common import RESULTS, add_result_options, command_line, resolve_dataset, write_result


def main(argv: list[str] | None = None) -> None:
    import torch

    from hf_rtp.continual import CompressThenRecall, ContinualConfig, StreamConfig, retrain, run_stream, task_accuracy
    from hf_rtp.options import add_options, build, given

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser, StreamConfig, skip=("split", "seed"))  # --stream, --dataset, --tasks (of the whole stream), ...
    parser.add_argument("--first-tasks", type=int, default=3, help="tasks distilled and scored, from the start of the stream")
    parser.add_argument("--settings", default="{}", help="ContinualConfig fields as JSON, e.g. '{\"inner_steps\": 50}'")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stream and of the method")
    parser.add_argument("--tag", default="default", help="the row's name; a row with the same tag is replaced")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    add_result_options(parser, None, mergeable=True)
    parser.add_argument("--output", default=None, help="default: bench/results/continual_tasks_<stream>.json")
    args = parser.parse_args(argv)
    if args.first_tasks < 1:
        parser.error("--first-tasks must be >= 1")
    try:
        settings = json.loads(args.settings)
        if not isinstance(settings, dict):
            raise ValueError("--settings must be a JSON object")
        settings.pop("method", None)
        config = ContinualConfig(**{"seed": args.seed, **settings})
        stream_config = build(StreamConfig, {**given(args, StreamConfig), "split": "validation", "seed": args.seed})
    except (ValueError, TypeError) as error:
        parser.error(str(error))
    if args.threads:
        torch.set_num_threads(args.threads)
    named = stream_config.source
    if stream_config.dataset is None and named == "ylecun/mnist":
        stream_config = dataclasses.replace(stream_config, dataset=resolve_dataset(named))  # the local copy
    output = args.output or str(RESULTS / f"continual_tasks_{stream_config.stream}.json")
    args.merge = True

    stream = stream_config.load()
    buffer = config.buffer_for(stream)
    share = config.memory_share or config.default_share(stream)
    first = dataclasses.replace(stream, tasks=stream.tasks[: args.first_tasks])  # same tasks, same angles/permutations
    config = dataclasses.replace(config, memory_share=share)
    method = CompressThenRecall(config, first, buffer)
    started = time.perf_counter()
    result = run_stream(method, first, progress=lambda line: print(f"  {line}", flush=True))
    floats = method.memory_floats
    per_image = stream.image_floats
    tasks = []
    for i, task in enumerate(first.tasks):
        generator = torch.Generator().manual_seed(args.seed + 7919 * (i + 1))
        count = max(1, floats // per_image)
        rows = class_balanced_rows(task.train.labels, count, generator)
        random_net = retrain(config, task.train.images[rows], task.train.labels[rows], stream.num_classes, args.seed)
        all_net = retrain(config, task.train.images, task.train.labels, stream.num_classes, args.seed)
        tasks.append({"task": task.name, "memory": result["per_task"]["accuracy"][i],
                      "random_real": task_accuracy(random_net, task), "random_real_images": count,
                      "all_real": task_accuracy(all_net, task), "all_real_images": len(task.train),
                      "minutes": result["minutes_per_task"][i]})
        print(f"{task.name}: memory {100 * tasks[-1]['memory']:.2f}%  random real ({count} images) "
              f"{100 * tasks[-1]['random_real']:.2f}%  all real {100 * tasks[-1]['all_real']:.2f}%  "
              f"({tasks[-1]['minutes']:.2f} min)", flush=True)
    mean = {key: statistics.mean(t[key] for t in tasks) for key in ("memory", "random_real", "all_real", "minutes")}
    row = {"tag": args.tag, "command": command_line(), "settings": settings, "config": dataclasses.asdict(config),
           "memory_floats": floats, "recalled_images_per_task": result["recalled_images"] // len(first.tasks),
           "joint_retained_accuracy": result["retained_accuracy"], "mean": mean, "tasks": tasks,
           "seconds": time.perf_counter() - started, "threads": torch.get_num_threads()}
    record = {"stream": stream_config.stream, "split": "validation", "dataset": named,
              "first_tasks": args.first_tasks, "buffer_floats": buffer, "rows": [row]}
    write_result(output, record, args, row_key=lambda r: r["tag"])
    print(f"{args.tag}: memory {100 * mean['memory']:.2f}%, random real {100 * mean['random_real']:.2f}%, "
          f"all real {100 * mean['all_real']:.2f}%, {mean['minutes']:.2f} min per task; wrote {output}")


def class_balanced_rows(labels, count: int, generator):
    """`count` rows of `labels`, as even across the classes present as the count allows, seeded."""
    import torch

    classes = labels.unique().tolist()
    order = [torch.nonzero(labels == c).flatten() for c in classes]
    order = [rows[torch.randperm(len(rows), generator=generator)] for rows in order]
    picked = [rows[: count // len(classes) + (1 if i < count % len(classes) else 0)] for i, rows in enumerate(order)]
    return torch.cat(picked)


if __name__ == "__main__":
    main(sys.argv[1:])
