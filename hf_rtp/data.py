"""Hugging Face image-classification datasets in, normalised tensors out.

Hub ids of the paper's benchmarks use a known column table and the authors' normalisation statistics;
anything else (other Hub ids, local parquet/imagefolder repos, `save_to_disk` folders) is detected from its
features. `"digits"` is an embedded offline dataset (scikit-learn's 8x8 handwritten digits).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

DIGITS = "digits"


@dataclass(frozen=True)
class DatasetSpec:
    """How to read one known dataset: its columns, splits, normalisation statistics, ZCA regulariser."""

    image_column: str
    label_column: str
    test_split: str = "test"
    config_name: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    zca: float | None = None
    license: str | None = None
    """The dataset's license as its Hub card states it (a memory distilled from it carries it on its card)."""


# Columns from the Hub repos' dataset_info; statistics from the authors' code.
KNOWN_DATASETS: dict[str, DatasetSpec] = {
    "ylecun/mnist": DatasetSpec("image", "label", mean=(0.1307,), std=(0.3081,), license="mit"),
    "zalando-datasets/fashion_mnist": DatasetSpec("image", "label", mean=(0.2861,), std=(0.3530,), license="mit"),
    "uoft-cs/cifar10": DatasetSpec("img", "label", mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010), zca=0.1, license="unknown"),
    "uoft-cs/cifar100": DatasetSpec("img", "fine_label", mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761), zca=0.1, license="unknown"),
    "ufldl-stanford/svhn": DatasetSpec(
        "image", "label", config_name="cropped_digits", mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), zca=100.0, license="other"
    ),
    "zh-plus/tiny-imagenet": DatasetSpec(
        "image", "label", test_split="valid", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    ),
    DIGITS: DatasetSpec("image", "label", mean=(0.3055,), std=(0.3759,), license="cc-by-4.0"),  # its train split, measured
}
# Legacy un-namespaced names still resolve on the Hub; map them to the same spec.
ALIASES = {
    "mnist": "ylecun/mnist",
    "fashion_mnist": "zalando-datasets/fashion_mnist",
    "cifar10": "uoft-cs/cifar10",
    "cifar100": "uoft-cs/cifar100",
    "svhn": "ufldl-stanford/svhn",
}
IMAGE_COLUMN_NAMES = ("image", "img", "pixel_values", "picture", "images")
LABEL_COLUMN_NAMES = ("label", "labels", "fine_label", "class", "target", "y")


@dataclass
class ZCA:
    """ZCA whitening as in the authors' code (KIP style): centre each image and scale it to unit L2 norm, then
    multiply by W = V diag((E + reg * mean(E))^-1/2) V^T, with (E, V) the eigen-decomposition of the training
    set's covariance. Kept as V and the diagonal so W and its inverse (for pictures) are both exact."""

    eigenvectors: torch.Tensor
    scales: torch.Tensor
    regularization: float

    @classmethod
    def fit(cls, images: torch.Tensor, regularization: float = 0.1, chunk: int = 4096) -> "ZCA":
        d = images[0].numel()
        covariance = torch.zeros(d, d, dtype=torch.float64)
        for start in range(0, len(images), chunk):
            x = cls.normalize_images(images[start : start + chunk]).flatten(1)
            covariance += x.T @ x
        covariance /= len(images)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        eigenvalues = eigenvalues.clamp_min(0)
        scales = (eigenvalues + regularization * eigenvalues.mean()).rsqrt()
        return cls(eigenvectors.float(), scales.float(), float(regularization))

    @staticmethod
    def normalize_images(images: torch.Tensor) -> torch.Tensor:
        """Per image: subtract its mean, divide by its L2 norm (float64)."""
        x = images.double().flatten(1)
        x = x - x.mean(1, keepdim=True)
        return (x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)).view(images.shape)

    def whiten(self, images: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        v, s = self.eigenvectors.double(), self.scales.double()
        out = torch.empty(images.shape, dtype=torch.float32)
        for start in range(0, len(images), chunk):
            x = self.normalize_images(images[start : start + chunk]).flatten(1)
            out[start : start + chunk] = ((x @ v) * s @ v.T).float().view(-1, *images.shape[1:])
        return out

    def unwhiten(self, images: torch.Tensor) -> torch.Tensor:
        """Back to per-image-normalised pixels (the per-image mean and norm themselves are not recoverable)."""
        v = self.eigenvectors.to(images.device, images.dtype)
        s = self.scales.to(images.device, images.dtype)
        x = images.flatten(1)
        return ((x @ v) / s @ v.T).view(images.shape)


def as_pixels(images: Any, channels: int) -> torch.Tensor:
    """[0, 1] float pixels (N, C, H, W) from PIL images, uint8 arrays/tensors (N, H, W[, C]) or (N, C, H, W), or
    float tensors already in [0, 1]; converted to `channels` channels (L or RGB) as dataset loading does."""
    if isinstance(images, (list, tuple)) and images and hasattr(images[0], "convert"):  # PIL images
        mode = "L" if channels == 1 else "RGB"
        images = np.stack([np.asarray(im.convert(mode)) for im in images])
    tensor = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if tensor.dim() == 3:  # (N, H, W): one channel
        tensor = tensor[:, None]
    if tensor.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), (N, H, W, C) or (N, H, W), got shape {tuple(tensor.shape)}")
    if tensor.shape[1] not in (1, 3) and tensor.shape[-1] in (1, 3):  # channels last
        tensor = tensor.permute(0, 3, 1, 2)
    if tensor.shape[1] != channels:
        raise ValueError(f"images have {tensor.shape[1]} channel(s) but this space has {channels} "
                         f"({'grayscale' if channels == 1 else 'RGB'})")
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255.0
    if not tensor.dtype.is_floating_point:
        raise ValueError(f"images must be uint8 or float in [0, 1], got {tensor.dtype}")
    # 0..255 held as floats would be taken as [0, 1] and normalised 255 times too bright, without a word. The margin
    # lets resampled [0, 1] images overshoot a little (bicubic ringing) and stay accepted.
    top = float(tensor.max()) if tensor.numel() else 0.0
    if top > 1.5:
        raise ValueError(f"float pixels must be in [0, 1]; these reach {top}: divide by 255 or pass uint8")
    return tensor.float()


@dataclass
class PixelSpace:
    """Where a dataset's (and so its memory's) pixels live: per-channel (x - mean) / std of [0, 1] pixels, or, when
    `zca` is set, ZCA whitening (which replaces the mean/std normalisation). One object for the memory, the data
    and the pictures, so nothing restates the statistics."""

    mean: list[float]
    std: list[float]
    zca: ZCA | None = None

    def __post_init__(self):
        self.mean, self.std = [float(v) for v in self.mean], [float(v) for v in self.std]
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean and std need one value per channel each, got {self.mean} and {self.std}")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def apply(self, pixels: torch.Tensor) -> torch.Tensor:
        """[0, 1] float pixels (N, C, H, W) -> this space (normalised, or whitened)."""
        if pixels.dim() != 4 or pixels.shape[1] != self.channels:
            raise ValueError(f"pixels must be (N, {self.channels}, H, W), got {tuple(pixels.shape)}")
        if self.zca is not None:
            return self.zca.whiten(pixels.cpu()).to(pixels.device)
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device).view(shape)
        std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device).view(shape)
        return (pixels - mean) / std

    def preprocess(self, images: Any, image_shape: Sequence[int]) -> torch.Tensor:
        """Real images of `image_shape` (PIL images, uint8 arrays or tensors, (N, H, W[, C]) or (N, C, H, W), or
        [0, 1] float tensors) -> this pixel space."""
        pixels = as_pixels(images, image_shape[0])
        if tuple(pixels.shape[1:]) != tuple(image_shape):
            raise ValueError(f"images are {tuple(pixels.shape[1:])} but this memory's are {tuple(image_shape)}")
        return self.apply(pixels)

    def to_viewable(self, images: torch.Tensor, stretch: bool = False) -> torch.Tensor:
        """Images of this space -> [0, 1] pixels. ZCA-whitened images lost their per-image mean and norm, so they
        are always stretched per image; with `stretch`, normalised ones are too (distilled images often use only a
        sliver of the range, and would look black)."""
        if self.zca is not None:
            images, stretch = self.zca.unwhiten(images.detach().float().cpu()).to(images.device), True
        else:
            shape = (1, -1, 1, 1)
            mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(shape)
            std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(shape)
            images = images * std + mean
        if not stretch:
            return images.clamp(0, 1)
        flat = images.flatten(1)
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view(images.shape)

    def differences(self, other: "PixelSpace") -> list[str]:
        """What differs between two spaces (empty when they are the same), for error messages."""
        mine, theirs = (self.zca.regularization if self.zca else None), (other.zca.regularization if other.zca else None)
        if mine != theirs:
            return [f"ZCA regulariser {mine} vs {theirs}"]
        if self.zca is not None and not torch.equal(self.zca.scales.cpu(), other.zca.scales.cpu()):
            return ["a different ZCA whitening (fitted on other data)"]
        if self.zca is None and (len(self.mean) != len(other.mean) or any(
                abs(a - b) > 1e-6 for a, b in zip(self.mean + self.std, other.mean + other.std))):
            return [f"normalisation mean {self.mean} std {self.std} vs mean {other.mean} std {other.std}"]
        return []


@dataclass
class ImageClassificationData:
    """A split as tensors: `images` (N, C, H, W) float32 normalised (or ZCA-whitened), `labels` (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    mean: list[float]
    std: list[float]
    name: str = ""
    split: str = ""
    zca: ZCA | None = None
    source: dict[str, Any] | None = None
    """How it was loaded (a `DataConfig` as a dict), so a run can record and reload its data."""
    _per_class: list[torch.Tensor] | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.class_names)):
            raise ValueError(f"labels must lie in [0, {len(self.class_names)}), got [{int(self.labels.min())}, {int(self.labels.max())}]")

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this data for a resumed run: name, size, classes, a hash of the labels and of 64 evenly
        spaced images' pixels, and the normalisation. Two loads of the same data give the same fingerprint."""
        import hashlib

        def digest(tensor: torch.Tensor) -> str:
            return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]

        rows = torch.linspace(0, max(len(self) - 1, 0), steps=min(len(self), 64)).long()
        return {"name": self.name, "images": len(self), "classes": self.class_names[:20] + (["..."] if self.num_classes > 20 else []),
                "labels": digest(self.labels), "pixels": digest(self.images[rows].float()),
                "mean": [round(v, 6) for v in self.mean], "std": [round(v, 6) for v in self.std],
                "zca": self.zca.regularization if self.zca is not None else None}

    def check_finite(self) -> "ImageClassificationData":
        """Refuse images with NaN or infinite pixels, naming the split and how many: they would poison a memory."""
        bad = ~torch.isfinite(self.images.flatten(1)).all(1)
        if bool(bad.any()):
            rows = torch.nonzero(bad).flatten()[:5].tolist()
            raise ValueError(f"{self.name or 'the data'}:{self.split or 'train'} has {int(bad.sum())} image(s) with NaN or "
                             f"infinite pixels (rows {rows}{', ...' if int(bad.sum()) > 5 else ''}): clean or drop them")
        return self

    def image_statistics(self) -> dict[str, float]:
        """The mean over images of each image's pixel mean and std (`output_mean`, `output_std`): what a memory with
        output_norm='standardize' scales its recalled images to (float64 sums: exact enough for 60k images)."""
        flat = self.check_finite().images.flatten(1).double()
        return {"output_mean": float(flat.mean(1).mean()), "output_std": float(flat.var(1, unbiased=False).mean().sqrt())}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def space(self) -> PixelSpace:
        return PixelSpace(self.mean, self.std, self.zca)

    def to(self, device: torch.device | str) -> "ImageClassificationData":
        """The same split with its tensors on `device`."""
        return replace(self, images=self.images.to(device), labels=self.labels.to(device), _per_class=None)

    def per_class_indices(self) -> list[torch.Tensor]:
        """Indices of each class's examples, for class-balanced sampling."""
        if self._per_class is None:
            order = torch.argsort(self.labels, stable=True)
            counts = torch.bincount(self.labels, minlength=self.num_classes).tolist()
            self._per_class = list(torch.split(order, counts))
        return self._per_class

    def sample(self, classes: Sequence[int], per_class: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """`per_class` examples of each class in `classes`, drawn without replacement (fewer if a class is small)."""
        index = self.per_class_indices()
        picks = []
        for c in classes:
            pool = index[c]
            if len(pool) == 0:
                raise ValueError(f"class {c} ({self.class_names[c]}) has no examples in {self.name}:{self.split}")
            picks.append(pool[torch.randperm(len(pool), generator=generator)[:per_class]])
        rows = torch.cat(picks)
        return self.images[rows], self.labels[rows]

    def subset(self, rows: torch.Tensor, split: str | None = None) -> "ImageClassificationData":
        return replace(self, images=self.images[rows], labels=self.labels[rows], split=split or self.split, _per_class=None)

    def with_classes(self, classes: Sequence[int | str]) -> "ImageClassificationData":
        """Only the images of `classes` (ids or names), relabelled 0..len(classes)-1 in the order given: e.g. the
        classes a memory is distilled on, keeping the others unseen."""
        unknown = [c for c in classes if isinstance(c, str) and c not in self.class_names]
        if unknown:
            raise ValueError(f"{self.name or 'the data'} has no class named {', '.join(map(repr, unknown))}; its classes "
                             f"are {self.class_names}")
        ids = [self.class_names.index(c) if isinstance(c, str) else int(c) for c in classes]
        if len(set(ids)) != len(ids) or not all(0 <= i < self.num_classes for i in ids):
            raise ValueError(f"classes must be distinct ids or names of {self.class_names}, got {list(classes)}")
        rows = torch.cat([self.per_class_indices()[i] for i in ids]).sort().values
        relabel = torch.full((self.num_classes,), -1, dtype=torch.long)
        relabel[torch.tensor(ids)] = torch.arange(len(ids))
        return replace(self, images=self.images[rows], labels=relabel[self.labels[rows].cpu()].to(self.labels.device),
                       class_names=[self.class_names[i] for i in ids], _per_class=None)

    def split_validation(self, fraction: float = 0.1, seed: int = 0) -> tuple["ImageClassificationData", "ImageClassificationData"]:
        """Hold out `fraction` of every class (stratified, seeded) for validation: (train, validation)."""
        if not 0 < fraction < 1:
            raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
        generator = torch.Generator().manual_seed(seed)
        keep, held = [], []
        for pool in self.per_class_indices():
            pool = pool[torch.randperm(len(pool), generator=generator)]
            n_held = int(round(fraction * len(pool))) if len(pool) > 1 else 0
            held.append(pool[:n_held])
            keep.append(pool[n_held:])
        return (
            self.subset(torch.sort(torch.cat(keep)).values, f"{self.split}[train]"),
            self.subset(torch.sort(torch.cat(held)).values, f"{self.split}[validation]"),
        )


def spec_for(name: str) -> DatasetSpec | None:
    return KNOWN_DATASETS.get(ALIASES.get(name, name))


def digits_dataset(test_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's 1,797 8x8 handwritten digits as a DatasetDict (`image`, `label`), split stratified."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    # The raw pixels are 0..16 grey levels: stretch to 0..255 so they look like any other image dataset.
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for c in range(10):
        rows = rng.permutation(np.flatnonzero(labels == c))
        test[rows[: int(round(test_fraction * len(rows)))]] = True
    features = Features({"image": Image(), "label": ClassLabel(names=[str(i) for i in range(10)])})

    def part(mask):
        return Dataset.from_dict({"image": list(pixels[mask]), "label": labels[mask]}, features=features)

    return DatasetDict({"train": part(~test), "test": part(test)})


def _load_hf(name: str, split: str, config_name: str | None):
    """A datasets.Dataset for one split of a Hub id, a local Hub-like folder, or a save_to_disk folder."""
    import datasets

    if name == DIGITS:
        parts = digits_dataset()
    elif os.path.isdir(name) and (Path(name, "dataset_dict.json").exists() or Path(name, "state.json").exists()):
        empty = _empty_saved_splits(Path(name))
        if empty:  # datasets cannot load a saved split without rows (an IndexError deep inside it)
            raise ValueError(_empty_split_message(name, split if split in empty else empty[0]))
        parts = datasets.load_from_disk(name)
    else:
        try:
            parts = datasets.load_dataset(name, config_name)
        except (FileNotFoundError, ConnectionError) as error:
            raise FileNotFoundError(
                f"cannot load dataset {name!r}: {error}. Offline (HF_HUB_OFFLINE=1) a Hub id only works once "
                f"cached; a local folder of parquet files laid out like the Hub repo also works."
            ) from error
        except ValueError as error:  # datasets refuses a split without rows: `Instruction "train" corresponds to no data!`
            empty = re.search(r'Instruction "([^"]+)" corresponds to no data', str(error))
            if empty is None:
                raise
            raise ValueError(_empty_split_message(name, empty.group(1))) from error
    if isinstance(parts, datasets.Dataset):
        if split != "train":
            raise ValueError(f"{name} holds a single split (used as train); cannot take split {split!r}")
        return parts
    if split not in parts:
        raise ValueError(f"{name} has no split {split!r}; it has {list(parts)}")
    return parts[split]


def _empty_split_message(name: str, split: str) -> str:
    return f"the {split} split of {name} is empty (0 rows): add its rows, or use another dataset"


def _empty_saved_splits(folder: Path) -> list[str]:
    """The splits of a save_to_disk folder (a DatasetDict's, or a single Dataset's `train`) that hold no rows: their
    state.json lists no data files."""
    import json

    single = folder / "state.json"
    if single.exists():
        splits = {"train": single}
    else:
        try:
            names = json.loads((folder / "dataset_dict.json").read_text()).get("splits", [])
        except (OSError, ValueError, AttributeError):
            return []  # not readable here: datasets' own error says what is wrong
        splits = {s: folder / s / "state.json" for s in names}
    empty = []
    for split, state in splits.items():
        try:
            if not json.loads(state.read_text()).get("_data_files"):
                empty.append(split)
        except (OSError, ValueError, AttributeError):
            continue
    return empty


def detect_columns(dataset, name: str, image_column: str | None = None, label_column: str | None = None) -> tuple[str, str]:
    """(image column, label column): given, known for the benchmark ids, else found by feature type and name."""
    from datasets import Array3D, ClassLabel, Image

    features = dataset.features
    described = ", ".join(f"{k}: {type(v).__name__}" for k, v in features.items())
    spec = spec_for(name)
    if image_column is None and spec and spec.image_column in features:
        image_column = spec.image_column
    if label_column is None and spec and spec.label_column in features:
        label_column = spec.label_column
    if image_column is None:
        typed = [k for k, v in features.items() if isinstance(v, (Image, Array3D))]
        named = [k for k in IMAGE_COLUMN_NAMES if k in features]
        image_column = typed[0] if len(typed) == 1 else (named[0] if named else None)
    if label_column is None:
        typed = [k for k, v in features.items() if isinstance(v, ClassLabel)]
        named = [k for k in LABEL_COLUMN_NAMES if k in features]
        label_column = typed[0] if len(typed) == 1 else (named[0] if named else None)
    for role, column in (("image", image_column), ("label", label_column)):
        if column is None:
            raise ValueError(
                f"cannot tell which column of {name} holds the {role}s (columns: {described}); "
                f"pass {role}_column="
            )
        if column not in features:
            raise ValueError(f"{name} has no column {column!r} (columns: {described})")
    return image_column, label_column


def _decode_images(dataset, column: str, batch_size: int = 4096) -> np.ndarray:
    """Uint8 (N, C, H, W) from an Image column (every image converted to one mode) or float from Array3D."""
    from datasets import Array3D, Image

    feature = dataset.features[column]
    raw = dataset.select_columns([column])
    if isinstance(feature, Image):
        try:
            first = raw[0][column]
        except Exception as error:
            raise ValueError(_undecodable(raw, column, 0, 1) or f"cannot decode images of column {column!r}: {error}") from error
        mode = "L" if first.mode in ("L", "1", "I;16", "I", "F") else "RGB"
        dataset = raw.cast_column(column, Image(mode=mode))
    elif not isinstance(feature, Array3D):
        raise ValueError(f"column {column!r} holds {type(feature).__name__}, not images")
    else:
        dataset = raw
    dataset = dataset.with_format("numpy")
    chunks = []
    for start in range(0, len(dataset), batch_size):
        try:
            batch = np.asarray(dataset[start : start + batch_size][column])
        except Exception as error:  # a corrupt file: name it rather than pass on the decoder's message
            found = _undecodable(raw, column, start, start + batch_size) if isinstance(feature, Image) else None
            raise ValueError(found or f"cannot decode images {start}..{start + batch_size} of column {column!r}: {error}") from error
        if batch.dtype == object:
            shapes = {tuple(b.shape) for b in batch}
            raise ValueError(f"images in column {column!r} have different sizes {sorted(shapes)[:4]}: resize them first")
        if isinstance(feature, Image):
            batch = batch[:, None] if batch.ndim == 3 else batch.transpose(0, 3, 1, 2)
        chunks.append(batch)
    return np.concatenate(chunks)


def _undecodable(dataset, column: str, start: int, stop: int) -> str | None:
    """The first image in rows [start, stop) that PIL cannot read, named by its file (or row), or None."""
    import io

    from datasets import Image
    from PIL import Image as PILImage

    undecoded = dataset.cast_column(column, Image(decode=False))
    for row in range(start, min(stop, len(undecoded))):
        item = undecoded[row][column]
        try:
            source = io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]
            with PILImage.open(source) as image:
                image.load()
        except Exception as error:
            where = item.get("path") or f"row {row}"
            return f"image {where} (row {row} of column {column!r}) cannot be read: {error}"
    return None


def _labels(dataset, column: str) -> tuple[np.ndarray, list[str]]:
    from datasets import ClassLabel

    feature = dataset.features[column]
    values = np.asarray(dataset.select_columns([column]).with_format("numpy")[:][column])  # respects select()
    if isinstance(feature, ClassLabel):
        return values.astype(np.int64), list(feature.names)
    names, ids = np.unique(values, return_inverse=True)  # strings or ints: sorted order defines the ids
    return ids.astype(np.int64), [str(n) for n in names]


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of [0, 1] pixels."""
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    flat = images.transpose(1, 0, 2, 3).reshape(images.shape[1], -1).astype(np.float64) / scale
    return flat.mean(1).tolist(), flat.std(1).tolist()


def load_image_dataset(
    name: str,
    split: str = "train",
    config_name: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    max_samples: int | None = None,
    zca: "ZCA | float | None" = None,
) -> ImageClassificationData:
    """Load one split as normalised tensors. Statistics: given, else known for the benchmarks, else this split's.

    `zca`: a regulariser fits ZCA whitening on this split (instead of mean/std normalisation); a fitted `ZCA`
    applies it. For a test split pass the training split's statistics or ZCA (`load_train_test` does).
    """
    spec = spec_for(name)
    hub_name = ALIASES.get(name, name)
    if config_name is None and spec is not None:
        config_name = spec.config_name
    dataset = _load_hf(hub_name, split, config_name)
    if len(dataset) == 0:
        raise ValueError(f"the {split} split of {name} is empty")
    if max_samples is not None and max_samples < len(dataset):
        dataset = dataset.select(range(max_samples))
    image_column, label_column = detect_columns(dataset, name, image_column, label_column)
    pixels = _decode_images(dataset, image_column)
    if pixels.dtype != np.uint8:  # decoded image files are uint8; only float arrays can hold NaN or inf
        bad = int((~np.isfinite(pixels.reshape(len(pixels), -1))).any(1).sum())
        if bad:
            raise ValueError(f"{name}:{split} has {bad} image(s) with NaN or infinite pixels: clean or drop them")
    labels, class_names = _labels(dataset, label_column)
    if mean is None or std is None:
        if spec is not None and spec.mean is not None and len(spec.mean) == pixels.shape[1]:
            mean, std = spec.mean, spec.std
        else:
            mean, std = channel_stats(pixels)
    if len(mean) != pixels.shape[1] or len(std) != pixels.shape[1]:
        kinds = {1: "grayscale", 3: "RGB"}
        raise ValueError(
            f"{name}:{split} has {kinds.get(pixels.shape[1], f'{pixels.shape[1]}-channel')} images but the normalisation "
            f"given is for {kinds.get(len(mean), f'{len(mean)}-channel')} ones (mean {list(mean)}, std {list(std)}): "
            f"a memory distilled from {kinds.get(len(mean), 'other')} data cannot be evaluated on it")
    images = torch.from_numpy(pixels).float()
    if pixels.dtype == np.uint8:
        images /= 255.0
    if zca is not None and zca is not False:
        zca = zca if isinstance(zca, ZCA) else ZCA.fit(images, float(zca))
        images = zca.whiten(images)
        mean, std = [0.0] * pixels.shape[1], [1.0] * pixels.shape[1]
    else:
        zca = None
        shape = (1, -1, 1, 1)
        images = (images - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)
    return ImageClassificationData(
        images=images,
        labels=torch.from_numpy(labels),
        class_names=class_names,
        mean=[float(v) for v in mean],
        std=[float(v) for v in std],
        name=name,
        split=split,
        zca=zca,
    )


def load_train_test(
    name: str,
    test_split: str | None = None,
    zca: "ZCA | float | bool | None" = None,
    space: PixelSpace | None = None,
    **kwargs: Any,
) -> tuple[ImageClassificationData, ImageClassificationData]:
    """The training split and the held-out test split (the Hub's `test`, or `valid` for Tiny-ImageNet), with the
    training statistics applied to both. `zca`: None uses the paper's choice for the dataset (CIFAR-10/100 with
    regulariser 0.1, SVHN 100, others none), False turns it off, a number sets the regulariser, a fitted ZCA
    is applied as it is. `space` (e.g. a loaded memory's `pixel_space()`) puts both splits in that space instead."""
    spec = spec_for(name)
    if space is not None:
        zca = space.zca if space.zca is not None else False
        if space.zca is None:
            kwargs.update(mean=space.mean, std=space.std)
    if zca is None:
        zca = spec.zca if spec is not None else None
    elif zca is True:
        zca = spec.zca if spec is not None and spec.zca is not None else 0.1
    train = load_image_dataset(name, "train", zca=zca or None, **kwargs)
    kwargs.update(mean=train.mean, std=train.std, zca=train.zca)
    test = load_image_dataset(name, test_split or (spec.test_split if spec else "test"), **kwargs)
    if test.class_names != train.class_names:
        raise ValueError(f"train and test splits of {name} name different classes: {train.class_names} vs {test.class_names}")
    return train, test


def parse_zca(text: str | None) -> float | bool | None:
    """The --zca option: None (the paper's choice for the dataset), `off`, or a regulariser."""
    if text is None:
        return None
    if str(text).lower() in ("off", "none", "false", "0"):
        return False
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"zca must be a positive regulariser or `off`, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"zca must be a positive regulariser or `off`, got {text!r}")
    return value


@dataclass
class DataConfig:
    """Which dataset to distil and how to read it."""

    dataset: str = field(default=DIGITS, metadata={"help": "Hub id (e.g. ylecun/mnist), a local folder laid out like a Hub repo or written by save_to_disk, or `digits` (scikit-learn's 8x8 digits, embedded, offline)."})
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset config name (e.g. cropped_digits for SVHN; known for the paper's benchmarks)."})
    image_column: str | None = field(default=None, metadata={"help": "Column holding the images (detected when omitted)."})
    label_column: str | None = field(default=None, metadata={"help": "Column holding the labels (detected when omitted)."})
    zca: str | None = field(default=None, metadata={"help": "ZCA whitening: a regulariser, `off`, or omit for the paper's choice (CIFAR-10/100 0.1, SVHN 100, none for the others)."})
    classes: str | None = field(default=None, metadata={"help": "Keep only these classes, by name, comma-separated (e.g. 0,1,2,3,4): a memory of part of the data, the rest left unseen."})

    def __post_init__(self):
        parse_zca(self.zca)  # fail before any loading
        self.class_list()

    def class_list(self) -> list[str] | None:
        """The names in `classes`, checked for emptiness and repeats (their existence is checked on loading)."""
        if self.classes is None:
            return None
        names = [name.strip() for name in str(self.classes).split(",")]
        if len(names) < 2 or "" in names or len(set(names)) != len(names):
            raise ValueError(f"classes must name at least 2 distinct classes, comma-separated, got {self.classes!r}")
        return names

    def load(self) -> tuple[ImageClassificationData, ImageClassificationData]:
        """(train, test) split as normalised (or whitened) tensors, each recording this config as its source."""
        train, test = load_train_test(self.dataset, config_name=self.dataset_config, image_column=self.image_column,
                                      label_column=self.label_column, zca=parse_zca(self.zca))
        if self.classes is not None:
            train, test = train.with_classes(self.class_list()), test.with_classes(self.class_list())
        source = asdict(self)
        return replace(train, source=source), replace(test, source=source)


def load_split(dataset: str | None, split: str | None, space: PixelSpace, **kwargs: Any) -> "ImageClassificationData":
    """A split of `dataset` (default: its test split) in pixel space `space` (a memory's: its normalisation or ZCA)."""
    if not dataset:
        raise ValueError("this memory does not record its dataset: pass dataset=")
    spec = spec_for(dataset)
    split = split or (spec.test_split if spec is not None else "test")
    return load_image_dataset(dataset, split, mean=space.mean, std=space.std, zca=space.zca, **kwargs)


def check_matches(data: "ImageClassificationData", image_shape: Sequence[int], class_names: Sequence[str],
                  space: PixelSpace) -> None:
    """Refuse `data` whose images, classes or pixel space differ from a memory's, naming what differs."""
    problems = []
    if tuple(data.image_shape) != tuple(image_shape):
        c, d = image_shape[0], data.image_shape[0]
        kind = {1: "grayscale", 3: "RGB"}
        what = f" ({kind.get(d, d)} images for a {kind.get(c, c)} memory)" if c != d else ""
        problems.append(f"images {tuple(data.image_shape)} vs the memory's {tuple(image_shape)}{what}")
    elif list(data.class_names) != list(class_names):
        problems.append(f"classes {data.class_names[:4]}... vs the memory's {list(class_names)[:4]}...")
    else:
        problems += data.space.differences(space)
    if problems:
        raise ValueError(f"{data.name or 'the data'} does not match this memory: " + "; ".join(problems) +
                         " (AddressableMemory.for_dataset(data, ...) builds a matching memory)")
