"""What may address a memory (eqn 2's inputs), checked with one clear error each: class ids, query vectors,
query images and which of the r images to recall. The memory's own methods call these; they know only its config.
"""

from __future__ import annotations

from typing import Any

import torch

from .configuration_memory import AddressableMemoryConfig


def check_labels(config: AddressableMemoryConfig, labels: Any, like: torch.Tensor, addressed: bool = True) -> torch.Tensor:
    """Class ids as a 1-D integer tensor in range; `addressed`: they will address the memory (so it must be
    addressed by labels), rather than only name the class of a query."""
    labels = torch.as_tensor(labels, device=like.device)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dim() != 1:
        raise ValueError(f"labels must be a 1-D integer tensor of class ids, got {labels.dtype} {tuple(labels.shape)}")
    n = config.num_classes
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n):
        raise ValueError(f"labels must lie in [0, {n}) for classes {config.class_names}, got {labels.tolist()}")
    if addressed and config.addressed_by_images:
        raise ValueError("this memory is addressed by images (it has a query head), not class labels; pass images= "
                         "(or queries=)")
    if addressed and config.query_dim != n:
        raise ValueError(f"this memory is addressed by {config.query_dim}-d queries, not class labels; pass queries=")
    return labels


def check_queries(config: AddressableMemoryConfig, queries: Any, like: torch.Tensor) -> torch.Tensor:
    """Query vectors as a finite float (N, d_y) tensor on the device and dtype of `like` (the bases)."""
    queries = torch.as_tensor(queries, device=like.device)
    if not queries.dtype.is_floating_point or queries.dim() != 2 or queries.shape[1] != config.query_dim:
        raise ValueError(
            f"queries must be a float tensor of shape (N, {config.query_dim}), got {queries.dtype} {tuple(queries.shape)}"
        )
    if not bool(torch.isfinite(queries).all()):
        raise ValueError("queries must be finite: found NaN or inf")
    return queries.to(like.dtype)


def check_images(config: AddressableMemoryConfig, images: Any, like: torch.Tensor) -> torch.Tensor:
    """Query images as a finite float (N, C, H, W) tensor of the memory's image shape, on the device and dtype of `like`."""
    shape = tuple(config.image_shape)
    images = torch.as_tensor(images, device=like.device)
    if not images.dtype.is_floating_point or images.dim() != 4 or tuple(images.shape[1:]) != shape:
        raise ValueError(f"images must be (N, {', '.join(map(str, shape))}) float tensors in the memory's pixel space "
                         f"(memory.preprocess turns PIL images or uint8 arrays into them), got {images.dtype} "
                         f"{tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images must be finite: found NaN or inf")
    return images.to(like.dtype)


def check_indices(config: AddressableMemoryConfig, image_indices: Any, n: int, device: torch.device) -> torch.Tensor:
    """Which of the r images each of n queries recalls: (n, m) or (m,) integers in [0, r); None: all r."""
    r = config.images_per_query
    if image_indices is None:
        return torch.arange(r, device=device).expand(n, r)
    image_indices = torch.as_tensor(image_indices, device=device)
    if image_indices.dim() == 1:
        image_indices = image_indices.expand(n, -1)
    if image_indices.dim() != 2 or image_indices.shape[0] != n or image_indices.dtype.is_floating_point:
        raise ValueError(f"image_indices must be integer (N, m) or (m,) with N={n}, got {tuple(image_indices.shape)}")
    if image_indices.numel() and (int(image_indices.min()) < 0 or int(image_indices.max()) >= r):
        raise ValueError(f"image_indices must lie in [0, {r}) (r addressing matrices), got {image_indices.tolist()}")
    return image_indices
