"""Course data: the five .npy files, validated, standardised per image, held as float32 tensors.

torch is imported where tensors are made: a sweep's main process checks the data and never trains.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qd.core.errors import QDError

if TYPE_CHECKING:
    import torch

CLASS_NAMES = ("apple", "banana", "grapes", "pineapple", "strawberry", "watermelon")
N_CLASSES = len(CLASS_NAMES)
IMAGE_SIDE = 28
FILES = {
    "train": ("fruit_images.npy", "fruit_labels.npy"),
    "dev": ("fruit_dev_images.npy", "fruit_dev_labels.npy"),
    "test": ("fruit_test_images.npy", None),
}
HOW_TO_GET_DATA = (
    "put the course's five .npy files there, or run `python -m qd data synth --out data/synthetic` "
    "(the embedded synthetic set) or `python -m qd data fetch --out DIR` (real QuickDraw drawings)"
)


@dataclass
class Split:
    """One split: standardised images (N, 784) float32 and labels (N,) int64 (None for test)."""

    x: torch.Tensor
    y: torch.Tensor | None


def standardise(images: np.ndarray) -> torch.Tensor:
    """Each image to mean 0 and variance 1, as (N, 784) float32; a blank image becomes all zeros.

    In place on one float32 copy, in NumPy: no temporaries the size of the data, no torch threads.
    """
    import torch

    x = images.reshape(len(images), -1).astype(np.float32, order="C")
    x -= x.mean(axis=1, keepdims=True)
    std = np.sqrt(np.einsum("ij,ij->i", x, x) / x.shape[1])[:, None]
    x /= np.where(std > 0, std, 1)
    return torch.from_numpy(x)


def load_npy(path: Path) -> np.ndarray:
    """A numeric .npy array, never unpickled; a missing, foreign or truncated file is a QDError naming it."""
    if not path.exists():
        raise QDError(f"{path}: file not found")
    if not path.is_file():
        raise QDError(f"{path}: expected a .npy file, found a folder or special file")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise QDError(
                f"{path}: holds Python objects that need pickle; refused (expected a numeric array)"
            ) from None
        raise QDError(f"{path}: not a readable .npy array ({e})") from None
    except (OSError, EOFError) as e:
        raise QDError(f"{path}: not a readable .npy array ({e})") from None


def check_images(images: np.ndarray, path: Path) -> np.ndarray:
    """Validate images: (N, 28, 28) or (N, 784), N > 0, numeric, finite, within 0..255."""
    side = IMAGE_SIDE
    if images.ndim not in (2, 3) or images.shape[1:] not in ((side, side), (side * side,)):
        raise QDError(f"{path}: images have shape {images.shape}; expected (N, {side}, {side}) or (N, {side * side})")
    if len(images) == 0:
        raise QDError(f"{path}: holds no images; expected at least one")
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise QDError(f"{path}: images have dtype {images.dtype}; expected integers or floats in 0..255")
    if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
        raise QDError(f"{path}: images contain NaN or infinite pixels; expected finite values in 0..255")
    if images.dtype != np.uint8 and (images.min() < 0 or images.max() > 255):
        raise QDError(
            f"{path}: pixel values span {images.min()}..{images.max()}; expected 0..255 (white strokes on black)"
        )
    return images


def check_labels(labels: np.ndarray, path: Path, n_images: int) -> np.ndarray:
    """Validate labels: integers in 0..5, one per image."""
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise QDError(f"{path}: labels have shape {labels.shape} and dtype {labels.dtype}; expected (N,) integers")
    if len(labels) != n_images:
        raise QDError(f"{path}: {len(labels)} labels for {n_images} images; expected one label per image")
    if labels.min() < 0 or labels.max() >= N_CLASSES:
        raise QDError(f"{path}: labels span {labels.min()}..{labels.max()}; expected integers in 0..{N_CLASSES - 1}")
    return labels.astype(np.int64)


def require_files(data_dir: Path, splits: tuple[str, ...]) -> None:
    """Fail with one line listing every missing file and the ways to get data."""
    names = [name for s in splits for name in FILES[s] if name]
    missing = [n for n in names if not (data_dir / n).exists()]
    if missing:
        raise QDError(f"{data_dir}: missing {', '.join(missing)}; {HOW_TO_GET_DATA}")


_CACHE: dict[tuple, Split] = {}


def load_split(data_dir: str | os.PathLike, split: str) -> Split:
    """Load and standardise one split, once per process (cached on path, size and mtime)."""
    data_dir = Path(data_dir)
    require_files(data_dir, (split,))
    image_name, label_name = FILES[split]
    paths = [data_dir / n for n in (image_name, label_name) if n]
    key = (split, *((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths))
    if key not in _CACHE:
        import torch

        images = check_images(load_npy(paths[0]), paths[0])
        labels = None
        if label_name:
            labels = torch.from_numpy(check_labels(load_npy(paths[1]), paths[1], len(images)))
        _CACHE[key] = Split(standardise(images), labels)
    return _CACHE[key]
