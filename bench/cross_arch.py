"""Cross-architecture evaluation: train different students from scratch on a memory distilled with the ConvNet.

    python bench/cross_arch.py bench/results/memories/mnist-ipc1-memory
    python bench/cross_arch.py user/mnist-ipc1 --models 3 --epochs 300

Students: the ConvNet-128 the memory was distilled with, timm's resnet10t, and a small ViT (vit_tiny with 4x4
patches for 28/32 px images, 4 blocks); the same students on random real images of the same budget give the baseline.
Writes bench/results/cross_arch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
STUDENTS = [
    ("ConvNet-128", dict(learner="convnet")),
    ("resnet10t", dict(learner="resnet10t")),
    # 4 blocks instead of 12: at 4x4 patches a full ViT-tiny costs 20+ CPU-minutes per student on 290 images.
    ("ViT-tiny/4, 4 blocks", dict(learner="vit_tiny_patch16_224", learner_kwargs={"patch_size": 4, "depth": 4})),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("memory", help="saved memory folder or Hub id")
    parser.add_argument("--dataset", default=None, help="test dataset (default: the memory's; a local copy of MNIST is used when present)")
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--students", nargs="*", default=None, help="subset of: " + ", ".join(n for n, _ in STUDENTS))
    parser.add_argument("--output", default=str(RESULTS / "cross_arch.json"))
    args = parser.parse_args()

    import torch

    from hf_rtp import AddressableMemory
    from hf_rtp.data import load_train_test
    from hf_rtp.evaluate import EvalConfig, evaluate_images, evaluate_recalled, random_real

    memory = AddressableMemory.from_pretrained(args.memory)
    dataset = args.dataset or memory.config.dataset_name
    local = Path(__file__).parent.parent.parent / "shared" / "data" / "mnist"
    if dataset == "ylecun/mnist" and local.exists():
        dataset = str(local)
    train, test = load_train_test(dataset, zca=memory.zca() or False)
    ipc = memory.config.ipc or memory.config.budget_ipc()
    real_images, real_labels = random_real(train, ipc)
    rows = []
    for name, kwargs in STUDENTS:
        if args.students and name not in args.students:
            continue
        config = EvalConfig(models=args.models, epochs=args.epochs, compile=kwargs["learner"] == "convnet", **kwargs)
        distilled = evaluate_recalled(memory, test, config)
        real = evaluate_images(real_images, real_labels, test, config)
        rows.append({"student": name, "distilled": distilled.summary(), "random_real": real.summary()})
        print(f"{name:12s} distilled {distilled}   random real {real}", flush=True)
    record = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, no GPU",
              "command": "python bench/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "memory": args.memory,
              "dataset": memory.config.dataset_name, "ipc": ipc, "models": args.models, "epochs": args.epochs, "rows": rows}
    Path(args.output).write_text(json.dumps(record, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
