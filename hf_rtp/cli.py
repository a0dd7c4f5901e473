"""`hf-rtp` command line: distill | evaluate | recall | push | info.

With no arguments it runs the main job: distil the embedded `digits` dataset offline, evaluate the memory
against random real images of the same budget, save it with its model card. Several processes or GPUs:
`accelerate launch -m hf_rtp.cli distill ...`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .evaluate import EvalConfig
from .options import add_options, build, given
from .presets import add_run_options, output_dir_problem, resolve_run_options

PROG = "hf-rtp"


class UsageError(Exception):
    """A bad option or input, reported as one `hf-rtp: error: ...` line (exit 2)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, with parse errors as one line (not the whole usage block): `hf-rtp: error: ...`, exit 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{PROG}: error: {message} (see {self.prog} --help)\n")


def _quiet(progress: bool) -> None:
    """--no-progress silences every bar: ours, datasets', the Hub's and transformers'."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # the shard-writing bars say nothing about a few KB of memory
    if not progress:
        import datasets
        from huggingface_hub.utils import disable_progress_bars

        datasets.disable_progress_bars()
        disable_progress_bars()


# ---- distill ------------------------------------------------------------------------------------------------


def run_distill(args: argparse.Namespace) -> dict[str, Any]:
    from accelerate import Accelerator

    from .pipeline import distill_dataset
    from .run_dir import RunDirectory

    data_config, memory_options, config = resolve_run_options(args)
    problem = output_dir_problem(config.output_dir)
    if problem:
        raise UsageError(problem)
    run = RunDirectory(config.output_dir)  # both checks are cheap: make them before the data loads
    run.check_unlocked()
    if config.resume and run.read_settings() is None and not run.checkpoints():
        raise UsageError(f"nothing to resume in {config.output_dir}: no run was started there (start one without --resume)")
    _quiet(config.progress)
    accelerator = Accelerator(log_with=None if config.report_to == "none" else config.report_to,
                              project_dir=config.output_dir)
    memory = distill_dataset(data_config, memory_options, config, accelerator)
    if not accelerator.is_main_process:
        return {}
    record = memory.config.evaluation or {}
    if record:
        _print_result(data_config.dataset, memory, record)
    print(f"saved to {Path(config.output_dir) / 'memory'} (model card README.md and pictures)")
    if config.push_to_hub:
        print(f"pushed to {config.push_to_hub}")
    return record


def _print_result(dataset: str, memory, record: dict[str, Any]) -> None:
    cfg = memory.config
    if record.get("few_shot"):  # an image-addressed memory: few-shot episodes
        acc = record["accuracy"]
        print(f"\n{dataset}, {record['few_shot']} episodes of the {record['split']} split ({record['models']} episodes, "
              f"{record['learner']} x {record['epochs']} epochs on the recall): {100 * acc['mean']:.2f} +- "
              f"{100 * acc['ci95']:.2f}% (95% interval)")
        return
    rows = [("distilled memory (recalled)", cfg.images_per_query * cfg.num_classes, record["accuracy"])]
    if "random_real" in record:
        rows.append(("random real images", record["random_real_images"], record["random_real"]))
    print(f"\n{dataset}, budget {cfg.budget_ipc():g} image(s) per class ({cfg.storage_floats()} floats); test accuracy "
          f"of {record['models']} x {record['learner']} trained from scratch:")
    print(f"  {'training data':<30}{'images':>8}   accuracy")
    for name, images, stats in rows:
        print(f"  {name:<30}{images:>8}   {100 * stats['mean']:.2f} +- {100 * stats['std']:.2f}%")


def _load_memory(path: str):
    from . import AddressableMemory

    return AddressableMemory.from_pretrained(path)


# ---- evaluate -----------------------------------------------------------------------------------------------


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from .evaluate import default_device, evaluate_memory

    config = build(EvalConfig, given(args, EvalConfig))
    local = Path(args.memory).is_dir()
    if args.save and not local and args.save_to is None:
        raise UsageError(f"--save writes into a local memory folder, and {args.memory} is a Hub id: pass --save-to DIR "
                         f"(and --push-to-hub REPO to update the Hub card)")
    _quiet(config.progress)
    memory = _load_memory(args.memory)
    if memory.config.addressed_by_images:
        raise UsageError(f"{args.memory} is addressed by images: it is scored on few-shot episodes "
                         f"(bench/few_shot.py, or hf_rtp.episodes.few_shot_evaluation), not by recalling every class")
    dataset = args.dataset or memory.config.dataset_name
    if not dataset:
        raise UsageError("the memory does not record its dataset: pass --dataset")
    # the training split too, for random real images; both in the memory's own pixel space
    from .data import load_train_test

    train, test = load_train_test(dataset, config_name=args.dataset_config, space=memory.pixel_space())
    memory.check_data(test)
    device = args.device or default_device()
    record = evaluate_memory(memory, test, config, train=train if args.random_real else None, device=device)
    _print_result(dataset, memory, record)
    target = args.save_to or (args.memory if args.save else None)
    if target is not None:
        memory.save_pretrained(target)
        print(f"saved to {target} (config and model card carry the result)")
    if args.push_to_hub:
        print(f"pushed to {memory.push_to_hub(args.push_to_hub)}")
    if args.json:
        print(json.dumps(record))
    return record


# ---- recall, push, info ---------------------------------------------------------------------------------------


def run_recall(args: argparse.Namespace) -> None:
    from .hub import write_pictures

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {out} is an existing file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UsageError(f"--output {out} is a folder that is not empty; pass --overwrite to write into it")
    shots = read_shot_folder(args.images) if args.images else None  # checked before the memory is fetched
    if shots is not None and args.classes:
        raise UsageError("--classes recalls by label and --images by pictures: pass one of them")
    _quiet(args.progress)
    memory = _load_memory(args.memory)
    if shots is not None:
        if not memory.config.addressed_by_images:
            raise UsageError(f"{args.memory} has no query head: it is addressed by labels (use --classes), not --images")
        images, labels = shots
        try:
            dataset = memory.recall(images=images, labels=labels, preview=args.preview)
        except ValueError as error:  # e.g. pictures of another size or colour mode than the memory's
            raise UsageError(f"--images {args.images}: {error}") from error
        print(f"{len(labels)} query images of {len(set(labels))} classes from {args.images}")
    else:
        dataset = memory.recall(classes=args.classes, preview=args.preview)
    if args.parquet:
        out.mkdir(parents=True, exist_ok=True)
        dataset.to_parquet(out / "recalled.parquet")
    else:
        dataset.save_to_disk(str(out))
    write_pictures(memory, out, classes=args.classes if shots is None else None)
    print(f"recalled {len(dataset)} images of {len(set(dataset['label']))} classes to {out}")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def read_shot_folder(folder: str) -> tuple[list, list[str]]:
    """`folder/class_name/*.png` -> (PIL images, their class names), classes in sorted order; every class folder
    must hold at least one image."""
    from PIL import Image

    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"--images {folder}: no such folder (expected class_name/*.png inside)")
    classes = sorted(d for d in root.iterdir() if d.is_dir())
    if not classes:
        raise UsageError(f"--images {folder}: no class folders inside (expected class_name/*.png)")
    images, labels = [], []
    for d in classes:
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UsageError(f"--images {folder}: class folder {d.name!r} has no images ({', '.join(IMAGE_SUFFIXES)})")
        for f in files:
            try:
                with Image.open(f) as image:
                    images.append(image.copy())
            except OSError as error:
                raise UsageError(f"--images {folder}: cannot read {f}: {error}") from error
            labels.append(d.name)
    return images, labels


def run_push(args: argparse.Namespace) -> None:
    _quiet(args.progress)
    memory = _load_memory(args.memory)
    url = memory.push_to_hub(args.repo_id, private=args.private or None, push_dataset=args.push_dataset,
                             commit_message=args.commit_message, revision=args.revision, create_pr=args.create_pr)
    print(f"pushed to {url}")


def info_summary(memory, name: str) -> str:
    """What a person wants to know about a memory, one line each."""
    from .hub import normalisation_text, reproduce_command

    cfg = memory.config
    names = cfg.class_names
    lines = [
        ("memory", name),
        ("dataset", f"{cfg.dataset_name or 'not recorded'} ({cfg.num_classes} classes: {', '.join(names[:10])}"
                    f"{', ...' if len(names) > 10 else ''})"),
        ("recalls", f"{cfg.images_per_query} images per class ({cfg.images_per_query * cfg.num_classes} in all), "
                    f"each {'x'.join(map(str, cfg.image_shape))}"),
        ("stores", f"K={cfg.num_bases} bases at {'x'.join(map(str, cfg.base_shape))} (downsample {cfg.downsample}), "
                   f"{cfg.addressing} addressing: {cfg.storage_floats()} floats, budget {cfg.budget_floats()} "
                   f"= {cfg.budget_ipc():g} image(s) per class"),
        ("pixel space", normalisation_text(cfg)),
    ]
    if cfg.addressed_by_images:
        lines.insert(2, ("addressed", f"by images: a {cfg.query_encoder} query head ({cfg.query_head_floats()} floats, "
                                      f"outside the budget) projects each image to a {cfg.query_dim}-d query; "
                                      f"r={cfg.images_per_query} images recalled per query; its encoder started "
                                      f"{cfg.query_encoder_start or 'unrecorded (distilled before starts were recorded)'}"))
    if cfg.distillation:
        d = cfg.distillation
        lines.append(("distilled", f"{d.get('outer_steps')} outer steps in {d.get('minutes')} min, T={d.get('unroll_steps')}, "
                                   f"best validation {100 * d.get('val_accuracy', 0):.2f}% at step {d.get('best_step')}"))
    e = cfg.evaluation
    if e and e.get("accuracy"):
        text = f"{100 * e['accuracy']['mean']:.2f} +- {100 * e['accuracy']['std']:.2f}% ({e['models']} x {e['learner']}, {e['epochs']} epochs)"
        if e.get("random_real"):
            text += f"; random real images of the same budget {100 * e['random_real']['mean']:.2f} +- {100 * e['random_real']['std']:.2f}%"
        if e.get("few_shot"):  # an image-addressed memory's few-shot episodes
            text = f"{100 * e['accuracy']['mean']:.2f} +- {100 * e['accuracy']['std']:.2f}% over {e['models']} {e['few_shot']} episodes"
            lines.append(("accuracy", text))
        else:
            lines += [("accuracy", text), ("reproduce", reproduce_command(e, name))]
    else:
        lines.append(("accuracy", f"not evaluated (hf-rtp evaluate {name})"))
    return "\n".join(f"{key:<12} {value}" for key, value in lines)


def run_info(args: argparse.Namespace) -> None:
    memory = _load_memory(args.memory)
    cfg = memory.config
    if args.json:
        print(json.dumps({
            "dataset": cfg.dataset_name, "classes": cfg.num_classes, "image_shape": cfg.image_shape, "addressing": cfg.addressing,
            "num_bases": cfg.num_bases, "images_per_query": cfg.images_per_query, "downsample": cfg.downsample,
            "storage_floats": cfg.storage_floats(), "budget_ipc": round(cfg.budget_ipc(), 4),
            "query_encoder": cfg.query_encoder, "query_head_floats": cfg.query_head_floats(),
            "query_encoder_start": cfg.query_encoder_start,
            "distillation": cfg.distillation, "evaluation": cfg.evaluation,
        }, indent=1))
    else:
        print(info_summary(memory, args.memory))


# ---- the parser -------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="{distill,evaluate,recall,push,info}")
    add_parser = sub.add_parser

    def sub_parser(name: str, **kwargs):
        return add_parser(name, parents=[common], **kwargs)

    sub.add_parser = sub_parser  # type: ignore[method-assign]

    p = sub.add_parser("distill", help="distil a dataset into an addressable memory, evaluate it, save it")
    add_run_options(p)

    p = sub.add_parser("evaluate", help="retrain fresh networks on a memory's recalled images, test them")
    p.add_argument("memory", help="saved memory folder or Hub id")
    p.add_argument("--dataset", default=None, help="test dataset (default: the one the memory records)")
    p.add_argument("--dataset-config", default=None, help="dataset config name (e.g. cropped_digits for SVHN)")
    add_options(p, EvalConfig, skip=("micro_batch", "test_batch_size"))
    p.add_argument("--device", default=None, help="where to train the students (default: cuda if available, else cpu)")
    p.add_argument("--random-real", action=argparse.BooleanOptionalAction, default=True,
                   help="also score random real images of the same budget (default: on)")
    p.add_argument("--save", action="store_true", help="write the result into the local memory folder's config and card")
    p.add_argument("--save-to", metavar="DIR", default=None, help="save the evaluated memory (with its card) to DIR")
    p.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="upload the evaluated memory and its card")
    p.add_argument("--json", action="store_true", help="also print the result as JSON")

    p = sub.add_parser("recall", help="recall a memory into a datasets.Dataset on disk")
    p.add_argument("memory", help="saved memory folder or Hub id")
    p.add_argument("--output", required=True, help="folder for the Dataset (save_to_disk) and recalled.png")
    p.add_argument("--classes", nargs="*", default=None, help="class names or ids (default: all)")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="recall by pictures (a memory with a query head): DIR/class_name/*.png, the shots of each class "
                        "averaged into one query")
    p.add_argument("--preview", action="store_true", help="add a uint8 `image` column for viewing")
    p.add_argument("--parquet", action="store_true", help="write recalled.parquet instead of save_to_disk")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --output folder")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show progress bars")

    p = sub.add_parser("push", help="upload a saved memory with its model card and pictures to the Hub")
    p.add_argument("memory", help="saved memory folder")
    p.add_argument("repo_id")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--push-dataset", action="store_true", help="also upload the recalled Dataset to <repo_id>-recalled")
    p.add_argument("--commit-message", default=None)
    p.add_argument("--revision", default=None, help="branch to push to")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show progress bars")

    p = sub.add_parser("info", help="print a memory's layout, budget and results")
    p.add_argument("memory", help="saved memory folder or Hub id")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> Any:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["distill", *argv]  # the main job is the default command
    args = parser.parse_args(argv)
    runners = {"distill": run_distill, "evaluate": run_evaluate, "recall": run_recall, "push": run_push, "info": run_info}
    try:
        runners[args.command](args)
    except Exception as error:  # every failure is one line a person can act on; --debug shows the traceback
        if args.debug:
            raise
        text = " ".join(str(error).split()) or type(error).__name__
        known = isinstance(error, (UsageError, ValueError, OSError, RuntimeError))
        parser.exit(2, f"{PROG}: error: {text if known else f'{type(error).__name__}: {text}'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
