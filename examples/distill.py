"""Distil a dataset into an addressable memory with the Python API; runs on one CPU, one GPU or many.

    python examples/distill.py --dataset digits --steps 100
    accelerate launch examples/distill.py --dataset ylecun/mnist --ipc 1 --max-minutes 30
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/distill.py   # 2 CPU processes

Every DistillConfig field is an option (see --help). Each process runs its own unroll(s) per outer step;
their meta-gradients are averaged, so N processes give N times the unrolls per step.
"""

import argparse
import dataclasses

import torch
from accelerate import Accelerator

from hf_rtp import AddressableMemory, DistillConfig, Distiller
from hf_rtp.cli import add_dataclass_options
from hf_rtp.data import load_train_test
from hf_rtp.evaluate import EvalConfig, evaluate_memory
from hf_rtp.hub import write_model_card

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--dataset", default="digits", help="Hub id, local folder, or `digits` (embedded)")
parser.add_argument("--ipc", type=float, default=1.0, help="storage budget in images per class")
parser.add_argument("--num-bases", type=int, default=8, help="K shared bases")
parser.add_argument("--downsample", type=int, default=2, help="bases stored at 1/ds resolution")
parser.add_argument("--eval-final-models", type=int, default=5, help="networks for the final test evaluation")
add_dataclass_options(parser, DistillConfig)
args = parser.parse_args()

accelerator = Accelerator()
train, test = load_train_test(args.dataset)

# The same seed on every process gives every rank the same starting memory.
config = DistillConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DistillConfig) if hasattr(args, f.name)})
torch.manual_seed(config.seed)
memory = AddressableMemory.for_dataset(train, ipc=args.ipc, num_bases=args.num_bases, downsample=args.downsample)

memory = Distiller(config, memory, train, accelerator=accelerator).train()  # best by validation

if accelerator.is_main_process:
    record = evaluate_memory(memory, test, EvalConfig(models=args.eval_final_models, seed=config.seed, augment=config.augment),
                             train=train, device=accelerator.device)
    folder = f"{config.output_dir}/memory"
    memory.save_pretrained(folder)
    write_model_card(memory, folder)
    print(f"distilled: {100 * record['accuracy']['mean']:.2f}%  random real: {100 * record['random_real']['mean']:.2f}%"
          f"  -> {folder}")
