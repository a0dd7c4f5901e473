"""N-way k-shot episodes: what an image-addressed memory is trained and scored on (sec 5.3.2).

An episode draws N classes and, from each, k shot images (the only thing the memory is shown) and some other
images of the same class (what the network trained on the recall is scored on, or the Distiller's outer loss).
Labels inside an episode are 0..N-1 in the order the classes were drawn: the memory never sees class ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import ImageClassificationData


@dataclass
class Episode:
    classes: list[int]
    """The N classes (ids in the data), in episode-label order."""
    shots: torch.Tensor
    """(N, k, C, H, W): k shot images per class."""
    images: torch.Tensor
    """(M, C, H, W): other images of those classes."""
    labels: torch.Tensor
    """(M,): their episode labels, 0..N-1."""


def draw_episode(data: ImageClassificationData, way: int, shots: int, others: int, generator: torch.Generator) -> Episode:
    """`way` classes of `data`, `shots` shot images and up to `others` further images of each, all distinct, drawn
    from `generator`."""
    if way > data.num_classes:
        raise ValueError(f"a {way}-way episode needs {way} classes; {data.name or 'the data'} has {data.num_classes}")
    classes = torch.randperm(data.num_classes, generator=generator)[:way].tolist()
    shot_images, images, labels = [], [], []
    for label, c in enumerate(classes):
        x, _ = data.sample([c], shots + others, generator)
        if len(x) <= shots:
            raise ValueError(f"class {data.class_names[c]} has {len(x)} images in {data.name}:{data.split}; an episode "
                             f"needs {shots} shots and at least one more")
        shot_images.append(x[:shots])
        images.append(x[shots:])
        labels.append(torch.full((len(x) - shots,), label, dtype=torch.long))
    return Episode(classes, torch.stack(shot_images), torch.cat(images), torch.cat(labels))


def draw_episodes(data: ImageClassificationData, way: int, shots: int, others: int, count: int, seed: int) -> list[Episode]:
    """`count` episodes drawn in turn from one generator seeded with `seed`: the same seed gives every method (image
    addressing, its baselines, validation) the same episodes, so their scores compare episode by episode."""
    generator = torch.Generator().manual_seed(seed)
    return [draw_episode(data, way, shots, others, generator) for _ in range(count)]


def episode_accuracy(memory, episode: Episode, config, device=None) -> float:
    """Image addressing scored on one episode: recall r images per class from its shots (labels 0..N-1), train a
    fresh network on them (`config`, an EvalConfig), test it on the episode's other images."""
    from .evaluate import accuracy_on, train_from_scratch

    device = device or memory.device
    n = len(episode.classes)
    with torch.no_grad():
        queries = memory.shot_queries(episode.shots.to(device))
        images = memory(queries=queries).images
    labels = torch.arange(n, device=device).repeat_interleave(memory.config.images_per_query)
    with torch.enable_grad():
        net = train_from_scratch(images.detach(), labels, n, config, config.seed, device)
    return accuracy_on(net, episode.images, episode.labels, device=device)


def few_shot_evaluation(memory, data: ImageClassificationData, way: int, shots: int, episodes: int, config,
                        seed: int = 0, others: int = 100, device=None) -> dict:
    """Score an image-addressed memory on `episodes` N-way k-shot episodes of `data` (e.g. the test split): per
    episode, recall from the shots, train a fresh network (`config`, an EvalConfig), test on up to `others` other
    images per class. Records the result in `memory.config.evaluation` (the model card shows it) and returns it:
    mean, std and a 95% interval (normal approximation) over episodes."""
    import math

    import numpy as np

    import time

    start, runs = time.perf_counter(), []
    for episode in draw_episodes(data, way, shots, others, episodes, seed):
        if runs and config.max_minutes is not None and time.perf_counter() - start >= 60 * config.max_minutes:
            break  # the time limit: at least one episode, and the record says how many ran
        runs.append(episode_accuracy(memory, episode, config, device))
    episodes = len(runs)
    mean, std = float(np.mean(runs)), float(np.std(runs))
    learner = f"ConvNet-{config.width}" if config.learner == "convnet" else config.learner
    record = {"split": data.split or "test", "models": episodes, "epochs": config.epochs, "learner": learner,
              "few_shot": f"{way}-way {shots}-shot", "accuracy": {"mean": mean, "std": std, "runs": runs,
                                                                  "ci95": 1.96 * std / math.sqrt(len(runs))}}
    memory.config.evaluation = record
    return record
