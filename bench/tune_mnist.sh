#!/usr/bin/env bash
# Tuning pilots for bench/mnist.py's CPU settings: 5 minutes each, validation split only (no test evaluation).
set -euo pipefail
cd "$(dirname "$0")/.."
T=bench/results/mnist_tuning.json
python bench/mnist.py --ipc 1 --minutes 5 --validation-only --output $T --no-progress --tag w32-T50-s4-adam
python bench/mnist.py --ipc 1 --minutes 5 --validation-only --output $T --no-progress --tag w32-T20-s8-adam \
  --settings '{"unroll_steps": 20, "synthetic_per_class": 8}'
python bench/mnist.py --ipc 1 --minutes 5 --validation-only --output $T --no-progress --tag w32-T50-s4-sgd \
  --settings '{"optimizer": "sgd", "lr": 0.1, "momentum": 0.5}'
python bench/mnist.py --ipc 1 --minutes 5 --validation-only --output $T --no-progress --tag w64-T50-s4-adam \
  --settings '{"learner_width": 64}'
# IPC 10: how many bases (r = 102 images per class with K=64, 41 with K=128)
python bench/mnist.py --ipc 10 --minutes 5 --validation-only --output $T --no-progress --tag K64 --num-bases 64
python bench/mnist.py --ipc 10 --minutes 5 --validation-only --output $T --no-progress --tag K128 --num-bases 128
