"""One checkpoint format: a dict of plain data and tensors that loads with weights_only=True.

{"format": "qd-checkpoint", "version": 1, "model": {"name": ..., options}, "state_dict": ...,
 "preprocessing": ..., "class_names": [...], "meta": {steps, dev_acc, seed, versions, ...}}
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from qd.core.data import CLASS_NAMES
from qd.core.errors import QDError
from qd.core.fsutil import atomic_write_bytes
from qd.core.models import build_model

FORMAT = "qd-checkpoint"
VERSION = 1
PREPROCESSING = "per-image standardisation: (x - mean) / std over the 784 pixels; std 0 -> 1"
LIMITS = {"bestmodel": 1_000_000}  # the course's largest checkpoint file per model, in bytes


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


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint's dict safely (weights_only): no code in the file ever runs."""
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not found"
        raise QDError(f"{path}: checkpoint {what}; expected a .pt file written by qd training")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise QDError(f"{path}: not a torch checkpoint (expected the zip-based .pt format that torch.save writes)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise QDError(
            f"{path}: refused: holds objects other than tensors and plain data (a pickled module or code); "
            "expected a qd checkpoint"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError):
        raise QDError(f"{path}: truncated or corrupt torch checkpoint; expected a complete .pt file") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise QDError(f"{path}: not a qd checkpoint (no '{FORMAT}' format tag); expected a .pt file written by qd")
    if ckpt.get("version") != VERSION:
        raise QDError(f"{path}: qd checkpoint version {ckpt.get('version')}; expected {VERSION}")
    return ckpt


def load_model(
    path: str | os.PathLike, expect: str | None = None, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint describes, in eval mode on `device`; `expect` names the required model type."""
    ckpt = read_checkpoint(path)
    name = ckpt["model"].get("name")
    if expect is not None and name != expect:
        raise QDError(f"{path}: holds a {name} model; expected a {expect} checkpoint")
    model = build_model(ckpt["model"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise QDError(f"{path}: weights do not fit the {name} model it names ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), ckpt
