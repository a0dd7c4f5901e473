"""Networks trained on recalled images: in the unroll (as pure functions of their parameters) and at evaluation.

The ConvNet is the one shared by DC/DSA/DM/MTT/RTP: blocks of Conv3x3 (bias) -> instance norm (GroupNorm with
one group per channel, affine) -> ReLU -> AvgPool 2x2, then one Linear layer on the 4x4 (or so) feature map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


class ViT(FunctionalNet):
    """A small Vision Transformer as a pure function, so the unroll can train one: `patch` x `patch` patches embedded
    to `dim`, a learned position embedding, `depth` pre-norm blocks (multi-head self-attention with `dim // 32` heads,
    then a 2x MLP with GELU), mean pooling and a linear head. Without convolutions it has no locality or translation
    bias, like timm's ViTs: an inner learner for memories meant for attention models, and a cheap ViT student. (The
    unroll's plain SGD trains it slowly, so its meta-gradient is weak at T=50: see docs/distillation.md.)"""

    def __init__(self, in_channels: int, num_classes: int, image_size: int | Sequence[int], dim: int = 64,
                 depth: int = 2, patch: int = 4):
        super().__init__()
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if h % patch or w % patch:
            raise ValueError(f"a ViT with {patch}x{patch} patches needs an image size divisible by {patch}, got {h}x{w}")
        self.dim, self.depth, self.patch, self.heads = dim, depth, patch, max(1, dim // 32)
        if dim % self.heads:
            raise ValueError(f"ViT width {dim} does not split into {self.heads} heads")
        self.embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.position = nn.Parameter(torch.zeros(1, (h // patch) * (w // patch), dim))
        self.blocks = nn.ModuleList(
            nn.ModuleList([nn.LayerNorm(dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim),
                           nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)])
            for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def functional(self, params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        it = iter(params)
        position, weight, bias = next(it), next(it), next(it)  # parameters() order: a module's own tensors first
        x = F.conv2d(x, weight, bias, stride=self.patch).flatten(2).transpose(1, 2) + position  # (n, tokens, dim)
        n, tokens, dim = x.shape
        for _ in range(self.depth):
            ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b = (next(it) for _ in range(12))
            q, k, v = F.linear(F.layer_norm(x, (dim,), ln1_w, ln1_b), qkv_w, qkv_b).view(
                n, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
            # attention written out (not scaled_dot_product_attention): the unroll needs its double backward
            attention = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(dim // self.heads), dim=-1)
            x = x + F.linear((attention @ v).transpose(1, 2).reshape(n, tokens, dim), proj_w, proj_b)
            hidden = F.gelu(F.linear(F.layer_norm(x, (dim,), ln2_w, ln2_b), fc1_w, fc1_b))
            x = x + F.linear(hidden, fc2_w, fc2_b)
        norm_w, norm_b, head_w, head_b = it
        return F.linear(F.layer_norm(x, (dim,), norm_w, norm_b).mean(1), head_w, head_b)

    @torch.no_grad()
    def init_params(self, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """timm's ViT init: truncated normal (std 0.02) for the position embedding and linear weights, zero biases,
        unit LayerNorms; the patch embedding as a conv (U(+-1/sqrt(fan_in)))."""
        fresh = []
        for name, p in self.named_parameters():
            if name.startswith("embed."):
                bound = 1 / math.sqrt(self.embed.weight[0].numel())
                t = torch.empty(p.shape, dtype=p.dtype).uniform_(-bound, bound, generator=generator)
            elif name == "position" or (name.endswith("weight") and p.dim() == 2):
                t = torch.nn.init.trunc_normal_(torch.empty(p.shape, dtype=p.dtype), std=0.02, a=-0.04, b=0.04,
                                                generator=generator)
            elif name.endswith("weight"):  # LayerNorm scales
                t = torch.ones(p.shape, dtype=p.dtype)
            else:
                t = torch.zeros(p.shape, dtype=p.dtype)
            fresh.append(t.to(p.device))
        return fresh


# ---- the registry: one factory signature, one spec parser, one seeded construction ------------------------------


@dataclass(frozen=True)
class LearnerEntry:
    factory: Callable[..., nn.Module]
    """(in_channels, num_classes, image_size, width, depth) -> module; width/depth None take the factory's defaults."""
    caller_width: bool
    """Whether a caller's default width applies (the ConvNet's `learner_width`/`eval_width`); others keep their own."""
    own_init: bool
    """Whether a seeded construction re-draws the weights from a generator (`init_params`) rather than keeping
    PyTorch's default init under the seed (as timm models and, for the evaluation's numbers, the MLP do)."""


LEARNERS: dict[str, LearnerEntry] = {}


def register_learner(name: str, caller_width: bool = False, own_init: bool = True):
    """Register a factory for `name` and `name-<width>` (timm's style of a registry of model constructors). Registered
    learners are FunctionalNets: the unroll can train them."""
    def register(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        LEARNERS[name] = LearnerEntry(factory, caller_width, own_init)
        return factory

    return register


@register_learner("convnet", caller_width=True)
def convnet(in_channels, num_classes, image_size, width=None, depth=None) -> ConvNet:
    """The paper's ConvNet (width 128 unless told)."""
    return ConvNet(in_channels, num_classes, image_size, width=width or 128, depth=depth)


@register_learner("mlp", own_init=False)
def mlp(in_channels, num_classes, image_size, width=None, depth=None) -> MLP:
    """La-MAML's MLP: `depth` (2) hidden layers of `width` (100) units."""
    return MLP(in_channels, num_classes, image_size, hidden=width or 100, layers=depth if depth is not None else 2)


@register_learner("vit")
def vit(in_channels, num_classes, image_size, width=None, depth=None) -> ViT:
    """The small functional ViT: width 64, `depth` (2) blocks, 4x4 patches."""
    return ViT(in_channels, num_classes, image_size, dim=width or 64, depth=depth if depth is not None else 2)


def parse_learner(spec: str) -> tuple[str, int | None]:
    """`convnet-64` -> ("convnet", 64); `mlp` -> ("mlp", None); a name that is not registered (a timm model name)
    -> (spec, None)."""
    kind, _, width = spec.partition("-")
    if kind not in LEARNERS:
        return spec, None
    if width and not (width.isdigit() and int(width) > 0):
        raise ValueError(f"learner {spec!r}: the width after {kind}- must be a positive integer")
    return kind, int(width) if width else None


def learner_specs(spec: str, unrolled: bool = False) -> list[str]:
    """The learners of `spec` (several joined by + take turns in the unroll: `convnet+mlp`). `unrolled`: each must
    have the functional form the unroll needs (a registered learner)."""
    names = spec.split("+")
    if unrolled:
        for name in names:
            try:
                kind, _ = parse_learner(name)
            except ValueError:
                kind = None
            if kind not in LEARNERS:
                choices = ", ".join(f"{k}, {k}-<width>" for k in LEARNERS)
                raise ValueError(f"inner_learner {name!r} is not one of {choices} (joined by + to take turns): the "
                                 f"unroll needs a network with a functional form")
    elif len(names) > 1:
        raise ValueError(f"learner {spec!r}: one network here (+ joins inner learners only)")
    return names


def create_learner(
    name: str,
    in_channels: int,
    num_classes: int,
    image_size: int | Sequence[int],
    width: int = 128,
    depth: int | None = None,
    **timm_kwargs,
) -> nn.Module:
    """A registered learner (`convnet`, `mlp`, `vit`, each also as `<name>-<width>`; `width` is the ConvNet's when
    the name gives none, `depth` its blocks or hidden layers) or any timm model name (evaluation only; `depth` is
    then the model's own, e.g. a ViT's blocks, and `timm_kwargs` go to timm.create_model, e.g. patch_size=4)."""
    kind, own_width = parse_learner(name)
    if kind in LEARNERS:
        entry = LEARNERS[kind]
        return entry.factory(in_channels, num_classes, image_size,
                             width=own_width or (width if entry.caller_width else None), depth=depth)
    import timm

    size = image_size if isinstance(image_size, int) else image_size[0]
    kwargs = {"in_chans": in_channels, "num_classes": num_classes, "pretrained": False, **timm_kwargs}
    if depth is not None:  # e.g. the number of blocks of a ViT; left to timm's default otherwise
        kwargs["depth"] = depth
    try:
        return timm.create_model(name, img_size=size, **kwargs)
    except TypeError:  # convolutional timm models take any input size and have no img_size argument
        return timm.create_model(name, **kwargs)


def seeded_learner(name: str, in_channels: int, num_classes: int, image_size: int | Sequence[int], seed: int,
                   width: int = 128, depth: int | None = None, **timm_kwargs) -> nn.Module:
    """`create_learner`, initialised from `seed` alone (the global generator is left as it was): the one way every
    student, baseline network and continual learner starts."""
    with torch.random.fork_rng(devices=[]):  # timm (and nn.Linear) initialise from the global generator
        torch.manual_seed(seed)
        net = create_learner(name, in_channels, num_classes, image_size, width=width, depth=depth, **timm_kwargs)
    kind, _ = parse_learner(name)
    if kind in LEARNERS and LEARNERS[kind].own_init:
        net.reset_parameters(torch.Generator().manual_seed(seed))
    return net


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
