"""One checkpoint format: a dict of plain data and tensors that loads with weights_only=True.

{"format": "qd-checkpoint", "version": 2, "model": {"name": ..., options}, "state_dict": ...,
 "preprocessing": ..., "class_names": [...], "meta": {steps, dev_acc, seed, versions, ...}, "checksum": ...}

The checksum (version 2) covers every tensor and every other field: torch's zip format checks none of its
bytes, so a damaged file would otherwise load and predict garbage. Version 1 files, written before it, load
unverified.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import sys
from pathlib import Path

import torch
from torch import nn

from qd.core.course import submitted_as
from qd.core.data import CLASS_NAMES
from qd.core.errors import DISK_ERRNOS, QDError
from qd.core.fsutil import atomic_write_bytes
from qd.core.models import build_model

FORMAT = "qd-checkpoint"
VERSION = 2
UNVERIFIED_VERSION = 1  # written before checkpoints carried a checksum
PREPROCESSING = "per-image standardisation: (x - mean) / std over the 784 pixels; std 0 -> 1"
LIMITS = {"bestmodel": 1_000_000}  # the course's largest checkpoint file per submitted model (submitted_as), bytes


def serialized(model: nn.Module, model_cfg: dict, meta: dict, half: bool = False) -> bytes:
    """The checkpoint's bytes; `half` stores floats as float16."""
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu() for k, v in model.state_dict().items()
    }
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": dict(model_cfg),
        "state_dict": state,
        "preprocessing": PREPROCESSING,
        "class_names": list(CLASS_NAMES),
        "meta": {**meta, "torch": str(torch.__version__)},
    }
    payload["checksum"] = checksum(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save_checkpoint(path: str | os.PathLike, model: nn.Module, model_cfg: dict, meta: dict, half: bool = False) -> int:
    """Write the checkpoint atomically and return its size in bytes."""
    data = serialized(model, model_cfg, meta, half)
    atomic_write_bytes(path, data)
    return len(data)


def checkpoint_bytes(model: nn.Module, model_cfg: dict, half: bool) -> int:
    """An upper bound, before training, on the size of the model's checkpoint: all but the run's metadata, and
    room for that (the weights' size does not change during training)."""
    return len(serialized(model, model_cfg, {}, half)) + 2048


def checksum(ckpt: dict) -> str:
    """sha256 of everything a checkpoint holds but its checksum: the plain fields as sorted JSON, then each
    tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    plain = {k: v for k, v in ckpt.items() if k not in ("state_dict", "checksum")}
    digest.update(json.dumps(plain, sort_keys=True, default=str).encode())
    for name, tensor in sorted(ckpt["state_dict"].items()):
        digest.update(f"\n{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


_UNVERIFIED_NOTED: list[str] = []  # the first version 1 file this process loaded: said once


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint's dict safely (weights_only): no code in the file ever runs; a damaged file is refused."""
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not found"
        raise QDError(f"{path}: checkpoint {what}; expected a .pt file written by qd training")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise QDError(f"{path}: not a torch checkpoint (expected the zip-based .pt format that torch.save writes)")
    ckpt = _load(path)
    if isinstance(ckpt, dict) and "checksum" in ckpt and not _verified(ckpt):
        raise _damaged(path, "checksum mismatch")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise QDError(f"{path}: not a qd checkpoint (no '{FORMAT}' format tag); expected a .pt file written by qd")
    if ckpt.get("version") not in (VERSION, UNVERIFIED_VERSION):
        raise QDError(f"{path}: qd checkpoint version {ckpt.get('version')}; expected {VERSION}")
    if ckpt["version"] == VERSION and "checksum" not in ckpt:
        raise _damaged(path, "its checksum is missing")
    if ckpt["version"] == UNVERIFIED_VERSION and not _UNVERIFIED_NOTED:
        _UNVERIFIED_NOTED.append(str(path))
        print(f"note: {path}: written before qd checkpoints carried a checksum; it and any other such file load "
              "unverified", file=sys.stderr)  # fmt: skip
    return ckpt


def _load(path: Path) -> object:
    """torch.load with weights_only; a pickle that would build other objects is refused, a damaged file too."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        if e.errno in DISK_ERRNOS:  # a disk's refusal, said as such by the caller; else a file cut short
            raise
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e) or "Unsupported class" in str(e):  # how torch >= 2.4 and 1.13 name a refused global
            raise QDError(
                f"{path}: refused: holds objects other than tensors and plain data (a pickled module or code); "
                "expected a qd checkpoint"
            ) from None
    except Exception:  # a damaged zip or pickle fails in many ways: RuntimeError, EOFError, UnicodeDecodeError, ...
        pass
    raise QDError(f"{path}: truncated or corrupt torch checkpoint; expected a complete .pt file")


def _verified(ckpt: dict) -> bool:
    """Whether the checkpoint's contents match the checksum it was written with."""
    try:
        return checksum(ckpt) == ckpt["checksum"]
    except (AttributeError, KeyError, RuntimeError, TypeError, ValueError):  # a field damaged out of shape
        return False


def _damaged(path: Path, why: str) -> QDError:
    return QDError(f"{path}: corrupt checkpoint ({why}); expected the file as qd training wrote it")


def load_model(
    path: str | os.PathLike, expect: str | None = None, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint describes, in eval mode on `device`; `expect` names the course's model it must
    be submitted as (bestmodel: any model but the course's other two)."""
    ckpt = read_checkpoint(path)
    name = ckpt["model"].get("name") if isinstance(ckpt["model"], dict) else None
    if expect is not None and (name is None or submitted_as(name) != expect):
        raise QDError(f"{path}: holds a {name} model; expected a {expect} checkpoint")
    try:
        model = build_model(ckpt["model"])
    except QDError as e:
        raise QDError(f"{path}: {e}") from None
    misfit = weights_misfit(model.state_dict(), ckpt["state_dict"])
    if misfit:
        raise QDError(f"{path}: weights do not fit the {name} model it names: {misfit}")
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def weights_misfit(expected: dict, given: object) -> str | None:
    """How the weights `given` do not fit a model's state_dict `expected`: the first tensor missing, unexpected, or
    of another shape (both shapes); None when they fit."""
    if not isinstance(given, dict) or not all(isinstance(v, torch.Tensor) for v in given.values()):
        return "its state_dict is not a mapping of names to tensors"
    missing, unexpected = sorted(expected.keys() - given.keys()), sorted(given.keys() - expected.keys())
    if missing:
        return f"{missing[0]} is missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    if unexpected:
        return f"{unexpected[0]} is not one of its tensors" + (f" (and {len(unexpected) - 1} more)"
                                                               if len(unexpected) > 1 else "")  # fmt: skip
    for key in sorted(expected):
        if given[key].shape != expected[key].shape:
            return f"{key} is {tuple(given[key].shape)} in the file, {tuple(expected[key].shape)} in the model"
    return None
