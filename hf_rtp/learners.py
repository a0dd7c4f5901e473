"""Networks trained on recalled images: in the unroll (as pure functions of their parameters) and at evaluation.

The ConvNet is the one shared by DC/DSA/DM/MTT/RTP: blocks of Conv3x3 (bias) -> instance norm (GroupNorm with
one group per channel, affine) -> ReLU -> AvgPool 2x2, then one Linear layer on the 4x4 (or so) feature map.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# f(params, images) -> logits: what the unroll differentiates through.
FunctionalLearner = Callable[[Sequence[torch.Tensor], torch.Tensor], torch.Tensor]


def default_depth(height: int) -> int:
    """Blocks needed to pool the image down to about 4x4: 3 for 28/32 px, 4 for 64 px, 1 for 8 px."""
    return max(1, round(math.log2(max(height, 4) / 4)))


class FunctionalNet(nn.Module):
    """A network the unroll can run as a pure function. Subclasses define `functional(params, x)` (params in
    `parameters()` order) and `init_params(generator)` (fresh parameters); forward and reset follow from them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.functional(list(self.parameters()), x)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> "FunctionalNet":
        for p, value in zip(self.parameters(), self.init_params(generator)):
            p.copy_(value)
        return self


class ConvNet(FunctionalNet):
    """The DC/RTP ConvNet. `functional(params, x)` runs it on any list of tensors shaped like `parameters()`."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int | Sequence[int],
        width: int = 128,
        depth: int | None = None,
    ):
        super().__init__()
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.depth = depth if depth is not None else default_depth(h)
        # 28x28 grey digits are padded to 32x32 by the first conv, as in the authors' code.
        self.first_padding = 3 if (in_channels == 1 and (h, w) == (28, 28)) else 1
        h, w = h + 2 * self.first_padding - 2, w + 2 * self.first_padding - 2
        self.width = width
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(self.depth):
            layers += [
                nn.Conv2d(channels, width, 3, padding=self.first_padding if i == 0 else 1),
                nn.GroupNorm(width, width, affine=True),
            ]
            channels = width
            h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"depth {self.depth} pools a {image_size} image below 1x1; use a smaller depth")
        self.blocks = nn.ModuleList(layers)
        self.classifier = nn.Linear(width * h * w, num_classes)

    def functional(self, params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The forward pass with `params` (in `parameters()` order) in place of the module's own tensors."""
        for i in range(self.depth):
            weight, bias, norm_weight, norm_bias = params[4 * i : 4 * i + 4]
            x = F.conv2d(x, weight, bias, padding=self.first_padding if i == 0 else 1)
            x = F.group_norm(x, self.width, norm_weight, norm_bias)
            x = F.avg_pool2d(F.relu(x), 2)
        return F.linear(x.flatten(1), params[-2], params[-1])

    @torch.no_grad()
    def init_params(self, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh parameters with PyTorch's default init (U(+-1/sqrt(fan_in)) for conv/linear), from `generator`."""
        fresh = []
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                bound = 1 / math.sqrt(fan_in)
                for p in (module.weight, module.bias):
                    t = torch.empty(p.shape, dtype=p.dtype).uniform_(-bound, bound, generator=generator)
                    fresh.append(t.to(p.device))
            elif isinstance(module, nn.GroupNorm):
                fresh += [torch.ones_like(module.weight), torch.zeros_like(module.bias)]
        return fresh


class MLP(FunctionalNet):
    """A fully connected network on flattened images: `layers` hidden layers of `hidden` ReLU units (the La-MAML /
    GEM continual-learning learner is 2 x 100). It sees absolute pixel values, so it is the student that shows
    whether recalled images live at the data's scale. `functional` and `init_params` as for the ConvNet."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int | Sequence[int], hidden: int = 100, layers: int = 2):
        super().__init__()
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        sizes = [in_channels * h * w] + [hidden] * layers + [num_classes]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def functional(self, params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i in range(len(self.linears)):
            x = F.linear(x, params[2 * i], params[2 * i + 1])
            if i < len(self.linears) - 1:
                x = F.relu(x)
        return x

    @torch.no_grad()
    def init_params(self, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """PyTorch's default Linear init (U(+-1/sqrt(fan_in))), from `generator`."""
        fresh = []
        for module in self.linears:
            bound = 1 / math.sqrt(module.in_features)
            for p in (module.weight, module.bias):
                fresh.append(torch.empty(p.shape, dtype=p.dtype).uniform_(-bound, bound, generator=generator).to(p.device))
        return fresh


def create_learner(
    name: str,
    in_channels: int,
    num_classes: int,
    image_size: int | Sequence[int],
    width: int = 128,
    depth: int | None = None,
    **timm_kwargs,
) -> nn.Module:
    """`convnet` (the paper's ConvNet; `convnet-64` sets the width), `mlp` (2 x 100 hidden units; `mlp-<hidden>`
    sets the width, `depth` the number of hidden layers) or any timm model name (evaluation only);
    `depth` is the ConvNet's number of conv blocks or the timm model's own `depth` (a ViT's blocks); `timm_kwargs`
    go to timm.create_model (e.g. patch_size=4 for a ViT on 28x28 images)."""
    if name == "convnet" or name.startswith("convnet-"):
        if "-" in name:
            width = int(name.split("-", 1)[1])
        return ConvNet(in_channels, num_classes, image_size, width=width, depth=depth)
    if name == "mlp" or name.startswith("mlp-"):
        hidden = int(name.split("-", 1)[1]) if "-" in name else 100
        return MLP(in_channels, num_classes, image_size, hidden=hidden, layers=depth if depth is not None else 2)
    import timm

    size = image_size if isinstance(image_size, int) else image_size[0]
    kwargs = {"in_chans": in_channels, "num_classes": num_classes, "pretrained": False, **timm_kwargs}
    if depth is not None:  # e.g. the number of blocks of a ViT; left to timm's default otherwise
        kwargs["depth"] = depth
    try:
        return timm.create_model(name, img_size=size, **kwargs)
    except TypeError:  # convolutional timm models take any input size and have no img_size argument
        return timm.create_model(name, **kwargs)


class Resized(nn.Module):
    """`net` on images bilinearly resized to `size`: lets students built for larger inputs (a stride-32 ResNet, a
    ViT with its patch grid) train on 28/32 px recalled images without changing the memory."""

    def __init__(self, net: nn.Module, size: Sequence[int]):
        super().__init__()
        self.net, self.size = net, tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return self.net(x)


def functional_learner(module: nn.Module) -> FunctionalLearner:
    """f(params, x) for the unroll: the ConvNet's own, or torch.func.functional_call for any other module."""
    if isinstance(module, FunctionalNet):
        return module.functional
    names = [name for name, _ in module.named_parameters()]

    def run(params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(module, dict(zip(names, params)), (x,))

    return run
