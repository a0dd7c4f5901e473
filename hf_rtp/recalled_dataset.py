"""A memory's recall as a `datasets.Dataset`: exact float pixels, ClassLabel labels, optional uint8 preview.

`AddressableMemory.recall` is the front door; it hands each kind of query to its function here (`recall_by_labels`,
`recall_by_queries`, `recall_by_images`), which addresses the memory (eqn 2, through its public methods) and lays the
tensors out as columns. This module never imports the model, so it sits below it in the import graph.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Array3D, ClassLabel, Dataset, Features, Image, List, Value

from . import queries as checks
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
        features["soft_label"] = List(Value("float32"), length=soft_labels.shape[1])
        columns["soft_label"] = soft_labels.astype(np.float32, copy=False)
    features["address"] = Value("int32")
    columns["address"] = np.tile(np.arange(r, dtype=np.int32), n)
    if previews is not None:
        features["image"] = Image()
        columns["image"] = list(previews)
    features = Features(features)
    return Dataset.from_dict({name: columns[name] for name in features}, features=features)


@torch.no_grad()
def _recall(memory, rows: torch.Tensor, by_queries: bool, preview: bool, batch_size: int):
    """(pixels, previews, soft labels) of every query row (class ids, or query vectors when `by_queries`)."""
    config = memory.config
    r = config.images_per_query
    step = max(1, batch_size // r)
    pixels, previews, soft = [], [], []
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        images = (memory(queries=part) if by_queries else memory(labels=part)).images.float()
        pixels.append(images.cpu().numpy())
        if config.soft_labels:
            one_hot = part if by_queries else F.one_hot(part, config.num_classes).to(memory.bases.dtype)
            soft.append(memory.label_distribution(one_hot, torch.arange(r, device=part.device).expand(len(part), r))
                        .float().cpu().numpy())
        if preview:
            previews.append(to_uint8_hwc(memory.to_viewable(images, stretch=True)))
    c, h, w = config.image_shape
    return (np.concatenate(pixels) if pixels else np.zeros((0, c, h, w), np.float32),
            (np.concatenate(previews) if previews else []) if preview else None,
            (np.concatenate(soft) if soft else np.zeros((0, config.num_classes), np.float32)) if config.soft_labels else None)


def recall_by_labels(memory, classes: Sequence[int | str] | None = None, preview: bool = False, batch_size: int = 64) -> Dataset:
    """Every recalled image of each class in `classes` (names or ids; default all). The label space is the package's
    one convention for every recall (memory, bank, pictures): the `label` ClassLabel names the classes asked for,
    in the order asked (all of them, in the memory's order, when none are named), so a subset trains a classifier
    of exactly that many outputs and its names say which class each id is. Learned soft labels are restricted to
    the same classes (mass on the others dropped, each row renormalised)."""
    if classes is not None and not isinstance(classes, (str, bytes)) and len(classes) == 0:
        raise ValueError("classes=[] asks for no class: pass class names or ids, or None for all")
    ids = class_ids(memory.config.class_names, classes)
    if len(set(ids)) != len(ids):
        raise ValueError(f"classes must be distinct, got {list(classes)}")
    rows = torch.tensor(ids, dtype=torch.long, device=memory.device)
    pixels, previews, soft = _recall(memory, rows, False, preview, batch_size)
    if soft is not None and classes is not None:
        soft = soft[:, ids]
        soft = soft / np.clip(soft.sum(1, keepdims=True), 1e-12, None)
    return recalled_dataset(memory.config, pixels, memory.config.images_per_query, labels=np.arange(len(ids)),
                            previews=previews, soft_labels=soft,
                            class_names=[memory.config.class_names[i] for i in ids])


def recall_by_queries(memory, queries: torch.Tensor, query_labels: Sequence[int] | None = None, preview: bool = False,
                      batch_size: int = 64) -> Dataset:
    """The r images of each query vector (N, d_y); `query_labels` (class ids, one per query) fill the `label`
    column."""
    queries = checks.check_queries(memory.config, queries, memory.bases)
    if query_labels is not None:
        if len(query_labels) != len(queries):
            raise ValueError(f"query_labels needs one label per query ({len(queries)}), got {len(query_labels)}")
        query_labels = checks.check_labels(memory.config, torch.as_tensor(query_labels), memory.bases, addressed=False).cpu().numpy()
    pixels, previews, soft = _recall(memory, queries, True, preview, batch_size)
    return recalled_dataset(memory.config, pixels, memory.config.images_per_query, labels=query_labels,
                            queries=queries.float().cpu().numpy(), previews=previews, soft_labels=soft)


@torch.no_grad()
def recall_by_images(memory, images: Any, labels: Sequence[int | str] | None, preview: bool = False,
                     batch_size: int = 64) -> Dataset:
    """Few-shot recall (sec 5.3.2): the shots of each label are averaged into one query (y = mean of
    projection(encoder(x))), which recalls r images that carry that label; the `label` ClassLabel names the given
    labels in order of first appearance. `images` are tensors in the memory's pixel space, or anything
    `memory.preprocess` takes (PIL images, uint8 arrays)."""
    if labels is None:
        raise ValueError("images= needs labels= (one per image: which shots belong together)")
    if not isinstance(images, torch.Tensor):
        images = memory.preprocess(images)
    if len(labels) != len(images):
        raise ValueError(f"labels needs one label per image ({len(images)} images), got {len(labels)}")
    if len(images) == 0:
        raise ValueError("no query images given")
    names = [str(label) for label in labels]
    groups = list(dict.fromkeys(names))  # in order of first appearance
    features = memory.image_queries(images)
    owner = torch.tensor([groups.index(name) for name in names], device=features.device)
    queries = torch.stack([features[owner == g].mean(0) for g in range(len(groups))])
    pixels, previews, soft = _recall(memory, queries, True, preview, batch_size)
    return recalled_dataset(memory.config, pixels, memory.config.images_per_query, labels=np.arange(len(groups)),
                            queries=queries.float().cpu().numpy(), previews=previews, soft_labels=soft,
                            class_names=groups)
