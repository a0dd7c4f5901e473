#!/usr/bin/env bash
# Set up a device machine for bench/gpu_checks.sh: a GPU box reached with a copy of this tree, usually without network.
#   bash bench/provision_device.sh && source /tmp/hf_rtp-venv/bin/activate
# Makes a venv at $VENV (default /tmp/hf_rtp-venv: outside the tree, which is copied back and forth) that sees the
# image's own torch and CUDA (--system-site-packages: CUDA wheels are too big to carry), then installs into it
#   - the wheels carried in .whl (the libraries the image lacks or has older: datasets, transformers, timm, ...), with
#     hf_rtp imported from this tree; or, with no wheels carried, this package and its dependencies from the index;
# and checks the result: the imports, the MNIST parquet ($HF_RTP_MNIST_DIR, else .gpudata/mnist when carried) and a
# saved memory. If that check fails with the carried datasets (datasets 5 needs a newer pyarrow than some images
# have), it retries with the wheels carried in .whl4 (datasets 4). A venv that passes the check already is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-/tmp/hf_rtp-venv}
PY=${PY:-python3}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
if [ -z "${HF_RTP_MNIST_DIR:-}" ] && [ -d .gpudata/mnist ]; then
    export HF_RTP_MNIST_DIR=$PWD/.gpudata/mnist  # bench/common.py resolves ylecun/mnist to it
fi

check() {
    "$VENV/bin/python" - <<'EOF'
import sys

import accelerate, datasets, huggingface_hub, numpy, pyarrow, timm, torch, transformers

print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
print("transformers", transformers.__version__, "datasets", datasets.__version__, "hub", huggingface_hub.__version__,
      "timm", timm.__version__, "accelerate", accelerate.__version__, "pyarrow", pyarrow.__version__, "numpy", numpy.__version__)
sys.path.insert(0, "bench")
from common import MNIST_HUB_ID, resolve_dataset

from hf_rtp import AddressableMemory
from hf_rtp.data import load_train_test

train, test = load_train_test(resolve_dataset(MNIST_HUB_ID))
print("mnist", resolve_dataset(MNIST_HUB_ID), len(train), len(test))
print("recall", AddressableMemory.from_pretrained("bench/results/memories/mnist-ipc1-memory").recall(preview=True))
EOF
}

install_wheels() {  # $1: a folder of wheels; --ignore-installed: the carried version wins over the image's
    "${PIP[@]}" install -q --no-index --no-deps --ignore-installed --no-compile "$1"/*.whl
}

if [ -x "$VENV/bin/python" ] && check; then
    echo "provision: $VENV is ready"
    exit 0
fi
if "$PY" -m venv --system-site-packages "$VENV"; then
    PIP=("$VENV/bin/python" -m pip)
else  # an image without ensurepip: a venv without pip, filled by the image's pip
    "$PY" -m venv --without-pip --system-site-packages "$VENV"
    PIP=("$PY" -m pip --python "$VENV/bin/python")
fi
if compgen -G ".whl/*.whl" >/dev/null; then
    install_wheels .whl
    # hf_rtp from this tree through a .pth file: an offline venv may lack the build backend an install needs
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$PWD" >"$site/hf_rtp_tree.pth"
else
    "${PIP[@]}" install -q -e .
fi
if ! check; then
    [ -d .whl4 ] || { echo "provision: the check failed"; exit 3; }
    echo "provision: the check failed with the carried datasets; trying .whl4 (datasets 4)"
    "${PIP[@]}" uninstall -y -q datasets dill multiprocess || true
    install_wheels .whl4
    check || { echo "provision: the check failed with datasets 4 too"; exit 3; }
fi
echo "provision: $VENV is ready"
