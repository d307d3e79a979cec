"""code.zip: the course's eleven files plus the core modules they import, all at the zip's root.

The core package `qd/` is flattened: `qd/<m>.py` becomes `<m>.py` and `qd/__init__.py` becomes
`qd.py`, with `from qd.<m> import` rewritten to `from <m> import`. The bundle needs only torch and
numpy. It is byte-for-byte reproducible (sorted entries, fixed timestamps).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE_MODULES = ("__init__", "accuracies", "augment", "checkpoint", "cli", "data", "defaults", "errors", "fsutil",
                "models", "predict", "train")  # fmt: skip
MODELS = ("densenet", "convnet", "bestmodel")
PREDICTIONS = {"densenet": "densenet_predictions.csv", "convnet": "convnet_predictions.csv",
               "bestmodel": "best_model_predictions.csv"}  # fmt: skip
DELIVERABLES = tuple(f"{m}.pt" for m in MODELS) + tuple(PREDICTIONS.values()) + ("README.md",)
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def flatten(source: str) -> str:
    """Rewrite `from qd.<m> import` to `from <m> import` for a flat folder of modules."""
    return re.sub(r"^(\s*)from qd\.(\w+) import", r"\1from \2 import", source, flags=re.MULTILINE)


def code_files(submission: Path) -> dict[str, bytes]:
    """Name at the zip's root -> content."""
    files = {f"main_{m}.py": flatten((ROOT / f"main_{m}.py").read_text()).encode() for m in MODELS}
    for module in CORE_MODULES:
        name = "qd.py" if module == "__init__" else f"{module}.py"
        files[name] = flatten((ROOT / "qd" / f"{module}.py").read_text()).encode()
    files.update({name: (submission / name).read_bytes() for name in DELIVERABLES})
    return files


def write_code_zip(path: Path, submission: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in sorted(code_files(submission).items()):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, content)
