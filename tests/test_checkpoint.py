import os
import random

import pytest
import torch

from conftest import ROOT, run_here
from qd.core import checkpoint
from qd.core.checkpoint import load_model, read_checkpoint, save_checkpoint
from qd.core.defaults import DEFAULTS
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


# How a damaged checkpoint may be refused: each a whole stderr line after `error: <path>: `.
DAMAGED = (
    "corrupt checkpoint (checksum mismatch); expected the file as qd training wrote it",
    "truncated or corrupt torch checkpoint; expected a complete .pt file",
    "not a torch checkpoint (expected the zip-based .pt format that torch.save writes)",
)


def test_corrupt_bytes_at_any_offset_are_refused_in_one_line_or_change_no_prediction(course_dir, tmp_path):
    """16 bytes flipped at each of 10 seeded offsets of a real checkpoint, each copy predicted by the course
    command line: refused in one line with nothing written, or (bytes no tensor or setting reads, such as the
    zip's padding) the intact file's predictions."""
    cfg = DEFAULTS["convnet"]
    path = tmp_path / "intact.pt"
    save_checkpoint(path, build_model(cfg["model"]), cfg["model"], {"dev_acc": 0.5, "config": cfg})
    data = path.read_bytes()
    rng = random.Random(26)
    copies = {}
    for offset in sorted(rng.sample(range(len(data) - 16), 10)):
        damaged = bytearray(data)
        damaged[offset : offset + 16] = bytes(b ^ 0xFF for b in damaged[offset : offset + 16])
        copies[offset] = tmp_path / f"at-{offset}.pt"
        copies[offset].write_bytes(damaged)

    def predict(weights):
        argv = ["--mode", "predict", "--weights", str(weights), "--dataDir", str(course_dir), "--predictionsFile",
                str(weights.with_suffix(".csv"))]  # fmt: skip
        result = run_here([str(ROOT / "main_convnet.py"), *argv], tmp_path)
        return result.returncode, result.stderr

    results = {offset: predict(p) for offset, p in [(None, path), *copies.items()]}
    assert results.pop(None)[0] == 0
    intact = path.with_suffix(".csv").read_bytes()
    seen = set()
    for offset, (code, stderr) in results.items():
        weights = copies[offset]
        if code == 0:
            assert weights.with_suffix(".csv").read_bytes() == intact, f"at byte {offset}: other predictions"
            seen.add("unchanged")
        else:
            reason = stderr.removeprefix(f"error: {weights}: ").removesuffix("\n")
            assert code == 2 and reason in DAMAGED, f"at byte {offset}: exit {code}, {stderr}"
            assert not weights.with_suffix(".csv").exists(), f"at byte {offset}: predictions written"
            seen.add(reason)
    assert DAMAGED[0] in seen, "the checksum refused a damaged tensor"


def test_a_checkpoint_from_before_checksums_loads_and_says_so_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(checkpoint, "_UNVERIFIED_NOTED", [])  # as in a new process
    model = build_model({"name": "densenet", "hidden": 100})
    old = {"format": "qd-checkpoint", "version": 1, "model": {"name": "densenet", "hidden": 100},
           "state_dict": model.state_dict(), "preprocessing": "...", "class_names": ["apple"], "meta": {}}  # fmt: skip
    torch.save(old, tmp_path / "old.pt")
    torch.save(old, tmp_path / "old-too.pt")
    for name in ("old.pt", "old.pt", "old-too.pt"):
        loaded, _ = load_model(tmp_path / name, expect="densenet")
    x = torch.randn(3, 784)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert capsys.readouterr().err == (
        f"note: {tmp_path / 'old.pt'}: written before qd checkpoints carried a checksum; it and any other such file "
        "load unverified\n"
    )


def test_a_checkpoint_cut_short_anywhere_is_one_line(densenet_file, tmp_path):
    """Cut at 20,000 and 68,380 bytes torch raised OSError (Errno 22), not its usual errors; so may other sizes."""
    data = densenet_file[0].read_bytes()
    rng = random.Random(0)
    for size in (20_000, 68_380, *rng.sample(range(4, len(data) - 1), 20)):
        (tmp_path / "cut.pt").write_bytes(data[:size])
        with pytest.raises(QDError, match="cut.pt: truncated or corrupt torch checkpoint; expected a complete .pt"):
            load_model(tmp_path / "cut.pt")


def resealed(path, **fields):
    """`path`'s checkpoint with `fields` changed and its checksum computed anew, as one crafted with care."""
    ckpt = torch.load(path, weights_only=True)
    ckpt.update(fields)
    ckpt["checksum"] = checkpoint.checksum(ckpt)
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("model_cfg, message", [
    (["densenet"], r"model: got \['densenet'\]; expected a mapping of the model's name and options"),
    ({"name": "bestmodel", "width": 16, "depth": 1, "dropout": 2.0},
     r"model bestmodel: bad options .*dropout probability has to be between 0 and 1, but got 2.0"),
    ({"name": "bestmodel", "width": -8, "depth": 1, "dropout": 0.1}, r"model bestmodel: bad options .*negative"),
])  # fmt: skip
def test_a_checkpoints_model_config_is_checked_as_a_command_lines(densenet_file, model_cfg, message):
    path = resealed(densenet_file[0], model=model_cfg)
    with pytest.raises(QDError, match=rf"^{path}: {message}"):
        load_model(path)


def test_weights_that_do_not_fit_name_the_tensor_and_both_shapes(densenet_file):
    path, model = densenet_file
    state = model.state_dict()
    state["net.1.weight"] = torch.zeros(50, 784)
    resealed(path, state_dict=state)
    with pytest.raises(QDError, match=rf"^{path}: weights do not fit the densenet model it names: net.1.weight is "
                                      r"\(50, 784\) in the file, \(100, 784\) in the model$"):  # fmt: skip
        load_model(path)
    del state["net.1.weight"]
    resealed(path, state_dict=state)
    with pytest.raises(QDError, match=r"weights do not fit the densenet model it names: net.1.weight is missing$"):
        load_model(path)
