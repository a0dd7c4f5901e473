"""`hf-rtp` command line: distill | evaluate | recall | push | info.

With no arguments it runs the main job: distil the embedded `digits` dataset offline, evaluate the memory
against random real images of the same budget, save it with its model card.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Sequence

from .distill import DistillConfig

# Settings that differ from the paper's for the embedded 8x8 digits, so the main job takes about 3 CPU minutes.
DATASET_PRESETS: dict[str, dict[str, Any]] = {
    "digits": dict(num_bases=8, steps=200, unroll_steps=50, optimizer="adam", lr=0.01, eval_every=25,
                   eval_epochs=100, checkpoint_every=50, final_models=5),
}
# Defaults of the distill options that are not DistillConfig fields.
RUN_DEFAULTS = dict(dataset="digits", dataset_config=None, image_column=None, label_column=None, zca=None, ipc=1.0,
                    num_bases=16, downsample=2, addressing="learned", final_models=10, final_epochs=300,
                    push_to_hub=None, push_dataset=False)
RUN_SETTINGS_FILE = "run_settings.json"  # in the output dir: what --resume continues


def _field_type(annotation: Any) -> tuple[type, bool]:
    """(base type, optional) of a dataclass field annotation such as `int | None`."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"None": type(None)})  # annotations are strings under `from __future__`
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        base = [a for a in args if a is not type(None)][0]
        return base, True
    return annotation, False


def _optional(base: type):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else base(text)

    parse.__name__ = base.__name__
    return parse


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = ()) -> None:
    """One --option per field, with the field's help text. Options not given stay out of the parsed namespace
    (argparse.SUPPRESS), so an explicit `--clip-grad-norm none` is told apart from no option at all."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        base, optional = _field_type(f.type)
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, type=_optional(base) if optional else base, default=argparse.SUPPRESS, help=help_text)


def run_settings(given: dict[str, Any]) -> dict[str, Any]:
    """Explicit options over (on --resume) the settings the run started with, else over the dataset's preset and
    the defaults."""
    defaults = {**RUN_DEFAULTS, **{f.name: f.default for f in dataclasses.fields(DistillConfig)}}
    saved = Path(given.get("output_dir", DistillConfig.output_dir)) / RUN_SETTINGS_FILE
    if given.get("resume") and saved.exists():
        return {**defaults, **json.loads(saved.read_text()), **given}
    return {**defaults, **DATASET_PRESETS.get(given.get("dataset", RUN_DEFAULTS["dataset"]), {}), **given}


def _distill_parser(sub) -> None:
    p = sub.add_parser("distill", help="distil a dataset into an addressable memory, evaluate it, save it",
                       argument_default=argparse.SUPPRESS)
    p.add_argument("--dataset", help="Hub id (e.g. ylecun/mnist), local folder, or `digits` (embedded, offline; the default)")
    p.add_argument("--dataset-config", help="dataset config name (e.g. cropped_digits for SVHN)")
    p.add_argument("--image-column", help="column holding the images (detected when omitted)")
    p.add_argument("--label-column", help="column holding the labels (detected when omitted)")
    p.add_argument("--ipc", type=float, help="storage budget in images per class (default: 1)")
    p.add_argument("--num-bases", type=int, help="K shared bases (default: 16; 8 for digits)")
    p.add_argument("--downsample", type=int, help="bases stored at 1/ds resolution (default: 2)")
    p.add_argument("--addressing", choices=["learned", "one_hot"],
                   help="learned addressing (the paper) or one_hot (per-class synthetic set, vanilla BPTT)")
    p.add_argument("--zca", help="ZCA whitening: a regulariser, `off`, or omit for the paper's choice "
                   "(CIFAR-10/100 0.1, SVHN 100, none for the others)")
    p.add_argument("--final-models", type=int, help="networks trained for the final test evaluation (default: 10)")
    p.add_argument("--final-epochs", type=int, help="epochs per final evaluation network (default: 300)")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the memory and its model card")
    p.add_argument("--push-dataset", action="store_true", help="with --push-to-hub, also upload the recalled Dataset")
    add_dataclass_options(p, DistillConfig)


def run_distill(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from accelerate import Accelerator

    from . import AddressableMemory
    from .data import load_train_test
    from .distill import Distiller
    from .evaluate import EvalConfig, evaluate_memory
    from .hub import save_with_card

    s = run_settings({k: v for k, v in vars(args).items() if k != "command"})
    accelerator = Accelerator()
    zca = None if s["zca"] is None else (False if str(s["zca"]).lower() in ("off", "none", "0") else float(s["zca"]))
    train, test = load_train_test(s["dataset"], config_name=s["dataset_config"], image_column=s["image_column"],
                                  label_column=s["label_column"], zca=zca)
    torch.manual_seed(s["seed"])
    memory = AddressableMemory.for_dataset(train, ipc=s["ipc"], num_bases=s["num_bases"], downsample=s["downsample"],
                                           addressing=s["addressing"])
    memory_config = memory.config
    config = DistillConfig(**{f.name: s[f.name] for f in dataclasses.fields(DistillConfig)})
    if accelerator.is_main_process:
        print(f"{s['dataset']}: {len(train)} train / {len(test)} test images {train.image_shape}, {train.num_classes} classes; "
              f"memory K={memory_config.num_bases} r={memory_config.images_per_query} ds={memory_config.downsample} "
              f"({memory_config.storage_floats()} floats, budget {s['ipc']:g} image(s) per class)")
    distiller = Distiller(config, memory, train, accelerator=accelerator)
    distiller.prepare()  # refuses an output dir holding another run before its settings are written over
    if accelerator.is_main_process and distiller.step == 0:
        saved = {k: v for k, v in s.items() if k not in ("resume", "overwrite_output_dir")}
        (Path(config.output_dir) / RUN_SETTINGS_FILE).write_text(json.dumps(saved, indent=1))
    memory = distiller.train()
    if not accelerator.is_main_process:
        return {}
    eval_config = EvalConfig(models=s["final_models"], epochs=s["final_epochs"], width=config.eval_width, seed=config.seed,
                             augment=config.augment)
    record = evaluate_memory(memory, test, eval_config, train=train, device=accelerator.device)
    folder = Path(config.output_dir) / "memory"
    save_with_card(memory, folder)
    _print_result(s["dataset"], memory, record, folder)
    if s["push_to_hub"]:
        url = memory.push_to_hub(s["push_to_hub"], push_dataset=s["push_dataset"])
        print(f"pushed to {url}")
    return record


def _print_result(dataset: str, memory, record: dict[str, Any], folder: Path | None) -> None:
    cfg = memory.config
    rows = [("distilled memory (recalled)", cfg.images_per_query * cfg.num_classes, record["accuracy"])]
    if "random_real" in record:
        rows.append(("random real images", record["random_real_images"], record["random_real"]))
    print(f"\n{dataset}, budget {cfg.ipc if cfg.ipc is not None else cfg.budget_ipc():g} image(s) per class "
          f"({cfg.storage_floats()} floats); test accuracy of {record['models']} x {record['learner']} trained from scratch:")
    print(f"  {'training data':<30}{'images':>8}   accuracy")
    for name, images, stats in rows:
        print(f"  {name:<30}{images:>8}   {100 * stats['mean']:.2f} +- {100 * stats['std']:.2f}%")
    if folder is not None:
        print(f"saved to {folder} (model card README.md, recalled.png, bases.png)")


def _load_memory(path: str):
    from . import AddressableMemory

    return AddressableMemory.from_pretrained(path)


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from .data import load_train_test
    from .evaluate import EvalConfig, default_device, evaluate_memory
    from .hub import save_with_card

    memory = _load_memory(args.memory)
    dataset = args.dataset or memory.config.dataset_name
    if not dataset:
        raise SystemExit("the memory does not record its dataset: pass --dataset")
    # the memory's own ZCA (if any) whitens the test split, so its pixels and the test images share one space
    space = {"zca": memory.zca()} if memory.zca() is not None else {"zca": False, "mean": memory.config.mean, "std": memory.config.std}
    train, test = load_train_test(dataset, config_name=args.dataset_config, **space)
    if train.class_names != memory.config.class_names:
        raise SystemExit(f"{dataset} has classes {train.class_names[:5]}... but the memory has {memory.config.class_names[:5]}...")
    config = EvalConfig(models=args.models, epochs=args.epochs, learner=args.learner, width=args.width, seed=args.seed,
                        augment=args.augment, learner_kwargs=args.learner_kwargs, optimizer=args.optimizer, lr=args.lr,
                        momentum=args.momentum, batch_size=args.batch_size, weight_decay=args.weight_decay,
                        schedule=args.schedule, warmup_epochs=args.warmup_epochs, input_size=args.input_size,
                        standardize=args.standardize)
    device = args.device or default_device()
    record = evaluate_memory(memory, test, config, train=train if args.random_real else None, device=device)
    folder = Path(args.memory) if Path(args.memory).is_dir() else None
    if args.save and folder is not None:
        save_with_card(memory, folder)
    _print_result(dataset, memory, record, folder if args.save else None)
    if args.json:
        print(json.dumps(record))
    return record


def run_recall(args: argparse.Namespace) -> None:
    from .viz import save_recalled_grid

    memory = _load_memory(args.memory)
    dataset = memory.recall(classes=args.classes, preview=args.preview)
    out = Path(args.output)
    if args.parquet:
        out.mkdir(parents=True, exist_ok=True)
        dataset.to_parquet(out / "recalled.parquet")
    else:
        dataset.save_to_disk(str(out))
    save_recalled_grid(memory, out / "recalled.png")
    print(f"recalled {len(dataset)} images of {len(set(dataset['label']))} classes to {out}")


def run_push(args: argparse.Namespace) -> None:
    memory = _load_memory(args.memory)
    url = memory.push_to_hub(args.repo_id, private=args.private, push_dataset=args.push_dataset)
    print(f"pushed to {url}")


def run_info(args: argparse.Namespace) -> None:
    memory = _load_memory(args.memory)
    cfg = memory.config
    print(json.dumps({
        "dataset": cfg.dataset_name, "classes": cfg.num_classes, "image_shape": cfg.image_shape, "addressing": cfg.addressing,
        "num_bases": cfg.num_bases, "images_per_query": cfg.images_per_query, "downsample": cfg.downsample,
        "storage_floats": cfg.storage_floats(), "budget_ipc": round(cfg.budget_ipc(), 4),
        "distillation": cfg.distillation, "evaluation": cfg.evaluation,
    }, indent=1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-rtp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    _distill_parser(sub)

    p = sub.add_parser("evaluate", help="retrain fresh networks on a memory's recalled images, test them")
    p.add_argument("memory", help="saved memory folder or Hub id")
    p.add_argument("--dataset", default=None, help="test dataset (default: the one the memory records)")
    p.add_argument("--dataset-config", default=None)
    p.add_argument("--models", type=int, default=10, help="fresh networks to train (default: 10)")
    p.add_argument("--epochs", type=int, default=300, help="epochs per network (default: 300)")
    p.add_argument("--learner", default="convnet", help="convnet, convnet-<width>, or a timm model name")
    p.add_argument("--width", type=int, default=128, help="ConvNet width (default: 128)")
    p.add_argument("--learner-kwargs", type=json.loads, default={}, help='JSON timm.create_model arguments, e.g. \'{"patch_size": 4}\'')
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", default=None, help="DSA augmentation while training (e.g. flip_rotate, dsa)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd", help="default: sgd (the RTP protocol)")
    p.add_argument("--lr", type=float, default=0.01, help="peak learning rate (default: 0.01)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    p.add_argument("--batch-size", type=int, default=640, help="training batch size (default: 640)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="weight decay (default: 0)")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant", help="lr schedule (default: constant)")
    p.add_argument("--warmup-epochs", type=int, default=0, help="linear lr warm-up epochs (default: 0)")
    p.add_argument("--input-size", type=int, default=None,
                   help="resize images to this size for the student, e.g. 128 for resnet10t on 28 px (default: as stored)")
    p.add_argument("--standardize", action="store_true",
                   help="rescale the recalled images to zero mean, unit std per channel (for students other than the ConvNet)")
    p.add_argument("--device", default=None, help="where to train the students (default: cuda if available, else cpu)")
    p.add_argument("--random-real", action=argparse.BooleanOptionalAction, default=True,
                   help="also score random real images of the same budget (default: on)")
    p.add_argument("--save", action="store_true", help="write the result into the memory folder's config and model card")
    p.add_argument("--json", action="store_true", help="also print the result as JSON")

    p = sub.add_parser("recall", help="recall a memory into a datasets.Dataset on disk")
    p.add_argument("memory", help="saved memory folder or Hub id")
    p.add_argument("--output", required=True, help="folder for the Dataset (save_to_disk) and recalled.png")
    p.add_argument("--classes", nargs="*", default=None, help="class names or ids (default: all)")
    p.add_argument("--preview", action="store_true", help="add a uint8 `image` column for viewing")
    p.add_argument("--parquet", action="store_true", help="write recalled.parquet instead of save_to_disk")

    p = sub.add_parser("push", help="upload a saved memory with its model card to the Hub")
    p.add_argument("memory", help="saved memory folder")
    p.add_argument("repo_id")
    p.add_argument("--private", action="store_true")
    p.add_argument("--push-dataset", action="store_true", help="also upload the recalled Dataset to <repo_id>-recalled")

    p = sub.add_parser("info", help="print a memory's layout, budget and results")
    p.add_argument("memory", help="saved memory folder or Hub id")
    return parser


def main(argv: Sequence[str] | None = None) -> Any:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["distill", *argv]  # the main job is the default command
    args = parser.parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # the shard-writing bars say nothing about a few KB of memory
    runners = {"distill": run_distill, "evaluate": run_evaluate, "recall": run_recall, "push": run_push, "info": run_info}
    runners[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
