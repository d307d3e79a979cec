import io

import pytest
import torch

from qd.core.checkpoint import checkpoint_bytes
from qd.core.errors import QDError
from qd.core.models import BestModel, TooSimpleConvNN, TwoLayerDenseNet, build_model


def test_densenet_has_the_course_parameter_counts():
    model = TwoLayerDenseNet()
    weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    biases = sum(p.numel() for n, p in model.named_parameters() if n.endswith("bias"))
    assert (weights, biases) == (784 * 100 + 100 * 6, 100 + 6) == (79_000, 106)


def test_convnet_is_the_course_figure():
    layers = [m for m in TooSimpleConvNN().modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in layers] == [
        (1, 8, (3, 3), (1, 1)),
        (8, 16, (3, 3), (2, 2)),
        (16, 6, (1, 1), (1, 1)),
    ]


@pytest.mark.parametrize("model", [TwoLayerDenseNet(), TooSimpleConvNN(), BestModel()])
@pytest.mark.parametrize("shape", [(1, 784), (1, 28, 28), (5, 784), (5, 28, 28)])
def test_every_model_returns_n_by_6(model, shape):
    model.eval()
    assert model(torch.randn(shape)).shape == (shape[0], 6)


def test_bestmodel_default_checkpoint_fits_the_course_limit():
    from qd.core.defaults import DEFAULTS

    cfg = DEFAULTS["bestmodel"]
    model = build_model(cfg["model"])
    size = checkpoint_bytes(model, cfg["model"], cfg["train"]["half_storage"])
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert size <= 1_000_000
    assert size >= buffer.tell() // (2 if cfg["train"]["half_storage"] else 1)


def test_unknown_model_is_named():
    with pytest.raises(QDError, match="model: unknown model 'resnet'; expected one of densenet, convnet, bestmodel"):
        build_model({"name": "resnet"})
    with pytest.raises(QDError, match="model densenet: bad options"):
        build_model({"name": "densenet", "width": 3})
