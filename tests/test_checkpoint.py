import os

import pytest
import torch

from qd.core.checkpoint import load_model, read_checkpoint, save_checkpoint
from qd.core.errors import QDError
from qd.core.models import build_model


@pytest.fixture
def densenet_file(tmp_path):
    model = build_model({"name": "densenet", "hidden": 100})
    save_checkpoint(tmp_path / "d.pt", model, {"name": "densenet", "hidden": 100}, {"dev_acc": 0.5})
    return tmp_path / "d.pt", model


def test_round_trip_rebuilds_the_same_model(densenet_file):
    path, model = densenet_file
    loaded, ckpt = load_model(path, expect="densenet")
    x = torch.randn(3, 784)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert ckpt["class_names"][0] == "apple" and ckpt["meta"]["dev_acc"] == 0.5
    assert not loaded.training


def test_half_storage_halves_the_file_and_loads_as_float32(tmp_path):
    model = build_model({"name": "densenet", "hidden": 100})
    full = save_checkpoint(tmp_path / "f.pt", model, {"name": "densenet"}, {})
    half = save_checkpoint(tmp_path / "h.pt", model, {"name": "densenet"}, {}, half=True)
    assert half < 0.6 * full
    loaded, _ = load_model(tmp_path / "h.pt")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_another_model_type_is_refused(densenet_file):
    with pytest.raises(QDError, match="holds a densenet model; expected a convnet checkpoint"):
        load_model(densenet_file[0], expect="convnet")


def test_missing_truncated_and_foreign_files(densenet_file, tmp_path):
    with pytest.raises(QDError, match="nope.pt: checkpoint not found"):
        read_checkpoint(tmp_path / "nope.pt")
    data = densenet_file[0].read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(QDError, match="cut.pt: truncated or corrupt torch checkpoint; expected a complete .pt file"):
        read_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(QDError, match="foreign.pt: not a qd checkpoint"):
        read_checkpoint(tmp_path / "foreign.pt")


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path):
    marker = str(tmp_path / "payload-ran")
    torch.save({"format": "qd-checkpoint", "model": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(QDError, match="evil.pt: refused: holds objects other than tensors and plain data"):
        load_model(tmp_path / "evil.pt")
    assert not os.path.exists(marker)


def test_a_whole_pickled_module_is_refused(tmp_path):
    torch.save(build_model({"name": "convnet"}), tmp_path / "module.pt")
    with pytest.raises(QDError, match="module.pt: refused"):
        load_model(tmp_path / "module.pt")
