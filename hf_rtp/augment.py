"""Differentiable Siamese augmentation (DSA, Zhao & Bilen 2021) as the RTP authors use it.

During distillation one op and one parameter draw are made per outer step and applied identically to the
recalled images at every inner step and to the real batch (`Augmentation.draw(..., shared=True)`), so the
unroll differentiates through one fixed function and the reverse pass replays it exactly. At evaluation every
batch draws per-image parameters (`shared=False`). Constants are DSA's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

SCALE = 1.2  # scale in [1/1.2, 1.2] per axis
ROTATE = 15.0  # degrees
CROP = 0.125  # translate by up to 12.5% of the size
CUTOUT = 0.5  # cut a square of half the size
BRIGHTNESS = 1.0  # add U(-0.5, 0.5)
SATURATION = 2.0  # scale saturation by U(0, 2)
CONTRAST = 0.5  # scale contrast by U(0.5, 1.5)

OPS = ("flip", "scale", "rotate", "crop", "cutout", "color")
# Strategies the paper and its peers use: "flip_rotate" for CIFAR in RTP, DSA's full set without flip for digits.
STRATEGIES = {
    "cifar": "flip_rotate",
    "dsa": "color_crop_cutout_flip_scale_rotate",
    "digits": "color_crop_cutout_scale_rotate",
}


def parse_strategy(strategy: str | None) -> tuple[str, ...]:
    """'flip_rotate' -> ('flip', 'rotate'); named strategies ('cifar', 'dsa', 'digits') expand; None/'none' -> ()."""
    if strategy is None or strategy in ("", "none"):
        return ()
    ops = tuple(STRATEGIES.get(strategy, strategy).split("_"))
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown} in {strategy!r}; ops are {OPS}, named strategies {sorted(STRATEGIES)}")
    return ops


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


@dataclass
class Augmentation:
    """One drawn op with its parameters: a fixed differentiable map images -> images."""

    op: str
    params: dict[str, torch.Tensor]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        p = {k: (v.expand(n, *v.shape[1:]) if len(v) == 1 else v).to(x.device) for k, v in self.params.items()}
        if self.op == "flip":
            flipped = x.flip(3)
            keep = p["flip"].view(-1, 1, 1, 1).to(x.dtype)
            return keep * flipped + (1 - keep) * x
        if self.op == "scale":
            theta = torch.zeros(n, 2, 3, device=x.device)
            theta[:, 0, 0], theta[:, 1, 1] = p["sx"], p["sy"]
            return _affine(x, theta)
        if self.op == "rotate":
            angle = p["angle"] * math.pi / 180
            theta = torch.zeros(n, 2, 3, device=x.device)
            theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle), torch.sin(-angle)
            theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle), torch.cos(angle)
            return _affine(x, theta)
        if self.op == "crop":
            theta = torch.zeros(n, 2, 3, device=x.device)
            theta[:, 0, 0] = theta[:, 1, 1] = 1
            theta[:, 0, 2], theta[:, 1, 2] = p["tx"] * 2, p["ty"] * 2  # grid coordinates span 2
            return _affine(x, theta)
        if self.op == "cutout":
            h, w = x.shape[2:]
            ys = torch.arange(h, device=x.device).view(1, h, 1) + 0.5  # pixel centres
            xs = torch.arange(w, device=x.device).view(1, 1, w) + 0.5
            cy, cx = (p["cy"] * h).view(-1, 1, 1), (p["cx"] * w).view(-1, 1, 1)
            hole = ((ys - cy).abs() < CUTOUT * h / 2) & ((xs - cx).abs() < CUTOUT * w / 2)
            return x * (~hole).unsqueeze(1).to(x.dtype)
        if self.op == "color":  # brightness, then saturation, then contrast (DSA's "color")
            x = x + p["brightness"].view(-1, 1, 1, 1)
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * p["saturation"].view(-1, 1, 1, 1) + mean
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            return (x - mean) * p["contrast"].view(-1, 1, 1, 1) + mean
        raise ValueError(f"unknown augmentation op {self.op!r}")

    @staticmethod
    def draw(strategy: str | None, n: int, generator: torch.Generator, shared: bool) -> "Augmentation | None":
        """Pick one op of `strategy` and its parameters: one draw for all images when `shared`, else one each."""
        ops = parse_strategy(strategy)
        if not ops:
            return None
        op = ops[int(torch.randint(len(ops), (1,), generator=generator))]
        m = 1 if shared else n
        if op == "flip":
            params = {"flip": torch.rand(m, generator=generator) < 0.5}
        elif op == "scale":
            params = {"sx": _uniform(m, 1 / SCALE, SCALE, generator), "sy": _uniform(m, 1 / SCALE, SCALE, generator)}
        elif op == "rotate":
            params = {"angle": _uniform(m, -ROTATE, ROTATE, generator)}
        elif op == "crop":
            params = {"tx": _uniform(m, -CROP, CROP, generator), "ty": _uniform(m, -CROP, CROP, generator)}
        elif op == "cutout":
            params = {"cx": torch.rand(m, generator=generator), "cy": torch.rand(m, generator=generator)}
        else:
            params = {
                "brightness": _uniform(m, -BRIGHTNESS / 2, BRIGHTNESS / 2, generator),
                "saturation": _uniform(m, 0, SATURATION, generator),
                "contrast": _uniform(m, 1 - CONTRAST, 1 + CONTRAST, generator),
            }
        return Augmentation(op, params)


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def batch_augmenter(strategy: str | None, generator: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
    """For evaluation: a fresh op with per-image parameters for every batch."""
    if not parse_strategy(strategy):
        return identity

    def augment(x: torch.Tensor) -> torch.Tensor:
        return Augmentation.draw(strategy, len(x), generator, shared=False)(x)

    return augment
