"""The one writer of course-shaped folders: the five .npy files and a manifest.json, for every qd builder.

manifest.json: {"builder": "qd data synth", "settings": {...the builder's inputs...}, "complete": true,
"files": {name: {"sha256", "shape", "dtype"}}, ...the builder's own provenance...}. A folder belongs to
the builder its manifest names. Course files without a manifest (the user's) are never overwritten, nor
a folder another builder made.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from qd.core.data import FILES, N_CLASSES
from qd.core.errors import QDError, disk_errors
from qd.core.fsutil import atomic_path, atomic_write_text

MANIFEST = "manifest.json"
COURSE_SIZES = (72000, 21600, 21600)  # train, dev, test


def save_npy(path: Path, array: np.ndarray) -> dict:
    """Write `array` to `path` atomically; return its sha256, shape and dtype."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            # Not the file itself: numpy would write it with C's fwrite, whose failure loses the OS's error (a full
            # disk becomes "N requested and M written"); through its write method the error keeps its errno.
            np.save(SimpleNamespace(write=f.write), array, allow_pickle=False)
        digest = _sha256(tmp)
    return {"sha256": digest, "shape": list(array.shape), "dtype": str(array.dtype)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def claim(out: Path, builder: str) -> dict | None:
    """The folder's manifest when `builder` may write there (None: no manifest yet); otherwise a QDError."""
    if out.exists() and not out.is_dir():
        raise QDError(f"{out}: is a file; expected a folder for the data set")
    if (out / MANIFEST).exists():
        try:
            manifest = json.loads((out / MANIFEST).read_text())
        except (OSError, ValueError):
            manifest = None
        if not isinstance(manifest, dict) or manifest.get("builder") != builder:
            raise QDError(
                f"{out}: holds a {MANIFEST} not written by {builder}; refusing to overwrite it, choose another folder"
            )
        return manifest
    course = sorted(p.name for p in out.glob("fruit_*.npy"))
    if course:
        raise QDError(
            f"{out}: holds course files ({', '.join(course)}) and no {MANIFEST}; refusing to overwrite them, "
            "choose another folder"
        )
    return None


def is_current(out: Path, builder: str, settings: dict) -> bool:
    """Whether `builder` already wrote this folder, complete, with `settings`, and every file is as it left it."""
    manifest = claim(out, builder)
    files = manifest.get("files") if manifest else None
    expected = {name for pair in FILES.values() for name in pair if name}
    return (
        bool(manifest)
        and manifest.get("complete") is True
        and manifest.get("settings") == settings
        and isinstance(files, dict)
        and set(files) == expected
        and all((out / name).is_file() and _sha256(out / name) == files[name].get("sha256") for name in expected)
    )


def write_course_folder(
    out: Path,
    builder: str,
    settings: dict,
    splits: Iterable[tuple[str, np.ndarray, np.ndarray | None]],
    provenance: dict | None = None,
) -> Path:
    """Write (split, images, labels) as the course's files into `out`, with the manifest; return `out`.

    The folder is claimed (a manifest marked incomplete) before the first data file lands, so an
    interrupted build is redone by the next one, not refused. `splits` may be a generator: one split is
    held in memory at a time.
    """
    claim(out, builder)
    manifest = {"builder": builder, "settings": settings, "complete": False, **(provenance or {})}
    with disk_errors(out, f"every file in {out} is whole, and building it again finishes it"):
        atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        files = {}
        for split, images, labels in splits:
            images_name, labels_name = FILES[split]
            files[images_name] = save_npy(out / images_name, images)
            if labels_name:
                files[labels_name] = save_npy(out / labels_name, labels)
        manifest.update(complete=True, files=files)
        atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return out


def check_sizes(sizes: object, seed: object) -> tuple[int, int, int]:
    """(train, dev, test) sizes, each a positive multiple of the six classes; and a non-negative seed."""
    sizes = tuple(sizes)
    if len(sizes) != 3 or not all(_is_int(s) and s > 0 and s % N_CLASSES == 0 for s in sizes):
        raise QDError(f"--sizes {sizes}: expected three positive multiples of {N_CLASSES} (train, dev, test)")
    if not _is_int(seed) or seed < 0:
        raise QDError(f"--seed {seed}: expected a non-negative integer")
    return tuple(int(s) for s in sizes)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
