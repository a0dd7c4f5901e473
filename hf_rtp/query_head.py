"""The query head of an image-addressed memory: a timm feature extractor and a linear projection to the query space.

Sec 5.3.2 of the paper addresses a memory by images: a few pictures of a class make one query y, and eqn 2 recalls
r training images from it. The head is part of the memory (its weights sit in the same model.safetensors) and is
rebuilt by name from the config, so a memory loads anywhere timm is installed, offline included (never pretrained
weights from the network: they are the memory's own, learned jointly with the bases and addressing).
"""

from __future__ import annotations

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
                             f"(in_chans from the image shape, num_classes=0, pretrained=False)")
    return timm.create_model(name, in_chans=in_channels, num_classes=0, pretrained=False, **kwargs)


def feature_width(encoder: nn.Module) -> int:
    """The width of the encoder's pooled features, read from the model (timm's `num_features`)."""
    width = getattr(encoder, "num_features", None)
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"{type(encoder).__name__} does not report its feature width (timm's num_features)")
    return width


class QueryHead(nn.Module):
    """images (N, C, H, W) -> queries (N, d_y): y = projection(encoder(x)).

    The encoder always runs in eval mode: BatchNorm layers use their stored statistics, so an image's query depends
    on that image alone (not on which other images share its batch) and the same shots recall the same images.
    """

    def __init__(self, name: str, image_shape: Sequence[int], query_dim: int, kwargs: dict[str, Any] | None = None):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.encoder = create_encoder(name, self.image_shape[0], kwargs)
        self.projection = nn.Linear(feature_width(self.encoder), query_dim)
        self.encoder.eval()  # and it stays so (see `train`)

    def train(self, mode: bool = True) -> "QueryHead":
        super().train(mode)
        self.encoder.eval()  # see the class docstring
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projection(self.encoder(images))

    def stored_floats(self) -> int:
        """Floats the head stores (outside the memory's storage budget, like a network's weights; reported next to it)."""
        return sum(t.numel() for t in self.state_dict().values() if t.is_floating_point())
