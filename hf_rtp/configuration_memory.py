"""Configuration of an addressable memory: shapes, budget (eqn 4 of the paper) and how to view pixels."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from huggingface_hub.dataclasses import strict
from transformers import PretrainedConfig

ADDRESSING_KINDS = ("learned", "one_hot")
OUTPUT_NORMS = ("none", "standardize")


class BudgetError(ValueError):
    """The storage budget cannot hold the requested memory."""


def check_positive_int(name: str, value: Any) -> None:
    """Refuse, naming the field, a size that is not a positive integer: a zero or negative one would otherwise surface
    later as a budget or shape error that blames something else."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def budget_floats(image_shape: Sequence[int], num_classes: int, ipc: float) -> float:
    """Floats allowed by a budget of `ipc` full-size images per class (eqn 4, right-hand side)."""
    c, h, w = image_shape
    return ipc * c * h * w * num_classes


def soft_label_floats(num_bases: int, num_classes: int) -> int:
    """Floats of learned soft labels: a label vector per base (K x n) plus one scale (see `soft_labels`)."""
    return num_bases * num_classes + 1


def images_per_query_for_budget(
    image_shape: Sequence[int], num_classes: int, ipc: float, num_bases: int, downsample: int, query_dim: int | None = None,
    soft_labels: bool = False,
) -> int:
    """r = floor((IPC*C*H*W*n - K*C*H*W/ds^2 [- (K*n + 1)]) / (d_y*K)): the most addressing matrices eqn 4 allows
    (d_y = n for one-hot labels; the bracket when the memory stores learned soft labels)."""
    c, h, w = image_shape
    query_dim = query_dim or num_classes
    allowed = budget_floats(image_shape, num_classes, ipc)
    bases_cost = num_bases * c * (h // downsample) * (w // downsample)
    if soft_labels:
        bases_cost += soft_label_floats(num_bases, num_classes)
    r = math.floor((allowed - bases_cost) / (query_dim * num_bases))
    if r < 1:
        raise BudgetError(
            f"a budget of ipc={ipc} ({allowed:g} floats for {num_classes} classes of {c}x{h}x{w}) cannot hold "
            f"{num_bases} bases of {c}x{h // downsample}x{w // downsample}{' with soft labels' if soft_labels else ''} "
            f"({bases_cost} floats) plus one "
            f"addressing matrix per image ({query_dim * num_bases} floats each): use fewer bases, a larger "
            f"downsample factor or a larger ipc"
        )
    return r


@dataclass
class MemoryOptions:
    """How to size a new memory for a dataset (the arguments of `AddressableMemoryConfig.for_budget`)."""

    ipc: float = field(default=1.0, metadata={"help": "Storage budget in full-size images per class (eqn 4)."})
    num_bases: int = field(default=16, metadata={"help": "K shared bases (memories); r follows from the budget."})
    downsample: int = field(default=2, metadata={"help": "Bases are stored at 1/ds resolution and upsampled bilinearly."})
    addressing: Literal["learned", "one_hot"] = field(default="learned", metadata={"help": "`learned` addressing (the paper) or `one_hot` (the per-class synthetic set, vanilla BPTT)."})
    output_norm: Literal["none", "standardize"] = field(default="standardize", metadata={"help": "Last step of recall (eqn 2): `standardize` shifts and scales each recalled image (one scalar each) to the mean and std of the data's images, so any network trains on the recall with its usual recipe; `none` is the paper's recall, whose contrast drifts freely (the instance-normalised ConvNet cannot see it)."})
    soft_labels: bool = field(default=False, metadata={"help": "Learn a soft label for every recalled image (beyond the paper): each base carries a label vector, addressed like its pixels, on top of the query's own class. Costs K*classes+1 floats of the budget (r shrinks to make room); networks then train on the recalled label distributions."})

    query_encoder: str | None = field(default=None, metadata={"help": "Address the memory by images (sec 5.3.2): the timm model name of its query head (e.g. resnet10t), trained with it episodically (--classes-per-step N, --shots k); None: addressed by labels."})
    query_dim: int | None = field(default=None, metadata={"help": "d_y, the width of the query space of an image-addressed memory (the head projects to it); None: the number of classes."})
    query_pixels: bool = field(default=False, metadata={"help": "Image addressing: the query head's projection also sees the image itself at the bases' resolution, next to the encoder's features, so a query can carry what its shot looks like (for classes the memory never saw; with --query-fit images)."})

    def __post_init__(self):
        if not self.ipc > 0:
            raise BudgetError(f"ipc must be positive, got {self.ipc}")
        if self.query_dim is not None:
            check_positive_int("query_dim", self.query_dim)
        if self.query_dim is not None and self.query_encoder is None:
            raise ValueError("query_dim sets the query space of an image-addressed memory: it needs --query-encoder")
        if self.query_pixels and self.query_encoder is None:
            raise ValueError("query_pixels is part of an image-addressed memory's query head: it needs --query-encoder")
        if self.num_bases < 1:
            raise ValueError(f"num_bases (K) must be >= 1, got {self.num_bases}")
        if self.downsample < 1:
            raise ValueError(f"downsample must be >= 1, got {self.downsample}")
        if self.addressing not in ADDRESSING_KINDS:
            raise ValueError(f"addressing must be one of {ADDRESSING_KINDS}, got {self.addressing!r}")
        if self.output_norm not in OUTPUT_NORMS:
            raise ValueError(f"output_norm must be one of {OUTPUT_NORMS}, got {self.output_norm!r}")

    @classmethod
    def of(cls, config: "AddressableMemoryConfig") -> "MemoryOptions":
        """The options that size a memory like `config`."""
        return cls(ipc=config.budget_ipc(), num_bases=config.num_bases, downsample=config.downsample,
                   addressing=config.addressing, output_norm=config.output_norm, soft_labels=config.soft_labels,
                   query_encoder=config.query_encoder,
                   query_dim=config.query_dim if config.query_encoder is not None else None,
                   query_pixels=config.query_pixels)


@strict
class AddressableMemoryConfig(PretrainedConfig):
    """Shapes of an addressable memory (sec 4.1 of the paper) and what a loaded memory needs to be viewed.

    Query y (a one-hot label, or any `query_dim` vector) recalls `images_per_query` images; image i is
    `upsample((y^T A_i) M)` with M the `num_bases` bases stored at 1/`downsample` resolution (eqn 2).
    """

    model_type = "addressable_memory"

    image_shape: list[int] = field(default_factory=lambda: [3, 32, 32])
    """(C, H, W) of a recalled image, i.e. of the dataset's images."""
    class_names: list[str] = field(default_factory=lambda: [str(i) for i in range(10)])
    """One name per class; label i of a query is class_names[i]."""
    num_bases: int = MemoryOptions.num_bases
    """K: number of shared bases (memories)."""
    images_per_query: int = 1
    """r: number of addressing matrices A_i, i.e. images recalled per query."""
    downsample: int = MemoryOptions.downsample
    """ds: bases are stored at (H/ds, W/ds) and upsampled bilinearly; 1 stores full resolution."""
    query_dim: int | None = None
    """d_y: length of a query vector; defaults to the number of classes (one-hot labels)."""
    addressing: Literal["learned", "one_hot"] = "learned"
    """'learned': r learned d_y x K matrices. 'one_hot': the standard per-class synthetic set
    (K = classes * r bases, A_i fixed one-hot, nothing learned but the bases)."""
    output_norm: Literal["none", "standardize"] = "none"
    """Last step of recall. 'none': eqn 2 as in the paper. 'standardize': each recalled image is shifted and scaled
    (one scalar per image, parameter-free) to mean `output_mean` and std `output_std`, the per-image statistics of
    the training images, so recalled images live at the data's scale. 'none' is the default so that memories saved
    before this field existed load and recall exactly as they did."""
    soft_labels: bool = False
    """Learned soft labels (beyond the paper; label-addressed memories). Each base k carries a label vector L_k (K x n
    floats, `label_bases`) and the memory a scale s (`label_scale`): image i of query y is labelled
    softmax(s y + (y^T A_i) L), its own class plus what its bases remember. False (the paper, and memories saved
    before the field existed): every recalled image carries its query's hard label."""
    query_encoder: str | None = None
    """Image addressing (sec 5.3.2): the timm model name of the memory's query head. A query is then
    y = projection(encoder(x)) for an image x (k shots of a class are averaged into one query); the head's weights are
    saved with the memory. None (the default, and memories saved before the field existed): addressed by class
    labels or by raw query vectors."""
    query_encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra timm.create_model arguments of the query encoder (e.g. {"patch_size": 4} for a ViT); in_chans,
    num_classes and pretrained follow from the memory and may not be set."""
    query_pixels: bool = False
    """Image addressing: the head's projection also sees the image itself at the bases' resolution (average-pooled
    by `downsample`), next to the encoder's features, so a query can carry what its shot looks like and not only what
    the encoder tells apart (for classes the memory never saw). False: memories saved before the field existed."""
    query_encoder_start: str | None = None
    """Where the query head's encoder started (`random`, `pretrained:<weights>`, `supervised:<data> (<n> epochs)`),
    recorded by the Distiller for the card and `hf-rtp info`; None for a memory addressed by labels or never distilled."""
    task: dict[str, Any] | None = None
    """The stream task this memory holds when it is one memory of a bank (compress-then-recall): {"stream", "name",
    "split", "transform"} (e.g. {"rotation_degrees": 27.0}; a permutation is named, its pixel order is in the bank's
    bank.json), so its card says what it holds; None for a memory of a whole dataset."""
    output_mean: float = 0.0
    """Mean of a recalled image's pixels under output_norm='standardize' (the data's mean per-image mean)."""
    output_std: float = 1.0
    """Std of a recalled image's pixels under output_norm='standardize' (the data's RMS per-image std)."""
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    """Per-channel mean the pixels were normalised with (x - mean) / std."""
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    """Per-channel std the pixels were normalised with."""
    zca_regularization: float | None = None
    """When set, pixels are ZCA-whitened (per-image centring and unit norm, then W with this regulariser); the
    memory then stores W's eigenvectors and scales so recall, evaluation and pictures can use and invert it."""
    ipc: float | None = None
    """The storage budget in images per class this memory was sized for, if any."""
    dataset_name: str | None = None
    """The dataset (Hub id or local path) the memory was distilled from."""
    license: str | None = None
    """The license on the model card (a Hub license id); None takes the dataset's when known, else `other`."""
    distillation: dict[str, Any] | None = None
    """How the memory was trained (filled in by the Distiller): steps, unroll length, seed, ..."""
    evaluation: dict[str, Any] | None = None
    """Measured retraining accuracy (filled in by the evaluation protocol), shown on the model card."""

    def __post_init__(self, **kwargs):
        self.image_shape = [int(v) for v in self.image_shape]
        self.class_names = [str(v) for v in self.class_names]
        if self.query_dim is None:
            self.query_dim = len(self.class_names)
        kwargs.pop("id2label", None)
        kwargs.pop("label2id", None)
        super().__post_init__(**kwargs)
        # id2label is what the rest of the HF stack reads; class_names stays the source of truth.
        self.id2label = dict(enumerate(self.class_names))
        self.label2id = {name: i for i, name in self.id2label.items()}

    # Class validators run at construction (huggingface_hub @strict): bad shapes fail early, with a name.
    def validate_memory_shapes(self) -> None:
        for name in ("num_bases", "images_per_query", "downsample", "query_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {value!r}")
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {self.image_shape}")
        c, h, w = self.image_shape
        if self.num_bases < 1:
            raise ValueError(f"num_bases (K) must be a positive integer, got {self.num_bases}")
        if self.images_per_query < 1:
            raise ValueError(f"images_per_query (r) must be a positive integer, got {self.images_per_query}")
        if self.downsample < 1 or h % self.downsample or w % self.downsample:
            raise ValueError(f"downsample must be >= 1 and divide H={h} and W={w}, got {self.downsample}")
        if not self.class_names:
            raise ValueError("class_names must name at least one class")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be unique, got {self.class_names}")
        if self.query_dim < 1:
            raise ValueError(f"query_dim must be a positive integer, got {self.query_dim}")
        if len(self.mean) != c or len(self.std) != c:
            raise ValueError(f"mean and std need one value per channel (C={c}), got {self.mean} and {self.std}")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        if self.addressing not in ADDRESSING_KINDS:
            raise ValueError(f"addressing must be one of {ADDRESSING_KINDS}, got {self.addressing!r}")
        if self.output_norm not in OUTPUT_NORMS:
            raise ValueError(f"output_norm must be one of {OUTPUT_NORMS}, got {self.output_norm!r}")
        if not (math.isfinite(self.output_mean) and math.isfinite(self.output_std) and self.output_std > 0):
            raise ValueError(f"output_mean must be finite and output_std positive, got {self.output_mean}, {self.output_std}")
        if self.soft_labels and self.query_dim != len(self.class_names):
            raise ValueError(f"soft_labels needs a memory addressed by class labels (query_dim == classes = "
                             f"{len(self.class_names)}), got query_dim={self.query_dim}")
        if self.addressing == "one_hot":
            n = len(self.class_names)
            if self.query_dim != n or self.num_bases != n * self.images_per_query:
                raise ValueError(
                    "one_hot addressing is the per-class synthetic set: it needs query_dim == classes "
                    f"({n}) and num_bases == classes * images_per_query ({n * self.images_per_query}), "
                    f"got query_dim={self.query_dim}, num_bases={self.num_bases}"
                )

    def validate_query_encoder(self) -> None:
        if self.query_encoder is None:
            if self.query_pixels:
                raise ValueError("query_pixels is part of an image-addressed memory's query head: it needs a query_encoder")
            return
        import timm

        if not isinstance(self.query_encoder, str) or not timm.is_model(self.query_encoder):
            raise ValueError(f"query_encoder {self.query_encoder!r} is not a timm model name (see timm.list_models())")
        fixed = sorted({"in_chans", "num_classes", "pretrained"} & set(self.query_encoder_kwargs))
        if fixed:
            raise ValueError(f"query_encoder_kwargs must not set {fixed}: in_chans follows from the image shape, "
                             f"num_classes=0 (features), and pretrained weights are a start of distillation "
                             f"(DistillConfig.query_encoder_start='pretrained'), not of the model")
        if self.addressing != "learned" or self.soft_labels:
            raise ValueError("a query encoder needs learned addressing and hard labels (addressing='learned', "
                             "soft_labels=False): image queries are arbitrary d_y vectors")

    @property
    def addressed_by_images(self) -> bool:
        return self.query_encoder is not None

    def query_head_floats(self) -> int:
        """Floats of the query head's weights (encoder and projection), built from the config on the meta device.
        Like a network's weights they are reported next to the storage budget, not counted in it (as the paper does)."""
        import torch

        from .query_head import QueryHead

        if self.query_encoder is None:
            return 0
        with torch.device("meta"):
            head = QueryHead.for_config(self)
        return head.stored_floats()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def base_shape(self) -> tuple[int, int, int]:
        c, h, w = self.image_shape
        return (c, h // self.downsample, w // self.downsample)

    @property
    def image_floats(self) -> int:
        """Floats of one full-size image, C*H*W."""
        return math.prod(self.image_shape)

    def storage_floats(self) -> int:
        """Floats the memory stores (eqn 4, left-hand side): bases plus learned addressing matrices, plus the
        soft labels' K*n + 1 when it learns them."""
        c, h, w = self.base_shape
        bases = self.num_bases * c * h * w
        addressing = self.images_per_query * self.query_dim * self.num_bases if self.addressing == "learned" else 0
        labels = soft_label_floats(self.num_bases, self.num_classes) if self.soft_labels else 0
        return bases + addressing + labels

    def budget_ipc(self) -> float:
        """The storage budget in full-size images per class: the `ipc` the memory was sized for, else what its
        storage amounts to (comparable across parameterisations). Baselines of "the same budget" use this."""
        if self.ipc is not None:
            return self.ipc
        return self.storage_floats() / budget_floats(self.image_shape, self.num_classes, 1)

    def budget_floats(self) -> int:
        """The floats the budget allows (eqn 4, right-hand side)."""
        return round(budget_floats(self.image_shape, self.num_classes, self.budget_ipc()))

    @classmethod
    def for_budget(
        cls,
        image_shape: Sequence[int],
        class_names: Sequence[str],
        ipc: float = MemoryOptions.ipc,
        num_bases: int = MemoryOptions.num_bases,
        downsample: int = MemoryOptions.downsample,
        addressing: str = MemoryOptions.addressing,
        **kwargs: Any,
    ) -> "AddressableMemoryConfig":
        """The largest memory that fits a budget of `ipc` images per class (eqn 4).

        learned: K bases plus r = floor((IPC*C*H*W*n - K*C*H*W/ds^2) / (n*K)) addressing matrices.
        one_hot: the per-class synthetic set; r = floor(IPC * ds^2) images of 1/ds^2 the size per class.
        With `soft_labels=True` their K*n + 1 floats come out of the same budget (fewer r, or fewer one_hot images).
        """
        whole = [isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v >= 1 and v == int(v)
                 for v in image_shape]
        if len(image_shape) != 3 or not all(whole):
            raise ValueError(f"image_shape must be (C, H, W) of positive integers (channels, height, width), got "
                             f"{tuple(image_shape)}")
        c, h, w = (int(v) for v in image_shape)
        n = len(class_names)
        if n < 1:
            raise ValueError("class_names must name at least one class")
        if not (ipc > 0 and math.isfinite(ipc)):
            raise BudgetError(f"ipc must be positive and finite, got {ipc}")
        # sizes first: a negative one would otherwise come out of the budget arithmetic as a budget error
        check_positive_int("downsample", downsample)
        if kwargs.get("query_dim") is not None:
            check_positive_int("query_dim", kwargs["query_dim"])
        if downsample < 1 or h % downsample or w % downsample:
            raise ValueError(f"downsample must be >= 1 and divide H={h} and W={w}, got {downsample}")
        soft = bool(kwargs.get("soft_labels", False))
        if addressing == "one_hot":
            small = c * (h // downsample) * (w // downsample)
            if soft:  # each image also stores its label vector, plus the one scale
                r = math.floor((budget_floats((c, h, w), n, ipc) - 1) / (n * (small + n)) + 1e-9)
            else:
                r = math.floor(ipc * downsample * downsample + 1e-9)
            if r < 1:
                what = f" with a soft label ({small + n} floats each)" if soft else ""
                raise BudgetError(f"a budget of ipc={ipc} holds no image of {c}x{h // downsample}x{w // downsample}{what}")
            num_bases = n * r
        elif addressing == "learned":
            check_positive_int("num_bases", num_bases)
            r = images_per_query_for_budget((c, h, w), n, ipc, num_bases, downsample, kwargs.get("query_dim"), soft)
        else:
            raise ValueError(f"addressing must be one of {ADDRESSING_KINDS}, got {addressing!r}")
        kwargs.setdefault("mean", [0.0] * c)
        kwargs.setdefault("std", [1.0] * c)
        return cls(
            image_shape=[c, h, w],
            class_names=list(class_names),
            num_bases=num_bases,
            images_per_query=r,
            downsample=downsample,
            addressing=addressing,
            ipc=float(ipc),
            **kwargs,
        )


# Registered on import, so AutoConfig loads saved memories with no remote code (hf_rtp/__init__.py makes sure this
# module is imported whenever transformers is).
from transformers import AutoConfig  # noqa: E402

AutoConfig.register(AddressableMemoryConfig.model_type, AddressableMemoryConfig, exist_ok=True)
