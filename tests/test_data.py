import shutil

import numpy as np
import pytest
import torch

from qd.core.data import FILES, load_split, standardise
from qd.core.errors import QDError
from qd.datasets.prepare import ensure_data


def test_standardise_gives_mean_0_variance_1_and_blank_images_stay_finite():
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    images[2] = 0
    images[3] = 255
    x = standardise(images)
    assert x.shape == (5, 784) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert torch.equal(x[2], torch.zeros(784)) and torch.equal(x[3], torch.zeros(784))
    keep = [0, 1, 4]
    torch.testing.assert_close(x[keep].mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x[keep].var(1, correction=0), torch.ones(3), atol=1e-4, rtol=0)


def test_flat_and_square_images_standardise_the_same():
    images = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    assert torch.equal(standardise(images), standardise(images.reshape(4, 784)))


def test_load_split_is_cached_per_process(course_dir):
    a, b = load_split(course_dir, "train"), load_split(course_dir, "train")
    assert a is b
    assert a.x.shape == (1200, 784) and a.y.dtype == torch.int64
    assert load_split(course_dir, "test").y is None


@pytest.fixture
def broken(course_dir, tmp_path):
    """A writable copy of the course folder to break."""
    out = tmp_path / "d"
    shutil.copytree(course_dir, out)
    return out


def _save(path, array):
    np.save(path, array, allow_pickle=True)


@pytest.mark.parametrize(
    "name, array, message",
    [
        (
            "fruit_images.npy",
            np.zeros((1200, 27, 27), np.uint8),
            r"shape \(1200, 27, 27\); expected \(N, 28, 28\) or \(N, 784\)",
        ),
        ("fruit_images.npy", np.zeros((0, 28, 28), np.uint8), "holds no images"),
        ("fruit_images.npy", np.full((1200, 28, 28), np.nan, np.float32), "NaN or infinite pixels"),
        ("fruit_images.npy", np.full((1200, 28, 28), 300.0), r"pixel values span 300.0..300.0; expected 0..255"),
        ("fruit_labels.npy", np.full(1200, 6), r"labels span 6..6; expected integers in 0..5"),
        ("fruit_labels.npy", np.full(1200, -1), r"labels span -1..-1; expected integers in 0..5"),
        ("fruit_labels.npy", np.zeros(1200, np.float32), r"expected \(N,\) integers"),
        ("fruit_labels.npy", np.zeros(1100, np.int64), "1100 labels for 1200 images; expected one label per image"),
        ("fruit_images.npy", np.array([{"a": 1}] * 3, dtype=object), "holds Python objects that need pickle; refused"),
    ],
)
def test_bad_files_are_named_with_what_was_expected(broken, name, array, message):
    _save(broken / name, array)
    with pytest.raises(QDError, match=message) as e:
        load_split(broken, "train")
    assert str(broken / name) in str(e.value)


def test_truncated_npy_and_folder_in_place_of_a_file(broken):
    data = (broken / "fruit_images.npy").read_bytes()
    (broken / "fruit_images.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(QDError, match="fruit_images.npy: not a readable .npy array"):
        load_split(broken, "train")
    (broken / "fruit_dev_images.npy").unlink()
    (broken / "fruit_dev_images.npy").mkdir()
    with pytest.raises(QDError, match="fruit_dev_images.npy: expected a .npy file, found a folder"):
        load_split(broken, "dev")


def test_missing_folder_lists_the_files_and_how_to_get_data(tmp_path):
    with pytest.raises(QDError) as e:
        load_split(tmp_path / "datasets", "train")
    message = str(e.value)
    assert "missing fruit_images.npy, fruit_labels.npy" in message
    assert "python -m qd data synth" in message and "python -m qd data fetch" in message


def test_ensure_data_builds_the_real_sample_once(real_dir, tmp_path):
    out = tmp_path / "real"
    ensure_data({"dir": str(out), "prepare": "real_sample"})
    sizes = {split: len(np.load(out / FILES[split][0])) for split in FILES}
    assert sizes == {"train": 1500, "dev": 450, "test": 450}
    labels = np.load(out / "fruit_labels.npy")
    assert np.bincount(labels).tolist() == [250] * 6
    before = (out / "fruit_images.npy").stat().st_mtime_ns
    ensure_data({"dir": str(out), "prepare": "real_sample"})
    assert (out / "fruit_images.npy").stat().st_mtime_ns == before
