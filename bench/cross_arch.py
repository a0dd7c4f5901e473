"""Cross-architecture evaluation: train different students from scratch on a memory distilled with the ConvNet.

    python bench/cross_arch.py bench/results/memories/mnist-ipc1-memory            # GPU if present, else CPU
    python bench/cross_arch.py user/mnist-ipc1 --models 3 --epochs 300 --students resnet10t

Students: the ConvNet-128 the memory was distilled with, timm's resnet10t and a ViT-tiny with 4x4 patches. Each
student has a few candidate training recipes (below): the ConvNet's own SGD protocol, and the recipes such networks
need from scratch (AdamW with warm-up and cosine decay; a stride-32 ResNet sees the images upsampled so its last
maps are not 1x1). The recipe is chosen per student and per training set on a validation split held out of the
training data (never the test split), then `--models` fresh students are trained with it and tested. The same is
done for random real images of the same budget, the baseline. Writes bench/results/cross_arch.json; `--merge` adds
students to a file (a student rerun replaces its row), each row naming its command and number of models.
"""

from __future__ import annotations

import argparse

from common import RESULTS, add_result_options, command_line, default_device, resolve_dataset, write_result

PROTOCOL = {}  # EvalConfig's defaults: SGD lr 0.01 momentum 0.9, constant, no weight decay (the RTP protocol)
ADAMW = dict(optimizer="adamw", lr=1e-3, weight_decay=0.05, schedule="cosine")
STUDENTS = {
    "ConvNet-128": dict(learner="convnet"),
    "resnet10t": dict(learner="resnet10t"),
    "ViT-tiny/4": dict(learner="vit_tiny_patch16_224", learner_kwargs={"patch_size": 4}),
}
# Candidate recipes per student; `warmup` is the share of the epochs spent warming up. `standardize` gives the
# recalled images the test data's scale back: the ConvNet's instance norm ignores a set's contrast, so distilled
# images drift to any scale (std about 0.08 where real images have 1), which other students are not blind to.
RECIPES = {
    "ConvNet-128": {"protocol": PROTOCOL},
    "resnet10t": {
        "protocol": PROTOCOL,
        "protocol, standardized": dict(standardize=True),
        "protocol, 112 px": dict(input_size=112),
        "sgd cosine wd 5e-4, 112 px": dict(lr=0.05, weight_decay=5e-4, schedule="cosine", warmup=0.1, input_size=112),
        "sgd cosine wd 5e-4, 112 px, standardized": dict(lr=0.05, weight_decay=5e-4, schedule="cosine", warmup=0.1,
                                                         input_size=112, standardize=True),
        "adamw, 112 px": dict(ADAMW, warmup=0.1, input_size=112),
    },
    "ViT-tiny/4": {
        "protocol": PROTOCOL,
        "adamw 1e-3": dict(ADAMW, warmup=0.1),
        "adamw 3e-4": dict(ADAMW, lr=3e-4, warmup=0.1),
        "adamw 1e-3, standardized": dict(ADAMW, warmup=0.1, standardize=True),
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("memory", help="saved memory folder or Hub id")
    parser.add_argument("--dataset", default=None, help="test dataset (default: the memory's; the local copy of MNIST when present)")
    parser.add_argument("--models", type=int, default=5, help="students trained and tested per (student, training set)")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--select-models", type=int, default=1, help="students per candidate recipe on the validation split")
    parser.add_argument("--students", nargs="*", default=None, help="subset of: " + ", ".join(STUDENTS))
    parser.add_argument("--recipes", nargs="*", default=None, help="only these recipe names (e.g. protocol)")
    parser.add_argument("--vit-depth", type=int, default=None, help="ViT blocks (default: timm's 12; fewer to fit a CPU)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--title", default="", help="what this run adds, for the README table's heading")
    add_result_options(parser, RESULTS / "cross_arch.json", mergeable=True)
    args = parser.parse_args()

    from hf_rtp import AddressableMemory
    from hf_rtp.data import load_train_test
    from hf_rtp.evaluate import EvalConfig, evaluate_images, random_real, recalled_tensors

    device = args.device or default_device()
    memory = AddressableMemory.from_pretrained(args.memory)
    dataset = resolve_dataset(args.dataset or memory.config.dataset_name)
    train, test = load_train_test(dataset, space=memory.pixel_space())
    train, validation = train.split_validation(0.1, seed=0)  # the split the Distiller validated on (seed 0)
    ipc = memory.config.budget_ipc()
    sets = {"distilled": recalled_tensors(memory), "random_real": random_real(train, ipc)}
    compile_convnet = device == "cpu"  # worth it on a CPU; on a GPU the compile costs more than it saves here
    candidates = {student: {n: r for n, r in RECIPES[student].items() if not args.recipes or n in args.recipes}
                  for student in STUDENTS if not args.students or student in args.students}
    candidates = {student: recipes for student, recipes in candidates.items() if recipes}
    if any(len(recipes) > 1 for recipes in candidates.values()):
        n = args.select_models
        selection = (f"recipe picked per student and per training set on a 10% validation split held out of train, "
                     f"{n} student{'s' if n != 1 else ''} per candidate recipe")
    else:
        selection = "one recipe given (--recipes), so no selection" if args.recipes else "one candidate recipe per student, so no selection"
    rows: list[dict] = []
    record = {"title": args.title, "memory": args.memory, "dataset": memory.config.dataset_name, "ipc": ipc,
              "epochs": args.epochs, "selection": selection, "rows": rows}
    for student, recipes in candidates.items():
        base = dict(STUDENTS[student])
        if student.startswith("ViT") and args.vit_depth:
            base["learner_kwargs"] = {**base["learner_kwargs"], "depth": args.vit_depth}
        row = {"student": student, "learner": base["learner"], "learner_kwargs": base.get("learner_kwargs", {})}
        for name, (x, y) in sets.items():
            def config(recipe: dict, models: int) -> EvalConfig:
                recipe = dict(recipe)
                warmup = int(recipe.pop("warmup", 0) * args.epochs)
                return EvalConfig(models=models, epochs=args.epochs, compile=compile_convnet and base["learner"] == "convnet",
                                  progress=False, warmup_epochs=warmup, **base, **recipe)

            scores = {}
            if len(recipes) > 1:
                for recipe_name, recipe in recipes.items():
                    scores[recipe_name] = evaluate_images(x, y, validation, config(recipe, args.select_models), device).mean
                    print(f"  {student:12s} {name:11s} {recipe_name:28s} validation {100 * scores[recipe_name]:6.2f}%", flush=True)
            chosen = max(scores, key=scores.get) if scores else next(iter(recipes))
            result = evaluate_images(x, y, test, config(recipes[chosen], args.models), device)
            row[name] = {**result.summary(), "recipe": chosen, "recipe_settings": recipes[chosen], "validation": scores}
            print(f"{student:12s} {name:11s} test {result}  (recipe: {chosen})", flush=True)
        # --merge can gather rows of runs with different --models: each row says how many and which command
        row.update(models=args.models, command=command_line())
        rows.append(row)
        # after every student: a run cut off by a time limit keeps its rows
        write_result(args.output, record, args, device=device, row_key=lambda r: r["student"])
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
