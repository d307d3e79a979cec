"""The real drawings vendored in quickdraw_fruit_real/ (Quick, Draw!, CC BY 4.0 Google) and course-shaped
splits of them: the `real_sample` data set."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from qd.core.data import FILES, IMAGE_SIDE, N_CLASSES, check_images, check_labels, load_npy
from qd.core.errors import QDError
from qd.datasets.folders import check_sizes, is_current, write_course_folder

REAL_DIR = Path(__file__).resolve().parent / "quickdraw_fruit_real"
BUILDER = "qd data real_sample"
SIZES = (1500, 450, 450)  # of the 400 drawings a class: 250 train, 75 dev, 75 test


def load_real() -> tuple[np.ndarray, np.ndarray]:
    """The 2,400 drawings, (N, 28, 28) uint8 grouped by class, and their labels (N,) int64."""
    images_path, labels_path = REAL_DIR / "images.npy", REAL_DIR / "labels.npy"
    images = check_images(load_npy(images_path), images_path).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    return images, check_labels(load_npy(labels_path), labels_path, len(images))


def write_real_sample(out_dir: str | os.PathLike, seed: int = 0, sizes: tuple[int, int, int] = SIZES) -> Path:
    """Class-balanced train, dev and test splits of the real drawings, shuffled by `seed`, into `out_dir`."""
    out = Path(out_dir)
    sizes = check_sizes(sizes, seed)
    settings = {"seed": seed, "sizes": dict(zip(FILES, sizes, strict=True))}
    if is_current(out, BUILDER, settings):
        return out
    images, labels = load_real()
    if sum(sizes) > len(labels):
        raise QDError(f"--sizes {sizes}: {sum(sizes):,} drawings asked for; the real set holds {len(labels):,}")
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(N_CLASSES)]
    bounds = np.cumsum([0, *(n // N_CLASSES for n in sizes)])
    splits = []
    for split, lo, hi in zip(FILES, bounds[:-1], bounds[1:], strict=True):
        rows = rng.permutation(np.concatenate([idx[lo:hi] for idx in per_class]))
        splits.append((split, images[rows], labels[rows]))
    provenance = {"source": "qd/datasets/quickdraw_fruit_real: Quick, Draw! drawings by Google, CC BY 4.0"}
    return write_course_folder(out, BUILDER, settings, splits, provenance)
