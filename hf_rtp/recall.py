"""Recall a memory into a `datasets.Dataset`: exact float pixels, ClassLabel labels, optional uint8 preview."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from datasets import Array3D, ClassLabel, Dataset, Features, Image, List, Value

if TYPE_CHECKING:
    from .modeling_memory import AddressableMemory


def class_ids(memory: "AddressableMemory", classes: Sequence[int | str] | None) -> list[int]:
    """Class ids from ids or names; all classes when None."""
    names = memory.config.class_names
    if classes is None:
        return list(range(len(names)))
    ids = []
    for c in classes:
        if isinstance(c, str) and c in names:
            ids.append(names.index(c))
        elif isinstance(c, str) and not c.lstrip("-").isdigit():
            raise ValueError(f"unknown class name {c!r}; this memory knows {names}")
        else:  # an id, or a numeric string (from a command line) that names no class
            c = int(c)
            if not 0 <= c < len(names):
                raise ValueError(f"class id {c} out of range [0, {len(names)})")
            ids.append(c)
    return ids


def to_uint8_hwc(viewable: torch.Tensor) -> np.ndarray:
    """[0, 1] (N, C, H, W) -> uint8 (N, H, W, C), or (N, H, W) for one channel (PIL mode L)."""
    array = (viewable * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def recall(
    memory: "AddressableMemory",
    classes: Sequence[int | str] | None = None,
    queries: torch.Tensor | None = None,
    query_labels: Sequence[int] | None = None,
    preview: bool = False,
    batch_size: int = 64,
) -> Dataset:
    """Address the memory with every chosen class (or each query vector) and collect the r images of each.

    Columns: `pixel_values` (Array3D float32, exactly what the memory produces, in the dataset's normalised
    space), `label` (ClassLabel), `address` (which addressing matrix i made the image), for queries also
    `query` and `query_id`, and with `preview=True` an `image` column (uint8, de-normalised) for viewing.
    """
    config = memory.config
    c, h, w = config.image_shape
    features = {"pixel_values": Array3D(shape=(c, h, w), dtype="float32")}
    by_queries = queries is not None
    if by_queries:
        if classes is not None:
            raise ValueError("pass either classes= or queries=, not both")
        queries = memory._check_queries(queries)
        if query_labels is not None and len(query_labels) != len(queries):
            raise ValueError(f"query_labels needs one label per query ({len(queries)}), got {len(query_labels)}")
        features["query"] = List(Value("float32"), length=config.query_dim)
        features["query_id"] = Value("int64")
    elif query_labels is not None:
        raise ValueError("query_labels only goes with queries=")
    if not by_queries or query_labels is not None:
        features["label"] = ClassLabel(names=config.class_names)
    features["address"] = Value("int32")
    if preview:
        features["image"] = Image()
    features = Features(features)

    r = config.images_per_query
    ids = [] if by_queries else class_ids(memory, classes)
    n = len(queries) if by_queries else len(ids)
    step = max(1, batch_size // r)
    pixels, views = [], []
    with torch.no_grad():
        for start in range(0, n, step):
            stop = min(n, start + step)
            if by_queries:
                images = memory(queries=queries[start:stop]).images.float()
            else:
                images = memory(labels=torch.tensor(ids[start:stop], dtype=torch.long)).images.float()
            pixels.append(images.cpu().numpy())
            if preview:
                views.append(to_uint8_hwc(memory.to_viewable(images)))
    owner = np.repeat(np.arange(n), r)  # which query (row of ids / queries) each image came from
    columns: dict = {
        "pixel_values": np.concatenate(pixels) if pixels else np.zeros((0, c, h, w), np.float32),
        "address": np.tile(np.arange(r, dtype=np.int32), n),
    }
    if by_queries:
        columns["query"] = queries.float().cpu().numpy()[owner]
        columns["query_id"] = owner
        if query_labels is not None:
            columns["label"] = np.asarray(query_labels, dtype=np.int64)[owner]
    else:
        columns["label"] = np.asarray(ids, dtype=np.int64)[owner]
    if preview:
        columns["image"] = list(np.concatenate(views)) if views else []
    return Dataset.from_dict({name: columns[name] for name in features}, features=features)
