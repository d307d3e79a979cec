"""Build course-shaped train/dev/test splits from Google's public QuickDraw numpy bitmaps.

Per class only the first k = (train + dev + test) / 6 drawings are used, so over HTTP only the
.npy header and the bytes of those k rows are fetched (HTTP Range requests). Downloads are cached
in `<out>/.cache/<class>.part`, each an exact prefix of the remote file (header included), and
resume from where they stopped.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.lib.format as npformat
from tqdm import tqdm

from qd.core.data import CLASS_NAMES, FILES, IMAGE_SIDE, N_CLASSES
from qd.core.errors import QDError, disk_error
from qd.datasets.folders import COURSE_SIZES, check_sizes, claim, write_course_folder

DEFAULT_SOURCE = "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/"
HEADER_PROBE_BYTES = 1024  # first request per class; QuickDraw .npy headers are 128 bytes
ROW_BYTES = IMAGE_SIDE * IMAGE_SIDE
BUILDER = "qd data fetch"

_CHUNK = 1 << 16
_TIMEOUT_S = 60
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(?:\d+|\*)")


def build(
    out_dir: str | Path,
    source: str = DEFAULT_SOURCE,
    seed: int = 0,
    sizes: tuple[int, int, int] = COURSE_SIZES,
    progress: bool = True,
) -> Path:
    """Write the course files and their manifest into `out_dir` and return it as a Path.

    `source` is an http(s) base URL or a folder holding `<class>.npy` for every class in
    CLASS_NAMES; `sizes` are the (train, dev, test) totals, each a multiple of the class count.
    Same inputs give byte-identical outputs.
    """
    sizes = check_sizes(sizes, seed)
    k = sum(sizes) // N_CLASSES
    out = Path(out_dir)
    claim(out, BUILDER)

    is_url = urllib.parse.urlparse(source).scheme.lower() in ("http", "https")
    if not is_url and not Path(source).is_dir():
        raise QDError(
            f"--source {source}: expected an http(s) base URL or a folder holding "
            f"{', '.join(f'{name}.npy' for name in CLASS_NAMES)}"
        )
    classes = {}
    class_rows = []
    for label, name in enumerate(CLASS_NAMES):
        if is_url:
            where = source.rstrip("/") + f"/{name}.npy"
            rows, available = _download(where, out / ".cache" / f"{name}.part", k, progress)
        else:
            where = str(Path(source) / f"{name}.npy")
            rows, available = _read_local(Path(where), k)
        class_rows.append(rows)
        classes[name] = {
            "label": label,
            "file": where,
            "rows_available": available,
            "rows_used": k,  # the first k rows of the file
            "sha256": hashlib.sha256(rows.tobytes()).hexdigest(),
        }

    settings = {"source": source, "seed": seed, "sizes": dict(zip(FILES, sizes, strict=True))}
    splits = [(split, *arrays) for split, arrays in zip(FILES, _splits(class_rows, seed, sizes), strict=True)]
    return write_course_folder(out, BUILDER, settings, splits, provenance={"classes": classes})


def _check_layout(where: str, shape: tuple, fortran: bool, dtype: np.dtype, k: int) -> int:
    """Return the row count of a QuickDraw bitmap array, or raise QDError naming `where`."""
    if (
        dtype != np.uint8
        or fortran
        or len(shape) not in (2, 3)
        or tuple(shape[1:]) not in ((ROW_BYTES,), (IMAGE_SIDE, IMAGE_SIDE))
    ):
        order = ", Fortran order" if fortran else ""
        raise QDError(
            f"{where}: expected a C-order uint8 array of shape (N, {ROW_BYTES}) or "
            f"(N, {IMAGE_SIDE}, {IMAGE_SIDE}), got {dtype} {tuple(shape)}{order}"
        )
    if shape[0] < k:
        raise QDError(f"{where}: holds {shape[0]} drawings, expected at least {k}")
    return shape[0]


def _parse_header(head: bytes, url: str, k: int) -> tuple[int, int]:
    """Return (rows in the file, byte offset of the data) from the first bytes of an .npy."""
    f = io.BytesIO(head)
    try:
        version = npformat.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = npformat.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except (ValueError, EOFError) as e:
        raise QDError(f"{url}: expected a NumPy .npy file of uint8 bitmaps ({e})") from None
    return _check_layout(url, shape, fortran, dtype, k), f.tell()


def _get_range(url: str, start: int, end: int) -> Iterator[bytes]:
    """Yield bytes start..end (inclusive) of `url`, fewer if the file ends first.

    A server that ignores Range (200 instead of 206) is streamed: the bytes before `start` are
    skipped and the connection is dropped after `end`.
    """
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-{end}", "User-Agent": "qd-fetch"})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            if response.status == 206:
                match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
                if match is None or int(match[1]) != start:
                    raise QDError(
                        f"{url}: asked for bytes {start}-{end}, the server sent "
                        f"Content-Range {response.headers.get('Content-Range')!r}"
                    )
                skip = 0
            elif response.status == 200:
                skip = start
            else:
                raise QDError(f"{url}: unexpected HTTP status {response.status}, expected 206")
            while skip:
                chunk = response.read(min(_CHUNK, skip))
                if not chunk:
                    return
                skip -= len(chunk)
            left = end + 1 - start
            while left:
                chunk = response.read(min(_CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
    except urllib.error.HTTPError as e:
        e.close()
        raise QDError(f"{url}: HTTP {e.code} {e.reason}, expected the file") from None
    except (OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        raise QDError(f"{url}: download failed ({reason})") from None


def _download(url: str, part: Path, k: int, progress: bool) -> tuple[np.ndarray, int]:
    """Return (first k rows as (k, 28, 28) uint8, rows in the file), resuming `part`."""
    head = b"".join(_get_range(url, 0, HEADER_PROBE_BYTES - 1))
    available, offset = _parse_header(head, url, k)
    need = offset + k * ROW_BYTES
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
        cached = b""
        if part.exists():
            with open(part, "rb") as f:
                cached = f.read(len(head))
        # Seed the cache with the header bytes; a cache that disagrees with them came from
        # another file and is replaced.
        if not head.startswith(cached) or len(cached) < min(len(head), need):
            part.write_bytes(head[:need])
        size = part.stat().st_size
        if size < need:
            with (
                open(part, "ab") as f,
                tqdm(
                    total=need,
                    initial=size,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=part.stem,
                    file=sys.stderr,
                    disable=not progress or not sys.stderr.isatty(),
                ) as bar,
            ):
                for chunk in _get_range(url, size, need - 1):
                    f.write(chunk)
                    bar.update(len(chunk))
        with open(part, "rb") as f:
            data = f.read(need)
    except OSError as e:
        error = disk_error(e, part, f"the bytes downloaded so far are kept in {part}; run again to resume")
        raise error or QDError(f"{part}: cannot use the download cache ({e})") from None
    if len(data) < need:
        raise QDError(
            f"{url}: the download stopped at byte {len(data)} of the {need} needed "
            f"(kept in {part}; run again to resume)"
        )
    rows = np.frombuffer(data, dtype=np.uint8, offset=offset)
    return rows.reshape(k, IMAGE_SIDE, IMAGE_SIDE), available


def _read_local(path: Path, k: int) -> tuple[np.ndarray, int]:
    """Return (first k rows as (k, 28, 28) uint8, rows in the file) of a local .npy."""
    if not path.is_file():
        raise QDError(f"{path}: file not found, expected the QuickDraw bitmaps of {path.stem}")
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as e:
        raise QDError(f"{path}: expected a NumPy .npy file of uint8 bitmaps ({e})") from None
    available = _check_layout(str(path), array.shape, not array.flags.c_contiguous, array.dtype, k)
    return np.array(array[:k]).reshape(k, IMAGE_SIDE, IMAGE_SIDE), available


def _splits(
    class_rows: list[np.ndarray], seed: int, sizes: tuple[int, int, int]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split each class's rows by a seeded permutation, then shuffle each split by the seed."""
    seeds = np.random.SeedSequence(seed).spawn(N_CLASSES + len(sizes))
    per_class = [size // N_CLASSES for size in sizes]
    cuts = np.cumsum([0, *per_class])
    perms = [
        np.random.default_rng(s).permutation(len(rows)) for s, rows in zip(seeds[:N_CLASSES], class_rows, strict=True)
    ]
    splits = []
    for i, n in enumerate(per_class):
        images = np.concatenate([rows[p[cuts[i] : cuts[i + 1]]] for rows, p in zip(class_rows, perms, strict=True)])
        labels = np.repeat(np.arange(N_CLASSES, dtype=np.int64), n)
        order = np.random.default_rng(seeds[N_CLASSES + i]).permutation(len(labels))
        splits.append((images[order], labels[order]))
    return splits
