"""code.zip: the course's eleven files plus the core modules they import, all at the zip's root.

The core (qd/core/, found from the folder) is flattened: `qd/core/<m>.py` becomes `<m>.py`, with
`from qd.core.<m> import` rewritten to `from <m> import`. Each main_<model>.py in the zip is the course
command line alone (qd.core.cli); in the repository it also switches to Hydra. The bundle needs only torch
and numpy. It is byte-for-byte reproducible (sorted entries, fixed timestamps).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from qd import ROOT
from qd.core.course import SUBMITTED
from qd.core.fsutil import atomic_path

CORE = ROOT / "qd" / "core"
MODELS = SUBMITTED
PREDICTIONS = {"densenet": "densenet_predictions.csv", "convnet": "convnet_predictions.csv",
               "bestmodel": "best_model_predictions.csv"}  # fmt: skip
DELIVERABLES = tuple(f"{m}.pt" for m in MODELS) + tuple(PREDICTIONS.values()) + ("README.md",)
WINNERS = "winners.json"  # the submission's record of the promoted trials (not in the zip)
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
MAIN = '''"""The course's {model} command line: `python main_{model}.py --mode train|predict ...` (see --help)."""

from cli import main
from closed_pipe import quiet_on_closed_pipe

if __name__ == "__main__":
    with quiet_on_closed_pipe():
        main("{model}")
'''


def flatten(source: str) -> str:
    """Rewrite `from qd.core.<m> import` to `from <m> import` for a flat folder of modules."""
    return re.sub(r"^(\s*)from qd\.core\.(\w+) import", r"\1from \2 import", source, flags=re.MULTILINE)


def core_modules() -> list[Path]:
    """The modules code.zip ships: every module of qd/core/ but its package file."""
    return sorted(p for p in CORE.glob("*.py") if p.name != "__init__.py")


def code_files(submission: Path) -> dict[str, bytes]:
    """Name at the zip's root -> content."""
    files = {f"main_{m}.py": MAIN.format(model=m).encode() for m in MODELS}
    files.update({p.name: flatten(p.read_text()).encode() for p in core_modules()})
    files.update({name: (submission / name).read_bytes() for name in DELIVERABLES})
    return files


def write_code_zip(path: Path, submission: Path) -> None:
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in sorted(code_files(submission).items()):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, content)
