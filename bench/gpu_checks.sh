#!/usr/bin/env bash
# The checks that need a GPU, as one script for a lent device machine (one NVIDIA GPU, no network):
#   1. bench/unroll.py on CUDA: engine vs whole-graph reference, T in 10 50 150 (alone: it is timed);
#   2. bench/cross_arch.py with per-student recipes on the MNIST IPC 1 and IPC 10 memories;
#   3. bench/ablations.py on MNIST IPC 1 (ds=2 vs 1, addressing vs per-class), every (setting, seed) run at once in
#      its own process, so all share the GPU equally for the same wall-clock budget;
#   4. bench/cifar10.py with the paper's configuration for a few outer steps on a stand-in CIFAR layout (no CIFAR
#      download is possible there): proves the GPU path end to end and times the paper's outer step.
# Carried beside the tree (git-ignored): .whl (datasets, transformers, timm ... wheels the image lacks or has older),
# .whl4 (datasets 4 in case the image's pyarrow is too old for datasets 5), .gpudata/mnist (the MNIST parquet).
# Results land in $OUT (at most 8 files come back). SMOKE=1 runs it all tiny on a CPU, to test this script.
set -u
OUT=${OUT:-/tmp/gpu_checks}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
say() { echo "== $(date +%T) $*" | tee -a "$LOG"; }

install() {  # $1: wheel folder
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$1"/*.whl >>"$LOG" 2>&1
}
preflight() {
    $PY - >>"$LOG" 2>&1 <<'EOF'
import numpy as np, torch, transformers, datasets, huggingface_hub, timm, accelerate, pyarrow
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
print("transformers", transformers.__version__, "datasets", datasets.__version__, "hub", huggingface_hub.__version__,
      "timm", timm.__version__, "accelerate", accelerate.__version__, "pyarrow", pyarrow.__version__)
from hf_rtp import AddressableMemory
from hf_rtp.data import load_train_test
train, test = load_train_test(".gpudata/mnist")
print("mnist", len(train), len(test))
memory = AddressableMemory.from_pretrained("bench/results/memories/mnist-ipc1-memory")
print("recall", memory.recall(preview=True))
EOF
}

if [ -z "${SMOKE:-}" ]; then
    say "install"
    install .whl
    export PYTHONPATH=/tmp/site:$PWD
    if ! preflight; then
        say "preflight failed with datasets 5; trying datasets 4"
        rm -rf /tmp/site/datasets* /tmp/site/dill* /tmp/site/multiprocess* /tmp/site/_multiprocess*
        install .whl4
        preflight || { say "preflight failed"; tail -40 "$LOG"; exit 3; }
    fi
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$LOG" 2>&1
    DEVICE=cuda
    UNROLL=(--steps 10 50 150 --repeats 3)
    CROSS=(--models 5 --epochs 300)
    CIFAR=(--config paper --steps 4 --models 2)
    ABL=(--minutes 3 --seeds 0 1 --parallel 6)
else
    export PYTHONPATH=$PWD
    preflight || { tail -40 "$LOG"; exit 3; }
    DEVICE=cpu
    UNROLL=(--steps 2 3 --repeats 1)
    CROSS=(--models 1 --epochs 2 --students ConvNet-128 --recipes protocol)
    CIFAR=(--config cpu --steps 1 --models 1 --epochs 2 --no-compile)
    ABL=(--minutes 0.05 --seeds 0 --parallel 3 --models 1 --epochs 2)
fi
tail -8 "$LOG"

say "unroll ($DEVICE)"
timeout 170 $PY bench/unroll.py --device $DEVICE --impl engine reference "${UNROLL[@]}" --output "$OUT/unroll_cuda.json" >>"$LOG" 2>&1 \
    || say "unroll failed or timed out"

say "ablations, cross-arch and cifar10 stand-in (concurrently)"
$PY - <<'EOF' >>"$LOG" 2>&1
# A stand-in with CIFAR-10's Hub layout (uoft-cs/cifar10: img, label): random pixels, for the code path and timing only.
import numpy as np
from datasets import ClassLabel, Dataset, Features, Image
names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
rng = np.random.default_rng(0)
import os
os.makedirs("/tmp/cifar_standin/plain_text", exist_ok=True)
for split, n in (("train", 1000), ("test", 200)):
    Dataset.from_dict({"img": list(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)), "label": np.arange(n) % 10},
                      features=Features({"img": Image(), "label": ClassLabel(names=names)})
                      ).to_parquet(f"/tmp/cifar_standin/plain_text/{split}-00000-of-00001.parquet")
EOF
export OMP_NUM_THREADS=2  # nine processes share the machine's 16 cores
(timeout 330 $PY bench/ablations.py --dataset .gpudata/mnist --ipc 1 --only downsampled addressing "${ABL[@]}" \
    --output "$OUT/ablations_mnist.json" >"$OUT/ablations.log" 2>&1 || echo "ablations failed or timed out" >>"$OUT/ablations.log") &
(timeout 330 $PY bench/cross_arch.py bench/results/memories/mnist-ipc1-memory --dataset .gpudata/mnist --device $DEVICE "${CROSS[@]}" \
    --output "$OUT/cross_arch.json" >"$OUT/cross_ipc1.log" 2>&1 || echo "cross-arch ipc1 failed or timed out" >>"$OUT/cross_ipc1.log") &
(timeout 330 $PY bench/cross_arch.py bench/results/memories/mnist-ipc10-memory --dataset .gpudata/mnist --device $DEVICE "${CROSS[@]}" \
    --output "$OUT/cross_arch_ipc10.json" >"$OUT/cross_ipc10.log" 2>&1 || echo "cross-arch ipc10 failed or timed out" >>"$OUT/cross_ipc10.log") &
(timeout 300 $PY bench/cifar10.py --dataset /tmp/cifar_standin "${CIFAR[@]}" --no-progress --results-dir /tmp/cifar_out \
    >"$OUT/cifar.log" 2>&1 || echo "cifar10 stand-in failed or timed out" >>"$OUT/cifar.log"
 cp /tmp/cifar_out/cifar10.json "$OUT/cifar10_standin.json" 2>/dev/null
 cp /tmp/cifar_out/runs/cifar10-ipc1-*/metrics.jsonl "$OUT/cifar10_standin_metrics.jsonl" 2>/dev/null) &
wait
for f in ablations cross_ipc1 cross_ipc10 cifar; do echo "--- $f" >>"$LOG"; grep -v "it/s\]$" "$OUT/$f.log" | tail -60 >>"$LOG"; rm -f "$OUT/$f.log"; done
say "done"
grep -E "^ *T=|/ reference|/ plain|peak T=|test |CIFAR-10|\(Table 2\) |failed|Error" "$LOG" | tail -60
ls "$OUT"
