"""Re-score a saved compress-then-recall bank, in both recall modes, from the stream its bank.json records.

    python bench/continual_bank.py bench/results/memories/continual-rotations-bank
    python bench/continual_bank.py BANK --retrain-epochs 300 --retrain-lr 0.03 --tag e300-lr0.03 --output OUT.json

Rebuilds every task's test set (the recorded source's test split, or its validation share, under each task's
recorded rotation or permutation), retrains the stream's network on the bank's recall (`joint`: one network on
everything, scored on every task; `per-task`: one network per task memory, each task scored by its own) and prints
RA. The recipe is the one bank.json records (the run's network, `retrain_*` settings and seed; ContinualConfig's
defaults for a bank saved before banks recorded it), so a bank scores what its run reported; options given
(`--retrain-lr 0.03`) replace it: this is how the retraining recipe is tuned on a validation bank without distilling
again.
`--projected` also scores both modes' networks on each task's test images projected onto the span of its memory's
recall: what the networks know of each task, apart from the part of a test image no recall spans.
`--real-per-task N [N ...]` also trains the same network, with the same recipe, on N random raw training images of
each task (the stream rebuilt from bank.json's definition): the joint and per-task numbers real data of known size
gives, next to the memories'. `--output` (no default: a committed result is never overwritten unasked) merges one
row per --tag (real-data rows: `real N per task`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from common import add_result_options, command_line, resolve_dataset, write_result


def main(argv: list[str] | None = None) -> None:
    from hf_rtp import MemoryBank
    from hf_rtp.continual import ContinualConfig, score_bank
    from hf_rtp.options import add_options, build, given

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bank", help="a bank folder or Hub id saved by compress-then-recall")
    add_options(parser, ContinualConfig, skip=("method",))
    parser.add_argument("--dataset", default=None, help="a local copy of the recorded source (default: the local "
                                                        "MNIST for ylecun/mnist when present)")
    parser.add_argument("--tag", default="as run", help="the row's name in --output")
    parser.add_argument("--real-per-task", type=int, nargs="+", default=[], help="also score N random raw images per task")
    parser.add_argument("--projected", action="store_true", help="also score both modes' networks on each task's test "
                        "images projected onto the span of its memory's recall (what the rest of a test image costs)")
    add_result_options(parser, None, mergeable=True)
    parser.add_argument("--output", default=None, help="merge a row into this JSON (default: print only)")
    args = parser.parse_args(argv)
    try:
        bank = MemoryBank.from_pretrained(args.bank)
        try:  # the recipe the bank's run retrained with (bank.json's `recipe`), unless an option says otherwise
            build(ContinualConfig, bank.recipe or {})
        except Exception as error:
            raise ValueError(f"{args.bank}: the retraining recipe its bank.json records is not valid: {error}") from error
        config = build(ContinualConfig, {**(bank.recipe or {}), **given(args, ContinualConfig)})
    except Exception as error:  # a bad option or bank: one line, exit 2
        parser.error(str(error))
    if bank.stream is None:
        parser.error(f"{args.bank}: its bank.json records no stream, so its test sets cannot be rebuilt")
    dataset = args.dataset or (resolve_dataset(bank.stream["dataset"]) if bank.stream["dataset"] == "ylecun/mnist" else None)
    started = time.perf_counter()
    scored = score_bank(bank, config, dataset, projected=args.projected)
    for mode in ("joint", "per-task"):
        print(f"{args.bank} ({bank.stream['stream']}, {bank.stream['split']} split, {len(bank)} tasks) {mode}: "
              f"RA {100 * scored[mode]['retained_accuracy']:.2f}%"
              + (f"; on the test images projected onto their memory's span "
                 f"{100 * scored['projected'][mode]['retained_accuracy']:.2f}%" if args.projected else ""))
    rows = [{"tag": args.tag, "command": command_line(), "config": dataclasses.asdict(config), **scored,
             "seconds": time.perf_counter() - started}]
    for count in args.real_per_task:
        real = score_real(bank.stream, config, count, dataset)
        for mode in ("joint", "per-task"):
            print(f"{count} raw images per task, {mode}: RA {100 * real[mode]['retained_accuracy']:.2f}%")
        rows.append({"tag": f"real {count} per task", "command": command_line(), "config": dataclasses.asdict(config),
                     "real_per_task": count, **real})
    if args.output:
        args.merge = True
        record = {"bank": args.bank, "stream": bank.stream["stream"], "split": bank.stream["split"], "rows": rows}
        write_result(args.output, record, args, row_key=lambda r: r["tag"])
        print(f"wrote {args.output}")


def score_real(definition: dict, config, count: int, dataset: str | None) -> dict:
    """Joint and per-task RA of the stream's network trained (config's retrain_* recipe) on `count` random raw
    training images of each task, the stream rebuilt from its definition (same seed: same tasks)."""
    import torch

    from hf_rtp.continual import StreamConfig, retained_accuracy, retrain, task_accuracy

    stream = StreamConfig(stream=definition["stream"], dataset=dataset or definition["dataset"], split=definition["split"],
                          seed=int(definition["seed"]), tasks=len(definition["tasks"]),
                          samples_per_task=definition["tasks"][0]["train_images"],
                          test_per_task=definition.get("test_per_task")).load()
    generator = torch.Generator().manual_seed(config.seed)
    picked = []
    for task in stream.tasks:
        rows = torch.randperm(len(task.train), generator=generator)[:count]
        picked.append((task.train.images[rows], task.train.labels[rows]))
    joint = retrain(config, torch.cat([x for x, _ in picked]), torch.cat([y for _, y in picked]), stream.num_classes, config.seed)
    together = [task_accuracy(joint, task) for task in stream.tasks]
    own = [task_accuracy(retrain(config, x, y, stream.num_classes, config.seed), task)
           for (x, y), task in zip(picked, stream.tasks)]
    return {"tasks": [t.name for t in stream.tasks],
            "joint": {"accuracy": together, "retained_accuracy": retained_accuracy(together)},
            "per-task": {"accuracy": own, "retained_accuracy": retained_accuracy(own)}}


if __name__ == "__main__":
    main(sys.argv[1:])
