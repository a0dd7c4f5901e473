"""AddressableMemory: K shared bases and r addressing matrices; a query recalls r images (eqn 2)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import datasets
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from . import hub
from . import queries as checks
from .configuration_memory import AddressableMemoryConfig, MemoryOptions
from .data import ZCA, ImageClassificationData, PixelSpace, check_matches, load_split
from .hub import CheckpointError
from .query_head import QueryHead
from .recalled_dataset import recall_by_images, recall_by_labels, recall_by_queries

__all__ = ["AddressableMemory", "CheckpointError", "MemoryOutput"]


class MemoryOutput(NamedTuple):
    """Recalled images (N, C, H, W) and their labels (N,), or None when recalled by arbitrary queries."""

    images: torch.Tensor
    labels: torch.Tensor | None


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
        if config.soft_labels:
            # A label vector per base, addressed like the pixels, and the weight of the query's own class.
            self.label_bases = nn.Parameter(torch.empty(config.num_bases, config.num_classes))
            self.label_scale = nn.Parameter(torch.empty(()))
        if config.query_encoder is not None:
            # Image addressing (sec 5.3.2): images -> queries, learned with the bases and addressing.
            self.query_head = QueryHead.for_config(config)
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
        if self.config.soft_labels:
            # Start from the hard label, softened to 0.9 on its class (label smoothing's usual 0.1; saturated logits
            # would pass almost no gradient to the labels): what the bases add is learned from zero.
            n = self.config.num_classes
            init.zeros_(self.label_bases)
            init.constant_(self.label_scale, math.log(9 * max(1, n - 1)))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The memory's parameters by role, each an optimizer group that may learn at its own rate: `tables` (the
        bases and addressing of eqn 2), `labels` (learned soft labels), and for image addressing `query_projection`
        and `query_encoder` (the timm feature extractor, which may learn slower or be frozen)."""
        groups = {"tables": [p for p in (self.bases, self.addressing) if p is not None]}
        if self.config.soft_labels:
            groups["labels"] = [self.label_bases, self.label_scale]
        if self.config.addressed_by_images:
            groups["query_projection"] = list(self.query_head.projection.parameters())
            groups["query_encoder"] = list(self.query_head.encoder.parameters())
        return groups

    # ---- addressing -------------------------------------------------------------------------------------

    def image_queries(self, images: torch.Tensor) -> torch.Tensor:
        """The query of each image, y = projection(encoder(x)): (N, C, H, W) -> (N, d_y)."""
        if not self.config.addressed_by_images:
            raise ValueError("this memory has no query head (config.query_encoder is None): address it by labels= or queries=")
        return self.query_head(checks.check_images(self.config, images, self.bases))

    def shot_queries(self, shots: torch.Tensor) -> torch.Tensor:
        """One query per class from its k shots, the mean of their queries: (N, k, C, H, W) -> (N, d_y)."""
        if shots.dim() != 5 or shots.shape[1] < 1:
            raise ValueError(f"shots must be (N classes, k shots, C, H, W), got {tuple(shots.shape)}")
        n, k = shots.shape[:2]
        return self.image_queries(shots.flatten(0, 1)).view(n, k, -1).mean(1)

    def coefficients(self, queries: torch.Tensor, image_indices: torch.Tensor) -> torch.Tensor:
        """y^T A_i for each query and chosen i: (N, d_y), (N, m) -> (N, m, K)."""
        if self.addressing is None:
            n, r = self.config.num_classes, self.config.images_per_query
            eye = torch.eye(self.config.num_bases, device=queries.device, dtype=queries.dtype)
            one_hot = eye.view(n, r, -1).transpose(0, 1)  # A_i[m, m*r + i] = 1
            return torch.einsum("nd,nmdk->nmk", queries, one_hot[image_indices])
        return torch.einsum("nd,nmdk->nmk", queries, self.addressing[image_indices])

    def synthesize(self, coefficients: torch.Tensor) -> torch.Tensor:
        """(N, m, K) coefficients -> (N*m, C, H, W) images: combine the bases, upsample bilinearly, normalise."""
        small = torch.einsum("nmk,kchw->nmchw", coefficients, self.bases).flatten(0, 1)
        return self.normalize_output(self.upsample(small))

    def upsample(self, small: torch.Tensor) -> torch.Tensor:
        if self.config.downsample == 1:
            return small
        size = tuple(self.config.image_shape[1:])
        return F.interpolate(small, size=size, mode="bilinear", align_corners=False)

    def normalize_output(self, images: torch.Tensor) -> torch.Tensor:
        """The last step of recall: with output_norm='standardize', each image shifted and scaled (one scalar each,
        over all its pixels, so colour balance and spatial contrast are kept) to the data's per-image mean and std.
        Parameter-free and differentiable, so distillation learns through it. The eps (1e-8 on the raw variance) is
        negligible next to any image with content (random tables recall about 1e-3) and keeps a constant one finite."""
        if self.config.output_norm == "none":
            return images
        flat = images.flatten(1)
        mean = flat.mean(1, keepdim=True)
        var = flat.var(1, unbiased=False, keepdim=True)
        scaled = (flat - mean) * (self.config.output_std * torch.rsqrt(var + 1e-8))
        return (scaled + self.config.output_mean).view_as(images)

    def images_for_labels(self, labels: torch.Tensor, image_indices: torch.Tensor) -> torch.Tensor:
        """Unchecked eqn 2 for class ids (the hot path of the unroll): (N,), (N, m) -> (N*m, C, H, W)."""
        if self.addressing is None:
            # One-hot addressing just selects a base: skip the matmul.
            rows = labels[:, None] * self.config.images_per_query + image_indices
            return self.normalize_output(self.upsample(self.bases[rows.flatten()]))
        coefficients = self.addressing[image_indices, labels[:, None]]  # (N, m, K)
        return self.synthesize(coefficients)

    def label_distribution(self, queries: torch.Tensor, image_indices: torch.Tensor) -> torch.Tensor:
        """Learned soft labels (config.soft_labels): softmax(s y + (y^T A_i) L) for each query and chosen i,
        (N, n), (N, m) -> (N*m, n); rows follow the images of `synthesize`."""
        logits = self.label_scale * queries[:, None, :] + self.coefficients(queries, image_indices) @ self.label_bases
        return logits.flatten(0, 1).softmax(-1)

    def targets_for_labels(self, labels: torch.Tensor, image_indices: torch.Tensor) -> torch.Tensor:
        """What a network trains on next to `images_for_labels(labels, image_indices)`: each image's class id (N*m,),
        or with soft labels its learned label distribution (N*m, n)."""
        if not self.config.soft_labels:
            return labels.repeat_interleave(image_indices.shape[1])
        one_hot = F.one_hot(labels, self.config.num_classes).to(self.label_bases.dtype)
        return self.label_distribution(one_hot, image_indices)

    def training_set(self, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """All r recalled images of each class in `labels` (default: every class) and their training targets (class
        ids, or label distributions for a memory with soft labels): the set a network is retrained on."""
        if labels is None:
            labels = torch.arange(self.config.num_classes, device=self.bases.device)
        labels = checks.check_labels(self.config, labels, self.bases)
        image_indices = checks.check_indices(self.config, None, labels.shape[0], self.bases.device)
        return self.images_for_labels(labels, image_indices), self.targets_for_labels(labels, image_indices)

    def forward(
        self,
        labels: torch.Tensor | None = None,
        queries: torch.Tensor | None = None,
        image_indices: torch.Tensor | None = None,
        images: torch.Tensor | None = None,
    ) -> MemoryOutput:
        """Recall images for class ids (`labels`), arbitrary d_y vectors (`queries`) or, with a query head, query
        images (`images`, one query each), eqn 2.

        Returns images (N*m, C, H, W) grouped by query (m = r, or the width of `image_indices`) and the label
        of each image (None for `queries` and `images`).
        """
        if sum(x is not None for x in (labels, queries, images)) != 1:
            raise ValueError("pass exactly one of labels= (class ids), queries= (d_y vectors) or images= (query images)")
        if images is not None:
            queries = self.image_queries(images)
            image_indices = checks.check_indices(self.config, image_indices, queries.shape[0], self.bases.device)
            return MemoryOutput(self.synthesize(self.coefficients(queries, image_indices)), None)
        if labels is not None:
            labels = checks.check_labels(self.config, labels, self.bases)
            image_indices = checks.check_indices(self.config, image_indices, labels.shape[0], self.bases.device)
            images = self.images_for_labels(labels, image_indices)
            return MemoryOutput(images, labels.repeat_interleave(image_indices.shape[1]))
        queries = checks.check_queries(self.config, queries, self.bases)
        image_indices = checks.check_indices(self.config, image_indices, queries.shape[0], self.bases.device)
        return MemoryOutput(self.synthesize(self.coefficients(queries, image_indices)), None)

    # ---- pixel space, viewing and recall -----------------------------------------------------------------

    def pixel_space(self) -> PixelSpace:
        """Where the recalled images live: the training data's normalisation, or its ZCA whitening (saved buffers)."""
        zca = None
        if self.config.zca_regularization is not None:
            zca = ZCA(self.zca_eigenvectors.detach().cpu(), self.zca_scales.detach().cpu(), self.config.zca_regularization)
        return PixelSpace(self.config.mean, self.config.std, zca)

    def preprocess(self, images: Any) -> torch.Tensor:
        """Real images -> this memory's pixel space, ready for a network trained on `recall()`: PIL images, uint8
        arrays or tensors ((N, H, W[, C]) or (N, C, H, W)), or [0, 1] float tensors."""
        return self.pixel_space().preprocess(images, self.config.image_shape)

    def load_split(self, split: str | None = None, dataset: str | None = None, **kwargs: Any) -> ImageClassificationData:
        """A split of the memory's dataset (default: its test split), in the memory's pixel space: what a network
        trained on the recalled images is tested on. `dataset` overrides the recorded one (same classes)."""
        data = load_split(dataset or self.config.dataset_name, split, self.pixel_space(), **kwargs)
        self.check_data(data)
        return data

    def check_data(self, data: ImageClassificationData) -> None:
        """Refuse data whose images, classes or pixel space differ from the memory's, naming what differs: its
        recall, pictures and evaluation on that data would be silently wrong."""
        check_matches(data, self.config.image_shape, self.config.class_names, self.pixel_space())

    def to_viewable(self, images: torch.Tensor, stretch: bool = False) -> torch.Tensor:
        """Model-space images -> [0, 1] pixels for pictures and previews (`stretch`: each image to the full range)."""
        return self.pixel_space().to_viewable(images, stretch=stretch)

    @torch.no_grad()
    def recall(
        self,
        classes: Sequence[int | str] | None = None,
        queries: torch.Tensor | None = None,
        query_labels: Sequence[int] | None = None,
        preview: bool = False,
        batch_size: int = 64,
        images: Any = None,
        labels: Sequence[int | str] | None = None,
    ) -> datasets.Dataset:
        """The recalled synthetic set as a `datasets.Dataset` (eqn 2): every chosen class (`classes`, names or ids;
        default all), each query vector (`queries`, optionally named by `query_labels`), or each group of query
        images (`images` with `labels`, one per image: the few-shot recall of sec 5.3.2, see `recall_by_images`).
        Columns: `pixel_values` (float32, exact, in the memory's pixel space), `label` (ClassLabel), `address`; for
        queries and images also `query`, `query_id`; with learned soft labels `soft_label`; with `preview=True` a
        contrast-stretched uint8 `image` for viewing."""
        if images is not None:
            if classes is not None or queries is not None or query_labels is not None:
                raise ValueError("pass images= with labels= alone (not classes=, queries= or query_labels=)")
            return recall_by_images(self, images, labels, preview, batch_size)
        if labels is not None:
            raise ValueError("labels= names the classes of query images: it goes with images=")
        if queries is not None:
            if classes is not None:
                raise ValueError("pass either classes= or queries=, not both")
            return recall_by_queries(self, queries, query_labels, preview, batch_size)
        if query_labels is not None:
            raise ValueError("query_labels only goes with queries=")
        return recall_by_labels(self, classes, preview, batch_size)

    @classmethod
    def for_dataset(cls, data: ImageClassificationData, ipc: float = MemoryOptions.ipc, **options: Any) -> "AddressableMemory":
        """A fresh memory sized for `data` and a budget of `ipc` images per class (eqn 4; `options` as for
        `AddressableMemoryConfig.for_budget`), carrying its class names, pixel space (normalisation or ZCA) and, for
        output_norm='standardize' (the default), its per-image statistics."""
        options.setdefault("output_norm", MemoryOptions.output_norm)  # the config's own default is the old memories' none
        stats = data.image_statistics() if options["output_norm"] == "standardize" else {}
        zca = data.zca.regularization if data.zca is not None else None
        memory = cls(AddressableMemoryConfig.for_budget(data.image_shape, data.class_names, ipc=ipc, mean=data.mean, std=data.std,
                                                        dataset_name=data.name or None, zca_regularization=zca, **stats, **options))
        if data.zca is not None:
            with torch.no_grad():
                memory.zca_eigenvectors.copy_(data.zca.eigenvectors)
                memory.zca_scales.copy_(data.zca.scales)
        return memory

    # ---- saving, loading and the Hub ---------------------------------------------------------------------

    def check_finite(self) -> None:
        """Refuse a memory with NaN or inf in any tensor (a diverged distillation), naming the tensor."""
        bad = [name for name, tensor in self.state_dict().items() if not bool(torch.isfinite(tensor).all())]
        if bad:
            raise ValueError(f"the memory has non-finite values (NaN or inf) in {bad}: it would recall nothing usable")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any):
        """Load a memory from a folder or Hub id; refuses (CheckpointError) missing, corrupt or mismatched weights.

        transformers would otherwise warn and leave missing tensors randomly initialised: a silently wrong memory.
        """
        return hub.load_checked(super().from_pretrained, cls, pretrained_model_name_or_path, *args, **kwargs)

    def save_pretrained(  # type: ignore[override]
        self,
        save_directory: str | os.PathLike,
        is_main_process: bool = True,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        tags: list[str] | None = None,
        dataset_repo_id: str | None = None,
        pictures: bool = True,
        **kwargs: Any,
    ) -> str | None:
        """model.safetensors and config.json (transformers), plus our model card (README.md) and pictures (unless
        `pictures=False`: a bank of many tasks keeps its folders small), in `save_directory`. With `push_to_hub`, that folder is uploaded as it is to `repo_id` (default: the folder's
        name; upload options as for `push_to_hub`), so a push carries the same card and pictures as a local save;
        returns the commit URL then."""
        if not is_main_process:
            return None
        self.check_finite()  # nothing non-finite is ever saved
        upload = {k: kwargs.pop(k) for k in hub.UPLOAD_KWARGS if k in kwargs}
        folder = Path(save_directory)
        super().save_pretrained(folder, **kwargs)
        if pictures:
            hub.write_pictures(self, folder)
        card_repo = repo_id or (folder.name if push_to_hub else None)
        hub.write_card(self.config, folder, card_repo, dataset_repo_id, tags)
        return hub.upload_folder(folder, card_repo, **upload) if push_to_hub else None

    def push_to_hub(  # type: ignore[override]
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        commit_description: str | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        max_shard_size: int | str | None = "50GB",
        tags: list[str] | None = None,
        push_dataset: bool = False,
        dataset_repo_id: str | None = None,
        recalled_picture: str | os.PathLike | None = None,
    ) -> str:
        """Upload weights, config, the model card and pictures in one commit (transformers' keyword arguments);
        with `push_dataset`, also the recalled `datasets.Dataset` (exact pixels + preview, with its own card) to
        `dataset_repo_id` (default `<repo_id>-recalled`). `recalled_picture`: a recalled.png to upload with it (a
        memory addressed by images draws none itself: it recalls only from pictures; a run's folder has one, drawn
        from test shots), shown by the card. Returns the URL of the model commit."""
        if push_dataset and self.config.addressed_by_images:
            raise ValueError("push_dataset uploads the recall of every class; a memory addressed by images recalls only "
                             "from pictures (recall(images=..., labels=...) and push that Dataset yourself)")
        if push_dataset:
            dataset_repo_id = dataset_repo_id or f"{repo_id}-recalled"
            hub.push_recalled_dataset(self.recall(preview=True), self.config, dataset_repo_id, repo_id,
                                      private=private, token=token)
        with tempfile.TemporaryDirectory() as folder:
            if recalled_picture is not None:  # before save_pretrained, so the card it writes shows it
                shutil.copyfile(recalled_picture, Path(folder) / "recalled.png")
            return self.save_pretrained(
                folder, push_to_hub=True, repo_id=repo_id, tags=tags, max_shard_size=max_shard_size,
                dataset_repo_id=dataset_repo_id if push_dataset else None, commit_message=commit_message,
                commit_description=commit_description, private=private, token=token, revision=revision, create_pr=create_pr)


# Registered on import, so AutoModel loads saved memories with no remote code (hf_rtp/__init__.py makes sure this
# module is imported whenever transformers is).
from transformers import AutoModel  # noqa: E402

AutoModel.register(AddressableMemoryConfig, AddressableMemory, exist_ok=True)
