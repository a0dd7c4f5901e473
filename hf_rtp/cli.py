"""`hf-rtp` command line: distill | evaluate | recall | push | info, on a memory or a bank of memories.

With no arguments it runs the main job: distil the embedded `digits` dataset offline, evaluate the memory
against random real images of the same budget, save it with its model card. Several processes or GPUs:
`accelerate launch -m hf_rtp.cli distill ...`.
"""

# Every import of torch, transformers or datasets happens inside the command that needs it, and the parser fills
# only the subcommand being run: `hf-rtp --help` costs about a bare `import torch` rather than 4 s of imports.

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

PROG = "hf-rtp"
COMMANDS = {
    "distill": "distil a dataset into an addressable memory, evaluate it, save it",
    "evaluate": "retrain fresh networks on a memory's (or a bank's) recall, test them",
    "recall": "recall a memory or a bank into a datasets.Dataset on disk, with recalled.png",
    "push": "upload a saved memory or bank with its model card (and pictures) to the Hub",
    "info": "print a memory's or a bank's layout, budget and results",
}


class UsageError(Exception):
    """A bad option or input, reported as one `hf-rtp: error: ...` line (exit 2)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, with parse errors as one line (not the whole usage block): `hf-rtp: error: ...`, exit 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{PROG}: error: {message} (see {self.prog} --help)\n")


def _quiet(progress: bool) -> None:
    """--no-progress silences every bar: ours, datasets', the Hub's and transformers'. Loading a few KB of weights
    never shows transformers' bar (it said nothing, and broke `info --json` output)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    if not progress:
        import datasets
        from huggingface_hub.utils import disable_progress_bars

        datasets.disable_progress_bars()
        disable_progress_bars()


# ---- what a path names: a memory or a bank -------------------------------------------------------------------


def is_bank(path: str) -> bool:
    """A saved MemoryBank (a folder or Hub repo holding bank.json) rather than one memory (config.json)."""
    if Path(path).is_dir():
        return (Path(path) / "bank.json").is_file()
    from .hub import _looks_local

    if _looks_local(path):
        return False
    from transformers.utils import cached_file

    try:  # a Hub repo: a bank's index, else it is taken as a memory (whose loading names what is missing)
        return cached_file(path, "bank.json", _raise_exceptions_for_missing_entries=False) is not None
    except OSError:
        return False


def _load_memory(path: str):
    from transformers.utils import logging as transformers_logging

    from .modeling_memory import AddressableMemory

    transformers_logging.disable_progress_bar()  # "Loading weights" for a few KB says nothing (and breaks --json)

    return AddressableMemory.from_pretrained(path)


def _load_bank(path: str):
    from transformers.utils import logging as transformers_logging

    from .bank import MemoryBank

    transformers_logging.disable_progress_bar()

    return MemoryBank.from_pretrained(path)


# ---- writing results: checked first, never half-written ----------------------------------------------------------


def check_writable(folder: Path, option: str) -> None:
    """Refuse a destination that cannot be written before any expensive work starts (e.g. `evaluate --save` on a
    read-only folder would otherwise train every model first)."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise UsageError(f"{option} {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {folder}: {existing} is not writable")


def write_atomically(folder: Path, write, option: str) -> None:
    """Run `write(tmp)` into a fresh folder beside `folder`, then move what it wrote into `folder` file by file
    (renames on one file system: no space needed, nothing partial). A failure (a full disk) removes the partial
    files and names the destination."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.hf-rtp-", dir=folder.parent))
    try:
        write(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for item in tmp.iterdir():
            target = folder / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(item, target)
    except OSError as error:
        raise UsageError(f"{option} {folder}: could not write it ({error.strerror or error}); nothing was left there "
                         "half-written") from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- distill ------------------------------------------------------------------------------------------------


def run_distill(args: argparse.Namespace) -> dict[str, Any]:
    from .presets import output_dir_problem, resolve_run_options
    from .run_dir import RunDirectory

    data_config, memory_options, config = resolve_run_options(args, note=print)
    problem = output_dir_problem(config.output_dir)
    if problem:
        raise UsageError(problem)
    run = RunDirectory(config.output_dir)  # both checks are cheap: make them before the data loads
    run.check_unlocked()
    if config.resume and run.read_settings() is None and not run.checkpoints():
        raise UsageError(f"nothing to resume in {config.output_dir}: no run was started there (start one without --resume)")
    _quiet(config.progress)
    from accelerate import Accelerator

    from .pipeline import distill_dataset

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


# ---- evaluate -----------------------------------------------------------------------------------------------


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from .evaluate import EvalConfig
    from .options import build, given

    config = build(EvalConfig, given(args, EvalConfig))
    local = Path(args.memory).is_dir()
    if args.save and not local and args.save_to is None:
        raise UsageError(f"--save writes into a local memory folder, and {args.memory} is a Hub id: pass --save-to DIR "
                         f"(and --push-to-hub REPO to update the Hub card)")
    target = Path(args.save_to) if args.save_to else (Path(args.memory) if args.save else None)
    if target is not None:
        check_writable(target, "--save-to" if args.save_to else "--save")
    _quiet(config.progress)
    episodes = [f"--{k}" for k in ("way", "shots", "episodes") if getattr(args, k) is not None]
    if is_bank(args.memory):
        if episodes:
            raise UsageError(f"{', '.join(episodes)} apply to memories addressed by images, not to a bank")
        return evaluate_bank(args)
    memory = _load_memory(args.memory)
    if memory.config.task:
        raise UsageError(f"{args.memory} is {memory.config.task.get('name')} of a {memory.config.task.get('stream')} "
                         "stream: its test set is transformed, so score its bank (hf-rtp evaluate BANK), which rebuilds it")
    if episodes and not memory.config.addressed_by_images:
        raise UsageError(f"{', '.join(episodes)} apply to memories addressed by images; {args.memory} is addressed by "
                         "labels (it is scored by recalling every class)")
    dataset = args.dataset or memory.config.dataset_name
    if not dataset:
        raise UsageError("the memory does not record its dataset: pass --dataset")
    from .data import load_train_test
    from .evaluate import default_device, evaluate_memory

    # the training split too, for random real images; both in the memory's own pixel space
    train, test = load_train_test(dataset, config_name=args.dataset_config, space=memory.pixel_space())
    names = list(memory.config.class_names)
    if not memory.config.addressed_by_images and test.class_names != names and set(names) <= set(test.class_names):
        # a memory of part of the data (`distill --classes 0,1,2`): scored on its own classes, the others unseen
        print(f"scored on the {len(names)} classes the memory holds ({', '.join(names[:10])}"
              f"{', ...' if len(names) > 10 else ''}) of {dataset}'s {len(test.class_names)}")
        train, test = train.with_classes(names), test.with_classes(names)
    device = args.device or default_device()
    if memory.config.addressed_by_images:
        from .episodes import few_shot_evaluation

        way, shots, episodes = args.way or 5, args.shots or 1, args.episodes or 100
        if way > test.num_classes:
            raise UsageError(f"--way {way}: {dataset}'s test split has only {test.num_classes} classes")
        record = few_shot_evaluation(memory, test, way, shots, episodes, config, seed=config.seed, device=device)
    else:
        memory.check_data(test)
        record = evaluate_memory(memory, test, config, train=train if args.random_real else None, device=device)
    _print_result(dataset, memory, record)
    if target is not None:
        write_atomically(target, memory.save_pretrained, "--save-to" if args.save_to else "--save")
        print(f"saved to {target} (config and model card carry the result)")
    if args.push_to_hub:
        print(f"pushed to {memory.push_to_hub(args.push_to_hub)}")
    if args.json:
        print(json.dumps(record))
    return record


def evaluate_bank(args: argparse.Namespace) -> dict[str, Any]:
    """A compress-then-recall bank, scored as its run scored it (both recall modes), from the stream its bank.json
    records (`hf_rtp.continual.score_bank`)."""
    from .continual import ContinualConfig, score_bank

    for option in ("save", "save_to", "push_to_hub"):
        if getattr(args, option):
            raise UsageError(f"--{option.replace('_', '-')} writes a memory's card; a bank's scores are printed "
                             "(use --json to keep them)")
    bank = _load_bank(args.memory)
    if bank.stream is None:
        raise UsageError(f"{args.memory} is a bank whose bank.json records no stream, so its tasks' test sets cannot be "
                         "rebuilt: recall its classes (hf-rtp recall BANK --classes ...) and train on them")
    # the evaluation options that carry over to the stream's retraining recipe (ContinualConfig's retrain_*)
    from .evaluate import EvalConfig
    from .options import given

    explicit = {k: v for k, v in given(args, EvalConfig).items() if k != "progress"}
    carried = {"epochs": "retrain_epochs", "lr": "retrain_lr", "batch_size": "retrain_batch", "noise": "retrain_noise",
               "seed": "seed"}
    ignored = sorted(k for k in explicit if k not in carried)
    if ignored:
        raise UsageError(f"{', '.join('--' + k.replace('_', '-') for k in ignored)} do not apply to a bank: it retrains "
                         "the stream's own network (only --epochs, --lr, --batch-size, --noise and --seed carry over)")
    try:  # the recipe the bank's run retrained with (bank.json's `recipe`), the options given replacing its settings
        config = ContinualConfig(**{**(bank.recipe or {}), **{carried[k]: v for k, v in explicit.items()}})
    except (TypeError, ValueError) as error:
        raise UsageError(f"{args.memory}: the retraining recipe is not valid: {error}") from error
    scored = score_bank(bank, config, args.dataset)
    for mode, assumes in (("joint", "one network on everything recalled"),
                          ("per-task", "one network per task memory; needs the task's identity at test time")):
        print(f"{args.memory} ({bank.stream['stream']}, {bank.stream['split']} split, {len(bank)} tasks) {mode} "
              f"({assumes}): retained accuracy {100 * scored[mode]['retained_accuracy']:.2f}%")
    if args.json:
        print(json.dumps(scored))
    return scored


# ---- recall, push, info ---------------------------------------------------------------------------------------


def run_recall(args: argparse.Namespace) -> None:
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {out} is an existing file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UsageError(f"--output {out} is a folder that is not empty; pass --overwrite to write into it")
    check_writable(out, "--output")
    if args.images and (args.classes or args.tasks):
        raise UsageError("--images recalls by pictures and --classes/--tasks by label: pass one of them")
    shots = None
    if args.images:  # read (and checked) before the memory is fetched
        from .shot_folder import read_shot_folder

        try:
            shots = read_shot_folder(args.images)
        except ValueError as error:
            raise UsageError(f"--images {error}") from error
        for line in shots.notes():
            print(f"note: {line}")
    _quiet(args.progress)
    if is_bank(args.memory):
        if shots is not None:
            raise UsageError(f"{args.memory} is a bank: it recalls by class names (--classes, --tasks), not --images")
        source = _load_bank(args.memory)
        dataset = source.recall(classes=args.classes, tasks=args.tasks, preview=args.preview)
        space = next(iter(source.memories.values()))
    else:
        if args.tasks:
            raise UsageError(f"--tasks picks memories of a bank, and {args.memory} is one memory")
        source = space = _load_memory(args.memory)
        if shots is not None:
            dataset = _recall_pictures(source, shots, args)
        else:
            if source.config.addressed_by_images:
                raise UsageError(f"{args.memory} is addressed by images: pass --images DIR (DIR/class_name/*.png)")
            dataset = source.recall(classes=args.classes, preview=args.preview)

    from .hub import recall_picture

    def write(folder: Path) -> None:
        if args.parquet:
            dataset.to_parquet(folder / "recalled.parquet")
        else:
            dataset.save_to_disk(str(folder))
        recall_picture(space, dataset, folder / "recalled.png")

    write_atomically(out, write, "--output")
    print(f"recalled {len(dataset)} images of {len(set(dataset['label']))} classes to {out} (picture: recalled.png)")


def _recall_pictures(memory, shots, args: argparse.Namespace):
    """Recall by a folder of pictures: each class's shots averaged into one query (sec 5.3.2)."""
    from .shot_folder import fit_to

    if not memory.config.addressed_by_images:
        raise UsageError(f"{args.memory} has no query head: it is addressed by labels (use --classes), not --images")
    c, h, w = memory.config.image_shape
    images, notes = fit_to(shots.images, channels=c, height=h, width=w)
    for line in notes:
        print(f"note: {line}")
    try:
        dataset = memory.recall(images=images, labels=shots.labels, preview=args.preview)
    except ValueError as error:
        raise UsageError(f"--images {args.images}: {error}") from error
    print(f"{len(shots.labels)} query images of {len(set(shots.labels))} classes from {args.images}")
    return dataset


def run_push(args: argparse.Namespace) -> None:
    _quiet(args.progress)
    upload = dict(private=args.private or None, commit_message=args.commit_message, revision=args.revision,
                  create_pr=args.create_pr)
    if is_bank(args.memory):
        if args.push_dataset:
            raise UsageError("--push-dataset uploads one memory's recall; a bank's recall is made with "
                             "hf-rtp recall BANK (then datasets' push_to_hub)")
        url = _load_bank(args.memory).push_to_hub(args.repo_id, **{k: v for k, v in upload.items() if v is not None})
    else:
        memory = _load_memory(args.memory)
        # a memory addressed by images cannot draw its recall without pictures: its folder's recalled.png goes up
        picture = Path(args.memory) / "recalled.png"
        url = memory.push_to_hub(args.repo_id, push_dataset=args.push_dataset, **upload,
                                 recalled_picture=picture if memory.config.addressed_by_images and picture.is_file() else None)
    print(f"pushed to {url}")


def info_summary(config, name: str) -> str:
    """What a person wants to know about a memory (its config), one line each."""
    from .hub import normalisation_text, reproduce_command

    cfg = config
    names = cfg.class_names
    shape = "x".join(map(str, cfg.image_shape))
    if cfg.addressed_by_images:  # no per-class recall: each query (a group of shot pictures) recalls r images
        recalls = f"{cfg.images_per_query} images per query (a group of shot pictures of one class), each {shape}"
    else:
        recalls = f"{cfg.images_per_query} images per class ({cfg.images_per_query * cfg.num_classes} in all), each {shape}"
    lines = [
        ("memory", name),
        ("dataset", f"{cfg.dataset_name or 'not recorded'} ({cfg.num_classes} classes: {', '.join(names[:10])}"
                    f"{', ...' if len(names) > 10 else ''})"
                    + (f", {cfg.task.get('name')} of a {cfg.task.get('stream')} stream ({cfg.task.get('transform')})"
                       if cfg.task else "")),
        ("recalls", recalls),
        ("stores", f"K={cfg.num_bases} bases at {'x'.join(map(str, cfg.base_shape))} (downsample {cfg.downsample}), "
                   f"{cfg.addressing} addressing: {cfg.storage_floats()} floats, budget {cfg.budget_floats()} "
                   f"= {cfg.budget_ipc():g} image(s) per class"),
        ("pixel space", normalisation_text(cfg)),
    ]
    if cfg.addressed_by_images:
        lines.insert(2, ("addressed", f"by images: a {cfg.query_encoder} query head ({cfg.query_head_floats()} floats, "
                                      f"outside the budget) projects each image"
                                      f"{' and its pixels' if cfg.query_pixels else ''} to a {cfg.query_dim}-d query; "
                                      f"its encoder started "
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


def bank_summary(bank, name: str) -> str:
    """What a person wants to know about a bank, one line each, then a line per task (up to 20)."""
    names = bank.class_names
    accuracy = [bank.accuracy[t] for t in bank.tasks if t in bank.accuracy]
    lines = [("bank", name), ("tasks", f"{len(bank)}: {', '.join(bank.tasks[:6])}{', ...' if len(bank) > 6 else ''}"),
             ("classes", f"{len(names)} ({'every task holds the same classes' if bank.shared_classes else 'each class in one task'}"
                         f"): {', '.join(names[:10])}{', ...' if len(names) > 10 else ''}"),
             ("stores", f"{bank.storage_floats():,} floats in all")]
    if bank.stream:
        s = bank.stream
        lines.append(("stream", f"{s.get('stream')} of {s.get('dataset')} ({s.get('split')} split, seed {s.get('seed')}): "
                                f"hf-rtp evaluate {name} rebuilds its tasks' test sets and scores it"))
    if accuracy:
        lines.append(("accuracy", f"mean {100 * sum(accuracy) / len(accuracy):.2f}% over the {len(accuracy)} tasks that record one"))
    text = "\n".join(f"{key:<12} {value}" for key, value in lines)
    for task in bank.tasks[:20]:
        cfg = bank.memories[task].config
        measured = f", {100 * bank.accuracy[task]:.2f}%" if task in bank.accuracy else ""
        text += f"\n  {task}: {cfg.num_classes} classes, K={cfg.num_bases}, r={cfg.images_per_query}, {cfg.storage_floats():,} floats{measured}"
    if len(bank) > 20:
        text += f"\n  ... and {len(bank) - 20} more tasks"
    return text


def run_info(args: argparse.Namespace) -> None:
    if is_bank(args.memory):
        bank = _load_bank(args.memory)
        if args.json:
            print(json.dumps({**bank.index(), "kind": "bank"}, indent=1))
        else:
            print(bank_summary(bank, args.memory))
        return
    # config.json alone: what info prints is there, and it skips fetching and loading the weights
    from .configuration_memory import AddressableMemoryConfig

    try:
        cfg = AddressableMemoryConfig.from_pretrained(args.memory)
    except OSError as error:
        raise UsageError(f"{args.memory}: {error}") from error
    if cfg.model_type != "addressable_memory":
        raise UsageError(f"{args.memory} holds a config.json of model type {cfg.model_type!r}, not an addressable memory")
    if args.json:
        print(json.dumps({
            "kind": "memory", "dataset": cfg.dataset_name, "classes": cfg.num_classes, "image_shape": cfg.image_shape,
            "addressing": cfg.addressing, "num_bases": cfg.num_bases, "images_per_query": cfg.images_per_query,
            "downsample": cfg.downsample, "storage_floats": cfg.storage_floats(), "budget_ipc": round(cfg.budget_ipc(), 4),
            "query_encoder": cfg.query_encoder, "query_head_floats": cfg.query_head_floats(),
            "query_encoder_start": cfg.query_encoder_start, "query_pixels": cfg.query_pixels,
            "distillation": cfg.distillation, "evaluation": cfg.evaluation,
        }, indent=1))
    else:
        print(info_summary(cfg, args.memory))


# ---- the parser -------------------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _fill(name: str, p: argparse.ArgumentParser) -> None:
    """The options of subcommand `name` (imports what their dataclasses need)."""
    if name == "distill":
        from .presets import add_run_options

        add_run_options(p)
    elif name == "evaluate":
        from .evaluate import EvalConfig
        from .options import add_options

        p.add_argument("memory", help="saved memory or bank folder, or Hub id")
        p.add_argument("--dataset", default=None, help="test dataset (default: the one the memory or bank records)")
        p.add_argument("--dataset-config", default=None, help="dataset config name (e.g. cropped_digits for SVHN)")
        add_options(p, EvalConfig, skip=("micro_batch", "test_batch_size"))
        p.add_argument("--device", default=None, help="where to train the students (default: cuda if available, else cpu)")
        p.add_argument("--random-real", action=argparse.BooleanOptionalAction, default=True,
                       help="also score random real images of the same budget (default: on)")
        p.add_argument("--way", type=_positive, default=None, help="memories addressed by images: N classes per few-shot "
                                                                    "episode (default: 5)")
        p.add_argument("--shots", type=_positive, default=None, help="memories addressed by images: k shot pictures per "
                                                                      "class (default: 1)")
        p.add_argument("--episodes", type=_positive, default=None, help="memories addressed by images: episodes to "
                                                                         "average (default: 100)")
        p.add_argument("--save", action="store_true", help="write the result into the local memory folder's config and card")
        p.add_argument("--save-to", metavar="DIR", default=None, help="save the evaluated memory (with its card) to DIR")
        p.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="upload the evaluated memory and its card")
        p.add_argument("--json", action="store_true", help="also print the result as JSON")
    elif name == "recall":
        p.add_argument("memory", help="saved memory or bank folder, or Hub id")
        p.add_argument("--output", required=True, help="folder for the Dataset (save_to_disk) and recalled.png")
        p.add_argument("--classes", nargs="+", default=None,
                       help="class names or ids (default: all); the label ids index them in the order given")
        p.add_argument("--tasks", nargs="+", default=None, help="a bank: recall from these tasks only")
        p.add_argument("--images", default=None, metavar="DIR",
                       help="recall by pictures (a memory with a query head): DIR/class_name/*.png, the shots of each class "
                            "averaged into one query; other sizes are resized, unreadable files skipped with a note")
        p.add_argument("--preview", action="store_true", help="add a uint8 `image` column for viewing")
        p.add_argument("--parquet", action="store_true", help="write recalled.parquet instead of save_to_disk")
        p.add_argument("--overwrite", action="store_true", help="write into a non-empty --output folder")
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show progress bars")
    elif name == "push":
        p.add_argument("memory", help="saved memory or bank folder")
        p.add_argument("repo_id", help="the Hub model repo to create or update, e.g. user/mnist-ipc1")
        p.add_argument("--private", action="store_true", help="create the repo private")
        p.add_argument("--push-dataset", action="store_true", help="also upload the recalled Dataset to <repo_id>-recalled")
        p.add_argument("--commit-message", default=None, help="the commit's message (default: says what is uploaded)")
        p.add_argument("--revision", default=None, help="branch to push to (created if missing)")
        p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show progress bars")
    elif name == "info":
        p.add_argument("memory", help="saved memory or bank folder, or Hub id")
        p.add_argument("--json", action="store_true", help="print it as JSON")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `hf-rtp` parser. Every subcommand is listed; only `command`'s options are filled (all of them when None),
    so `hf-rtp --help` and a run of one command import only what that command needs."""
    parser = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    for name, text in COMMANDS.items():
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        if command is None or command == name:
            _fill(name, p)
    return parser


def main(argv: Sequence[str] | None = None) -> Any:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["distill", *argv]  # the main job is the default command
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else "")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error(f"name a command: {', '.join(COMMANDS)}")
    runners = {"distill": run_distill, "evaluate": run_evaluate, "recall": run_recall, "push": run_push, "info": run_info}
    try:
        runners[args.command](args)
    except Exception as error:  # every failure is one line a person can act on; --debug shows the traceback
        if args.debug:
            raise
        known_types = (UsageError, ValueError, OSError, RuntimeError)
        if not isinstance(error, known_types) and isinstance(error.__cause__, known_types):
            error = error.__cause__  # e.g. a strict dataclass's validation error: its ValueError says what is wrong
        text = " ".join(str(error).split()) or type(error).__name__
        known = isinstance(error, known_types)
        parser.exit(2, f"{PROG}: error: {text if known else f'{type(error).__name__}: {text}'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
