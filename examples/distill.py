"""Distil a dataset into an addressable memory with the Python API; runs on one CPU, one GPU or many.

    python examples/distill.py                                   # the embedded digits, with its preset (minutes)
    accelerate launch examples/distill.py --dataset ylecun/mnist --ipc 1 --max-minutes 30
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/distill.py   # 2 CPU processes

It takes the options of `hf-rtp distill` (the same dataclasses and the same per-dataset presets; see --help) and
leaves the same run folder: settings.json, metrics.jsonl, checkpoints/ and memory/ with its model card. Each process
runs its own unroll(s) per outer step; their meta-gradients are averaged, so N processes give N times the unrolls.
"""

import argparse
from pathlib import Path

from accelerate import Accelerator

from hf_rtp import distill_dataset
from hf_rtp.presets import add_run_options, resolve_run_options

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
add_run_options(parser)
data_config, memory_options, config = resolve_run_options(parser.parse_args())
accelerator = Accelerator(log_with=None if config.report_to == "none" else config.report_to, project_dir=config.output_dir)

# Loads the data, sizes a memory for its budget (ipc, num_bases, downsample, ...), trains it, keeps the best memory
# by validation, evaluates it on the test split and writes <output_dir>/memory: the pipeline `hf-rtp distill` runs.
memory = distill_dataset(data_config, memory_options, config, accelerator)

if accelerator.is_main_process and memory.config.evaluation:
    record = memory.config.evaluation
    print(f"distilled: {100 * record['accuracy']['mean']:.2f}%  random real: {100 * record['random_real']['mean']:.2f}%"
          f"  -> {Path(config.output_dir) / 'memory'}")
