"""Re-score a saved compress-then-recall bank, in both recall modes, from the stream its bank.json records.

    python bench/continual_bank.py bench/results/memories/continual-rotations-bank
    python bench/continual_bank.py BANK --retrain-epochs 300 --retrain-lr 0.03 --tag e300-lr0.03 --output OUT.json

Rebuilds every task's test set (the recorded source's test split, or its validation share, under each task's
recorded rotation or permutation), retrains the stream's network on the bank's recall with ContinualConfig's
`retrain_*` settings (`joint`: one network on everything, scored on every task; `per-task`: one network per task
memory, each task scored by its own) and prints RA. With the run's settings and seed, a bank scores what its run
reported; with others, this is how the retraining recipe is tuned on a validation bank without distilling again.
`--output` (no default: a committed result is never overwritten unasked) merges one row per --tag.
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
    add_result_options(parser, None, mergeable=True)
    parser.add_argument("--output", default=None, help="merge a row into this JSON (default: print only)")
    args = parser.parse_args(argv)
    try:
        config = build(ContinualConfig, given(args, ContinualConfig))
        bank = MemoryBank.from_pretrained(args.bank)
    except Exception as error:  # a bad option or bank: one line, exit 2
        parser.error(str(error))
    if bank.stream is None:
        parser.error(f"{args.bank}: its bank.json records no stream, so its test sets cannot be rebuilt")
    dataset = args.dataset or (resolve_dataset(bank.stream["dataset"]) if bank.stream["dataset"] == "ylecun/mnist" else None)
    started = time.perf_counter()
    scored = score_bank(bank, config, dataset)
    for mode in ("joint", "per-task"):
        print(f"{args.bank} ({bank.stream['stream']}, {bank.stream['split']} split, {len(bank)} tasks) {mode}: "
              f"RA {100 * scored[mode]['retained_accuracy']:.2f}%")
    if args.output:
        args.merge = True
        row = {"tag": args.tag, "command": command_line(), "config": dataclasses.asdict(config), **scored,
               "seconds": time.perf_counter() - started}
        record = {"bank": args.bank, "stream": bank.stream["stream"], "split": bank.stream["split"], "rows": [row]}
        write_result(args.output, record, args, row_key=lambda r: r["tag"])
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main(sys.argv[1:])
