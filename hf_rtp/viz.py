"""Pictures people would rather see than read: recalled images, bases, class-similarity heatmap.

Functions of tensors, not of a memory: `hub.write_pictures` chooses what a saved memory shows."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers or CI
    import matplotlib.pyplot as plt

    return plt


def _show(ax, image: torch.Tensor) -> None:
    """Draw one [0, 1] (C, H, W) image."""
    array = image.permute(1, 2, 0).cpu().numpy()
    if array.shape[-1] == 1:
        ax.imshow(array[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")  # crisp pixels, small files
    else:
        ax.imshow(np.clip(array, 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def save_image_grid(images: torch.Tensor, row_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """A grid of [0, 1] images (rows, m, C, H, W), one named row each."""
    plt = _pyplot()
    rows, m = images.shape[:2]
    fig, axes = plt.subplots(rows, m, figsize=(m * 0.9 + 0.8, rows * 0.9 + 0.3), squeeze=False)
    for row in range(rows):
        for col in range(m):
            _show(axes[row, col], images[row, col])
        axes[row, 0].set_ylabel(row_names[row], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def save_bases(bases: torch.Tensor, path: str | Path, total: int | None = None) -> Path:
    """Stored bases (K, C, h, w) at their own resolution, each scaled to its own range (they are not images)."""
    plt = _pyplot()
    bases = bases.detach().float().cpu()
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
    fig.suptitle(f"{len(bases)} of K={total or len(bases)} bases", fontsize=9)
    return _save(fig, path)


def class_similarity(addressing: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each class pair's mean addressing coefficients (fig 3 of the paper), from learned
    addressing matrices (r, classes, K)."""
    # Mean over the r addressing matrices of row y: the class's average use of each basis.
    mean = torch.nn.functional.normalize(addressing.detach().float().cpu().mean(0), dim=1)
    return mean @ mean.T


def save_class_similarity(addressing: torch.Tensor, names: Sequence[str], path: str | Path) -> Path:
    plt = _pyplot()
    sim = class_similarity(addressing).numpy()
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
