"""Distil, then evaluate, then save, then push: the one pipeline that `hf-rtp distill`, `examples/distill.py` and
the Python API share (diffusers' pattern: the pipeline wires, the Distiller loops)."""

from __future__ import annotations

from typing import Callable

import torch

from .configuration_memory import MemoryOptions
from .data import DataConfig, ImageClassificationData
from .distill import DistillConfig, Distiller
from .evaluate import EvalConfig
from .modeling_memory import AddressableMemory


def distill_memory(
    config: DistillConfig,
    memory: AddressableMemory,
    train: ImageClassificationData,
    test: ImageClassificationData | None = None,
    validation: ImageClassificationData | None = None,
    accelerator=None,
) -> AddressableMemory:
    """Train `memory` on `train` (see Distiller), evaluate the best one on `test` when given (`final_models` fresh
    networks, or few-shot episodes for a memory addressed by images), save it to <output_dir>/memory with its model
    card and pictures, and push it when `config.push_to_hub` says where. Returns the memory."""
    if test is not None:  # checked before the run, not after it
        memory.check_data(test)
        test.check_finite()
    distiller = Distiller(config, memory, train, validation=validation, accelerator=accelerator)
    with distiller.session:  # the run's lock is held until its memory is saved
        memory = distiller.train()
        if distiller.accelerator.is_main_process:
            if test is not None and config.final_models:
                # --max-minutes bounds the final evaluation too, with a budget of its own of the same length (at
                # least one model of each kind; the record says how many ran): a short run stays short, and a long
                # run's evaluation is not squeezed by a loop that used all of its time
                final = EvalConfig(models=config.final_models, epochs=config.final_epochs, width=config.eval_width,
                                   seed=config.seed, augment=config.augment, progress=config.progress,
                                   max_minutes=config.max_minutes)
                distiller.objective.evaluate(test, final, train=train, device=distiller.device)
            distiller.run.save_memory(memory)
            if memory.config.addressed_by_images and test is not None:
                picture_recall_by_images(memory, test, config.shots, config.seed, distiller.run.memory_path)
            if config.push_to_hub:
                picture = distiller.run.memory_path / "recalled.png"  # drawn above for a memory addressed by images
                memory.push_to_hub(config.push_to_hub, push_dataset=config.push_dataset,
                                   recalled_picture=picture if memory.config.addressed_by_images and picture.exists() else None)
            distiller.session.end()
        distiller.accelerator.wait_for_everyone()
    return memory


def distill_dataset(data: DataConfig, sizing: MemoryOptions, config: DistillConfig, accelerator=None,
                    announce: Callable[[str], None] | None = print) -> AddressableMemory:
    """Load `data`, size a fresh memory for it (`sizing`), and run `distill_memory` with its test split."""
    from accelerate import Accelerator

    accelerator = accelerator or Accelerator(log_with=None if config.report_to == "none" else config.report_to,
                                             project_dir=config.output_dir)
    train, test = data.load()
    torch.manual_seed(config.seed)  # the same seed on every process gives every rank the same starting memory
    memory = AddressableMemory.for_dataset(train, **vars(sizing))
    mc = memory.config
    if accelerator.is_main_process and announce is not None:
        announce(f"{data.dataset}: {len(train)} train / {len(test)} test images {train.image_shape}, {train.num_classes} "
                 f"classes; memory K={mc.num_bases} r={mc.images_per_query} ds={mc.downsample} ({mc.storage_floats()} "
                 f"floats, budget {mc.budget_ipc():g} image(s) per class)")
    return distill_memory(config, memory, train, test=test, accelerator=accelerator)


def picture_recall_by_images(memory: AddressableMemory, test: ImageClassificationData, shots: int, seed: int, folder) -> None:
    """recalled.png for a memory addressed by images: what it recalls from `shots` test pictures of each of up to 10
    classes (one query each), drawn from `seed`; the card then shows it."""
    from .episodes import draw_episode
    from .hub import recall_picture, write_card

    episode = draw_episode(test, min(10, test.num_classes), shots, 1, torch.Generator().manual_seed(seed))
    names = [test.class_names[c] for c in episode.classes]
    images = episode.shots.flatten(0, 1).to(memory.device)
    recalled = memory.recall(images=images, labels=[n for n in names for _ in range(shots)])
    recall_picture(memory, recalled, folder / "recalled.png")
    write_card(memory.config, folder)
