"""A memory's recall as a `datasets.Dataset`: exact float pixels, ClassLabel labels, optional uint8 preview.

`AddressableMemory.recall` addresses the memory (eqn 2) and hands the tensors here; this module only knows the
config and the column layout, so it sits below the model in the import graph.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np
import torch
from datasets import Array3D, ClassLabel, Dataset, Features, Image, List, Value

from .configuration_memory import AddressableMemoryConfig


def class_ids(class_names: Sequence[str], classes: Sequence[int | str] | None) -> list[int]:
    """Class ids from ids or names; all classes when None. Numeric strings (from a command line) that name no
    class are taken as ids; floats and booleans are refused rather than truncated."""
    names = list(class_names)
    if classes is None:
        return list(range(len(names)))
    if isinstance(classes, (str, bytes)):
        raise ValueError(f"classes must be a list of class names or ids, got the string {classes!r}")
    ids = []
    for c in classes:
        if isinstance(c, str) and c in names:
            ids.append(names.index(c))
        elif isinstance(c, str) and not c.lstrip("-").isdigit():
            raise ValueError(f"unknown class name {c!r}; this memory knows {names}")
        elif isinstance(c, (bool, np.bool_)) or not isinstance(c, (str, numbers.Integral)):
            raise ValueError(f"classes must be class names or integer ids, got {c!r} ({type(c).__name__})")
        else:
            c = int(c)
            if not 0 <= c < len(names):
                raise ValueError(f"class id {c} out of range [0, {len(names)})")
            ids.append(c)
    return ids


def to_uint8_hwc(viewable: torch.Tensor) -> np.ndarray:
    """[0, 1] (N, C, H, W) -> uint8 (N, H, W, C), or (N, H, W) for one channel (PIL mode L)."""
    array = (viewable * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def recalled_dataset(
    config: AddressableMemoryConfig,
    pixels: np.ndarray,
    images_per_query: int,
    labels: np.ndarray | None = None,
    queries: np.ndarray | None = None,
    previews: np.ndarray | None = None,
    soft_labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> Dataset:
    """The Dataset of recalled images grouped by query (`images_per_query` consecutive rows per query).

    Columns: `pixel_values` (Array3D float32, exactly what the memory produced, in the dataset's pixel space),
    `label` (ClassLabel; per query), `address` (which addressing matrix i made the image), with `queries` also
    `query` and `query_id`, with `soft_labels` (one distribution over the classes per image) `soft_label`, and with
    `previews` an `image` column (uint8) for viewing. `class_names` overrides the memory's for the `label` column
    (few-shot recall by images, whose groups are the caller's classes).
    """
    c, h, w = config.image_shape
    r = images_per_query
    n = len(pixels) // r
    owner = np.repeat(np.arange(n), r)  # which query each image came from
    features: dict = {"pixel_values": Array3D(shape=(c, h, w), dtype="float32")}
    columns: dict = {"pixel_values": pixels.astype(np.float32, copy=False) if len(pixels) else np.zeros((0, c, h, w), np.float32)}
    if queries is not None:
        features["query"] = List(Value("float32"), length=config.query_dim)
        features["query_id"] = Value("int64")
        columns["query"], columns["query_id"] = queries.astype(np.float32)[owner], owner
    if labels is not None:
        features["label"] = ClassLabel(names=list(class_names or config.class_names))
        columns["label"] = np.asarray(labels, dtype=np.int64)[owner]
    if soft_labels is not None:
        features["soft_label"] = List(Value("float32"), length=config.num_classes)
        columns["soft_label"] = soft_labels.astype(np.float32, copy=False)
    features["address"] = Value("int32")
    columns["address"] = np.tile(np.arange(r, dtype=np.int32), n)
    if previews is not None:
        features["image"] = Image()
        columns["image"] = list(previews)
    features = Features(features)
    return Dataset.from_dict({name: columns[name] for name in features}, features=features)
