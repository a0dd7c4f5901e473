#!/usr/bin/env bash
# Every benchmark behind the README's results section, in order, refreshing the README tables as it goes
# (about 3.5 hours on 2 CPU cores; each line also runs on its own). Run on a quiet machine: budgets are wall-clock.
# IPC 1 runs get 30 minutes of distillation, IPC 10 runs 20 minutes each (so the chain fits one working session).
# The settings were tuned on the validation split by bench/tune_mnist.sh. The GPU rows of the README (unroll on
# CUDA, MNIST ablations, cross-architecture with recipe selection, the CIFAR-10 paper configuration) come from
# bench/gpu_checks.sh, run on a lent GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
python bench/main_job.py
python bench/mnist.py --ipc 1 --method random_real --no-progress
python bench/mnist.py --ipc 1 --method memory --minutes 30 --no-progress
python bench/mnist.py --ipc 1 --method per_class --minutes 30 --no-progress
python bench/report.py
python bench/unroll.py
python bench/ablations.py
python bench/report.py
python bench/mnist.py --ipc 10 --method random_real --no-progress
python bench/mnist.py --ipc 10 --method memory --num-bases 128 --minutes 20 --no-progress
python bench/mnist.py --ipc 10 --method per_class --minutes 20 --no-progress
python bench/report.py
cp -r bench/results/runs/mnist-ipc10-memory bench/results/runs/mnist-ipc10-memory-70min
python bench/mnist.py --ipc 10 --method memory --num-bases 128 --minutes 70 --no-progress --resume --tag 70min
python bench/cross_arch.py bench/results/memories/mnist-ipc1-memory --students resnet10t --recipes "protocol, standardized" \
    --models 2 --device cpu --title "resnet10t with the standardize fix, on a CPU" --output bench/results/cross_arch_standardized.json
python bench/report.py
