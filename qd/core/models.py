"""The course's three classifiers. Every model maps (N, 784) or (N, 28, 28) images to (N, 6) scores."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from qd.core.data import IMAGE_SIDE, N_CLASSES
from qd.core.errors import QDError


def _as_images(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)


def _spatial_mean(h: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C), reduced in `h`'s memory layout, so that the gradient flowing back keeps it: a
    channels-last gradient meeting channels-last activations, rather than a reorder at every layer behind."""
    if h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous():
        return h.permute(0, 2, 3, 1).mean(dim=(1, 2))
    return h.mean(dim=(2, 3))


class TwoLayerDenseNet(nn.Module):
    """Figure 1 of the course: 784 -> hidden -> ReLU -> 6 (79,000 weights, 106 biases at hidden 100)."""

    def __init__(self, hidden: int = 100) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(IMAGE_SIDE * IMAGE_SIDE, hidden), nn.ReLU(), nn.Linear(hidden, N_CLASSES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1))


class TooSimpleConvNN(nn.Module):
    """Figure 2 of the course: two convolutions, a spatial average, a 1x1 convolution to 6 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3), nn.ReLU(), nn.Conv2d(8, 16, kernel_size=3, stride=2), nn.ReLU()
        )
        self.classifier = PointwiseConv2d(16, N_CLASSES, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(_spatial_mean(self.features(_as_images(x))))


class PointwiseConv2d(nn.Conv2d):
    """The course's 1x1 convolution on the (N, C) spatial means, computed as the linear map it is there: a
    convolution of 1x1 images costs more than the matrix product, and a channels-last one a reorder too."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(h, self.weight.flatten(1), self.bias)


class BestModel(nn.Module):
    """A batch-norm CNN cheap enough to train on two CPU cores: one convolution at full resolution.

    A 3x3 convolution to `width` channels at 28x28, then twice a 2x2 max-pool and a stage of `depth`
    3x3 convolutions with twice the channels (2 x width at 14x14, 4 x width at 7x7), then global
    average pooling, dropout and one linear layer. With `tta` the eval-mode scores average the
    image and its mirror.
    """

    def __init__(self, width: int = 16, depth: int = 2, dropout: float = 0.2, tta: bool = False) -> None:
        super().__init__()
        layers = _conv_bn_relu(1, width)
        channels = width
        for stage_width in (2 * width, 4 * width):
            layers.append(nn.MaxPool2d(2))
            for _ in range(depth):
                layers += _conv_bn_relu(channels, stage_width)
                channels = stage_width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, N_CLASSES))
        self.tta = tta

    def _scores(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(_spatial_mean(self.features(images)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = _as_images(x)
        if self.tta and not self.training:
            return (self._scores(images) + self._scores(images.flip(-1))) / 2
        return self._scores(images)


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


# The models qd builds, by the name their config gives (conf/model/<name>.yaml); which course model each is
# submitted as: qd.core.course.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "densenet": TwoLayerDenseNet,
    "convnet": TooSimpleConvNN,
    "bestmodel": BestModel,
}


def build_model(model_cfg: dict) -> nn.Module:
    """Build a model from its config: {"name": one of MODELS, **constructor arguments}; options it cannot be built
    with (a dropout above 1, a negative width) are one line (QDError)."""
    if not isinstance(model_cfg, dict):
        raise QDError(f"model: got {model_cfg!r}; expected a mapping of the model's name and options")
    kwargs = dict(model_cfg)
    name = kwargs.pop("name", None)
    if name not in MODELS:
        raise QDError(f"model: unknown model {name!r}; expected one of {', '.join(MODELS)}")
    try:
        return MODELS[name](**kwargs)
    except (TypeError, ValueError, RuntimeError) as e:
        raise QDError(f"model {name}: bad options {kwargs}: {str(e).splitlines()[0]}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
