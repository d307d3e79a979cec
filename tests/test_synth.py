"""The embedded synthetic data set: rendering, determinism, balance and the no-overwrite rule."""

import json
import re

import numpy as np
import pytest

from qd.core.data import IMAGE_SIDE, N_CLASSES
from qd.core.errors import QDError
from qd.datasets.folders import MANIFEST
from qd.datasets.synth import BUILDER, render, write_synthetic

SMALL = (600, 120, 120)
FILES = (
    "fruit_images.npy",
    "fruit_labels.npy",
    "fruit_dev_images.npy",
    "fruit_dev_labels.npy",
    "fruit_test_images.npy",
)


def _contents(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("synth") / "data", seed=3, sizes=SMALL)


def test_render_gives_inked_uint8_doodles_for_every_class():
    labels = np.repeat(np.arange(N_CLASSES), 20)
    images = render(labels, np.random.default_rng(0))
    assert images.shape == (len(labels), IMAGE_SIDE, IMAGE_SIDE)
    assert images.dtype == np.uint8
    assert images.max() == 255 and images.min() == 0
    ink = (images > 0).reshape(len(labels), -1).mean(axis=1)
    assert ink.min() > 0.05 and ink.max() < 0.7
    for label in range(N_CLASSES):
        assert images[labels == label].mean() > 15, label
    # Google's padding: the drawing never reaches the outermost ring of pixels.
    assert images[:, [0, -1], :].max() == 0 and images[:, :, [0, -1]].max() == 0


def test_render_is_deterministic_per_generator_and_checks_labels():
    labels = np.array([5, 0, 3, 3, 1, 2, 4])
    first = render(labels, np.random.default_rng(7))
    assert np.array_equal(first, render(labels, np.random.default_rng(7)))
    assert not np.array_equal(first, render(labels, np.random.default_rng(8)))
    with pytest.raises(ValueError, match="class ids"):
        render(np.array([0, 6]), np.random.default_rng(0))


def test_write_is_deterministic_per_seed(small_set, tmp_path):
    same = write_synthetic(tmp_path / "same", seed=3, sizes=SMALL)
    assert _contents(same) == _contents(small_set)
    other = _contents(write_synthetic(tmp_path / "other", seed=4, sizes=SMALL))
    for name in (
        "fruit_images.npy",
        "fruit_dev_images.npy",
        "fruit_test_images.npy",
        "fruit_labels.npy",
    ):
        assert other[name] != _contents(small_set)[name], name


def test_splits_are_shaped_balanced_and_shuffled(small_set):
    assert sorted(p.name for p in small_set.iterdir()) == sorted([*FILES, MANIFEST])
    for size, images_name, labels_name in zip(SMALL, FILES[::2], [*FILES[1::2], None], strict=True):
        images = np.load(small_set / images_name, allow_pickle=False)
        assert images.shape == (size, IMAGE_SIDE, IMAGE_SIDE) and images.dtype == np.uint8
        if labels_name:
            labels = np.load(small_set / labels_name, allow_pickle=False)
            assert labels.shape == (size,) and labels.dtype == np.int64
            assert np.bincount(labels, minlength=N_CLASSES).tolist() == [size // N_CLASSES] * N_CLASSES
            assert (np.diff(labels) != 0).mean() > 0.5  # shuffled, not grouped by class
    manifest = json.loads((small_set / MANIFEST).read_text())
    assert manifest["builder"] == BUILDER == "qd data synth" and manifest["complete"] is True
    assert manifest["settings"] == {"seed": 3, "sizes": dict(zip(("train", "dev", "test"), SMALL, strict=True)),
                                    "format_version": 1}  # fmt: skip
    assert sorted(manifest["files"]) == sorted(FILES)


def test_refuses_to_overwrite_course_files(tmp_path):
    course = tmp_path / "fruit_images.npy"
    np.save(course, np.full((6, IMAGE_SIDE, IMAGE_SIDE), 7, dtype=np.uint8))
    before = course.read_bytes()
    with pytest.raises(QDError) as error:
        write_synthetic(tmp_path, sizes=SMALL)
    assert str(error.value) == (
        f"{tmp_path}: holds course files (fruit_images.npy) and no manifest.json; refusing to overwrite them, "
        "choose another folder"
    )
    assert course.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fruit_images.npy"]


def test_rerun_is_a_no_op_and_damage_is_repaired(tmp_path):
    out = write_synthetic(tmp_path / "data", seed=3, sizes=SMALL)
    stats = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir()}
    contents = _contents(out)
    assert write_synthetic(out, seed=3, sizes=SMALL) == out
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir()} == stats
    (out / "fruit_dev_labels.npy").write_bytes(b"damaged")
    write_synthetic(out, seed=3, sizes=SMALL)
    assert _contents(out) == contents


def test_marked_folder_is_regenerated_for_new_settings_or_after_an_interrupted_run(small_set, tmp_path):
    out = write_synthetic(tmp_path / "data", seed=4, sizes=SMALL)
    write_synthetic(out, seed=3, sizes=SMALL)
    assert _contents(out) == _contents(small_set)
    # An interrupted run leaves a manifest marked incomplete beside partial files: redo, don't refuse.
    (out / MANIFEST).write_text(json.dumps({"builder": BUILDER, "complete": False}))
    (out / "fruit_test_images.npy").unlink()
    write_synthetic(out, seed=3, sizes=SMALL)
    assert _contents(out) == _contents(small_set)


@pytest.mark.parametrize("sizes", [(600, 121, 120), (600, 120, 0), (-6, 120, 120)])
def test_sizes_must_be_positive_multiples_of_six(tmp_path, sizes):
    expected = f"--sizes {sizes}: expected three positive multiples of 6 (train, dev, test)"
    with pytest.raises(QDError, match=f"^{re.escape(expected)}$"):
        write_synthetic(tmp_path / "data", sizes=sizes)
    assert not (tmp_path / "data").exists()
