"""Tiny distillation on digits; every rank saves the memory it ends with (for the multi-process tests).

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 tests/scripts/distill_ranks.py OUT 1
    python tests/scripts/distill_ranks.py OUT 2
"""

import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import save_file

from hf_rtp import AddressableMemory, AddressableMemoryConfig
from hf_rtp.data import load_image_dataset
from hf_rtp.distill import DistillConfig
from hf_rtp.pipeline import distill_memory

out, inner_loops = Path(sys.argv[1]), int(sys.argv[2])
accelerator = Accelerator(cpu=True)
train = load_image_dataset("digits")
torch.manual_seed(0)
memory = AddressableMemory(AddressableMemoryConfig.for_budget(train.image_shape, train.class_names, ipc=1, num_bases=8,
                                                              mean=train.mean, std=train.std, dataset_name="digits"))
config = DistillConfig(steps=3, unroll_steps=4, inner_loops=inner_loops, learner_width=8, real_per_class=8,
                       eval_every=0, eval_epochs=2, eval_width=8, checkpoint_every=0, output_dir=str(out / "run"),
                       optimizer="adam", lr=0.01, compile=False, progress=False)
memory = distill_memory(config, memory, train, accelerator=accelerator)
out.mkdir(parents=True, exist_ok=True)
save_file({k: v.contiguous() for k, v in memory.state_dict().items()}, out / f"rank{accelerator.process_index}.safetensors")
print(f"rank {accelerator.process_index} of {accelerator.num_processes} done")
