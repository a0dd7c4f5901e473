"""New classifiers from separate memories (sec 5.3.1): classes distilled in different tasks, never seen together,
recalled from their own memories into one training set.

    python bench/extrapolation.py                                  # MNIST: five 2-way tasks {0,1}, {2,3}, ...
    python bench/extrapolation.py --dataset uoft-cs/cifar100 --task-size 5 --tasks 20 --samples 1000

Each task's classes are distilled alone into a memory of `--ipc` images per class (compress-then-recall's task
distiller, `TaskDistiller`: `--steps` outer steps on batches of the task's training images, the network below as
the inner learner), and the memories go into one `MemoryBank` (saved under bench/results/memories/). Then new tasks
are built from classes of different memories: every 2-way pair of classes from two tasks and every 5-way set with
one class from each of five tasks (or `--samples` of them, seeded). For each, a fresh network (La-MAML's MLP, 2 x 100,
unless --learner) trains on (a) the bank's recall of those classes, (b) random real training images of the same
storage (`--ipc` per class), (c) all real training images of those classes, and is scored on their test images.
Mean +- std over the sampled tasks. Writes bench/results/extrapolation.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import sys
import time

from common import RESULTS, add_result_options, command_line, repo_relative, resolve_dataset, write_result


def main(argv: list[str] | None = None) -> None:
    import torch

    from hf_rtp import MemoryBank
    from hf_rtp.continual import ContinualConfig, TaskDistiller, inner_loop, retrain
    from hf_rtp.data import load_train_test
    from hf_rtp.evaluate import accuracy_on, dataset_tensors
    from hf_rtp.options import add_options, build, given

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ylecun/mnist")
    parser.add_argument("--task-size", type=int, default=2, help="classes per distilled task")
    parser.add_argument("--tasks", type=int, default=None, help="distilled tasks (default: all classes / task size)")
    parser.add_argument("--ipc", type=float, default=10, help="storage of each memory, in images per class")
    parser.add_argument("--steps", type=int, default=300, help="outer steps per distilled task")
    parser.add_argument("--ways", type=int, nargs="+", default=[2, 5], help="sizes of the new tasks")
    parser.add_argument("--samples", type=int, default=None, help="new tasks per size (default: all of them)")
    parser.add_argument("--full-epochs", type=int, default=10, help="epochs of the network on all real images")
    parser.add_argument("--bank", default=str(RESULTS / "memories" / "mnist-2way-bank"), help="where the bank is saved")
    parser.add_argument("--seed", type=int, default=0)
    add_options(parser, ContinualConfig, skip=("method", "buffer_floats", "memory_share", "seed", "lr", "replay_batch",
                                               "ewc_lambda", "steps_per_batch", "final_steps"))
    add_result_options(parser, RESULTS / "extrapolation.json")
    args = parser.parse_args(argv)
    try:
        config = build(ContinualConfig, {**given(args, ContinualConfig), "seed": args.seed})
    except ValueError as error:
        parser.error(str(error))

    train, test = load_train_test(resolve_dataset(args.dataset), zca=False)
    generator = torch.Generator().manual_seed(args.seed)
    n_tasks = args.tasks or train.num_classes // args.task_size
    if n_tasks * args.task_size > train.num_classes or n_tasks < max(args.ways):
        parser.error(f"{n_tasks} tasks of {args.task_size} classes do not fit {train.num_classes} classes, or are fewer "
                     f"than the largest new task ({max(args.ways)} classes from different tasks)")
    groups = [list(range(t * args.task_size, (t + 1) * args.task_size)) for t in range(n_tasks)]
    floats_per_task = int(args.ipc * args.task_size * train.images[0].numel())
    inner = inner_loop(config, train.image_shape, train.num_classes)
    bank = MemoryBank()
    minutes = []
    for t, classes in enumerate(groups):
        started = time.perf_counter()
        mine = torch.cat([train.per_class_indices()[c] for c in classes])
        images, labels = train.images[mine], train.labels[mine]
        distiller = TaskDistiller(config, images, labels, classes, [train.class_names[c] for c in classes],
                                  floats_per_task, inner, generator, train.mean, train.std, train.num_classes,
                                  (config.num_bases or 16, config.downsample or 2))
        for step in range(args.steps):
            rows = torch.randperm(len(mine), generator=generator)[: config.real_per_step]
            loss = distiller.step(images[rows], labels[rows])
        name = "task-" + "-".join(train.class_names[c] for c in classes)
        bank.add(name, distiller.finish())
        minutes.append((time.perf_counter() - started) / 60)
        print(f"{name}: {args.steps} steps in {minutes[-1]:.1f} min (last loss {loss:.3f})", flush=True)
    bank.save_pretrained(args.bank)

    def scored(images, labels, classes, seed) -> float:
        position = {c: i for i, c in enumerate(classes)}
        net = retrain(config, images, torch.tensor([position[int(y)] for y in labels]), len(classes), seed)
        rows = torch.cat([test.per_class_indices()[c] for c in classes])
        return accuracy_on(net, test.images[rows], torch.tensor([position[int(y)] for y in test.labels[rows]]))

    full_config = dataclasses.replace(config, retrain_epochs=args.full_epochs)
    rows_out = []
    record = {"dataset": args.dataset, "task_size": args.task_size, "tasks": [bank.memories[n].config.class_names
                                                                              for n in bank.tasks],
              "ipc": args.ipc, "memory_floats": [bank.memories[n].config.storage_floats() for n in bank.tasks],
              "steps": args.steps, "minutes_per_task": minutes, "learner": config.learner,
              "config": dataclasses.asdict(config), "bank": repo_relative(args.bank), "rows": rows_out}
    for way in args.ways:
        choices = [list(c) for tasks in itertools.combinations(groups, way) for c in itertools.product(*tasks)]
        if args.samples is not None and args.samples < len(choices):
            keep = torch.randperm(len(choices), generator=torch.Generator().manual_seed(args.seed + way))[: args.samples]
            choices = [choices[int(i)] for i in keep]
        results: dict[str, list[float]] = {"memories": [], "random real": [], "full real": []}
        for i, classes in enumerate(choices):
            names = [train.class_names[c] for c in classes]
            recalled = bank.recall(classes=names)
            x, y_local = dataset_tensors(recalled)
            results["memories"].append(scored(x, torch.tensor(classes)[y_local], classes, args.seed + i))
            per_class = max(1, round(args.ipc))
            picks = torch.cat([train.per_class_indices()[c][torch.randperm(len(train.per_class_indices()[c]),
                                                                              generator=generator)[:per_class]]
                               for c in classes])
            results["random real"].append(scored(train.images[picks], train.labels[picks], classes, args.seed + i))
            everything = torch.cat([train.per_class_indices()[c] for c in classes])
            position = {c: j for j, c in enumerate(classes)}
            net = retrain(full_config, train.images[everything],
                          torch.tensor([position[int(y)] for y in train.labels[everything]]), len(classes), args.seed + i)
            test_rows = torch.cat([test.per_class_indices()[c] for c in classes])
            results["full real"].append(accuracy_on(net, test.images[test_rows],
                                                    torch.tensor([position[int(y)] for y in test.labels[test_rows]])))
            print(f"{way}-way {names}: " + ", ".join(f"{k} {100 * v[-1]:.1f}" for k, v in results.items()), flush=True)
        row = {"way": way, "new_tasks": len(choices), "command": command_line()}
        for key, values in results.items():
            row[key] = {"mean": statistics.mean(values), "std": statistics.pstdev(values), "runs": values}
        rows_out.append(row)
        print(f"{way}-way over {len(choices)} new tasks: " + ", ".join(
            f"{k} {100 * row[k]['mean']:.2f} +- {100 * row[k]['std']:.2f}%" for k in results), flush=True)
        write_result(args.output, record, args)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main(sys.argv[1:])
