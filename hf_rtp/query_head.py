"""The query head of an image-addressed memory: a timm feature extractor and a linear projection to the query space.

Sec 5.3.2 of the paper addresses a memory by images: a few pictures of a class make one query y, and eqn 2 recalls
r training images from it. The head is part of the memory (its weights sit in the same model.safetensors) and is
rebuilt by name from the config, so a memory loads anywhere timm is installed, offline included (a saved memory's
head is always its own weights, never fetched again).

Where a new head's encoder starts (`start_encoder`, recorded in the config's `query_encoder_start`):
- `random`: timm's initialisation, learned only through the meta-gradient;
- `pretrained`: timm's pretrained weights for the model, by name from the Hub (online) or from a local weights file
  or folder through timm's own pretrained-config mechanism (`pretrained_cfg_overlay=dict(file=...)`), so timm adapts
  the first convolution to the image's channels and drops its classifier exactly as for its own downloads;
- `supervised`: trained as a classifier of the distillation's training split first (`train_supervised`, the recipe
  the few-shot baselines' backbone uses: AdamW 1e-3, batches of 256), its classifier then dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn


def create_encoder(name: str, in_channels: int, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """timm model `name` as a feature extractor: `in_chans` from the image shape, no classifier, no pretrained
    weights; a name timm does not know is a ValueError that says so."""
    import timm

    if not timm.is_model(name):
        raise ValueError(f"query_encoder {name!r} is not a timm model name (see timm.list_models())")
    kwargs = dict(kwargs or {})
    for fixed in ("in_chans", "num_classes", "pretrained"):
        if fixed in kwargs:
            raise ValueError(f"query_encoder_kwargs must not set {fixed!r}: it follows from the memory "
                             f"(in_chans from the image shape, num_classes=0; pretrained weights through "
                             f"DistillConfig.query_encoder_start='pretrained')")
    try:
        return timm.create_model(name, in_chans=in_channels, num_classes=0, pretrained=False, **kwargs)
    except TypeError as error:  # an argument the model does not take: one line naming it, not timm's traceback
        raise ValueError(f"query_encoder_kwargs {kwargs} do not fit timm model {name!r}: {error}") from error


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def pretrained_encoder(name: str, in_channels: int, kwargs: dict[str, Any] | None = None,
                       weights: str | None = None) -> nn.Module:
    """timm model `name` with pretrained weights, as a feature extractor (no classifier): timm's default weights for
    it (downloaded: online), or `weights`, a local file or a folder holding one of WEIGHT_FILES (offline)."""
    import timm

    if not timm.is_model(name):
        raise ValueError(f"query_encoder {name!r} is not a timm model name (see timm.list_models())")
    overlay = None
    if weights is not None:
        path = Path(weights)
        if path.is_dir():
            found = [path / f for f in WEIGHT_FILES if (path / f).is_file()]
            if not found:
                raise ValueError(f"query encoder weights: {path} holds none of {', '.join(WEIGHT_FILES)}")
            path = found[0]
        if not path.is_file():
            raise ValueError(f"query encoder weights: no such file or folder: {weights}")
        overlay = {"file": str(path)}
    where = weights or "the Hugging Face Hub (online; offline, pass a local weights file)"
    try:
        model = timm.create_model(name, in_chans=in_channels, num_classes=0, pretrained=True,
                                  pretrained_cfg_overlay=overlay, **dict(kwargs or {}))
        if overlay is not None:  # timm skips what it cannot adapt with a warning: a file of another model must fail
            held = set(timm.models.load_state_dict(overlay["file"]))
            missing = sorted(set(model.state_dict()) - held)
            if missing:
                raise ValueError(f"the file holds no {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}")
        return model
    except (RuntimeError, OSError, KeyError, ValueError) as error:
        raise ValueError(f"cannot load pretrained {name} weights from {where}: {str(error).splitlines()[0]}") from error


def train_supervised(name: str, kwargs: dict[str, Any] | None, train, epochs: int, device: str | torch.device = "cpu",
                     seed: int = 0) -> nn.Module:
    """timm model `name` trained from scratch as a classifier of `train` (an ImageClassificationData): AdamW 1e-3,
    batches of 256, `epochs` epochs, seeded. The supervised start of a query encoder, and the backbone of the
    few-shot baselines (bench/few_shot.py), so the two compare on one recipe."""
    import timm
    import torch.nn.functional as F

    torch.manual_seed(seed)
    net = timm.create_model(name, in_chans=train.image_shape[0], num_classes=train.num_classes, pretrained=False,
                            **dict(kwargs or {}))
    net.to(device).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(order), 256):
            rows = order[start : start + 256]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(net(train.images[rows].to(device)), train.labels[rows].to(device)).backward()
            optimizer.step()
    return net.eval()


@torch.no_grad()
def start_encoder(head: "QueryHead", name: str, kwargs: dict[str, Any] | None, start: str, weights: str | None = None,
                  train=None, epochs: int = 5, seed: int = 0) -> str:
    """Set `head.encoder`'s weights for `start` (random, pretrained or supervised; see the module docstring) and
    return the description a memory's config records (e.g. `pretrained:resnet10t.a1_in1k`)."""
    if start == "random":
        return "random"
    if start == "pretrained":
        source = pretrained_encoder(name, head.image_shape[0], kwargs, weights)
        loaded = source.pretrained_cfg.get("file")
        tag = f"file {Path(loaded).name}" if weights is not None and loaded else source.pretrained_cfg.get("hf_hub_id") or name
        description = f"pretrained:{tag}"
    elif start == "supervised":
        if train is None:
            raise ValueError("a supervised start trains the encoder on the training split: pass train=")
        with torch.enable_grad():
            source = train_supervised(name, kwargs, train, epochs, head.projection.weight.device, seed)
        source.reset_classifier(0)
        description = f"supervised:{train.name or 'training split'} ({epochs} epochs)"
    else:
        raise ValueError(f"query encoder start must be random, pretrained or supervised, got {start!r}")
    state = source.state_dict()
    missing, unexpected = head.encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"the {start} {name} weights do not fit the head's encoder (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    return description


def feature_width(encoder: nn.Module) -> int:
    """The width of the encoder's pooled features, read from the model: timm's `head_hidden_size`, the width of what a
    model built with num_classes=0 returns (it differs from `num_features` where a head layer follows the pooling,
    as in MobileNetV3), else `num_features`."""
    width = getattr(encoder, "head_hidden_size", None) or getattr(encoder, "num_features", None)
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"{type(encoder).__name__} does not report its feature width (timm's num_features)")
    return width


class QueryHead(nn.Module):
    """images (N, C, H, W) -> queries (N, d_y): y = projection(encoder(x)), or projection([encoder(x), pool(x)]) with
    `pixels`.

    The encoder always runs in eval mode: BatchNorm layers use their stored statistics, so an image's query depends
    on that image alone (not on which other images share its batch) and the same shots recall the same images.
    """

    def __init__(self, name: str, image_shape: Sequence[int], query_dim: int, kwargs: dict[str, Any] | None = None,
                 pixels: int = 0):
        """`pixels`: 0, or a factor ds: the projection then also sees the image itself, average-pooled by ds (the
        bases' resolution), next to the encoder's features. A supervised encoder's pooled features keep what tells its
        training classes apart and little of what a new class looks like; the pixels keep it, so a query can recall
        what its shot shows (`DistillConfig.query_fit="images"`)."""
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.pixels = int(pixels)
        self.encoder = create_encoder(name, self.image_shape[0], kwargs)
        c, h, w = self.image_shape
        extra = c * (h // self.pixels) * (w // self.pixels) if self.pixels else 0
        self.projection = nn.Linear(feature_width(self.encoder) + extra, query_dim)
        self.encoder.eval()  # and it stays so (see `train`)
        self._check_image_size(name)

    @classmethod
    def for_config(cls, config) -> "QueryHead":
        """The head an AddressableMemoryConfig describes (its encoder, query space and `query_pixels`)."""
        return cls(config.query_encoder, config.image_shape, config.query_dim, config.query_encoder_kwargs,
                   pixels=config.downsample if config.query_pixels else 0)

    @torch.no_grad()
    def _check_image_size(self, name: str) -> None:
        """One forward of a zero image of the memory's shape, now rather than at first use: a network that
        downsamples below one pixel, or a ViT built for another img_size, otherwise fails deep in timm (an
        AssertionError) once distillation or recall starts. On the meta device (a memory's tensors sized by
        `hub.expected_tensors`) it costs only the shapes; the encoder is in eval mode, so nothing it keeps changes."""
        weight = self.projection.weight
        probe = torch.zeros(1, *self.image_shape, device=weight.device, dtype=weight.dtype)
        try:
            width = self.encoder(probe).shape[-1]
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"query_encoder {name!r} cannot take images of shape {self.image_shape}: {first} (pick an "
                             f"encoder for this size, or set its size in query_encoder_kwargs, e.g. img_size for a ViT)"
                             ) from error
        if width != feature_width(self.encoder):
            raise ValueError(f"query_encoder {name!r} gives {width} features for images of shape {self.image_shape}, "
                             f"not the {feature_width(self.encoder)} it reports (timm's head_hidden_size)")

    def train(self, mode: bool = True) -> "QueryHead":
        super().train(mode)
        self.encoder.eval()  # see the class docstring
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """What the projection sees: the encoder's pooled features, and with `pixels` the pooled image after them."""
        features = self.encoder(images)
        if not self.pixels:
            return features
        return torch.cat([features, nn.functional.avg_pool2d(images, self.pixels).flatten(1)], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projection(self.features(images))

    def stored_floats(self) -> int:
        """Floats the head stores (outside the memory's storage budget, like a network's weights; reported next to it)."""
        return sum(t.numel() for t in self.state_dict().values() if t.is_floating_point())
