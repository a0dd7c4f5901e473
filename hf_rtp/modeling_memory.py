"""AddressableMemory: K shared bases and r addressing matrices; a query recalls r images (eqn 2)."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from .configuration_memory import AddressableMemoryConfig

if TYPE_CHECKING:
    import datasets


class MemoryOutput(NamedTuple):
    """Recalled images (N, C, H, W) and their labels (N,), or None when recalled by arbitrary queries."""

    images: torch.Tensor
    labels: torch.Tensor | None


class CheckpointError(OSError):
    """A saved memory is missing, corrupt, or does not match its config."""


class AddressableMemory(PreTrainedModel):
    """Bases M (K x C x H/ds x W/ds) and addressing A (r x d_y x K): image i of query y is upsample((y^T A_i) M).

    With `config.addressing == "one_hot"` the addressing is fixed and the bases are the per-class synthetic
    images (bases[c * r + i] is image i of class c): the standard "vanilla BPTT" synthetic set.
    """

    config_class = AddressableMemoryConfig
    config: AddressableMemoryConfig
    base_model_prefix = "memory"
    main_input_name = "labels"

    def __init__(self, config: AddressableMemoryConfig):
        super().__init__(config)
        self.bases = nn.Parameter(torch.empty(config.num_bases, *config.base_shape))
        if config.addressing == "learned":
            self.addressing = nn.Parameter(
                torch.empty(config.images_per_query, config.query_dim, config.num_bases)
            )
        else:
            self.addressing = None
        if config.zca_regularization is not None:
            # Persistent buffers: saved with the weights, so a loaded memory can whiten test data and invert pictures.
            d = math.prod(config.image_shape)
            self.register_buffer("zca_eigenvectors", torch.zeros(d, d))
            self.register_buffer("zca_scales", torch.zeros(d))
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Xavier-uniform on both tables, with the fans of the authors' layout: bases as a K x d' matrix and
        # addressing as one (classes * r) x K coefficient table. `init` skips tensors already loaded.
        if module is not self:
            return
        k, d = self.bases.shape[0], self.bases[0].numel()
        init.uniform_(self.bases, -math.sqrt(6 / (k + d)), math.sqrt(6 / (k + d)))
        if self.addressing is not None:
            rows = self.addressing.shape[0] * self.addressing.shape[1]
            bound = math.sqrt(6 / (rows + k))
            init.uniform_(self.addressing, -bound, bound)

    # ---- addressing -------------------------------------------------------------------------------------

    def _check_labels(self, labels: torch.Tensor) -> torch.Tensor:
        labels = torch.as_tensor(labels, device=self.bases.device)
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dim() != 1:
            raise ValueError(f"labels must be a 1-D integer tensor of class ids, got {labels.dtype} {tuple(labels.shape)}")
        n = self.config.num_classes
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n):
            raise ValueError(f"labels must lie in [0, {n}) for classes {self.config.class_names}, got {labels.tolist()}")
        if self.config.query_dim != n:
            raise ValueError(f"this memory is addressed by {self.config.query_dim}-d queries, not class labels; pass queries=")
        return labels

    def _check_queries(self, queries: torch.Tensor) -> torch.Tensor:
        queries = torch.as_tensor(queries, device=self.bases.device)
        if not queries.dtype.is_floating_point or queries.dim() != 2 or queries.shape[1] != self.config.query_dim:
            raise ValueError(
                f"queries must be a float tensor of shape (N, {self.config.query_dim}), got {queries.dtype} {tuple(queries.shape)}"
            )
        return queries.to(self.bases.dtype)

    def _check_indices(self, image_indices: torch.Tensor | None, n: int) -> torch.Tensor:
        r = self.config.images_per_query
        if image_indices is None:
            return torch.arange(r, device=self.bases.device).expand(n, r)
        image_indices = torch.as_tensor(image_indices, device=self.bases.device)
        if image_indices.dim() == 1:
            image_indices = image_indices.expand(n, -1)
        if image_indices.dim() != 2 or image_indices.shape[0] != n or image_indices.dtype.is_floating_point:
            raise ValueError(f"image_indices must be integer (N, m) or (m,) with N={n}, got {tuple(image_indices.shape)}")
        if image_indices.numel() and (int(image_indices.min()) < 0 or int(image_indices.max()) >= r):
            raise ValueError(f"image_indices must lie in [0, {r}) (r addressing matrices), got {image_indices.tolist()}")
        return image_indices

    def coefficients(self, queries: torch.Tensor, image_indices: torch.Tensor) -> torch.Tensor:
        """y^T A_i for each query and chosen i: (N, d_y), (N, m) -> (N, m, K)."""
        if self.addressing is None:
            n, r = self.config.num_classes, self.config.images_per_query
            eye = torch.eye(self.config.num_bases, device=queries.device, dtype=queries.dtype)
            one_hot = eye.view(n, r, -1).transpose(0, 1)  # A_i[m, m*r + i] = 1
            return torch.einsum("nd,nmdk->nmk", queries, one_hot[image_indices])
        return torch.einsum("nd,nmdk->nmk", queries, self.addressing[image_indices])

    def synthesize(self, coefficients: torch.Tensor) -> torch.Tensor:
        """(N, m, K) coefficients -> (N*m, C, H, W) images: combine the bases, then upsample bilinearly."""
        small = torch.einsum("nmk,kchw->nmchw", coefficients, self.bases).flatten(0, 1)
        return self.upsample(small)

    def upsample(self, small: torch.Tensor) -> torch.Tensor:
        if self.config.downsample == 1:
            return small
        size = tuple(self.config.image_shape[1:])
        return F.interpolate(small, size=size, mode="bilinear", align_corners=False)

    def images_for_labels(self, labels: torch.Tensor, image_indices: torch.Tensor) -> torch.Tensor:
        """Unchecked eqn 2 for class ids (the hot path of the unroll): (N,), (N, m) -> (N*m, C, H, W)."""
        if self.addressing is None:
            # One-hot addressing just selects a base: skip the matmul.
            rows = labels[:, None] * self.config.images_per_query + image_indices
            return self.upsample(self.bases[rows.flatten()])
        coefficients = self.addressing[image_indices, labels[:, None]]  # (N, m, K)
        return self.synthesize(coefficients)

    def forward(
        self,
        labels: torch.Tensor | None = None,
        queries: torch.Tensor | None = None,
        image_indices: torch.Tensor | None = None,
    ) -> MemoryOutput:
        """Recall images for class ids (`labels`) or arbitrary d_y vectors (`queries`), eqn 2.

        Returns images (N*m, C, H, W) grouped by query (m = r, or the width of `image_indices`) and the label
        of each image (None for `queries`).
        """
        if (labels is None) == (queries is None):
            raise ValueError("pass exactly one of labels= (class ids) or queries= (d_y vectors)")
        if labels is not None:
            labels = self._check_labels(labels)
            image_indices = self._check_indices(image_indices, labels.shape[0])
            images = self.images_for_labels(labels, image_indices)
            return MemoryOutput(images, labels.repeat_interleave(image_indices.shape[1]))
        queries = self._check_queries(queries)
        image_indices = self._check_indices(image_indices, queries.shape[0])
        return MemoryOutput(self.synthesize(self.coefficients(queries, image_indices)), None)

    # ---- viewing and recall -----------------------------------------------------------------------------

    def zca(self):
        """The ZCA whitening the pixels live in (a `hf_rtp.data.ZCA`), or None."""
        if self.config.zca_regularization is None:
            return None
        from .data import ZCA

        return ZCA(self.zca_eigenvectors.detach().cpu(), self.zca_scales.detach().cpu(), self.config.zca_regularization)

    @torch.no_grad()
    def set_zca(self, zca) -> None:
        if self.config.zca_regularization is None:
            raise ValueError("this memory was configured without ZCA (zca_regularization=None)")
        self.zca_eigenvectors.copy_(zca.eigenvectors)
        self.zca_scales.copy_(zca.scales)

    def to_viewable(self, images: torch.Tensor) -> torch.Tensor:
        """Undo the dataset normalisation: model-space images -> [0, 1] pixels for pictures and previews.

        ZCA-whitened pixels are mapped back through W^-1; their per-image mean and norm were removed before
        whitening, so each image is then stretched to [0, 1] for viewing."""
        if self.config.zca_regularization is not None:
            flat = self.zca().unwhiten(images.detach().cpu().float()).flatten(1)
            lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
            return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view(images.shape).to(images.device, images.dtype)
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.config.mean, device=images.device, dtype=images.dtype).view(shape)
        std = torch.tensor(self.config.std, device=images.device, dtype=images.dtype).view(shape)
        return (images * std + mean).clamp(0, 1)

    def recall(
        self,
        classes: Sequence[int | str] | None = None,
        queries: torch.Tensor | None = None,
        query_labels: Sequence[int] | None = None,
        preview: bool = False,
        batch_size: int = 64,
    ) -> "datasets.Dataset":
        """The recalled synthetic set as a `datasets.Dataset` (exact float pixels + ClassLabel), see recall.py."""
        from .recall import recall

        return recall(self, classes=classes, queries=queries, query_labels=query_labels, preview=preview, batch_size=batch_size)

    @classmethod
    def for_dataset(
        cls, data, ipc: float = 1, num_bases: int = 16, downsample: int = 2, addressing: str = "learned"
    ) -> "AddressableMemory":
        """A fresh memory sized for `data` (an `ImageClassificationData`) and a budget of `ipc` images per class
        (eqn 4), carrying its class names, normalisation and ZCA."""
        config = AddressableMemoryConfig.for_budget(
            data.image_shape, data.class_names, ipc=ipc, num_bases=num_bases, downsample=downsample, addressing=addressing,
            mean=data.mean, std=data.std, dataset_name=data.name or None,
            zca_regularization=data.zca.regularization if data.zca is not None else None,
        )
        memory = cls(config)
        if data.zca is not None:
            memory.set_zca(data.zca)
        return memory

    # ---- loading and the Hub ----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any):
        """Load a memory from a folder or Hub id; refuses (CheckpointError) missing, corrupt or mismatched weights.

        transformers would otherwise warn and leave missing tensors randomly initialised: a silently wrong memory.
        """
        from .hub import load_checked

        return load_checked(super().from_pretrained, cls, pretrained_model_name_or_path, *args, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:  # type: ignore[override]
        """Upload weights, config, a model card and a picture of recalled images (see hub.push_memory)."""
        from .hub import push_memory

        return push_memory(self, repo_id, **kwargs)
