"""Batch data augmentation on standardised images, vectorised: one random affine map per image.

Config (each transform applies to an image with probability `p`):
  shift: {p, pixels}   rotate: {p, degrees}   scale: {p, amount}   hflip: {p}   blur: {p, sigma}
  elastic: {p, pixels, sigma}: a smooth random displacement field (Gaussian-blurred with `sigma`
    pixels) that moves each pixel by `pixels` on average (rms), as Simard et al. (2003) did for digits
  noise: {p, std}: Gaussian noise of std `std` times the image's value range, then re-standardised
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from qd.core.data import IMAGE_SIDE


def is_active(cfg: dict) -> bool:
    return any(t.get("p", 0) > 0 for t in cfg.values())


def _chosen(cfg: dict, name: str, n: int, g: torch.Generator) -> torch.Tensor:
    """A 0/1 mask: which of the n images this transform applies to."""
    p = cfg.get(name, {}).get("p", 0.0)
    return (torch.rand(n, generator=g) < p).float()


def _uniform(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * 2 - 1


def augment(x: torch.Tensor, cfg: dict, g: torch.Generator) -> torch.Tensor:
    """Randomly transform a batch of images (N, 784) and return it in the same shape, on its device.

    Every random number is drawn on the CPU from `g` and then moved to the batch's device, so one seed
    gives one augmentation stream on any device.
    """
    n = len(x)
    angle = _chosen(cfg, "rotate", n, g) * _uniform(n, g) * math.radians(cfg.get("rotate", {}).get("degrees", 0))
    scale = 1 + _chosen(cfg, "scale", n, g) * _uniform(n, g) * cfg.get("scale", {}).get("amount", 0)
    flip = 1 - 2 * _chosen(cfg, "hflip", n, g)
    shift_on = _chosen(cfg, "shift", n, g) * cfg.get("shift", {}).get("pixels", 0) * 2 / IMAGE_SIDE
    shift = torch.stack([_uniform(n, g), _uniform(n, g)], 1) * shift_on[:, None]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
    )
    images = x.reshape(n, 1, IMAGE_SIDE, IMAGE_SIDE)
    grid = F.affine_grid(theta.to(x), list(images.shape), align_corners=False)
    elastic = cfg.get("elastic", {})
    if elastic.get("pixels", 0) > 0:
        amount = _chosen(cfg, "elastic", n, g)[:, None, None, None] * elastic["pixels"] * 2 / IMAGE_SIDE
        grid = grid + amount.to(x) * _smooth_field(n, elastic["sigma"], g).to(x)
    out = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
    sigma = cfg.get("blur", {}).get("sigma", 0)
    if sigma > 0:
        blurred = _gaussian_blur(out, sigma)
        mask = _chosen(cfg, "blur", n, g).to(x)[:, None, None, None]
        out = mask * blurred + (1 - mask) * out
    out = out.reshape(n, -1)
    std = cfg.get("noise", {}).get("std", 0)
    if std > 0:
        chosen = _chosen(cfg, "noise", n, g).to(x)[:, None]
        spread = (out.amax(1, keepdim=True) - out.amin(1, keepdim=True)) * chosen
        out = _standardise(out + torch.randn(out.shape, generator=g).to(x) * std * spread)
    return out


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """Each row to mean 0 and variance 1, as qd.core.data.standardise does."""
    std = x.std(dim=1, keepdim=True, unbiased=False)
    return (x - x.mean(dim=1, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))


def _smooth_field(n: int, sigma: float, g: torch.Generator) -> torch.Tensor:
    """n random (28, 28, 2) displacement fields of unit rms: white noise blurred (circularly) with `sigma`."""
    offset = torch.arange(IMAGE_SIDE)
    distance = (offset[None, :] - offset[:, None] + IMAGE_SIDE // 2) % IMAGE_SIDE - IMAGE_SIDE // 2
    blur = torch.exp(-((distance / sigma) ** 2) / 2)
    blur = blur / blur.sum(1, keepdim=True)
    noise = torch.randn(n, 2, IMAGE_SIDE, IMAGE_SIDE, generator=g)
    field = blur @ noise @ blur.T / blur[0].square().sum()
    return field.permute(0, 2, 3, 1)


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(2 * sigma))
    k = torch.exp(-((torch.arange(-radius, radius + 1, dtype=images.dtype) / sigma) ** 2) / 2)
    k = (k / k.sum()).to(images)
    padded = F.pad(images, (radius,) * 4, mode="replicate")
    return F.conv2d(F.conv2d(padded, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
