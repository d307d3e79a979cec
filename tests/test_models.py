import io
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, copy_of_the_repository
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


# docs/add-a-model.md's example, as a user adds it: the class and its entry in MODELS, its settings' file.
ADDED_CLASS = '''

class ThreeLayerNet(nn.Module):
    """784 -> hidden -> ReLU -> hidden -> ReLU -> 6."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(IMAGE_SIDE * IMAGE_SIDE, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, N_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1))


'''


@pytest.mark.slow
def test_a_model_added_in_models_py_and_conf_trains_and_is_promoted_as_the_best_model(course_dir, tmp_path):
    repo = copy_of_the_repository(tmp_path)
    models = repo / "qd/core/models.py"
    text = models.read_text()
    registry = text.index("# The models qd builds")
    text = text[:registry] + ADDED_CLASS.lstrip("\n") + "\n\n" + text[registry:]
    entry = '    "bestmodel": BestModel,\n'
    models.write_text(text.replace(entry, entry + '    "mlp": ThreeLayerNet,\n'))
    (repo / "conf/model/mlp.yaml").write_text("name: mlp\nhidden: 64\n")
    env = {**os.environ, "PYTHONPATH": str(repo)}

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *argv], cwd=repo, env=env, capture_output=True, text=True)

    assert run("-m", "qd.experiment.conf").returncode == 0, "make defaults: conf/ has a new file"
    assert "\nmodel: bestmodel, convnet, densenet, mlp\n" in run("main_bestmodel.py", "--help").stdout
    trained = run("main_bestmodel.py", "model=mlp", f"data.dir={course_dir}", "train.steps=60", "train.eval_every=20")
    assert trained.returncode == 0, trained.stderr
    promoted = run("-m", "qd", "promote", "outputs", "--models", "bestmodel", "--data-dir", str(course_dir))
    assert promoted.returncode == 0, promoted.stderr
    said = promoted.stdout
    assert re.search(r"^bestmodel \(mlp\): run [\d_-]+, dev accuracy 0\.\d{4}, ", said, re.M), said
    readme = (repo / "submission/README.md").read_text()
    assert "ThreeLayerNet (`models.py` in code.zip): 784 -> hidden -> ReLU -> hidden -> ReLU -> 6." in readme
    assert "\n| total | | | 54,790 |\n" in readme  # 784 * 64 + 64 + 64 * 64 + 64 + 64 * 6 + 6
    assert len((repo / "submission/best_model_predictions.csv").read_text().splitlines()) == 600
    for argv, message in (
        (["main_densenet.py", "model=mlp"], "model=mlp: main_densenet.py trains the densenet model; for mlp run "
                                            "main_bestmodel.py"),
        (["-m", "qd", "promote", "--models", "mlp"], "argument --models: got 'mlp'; expected a comma-separated list "
                                                    "of densenet, convnet, bestmodel (mlp: promoted as bestmodel)"),
    ):  # fmt: skip
        shutil.copyfile(ROOT / "main_densenet.py", repo / "main_densenet.py")
        refused = run(*argv)
        assert refused.returncode == 2 and refused.stderr.splitlines()[-1].endswith(f"error: {message}"), refused.stderr
