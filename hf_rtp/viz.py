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
    # about 2 screen pixels per image pixel for 28 px images: readable, and a 10 x 10 grid stays near 50 KB
    fig, axes = plt.subplots(rows, m, figsize=(m * 0.62 + 0.6, rows * 0.62 + 0.35), squeeze=False)
    for row in range(rows):
        for col in range(m):
            _show(axes[row, col], images[row, col])
        axes[row, 0].set_ylabel(row_names[row], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=8)
    return _save(fig, path)


def save_bases(bases: torch.Tensor, path: str | Path, total: int | None = None, usage: torch.Tensor | None = None) -> Path:
    """Stored bases (K, C, h, w) at their own resolution, each scaled to its own range (they are not images: every
    recalled image is a weighted sum of all of them, eqn 2). With `usage` (K, how much the addressing draws on each
    basis) the most used come first and each is captioned with its share."""
    plt = _pyplot()
    bases = bases.detach().float().cpu()
    order = list(range(len(bases)))
    if usage is not None:
        usage = usage.detach().float().cpu()
        order = torch.argsort(usage, descending=True).tolist()
        share = usage / usage.sum().clamp_min(1e-12)
    shown = order[:32]
    picked = bases[shown]
    lo = picked.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = picked.flatten(1).max(1).values.view(-1, 1, 1, 1)
    picked = (picked - lo) / (hi - lo).clamp_min(1e-12)
    cols = min(8, len(picked))
    rows = (len(picked) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.0, rows * 1.1 + 0.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (k, base) in enumerate(zip(shown, picked)):
        _show(axes.flat[i], base)
        axes.flat[i].axis("on")
        axes.flat[i].set_title(f"k={k}" + (f" {100 * share[k]:.0f}%" if usage is not None else ""), fontsize=6, pad=2)
    total = total or len(bases)
    which = "the most used first, with their share of the addressing weight" if usage is not None else "in stored order"
    fig.suptitle(f"{len(shown)} of the K={total} stored bases ({which})\nnot images: each recalled image is a weighted "
                 "sum of all K (eqn 2); each basis is shown at its own resolution and contrast", fontsize=7)
    return _save(fig, path)


def class_similarity(addressing: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each class pair's mean addressing coefficients (fig 3 of the paper), from learned
    addressing matrices (r, classes, K)."""
    # Mean over the r addressing matrices of row y: the class's average use of each basis.
    mean = torch.nn.functional.normalize(addressing.detach().float().cpu().mean(0), dim=1)
    return mean @ mean.T


def save_class_similarity(addressing: torch.Tensor, names: Sequence[str], path: str | Path) -> Path:
    """Fig 3 of the paper: how alike the memory addresses each pair of classes. The colour scale spans the pairs'
    own range (the diagonal, always 1, is left blank), so differences between pairs are visible."""
    plt = _pyplot()
    sim = class_similarity(addressing).numpy()
    n = len(names)
    pairs = sim[~np.eye(n, dtype=bool)]
    shown = np.where(np.eye(n, dtype=bool), np.nan, sim)
    size = max(4, 0.35 * n)
    fig, ax = plt.subplots(figsize=(size + 1.2, size + 0.9))
    lo, hi = (float(pairs.min()), float(pairs.max())) if len(pairs) else (0.0, 1.0)
    im = ax.imshow(shown, cmap="viridis", vmin=lo, vmax=max(hi, lo + 1e-6))
    if n <= 30:
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
    if n <= 12:  # few enough cells to print the values
        for i in range(n):
            for j in range(n):
                if i != j:
                    ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if sim[i, j] < (lo + hi) / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="cosine similarity")
    ax.set_title("class similarity of the addressing (fig 3 of the paper)", fontsize=9)
    fig.text(0.5, 0.01, "cosine of two classes' mean addressing coefficients over the r matrices: classes the memory\n"
             "builds from the same bases score high; the diagonal (1) is left blank", ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, path, layout=False)


def _save(fig, path: str | Path, layout: bool = True) -> Path:
    """Write the figure as a small PNG: matplotlib's RGBA is re-encoded as greyscale when it has no colour, else as
    a 256-colour palette (pictures of a few hundred KB become a few tens)."""
    from PIL import Image

    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        small = Image.fromarray(rgb[..., 0], mode="L")
    else:
        small = Image.fromarray(rgb).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    return path
