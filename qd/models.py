"""The course's three classifiers. Every model maps (N, 784) or (N, 28, 28) images to (N, 6) scores."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from qd import IMAGE_SIDE, N_CLASSES
from qd.errors import QDError


def _as_images(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)


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
        self.classifier = nn.Conv2d(16, N_CLASSES, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(_as_images(x)).mean(dim=(2, 3), keepdim=True)
        return self.classifier(h).flatten(1)


class BestModel(nn.Module):
    """A batch-norm CNN: `depth` 3x3 convolutions per stage, max-pool between stages, global average.

    `widths` gives the channels of each stage; the classifier is dropout then one linear layer.
    """

    def __init__(self, widths: tuple[int, ...] = (24, 48, 96), depth: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for stage, width in enumerate(widths):
            if stage:
                layers.append(nn.MaxPool2d(2))
            for _ in range(depth):
                layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, N_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(_as_images(x)).mean(dim=(2, 3)))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "densenet": TwoLayerDenseNet,
    "convnet": TooSimpleConvNN,
    "bestmodel": BestModel,
}


def build_model(model_cfg: dict) -> nn.Module:
    """Build a model from its config: {"name": one of MODELS, **constructor arguments}."""
    kwargs = dict(model_cfg)
    name = kwargs.pop("name", None)
    if name not in MODELS:
        raise QDError(f"model: unknown model {name!r}; expected one of {', '.join(MODELS)}")
    if "widths" in kwargs:
        kwargs["widths"] = tuple(kwargs["widths"])
    try:
        return MODELS[name](**kwargs)
    except TypeError as e:
        raise QDError(f"model {name}: bad options {kwargs}: {e}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
