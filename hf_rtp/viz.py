"""Pictures people would rather see than read: recalled images, bases, class-similarity heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from .modeling_memory import AddressableMemory


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers or CI
    import matplotlib.pyplot as plt

    return plt


def _show(ax, image: torch.Tensor) -> None:
    """Draw one [0, 1] (C, H, W) image."""
    array = image.permute(1, 2, 0).cpu().numpy()
    if array.shape[-1] == 1:
        ax.imshow(array[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(array, 0, 1))
    ax.set_xticks([])
    ax.set_yticks([])


@torch.no_grad()
def save_recalled_grid(
    memory: "AddressableMemory", path: str | Path, per_class: int = 10, classes: Sequence[int] | None = None
) -> Path:
    """One row per class (up to 20 rows), the first `per_class` recalled images of each, de-normalised."""
    plt = _pyplot()
    n = memory.config.num_classes
    classes = list(classes) if classes is not None else list(range(min(n, 20)))
    m = min(per_class, memory.config.images_per_query)
    out = memory(labels=torch.tensor(classes), image_indices=torch.arange(m))
    images = memory.to_viewable(out.images.float()).view(len(classes), m, *out.images.shape[1:])
    fig, axes = plt.subplots(len(classes), m, figsize=(m * 0.9 + 0.8, len(classes) * 0.9), squeeze=False)
    for row, c in enumerate(classes):
        for col in range(m):
            _show(axes[row, col], images[row, col])
        axes[row, 0].set_ylabel(memory.config.class_names[c], rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"recalled images ({m} of r={memory.config.images_per_query} per class)", fontsize=9)
    return _save(fig, path)


@torch.no_grad()
def save_bases(memory: "AddressableMemory", path: str | Path, max_bases: int = 32) -> Path:
    """The stored bases at their own resolution, each scaled to its own range (they are not images)."""
    plt = _pyplot()
    bases = memory.bases.detach().float()[:max_bases]
    lo = bases.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = bases.flatten(1).max(1).values.view(-1, 1, 1, 1)
    bases = (bases - lo) / (hi - lo).clamp_min(1e-12)
    cols = min(8, len(bases))
    rows = (len(bases) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.0, rows * 1.0), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, base in enumerate(bases):
        _show(axes.flat[i], base)
        axes.flat[i].axis("on")
    fig.suptitle(f"{len(bases)} of K={memory.config.num_bases} bases", fontsize=9)
    return _save(fig, path)


def class_similarity(memory: "AddressableMemory") -> torch.Tensor:
    """Cosine similarity of each class pair's mean addressing coefficients (fig 3 of the paper)."""
    if memory.addressing is None or memory.config.query_dim != memory.config.num_classes:
        raise ValueError("class similarity needs learned addressing by class labels (one row per class)")
    # Mean over the r addressing matrices of row y: the class's average use of each basis.
    mean = memory.addressing.detach().float().mean(0)
    mean = torch.nn.functional.normalize(mean, dim=1)
    return mean @ mean.T


def save_class_similarity(memory: "AddressableMemory", path: str | Path) -> Path:
    plt = _pyplot()
    sim = class_similarity(memory).cpu().numpy()
    names = memory.config.class_names
    size = max(4, 0.35 * len(names))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(sim, cmap="viridis", vmin=-1, vmax=1)
    if len(names) <= 30:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("class similarity of addressing (cosine)", fontsize=9)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
