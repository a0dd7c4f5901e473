"""Cross-architecture evaluation: train different students from scratch on a memory distilled with the ConvNet.

    python bench/cross_arch.py bench/results/memories/mnist-ipc1-memory            # GPU if present, else CPU
    python bench/cross_arch.py user/mnist-ipc1 --models 3 --epochs 300 --students resnet10t MLP

Students: the ConvNet-128 the memory was distilled with, timm's resnet10t, a small timm ViT (ViT-tiny width, 4
blocks, 4x4 patches), a 2-layer MLP (2 x 100 hidden units, the continual-learning learner), and the same ViT trained
with DSA's digit augmentation. Each student has ONE
recipe (RECIPES below), used for the memory's recalled images and for random real images of the same budget alike,
with no rescaling of either: a memory must train a student with that student's usual recipe. `--split validation`
scores on the 10% of train the Distiller validated on (for choosing between memories), else the test split.
Writes bench/results/cross_arch.json; `--merge` adds students to a file (a rerun of a student replaces its row).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import RESULTS, add_result_options, command_line, default_device, resolve_dataset, write_result

STUDENTS = {
    "ConvNet-128": dict(learner="convnet"),
    "resnet10t": dict(learner="resnet10t"),
    "ViT-small/4": dict(learner="vit_tiny_patch16_224", learner_kwargs={"patch_size": 4, "depth": 4}),
    "MLP": dict(learner="mlp"),
    # the same ViT with DSA's digit augmentation on every batch (the usual way to train a ViT from few images)
    "ViT-small/4 + DSA": dict(learner="vit_tiny_patch16_224", learner_kwargs={"patch_size": 4, "depth": 4}),
}
# One recipe per student, the same for both training sets: the RTP protocol (SGD lr 0.01, momentum 0.9, constant)
# for the ConvNet, the ResNet and the MLP; AdamW with warm-up and cosine decay for the ViT, which does not train from
# scratch with plain SGD.
RECIPES = {
    "ConvNet-128": ("protocol", {}),
    "resnet10t": ("protocol", {}),
    "ViT-small/4": ("adamw 1e-3, cosine, 10% warm-up, wd 0.05", dict(optimizer="adamw", lr=1e-3, weight_decay=0.05,
                                                                   schedule="cosine", warmup=0.1)),
    "MLP": ("protocol", {}),
    "ViT-small/4 + DSA": ("adamw 1e-3, cosine, 10% warm-up, wd 0.05, DSA digits augmentation",
                          dict(optimizer="adamw", lr=1e-3, weight_decay=0.05, schedule="cosine", warmup=0.1, augment="digits")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("memory", help="saved memory folder or Hub id")
    parser.add_argument("--dataset", default=None, help="test dataset (default: the memory's; the local copy of MNIST when present)")
    parser.add_argument("--models", type=int, default=5, help="students trained and tested per (student, training set)")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--students", nargs="*", default=None, help="subset of: " + ", ".join(STUDENTS))
    parser.add_argument("--split", choices=["test", "validation"], default="test",
                        help="score on the test split, or on the validation split (10%% of train, seed 0) to compare memories")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--title", default="", help="what this run adds, for the results table's heading")
    parser.add_argument("--checkpoint", type=int, default=None, metavar="STEP",
                        help="score the memory of outer step STEP instead: `memory` is then a run folder's memory/, and "
                             "the tables come from that run's checkpoints/step-STEP (a run kept with --keep-checkpoints)")
    add_result_options(parser, RESULTS / "cross_arch.json", mergeable=True)
    args = parser.parse_args()
    unknown = sorted(set(args.students or []) - set(STUDENTS))
    if unknown:
        parser.error(f"unknown student(s) {unknown}; students are: {', '.join(STUDENTS)}")

    from hf_rtp import AddressableMemory
    from hf_rtp.data import load_train_test
    from hf_rtp.evaluate import EvalConfig, evaluate_images, random_real, recalled_tensors

    device = args.device or default_device()
    memory = AddressableMemory.from_pretrained(args.memory)
    if args.checkpoint is not None:  # the same memory (config, recall) with the tables of an earlier outer step
        from hf_rtp.run_dir import RunDirectory

        run = RunDirectory(Path(args.memory).parent)
        try:
            checkpoint = run.checkpoint_at(args.checkpoint)
        except Exception as error:  # a truncated or non-finite checkpoint: one line that names it
            parser.error(f"--checkpoint {args.checkpoint}: unreadable checkpoint in {run.path}: {error}")
        if checkpoint is None:
            parser.error(f"--checkpoint {args.checkpoint}: {run.path} kept no checkpoint of that step "
                         f"(kept: {', '.join(p.name for p in run.checkpoints()) or 'none'})")
        memory.load_state_dict(checkpoint.memory, strict=True)
    dataset = resolve_dataset(args.dataset or memory.config.dataset_name)
    train, test = load_train_test(dataset, space=memory.pixel_space())
    train, validation = train.split_validation(0.1, seed=0)  # the split the Distiller validated on (seed 0)
    scored_on = validation if args.split == "validation" else test
    ipc = memory.config.budget_ipc()
    sets = {"distilled": recalled_tensors(memory), "random_real": random_real(train, ipc)}
    rows: list[dict] = []
    scored = {}
    if args.checkpoint is not None:
        scored["checkpoint"] = args.checkpoint
        # what the Distiller's own validation said at that step, recorded next to the students' scores
        try:
            logged = run.metrics()
        except ValueError as error:  # a corrupt line before the last: name the file, not a traceback
            parser.error(f"--checkpoint {args.checkpoint}: unreadable {run.metrics_path}: {error}")
        validated = [m["val_accuracy"] for m in logged if m.get("step") == args.checkpoint and "val_accuracy" in m]
        if validated:
            scored["distiller_val_accuracy"] = validated[-1]
    record = {"title": args.title, "memory": args.memory, **scored, "dataset": memory.config.dataset_name, "ipc": ipc,
              "epochs": args.epochs, "split": args.split, "output_norm": memory.config.output_norm, "rows": rows,
              # how the memory was distilled bears on which students it trains (the inner learner, the augmentation)
              "distilled_with": {"inner_learner": (memory.config.distillation or {}).get("inner_learner", "convnet"),
                                 "augment": (memory.config.distillation or {}).get("augment")}}
    for student in [s for s in STUDENTS if not args.students or s in args.students]:
        base = STUDENTS[student]
        recipe_name, recipe = RECIPES[student]
        recipe = dict(recipe)
        warmup = int(recipe.pop("warmup", 0) * args.epochs)
        # compile pays off for the ConvNet on a CPU; on a GPU it costs more than it saves here
        config = EvalConfig(models=args.models, epochs=args.epochs, progress=False, warmup_epochs=warmup,
                            compile=device == "cpu" and base["learner"] == "convnet", **base, **recipe)
        row = {"student": student, "learner": base["learner"], "learner_kwargs": base.get("learner_kwargs", {}),
               "recipe": recipe_name, "recipe_settings": RECIPES[student][1]}
        for name, (x, y) in sets.items():
            result = evaluate_images(x, y, scored_on, config, device)
            row[name] = result.summary()
            print(f"{student:12s} {name:11s} {args.split} {result}  (recipe: {recipe_name})", flush=True)
        row.update(models=args.models, command=command_line())
        rows.append(row)
        # after every student: a run cut off by a time limit keeps its rows
        write_result(args.output, record, args, device=device, row_key=lambda r: r["student"])
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
