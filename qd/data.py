"""Course data: the five .npy files, validated, standardised per image, held as float32 tensors.

`python -m qd.data synth --out DIR` writes the embedded synthetic set; `python -m qd.data fetch
--out DIR` builds course-shaped splits from Google's public QuickDraw bitmaps.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qd import IMAGE_SIDE, N_CLASSES
from qd.errors import QDError, exit_on_user_error
from qd.fsutil import atomic_path

FILES = {
    "train": ("fruit_images.npy", "fruit_labels.npy"),
    "dev": ("fruit_dev_images.npy", "fruit_dev_labels.npy"),
    "test": ("fruit_test_images.npy", None),
}
SYNTHETIC_DIR = Path("data/synthetic")
REAL_SAMPLE = Path(
    os.environ.get("QD_REAL_DATA", Path(__file__).resolve().parents[2] / "shared/data/quickdraw_fruit_real")
)
REAL_SAMPLE_SIZES = (1500, 450, 450)
HOW_TO_GET_DATA = (
    f"put the course's five .npy files there, or run `python -m qd.data synth --out {SYNTHETIC_DIR}` "
    "(the embedded synthetic set) or `python -m qd.data fetch --out DIR` (real QuickDraw drawings)"
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
    x = images.reshape(len(images), -1).astype(np.float32, order="C")
    x -= x.mean(axis=1, keepdims=True)
    std = np.sqrt(np.einsum("ij,ij->i", x, x) / x.shape[1])[:, None]
    x /= np.where(std > 0, std, 1)
    return torch.from_numpy(x)


def _load_npy(path: Path) -> np.ndarray:
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
        images = check_images(_load_npy(paths[0]), paths[0])
        labels = None
        if label_name:
            labels = torch.from_numpy(check_labels(_load_npy(paths[1]), paths[1], len(images)))
        _CACHE[key] = Split(standardise(images), labels)
    return _CACHE[key]


def write_real_sample(
    out_dir: str | os.PathLike, seed: int = 0, sizes: tuple[int, int, int] = REAL_SAMPLE_SIZES
) -> Path:
    """Course-shaped, class-balanced splits of the shared real drawings (REAL_SAMPLE)."""
    images_path, labels_path = REAL_SAMPLE / "images.npy", REAL_SAMPLE / "labels.npy"
    images = check_images(_load_npy(images_path), images_path)
    labels = check_labels(_load_npy(labels_path), labels_path, len(images))
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(N_CLASSES)]
    bounds = np.cumsum([0, *(n // N_CLASSES for n in sizes)])
    out_dir = Path(out_dir)
    for split, lo, hi in zip(FILES, bounds[:-1], bounds[1:], strict=True):
        rows = rng.permutation(np.concatenate([idx[lo:hi] for idx in per_class]))
        image_name, label_name = FILES[split]
        save_npy(out_dir / image_name, images[rows].reshape(-1, IMAGE_SIDE, IMAGE_SIDE))
        if label_name:
            save_npy(out_dir / label_name, labels[rows])
    return out_dir


def save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def ensure_data(data_cfg: dict) -> None:
    """Build the configured data set on first use (`prepare`: none, synthetic or real_sample)."""
    data_dir, prepare = Path(data_cfg["dir"]), data_cfg.get("prepare", "none")
    if prepare == "none" or all((data_dir / n).exists() for names in FILES.values() for n in names if n):
        return
    print(f"preparing the {prepare} data set in {data_dir} (first use)", file=sys.stderr)
    if prepare == "synthetic":
        from qd.synth import write_synthetic

        write_synthetic(data_dir)
    elif prepare == "real_sample":
        write_real_sample(data_dir)
    else:
        raise QDError(f"data.prepare: got {prepare!r}; expected none, synthetic or real_sample")


def _synth(args: argparse.Namespace) -> None:
    from qd.synth import write_synthetic

    print(write_synthetic(args.out, seed=args.seed, sizes=tuple(args.sizes)))


def _fetch(args: argparse.Namespace) -> None:
    from qd.fetch import DEFAULT_SOURCE, build

    print(build(args.out, source=args.source or DEFAULT_SOURCE, seed=args.seed, sizes=tuple(args.sizes)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qd.data", description=__doc__.split("\n\n")[1])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, run, out_default in (("synth", _synth, SYNTHETIC_DIR), ("fetch", _fetch, None)):
        p = sub.add_parser(name)
        p.add_argument("--out", type=Path, default=out_default, required=out_default is None)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--sizes", type=int, nargs=3, default=[72000, 21600, 21600], metavar=("TRAIN", "DEV", "TEST"))
        p.set_defaults(run=run)
    sub.choices["fetch"].add_argument("--source", help="base URL or folder of <class>.npy files")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        args.run(args)


if __name__ == "__main__":
    main()
