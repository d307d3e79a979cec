"""qd.datasets.fetch against a local HTTP server (127.0.0.1 only) and a local folder of fixture files."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import socket
import threading
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from qd.core.data import CLASS_NAMES
from qd.core.errors import QDError
from qd.datasets.fetch import HEADER_PROBE_BYTES, build

ROWS = 150
SIZES = (360, 72, 72)
K = sum(SIZES) // 6  # 84 rows per class
OUTPUTS = (
    "fruit_images.npy",
    "fruit_labels.npy",
    "fruit_dev_images.npy",
    "fruit_dev_labels.npy",
    "fruit_test_images.npy",
    "manifest.json",
)


class RangeServer(http.server.ThreadingHTTPServer):
    """Serves files from `root`, honouring single `Range: bytes=a-b` requests unless told not to."""

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.root = root
        self.honour_range = True
        self.cut_after: int | None = None  # drop the connection after this many body bytes
        self.lock = threading.Lock()
        self.bytes_served: dict[str, int] = defaultdict(int)
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/numpy_bitmap/"

    def reset(self) -> None:
        with self.lock:
            self.bytes_served.clear()
            self.requests.clear()


class RangeHandler(http.server.BaseHTTPRequestHandler):
    server: RangeServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        range_header = self.headers.get("Range")
        with self.server.lock:
            self.server.requests.append((name, range_header))
        path = self.server.root / name
        if not self.path.startswith("/numpy_bitmap/") or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", range_header or "")
        if match and self.server.honour_range:
            start, end = int(match[1]), min(int(match[2]), len(data) - 1)
            if start >= len(data):
                self.send_error(416)
                return
            body = data[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.cut_after is not None and len(body) > self.server.cut_after:
            body = body[: self.server.cut_after]
            self.close_connection = True
        try:
            self.wfile.write(body)
        except ConnectionError:
            return  # the client stopped reading once it had what it needed
        with self.server.lock:
            self.server.bytes_served[name] += len(body)


@pytest.fixture
def bitmaps(tmp_path: Path) -> dict[str, np.ndarray]:
    """Six fixture class files of ROWS random uint8 rows, shape (ROWS, 784), in tmp_path/src."""
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(123)
    arrays = {}
    for name in CLASS_NAMES:
        arrays[name] = rng.integers(0, 256, size=(ROWS, 784), dtype=np.uint8)
        np.save(src / f"{name}.npy", arrays[name])
    return arrays


@pytest.fixture
def server(tmp_path: Path, bitmaps):
    srv = RangeServer(tmp_path / "src")
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def data_offset(path: Path) -> int:
    return path.stat().st_size - ROWS * 784


def read_outputs(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def test_http_build_shapes_balance_checksums_and_bytes(tmp_path, bitmaps, server):
    out = build(tmp_path / "out", source=server.url, seed=7, sizes=SIZES, progress=False)
    assert out == tmp_path / "out"

    images, labels = np.load(out / "fruit_images.npy"), np.load(out / "fruit_labels.npy")
    dev_images = np.load(out / "fruit_dev_images.npy")
    dev_labels = np.load(out / "fruit_dev_labels.npy")
    test_images = np.load(out / "fruit_test_images.npy")
    assert images.shape == (360, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (360,) and labels.dtype == np.int64
    assert dev_images.shape == (72, 28, 28) and dev_labels.dtype == np.int64
    assert test_images.shape == (72, 28, 28) and test_images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [60] * 6
    assert np.bincount(dev_labels).tolist() == [12] * 6
    assert not (out / "fruit_test_labels.npy").exists()

    # Every image is one of the first K rows of its class; the three splits use each row once.
    row_class = {bitmaps[n][i].tobytes(): c for c, n in enumerate(CLASS_NAMES) for i in range(K)}
    seen = [img.tobytes() for img in np.concatenate([images, dev_images, test_images])]
    assert len(set(seen)) == 6 * K and set(seen) == set(row_class)
    assert [row_class[img.tobytes()] for img in images] == labels.tolist()
    assert [row_class[img.tobytes()] for img in dev_images] == dev_labels.tolist()
    assert labels[:12].tolist() != sorted(labels[:12].tolist())  # shuffled, not class blocks

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["builder"] == "qd data fetch" and manifest["complete"] is True
    assert manifest["settings"] == {"source": server.url, "seed": 7, "sizes": {"train": 360, "dev": 72, "test": 72}}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert sorted(manifest["files"]) == sorted(OUTPUTS[:-1])
    for label, name in enumerate(CLASS_NAMES):
        entry = manifest["classes"][name]
        assert entry["label"] == label and entry["file"] == server.url + f"{name}.npy"
        assert entry["rows_used"] == K and entry["rows_available"] == ROWS
        assert entry["sha256"] == hashlib.sha256(bitmaps[name][:K].tobytes()).hexdigest()

    # No more bytes than the header request plus the K rows, and never the whole file.
    for name in CLASS_NAMES:
        served = server.bytes_served[f"{name}.npy"]
        offset = data_offset(tmp_path / "src" / f"{name}.npy")
        assert served <= HEADER_PROBE_BYTES + K * 784
        assert served == offset + K * 784 < offset + ROWS * 784


def test_same_inputs_give_identical_bytes_and_seed_matters(tmp_path, server):
    first = read_outputs(build(tmp_path / "a", source=server.url, sizes=SIZES, progress=False))
    second = read_outputs(build(tmp_path / "b", source=server.url, sizes=SIZES, progress=False))
    assert first == second
    other = read_outputs(build(tmp_path / "c", source=server.url, seed=1, sizes=SIZES, progress=False))
    assert other["fruit_images.npy"] != first["fruit_images.npy"]


def test_resume_fetches_only_the_rest_and_finished_cache_is_not_refetched(tmp_path, server):
    fresh = read_outputs(build(tmp_path / "fresh", source=server.url, sizes=SIZES, progress=False))
    apple = (tmp_path / "src" / "apple.npy").read_bytes()
    need = data_offset(tmp_path / "src" / "apple.npy") + K * 784
    have = 30000
    out = tmp_path / "out"
    (out / ".cache").mkdir(parents=True)
    (out / ".cache" / "apple.part").write_bytes(apple[:have])
    server.reset()

    assert read_outputs(build(out, source=server.url, sizes=SIZES, progress=False)) == fresh
    apple_requests = [r for r in server.requests if r[0] == "apple.npy"]
    assert apple_requests == [
        ("apple.npy", f"bytes=0-{HEADER_PROBE_BYTES - 1}"),
        ("apple.npy", f"bytes={have}-{need - 1}"),
    ]
    assert server.bytes_served["apple.npy"] == HEADER_PROBE_BYTES + need - have
    assert (out / ".cache" / "apple.part").read_bytes() == apple[:need]

    # Rebuilding over our own output is allowed, and only the headers are fetched again.
    server.reset()
    assert read_outputs(build(out, source=server.url, sizes=SIZES, progress=False)) == fresh
    assert all(r[1] == f"bytes=0-{HEADER_PROBE_BYTES - 1}" for r in server.requests)
    assert len(server.requests) == 6


def test_dropped_connection_keeps_the_part_and_resumes(tmp_path, server):
    fresh = read_outputs(build(tmp_path / "fresh", source=server.url, sizes=SIZES, progress=False))
    out = tmp_path / "out"
    server.cut_after = 40000
    url = re.escape(server.url + "apple.npy")
    with pytest.raises(QDError, match=rf"^{url}: the download stopped at byte \d+ .* run again"):
        build(out, source=server.url, sizes=SIZES, progress=False)
    have = (out / ".cache" / "apple.part").stat().st_size
    assert HEADER_PROBE_BYTES < have <= HEADER_PROBE_BYTES + 40000
    assert not (out / "fruit_images.npy").exists()

    server.cut_after = None
    server.reset()
    assert read_outputs(build(out, source=server.url, sizes=SIZES, progress=False)) == fresh
    assert [r[1] for r in server.requests if r[0] == "apple.npy"][1].startswith(f"bytes={have}-")


def test_stale_cache_is_replaced(tmp_path, server):
    fresh = read_outputs(build(tmp_path / "fresh", source=server.url, sizes=SIZES, progress=False))
    out = tmp_path / "out"
    (out / ".cache").mkdir(parents=True)
    (out / ".cache" / "banana.part").write_bytes(b"\x93NUMPY garbage" * 5000)
    assert read_outputs(build(out, source=server.url, sizes=SIZES, progress=False)) == fresh


def test_server_ignoring_range_is_streamed(tmp_path, server):
    fresh = read_outputs(build(tmp_path / "fresh", source=server.url, sizes=SIZES, progress=False))
    server.honour_range = False
    out = tmp_path / "out"
    (out / ".cache").mkdir(parents=True)
    (out / ".cache" / "grapes.part").write_bytes((tmp_path / "src/grapes.npy").read_bytes()[:5000])
    assert read_outputs(build(out, source=server.url, sizes=SIZES, progress=False)) == fresh


def test_local_folder_gives_the_same_arrays_as_http(tmp_path, server):
    http_out = build(tmp_path / "http", source=server.url, sizes=SIZES, progress=False)
    local_out = build(tmp_path / "local", source=str(tmp_path / "src"), sizes=SIZES, progress=False)
    for name in OUTPUTS[:-1]:
        assert (http_out / name).read_bytes() == (local_out / name).read_bytes()
    http_manifest = json.loads((http_out / "manifest.json").read_text())
    local_manifest = json.loads((local_out / "manifest.json").read_text())
    assert http_manifest["files"] == local_manifest["files"]
    for name in CLASS_NAMES:
        assert http_manifest["classes"][name]["sha256"] == local_manifest["classes"][name]["sha256"]
    assert not (local_out / ".cache").exists()


def test_local_folder_accepts_28x28_rows(tmp_path, bitmaps):
    src = tmp_path / "square"
    src.mkdir()
    for name, array in bitmaps.items():
        np.save(src / f"{name}.npy", array.reshape(-1, 28, 28))
    out_square = build(tmp_path / "a", source=str(src), sizes=SIZES, progress=False)
    out_flat = build(tmp_path / "b", source=str(tmp_path / "src"), sizes=SIZES, progress=False)
    assert (out_square / "fruit_images.npy").read_bytes() == (out_flat / "fruit_images.npy").read_bytes()


@pytest.mark.parametrize("over_http", [True, False])
def test_too_few_rows(tmp_path, server, over_http):
    np.save(tmp_path / "src" / "pineapple.npy", np.zeros((50, 784), np.uint8))
    source = server.url if over_http else str(tmp_path / "src")
    with pytest.raises(QDError, match=r"pineapple\.npy: holds 50 drawings, expected at least 84"):
        build(tmp_path / "out", source=source, sizes=SIZES, progress=False)


@pytest.mark.parametrize("over_http", [True, False])
def test_wrong_dtype(tmp_path, server, over_http):
    np.save(tmp_path / "src" / "strawberry.npy", np.zeros((ROWS, 784), np.float32))
    source = server.url if over_http else str(tmp_path / "src")
    with pytest.raises(QDError, match=r"strawberry\.npy: expected a C-order uint8 .* got float32"):
        build(tmp_path / "out", source=source, sizes=SIZES, progress=False)


def test_fortran_order_and_bad_shape(tmp_path, server):
    np.save(tmp_path / "src" / "apple.npy", np.asfortranarray(np.zeros((ROWS, 784), np.uint8)))
    with pytest.raises(QDError, match=r"apple\.npy: .* Fortran order"):
        build(tmp_path / "a", source=server.url, sizes=SIZES, progress=False)
    np.save(tmp_path / "src" / "apple.npy", np.zeros((ROWS, 28, 27), np.uint8))
    with pytest.raises(QDError, match=r"apple\.npy: .* got uint8 \(150, 28, 27\)"):
        build(tmp_path / "b", source=server.url, sizes=SIZES, progress=False)


def test_not_an_npy_file(tmp_path, server):
    (tmp_path / "src" / "apple.npy").write_bytes(b"<html>not here</html>")
    with pytest.raises(QDError, match=r"apple\.npy: expected a NumPy \.npy file"):
        build(tmp_path / "a", source=server.url, sizes=SIZES, progress=False)
    with pytest.raises(QDError, match=r"apple\.npy: expected a NumPy \.npy file"):
        build(tmp_path / "b", source=str(tmp_path / "src"), sizes=SIZES, progress=False)


def test_missing_file_404(tmp_path, server):
    (tmp_path / "src" / "watermelon.npy").unlink()
    url = re.escape(server.url + "watermelon.npy")
    with pytest.raises(QDError, match=rf"^{url}: HTTP 404"):
        build(tmp_path / "out", source=server.url, sizes=SIZES, progress=False)
    with pytest.raises(QDError, match=r"watermelon\.npy: file not found"):
        build(tmp_path / "out", source=str(tmp_path / "src"), sizes=SIZES, progress=False)


def test_unreachable_server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/q/"
    with pytest.raises(QDError, match=rf"^{re.escape(url)}apple\.npy: download failed"):
        build(tmp_path / "out", source=url, sizes=SIZES, progress=False)


def test_refuses_a_folder_with_a_users_course_files(tmp_path, server):
    out = tmp_path / "course"
    out.mkdir()
    user_file = out / "fruit_images.npy"
    user_file.write_bytes(b"the user's own data")
    refused = rf"^{re.escape(str(out))}: holds course files \(fruit_images\.npy\) and no manifest"
    with pytest.raises(QDError, match=refused):
        build(out, source=server.url, sizes=SIZES, progress=False)
    assert user_file.read_bytes() == b"the user's own data"
    assert sorted(p.name for p in out.iterdir()) == ["fruit_images.npy"]
    assert server.requests == []

    (out / "manifest.json").write_text('{"made_by": "someone else"}')
    with pytest.raises(QDError, match=r"holds a manifest\.json not written by qd data fetch; refusing to overwrite it"):
        build(out, source=server.url, sizes=SIZES, progress=False)
    assert user_file.read_bytes() == b"the user's own data"


def test_interrupted_build_can_be_rerun(tmp_path, server):
    out = build(tmp_path / "out", source=server.url, sizes=SIZES, progress=False)
    expected = read_outputs(out)
    manifest = json.loads((out / "manifest.json").read_text())
    # As left by a build killed after its first course file: provisional manifest only.
    manifest = {k: v for k, v in manifest.items() if k not in ("classes", "files")}
    (out / "manifest.json").write_text(json.dumps(manifest | {"complete": False}))
    (out / "fruit_dev_images.npy").unlink()
    assert read_outputs(build(out, source=server.url, sizes=SIZES, progress=False)) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sizes": (360, 72, 70)}, r"--sizes \(360, 72, 70\): expected three positive multiples"),
        ({"sizes": (360, 0, 72)}, r"expected three positive multiples of 6"),
        ({"seed": -1}, r"--seed -1: expected a non-negative integer"),
        ({"source": "ftp://example.invalid/x/"}, r"--source ftp://.*: expected an http\(s\) base"),
    ],
)
def test_bad_arguments(tmp_path, bitmaps, kwargs, message):
    args = {"source": str(tmp_path / "src"), "sizes": SIZES, "progress": False} | kwargs
    with pytest.raises(QDError, match=message):
        build(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def test_too_large_sizes_for_the_files(tmp_path, bitmaps):
    with pytest.raises(QDError, match=r"apple\.npy: holds 150 drawings, expected at least 156"):
        build(tmp_path / "out", source=str(tmp_path / "src"), sizes=(600, 168, 168))
