"""The student's JHID, which prefixes the files the course collects (`<JHID>_code.zip`,
`<JHID>_hw3_programming.pdf`): `--name`, else the one the submission remembers (its jhid.txt, written by a
promotion with --name), else the course's own placeholder, to be renamed before upload."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from qd.core.errors import QDError

PLACEHOLDER = "YOURJHIDHERE"  # the course's placeholder, as its instructions spell it
NAME_FILE = "jhid.txt"  # in the submission: the JHID of the last promotion given --name (not in the zip)
_JHID = re.compile(r"[A-Za-z0-9_]{1,64}")
EXPECTED = "expected your JHID: 1 to 64 letters, digits or underscores (e.g. jsmith12)"


def add_name_flag(parser: argparse.ArgumentParser) -> None:
    text = (f"your JHID, the prefix of the course's file names (default: the submission's {NAME_FILE}, else the "
            f"course's {PLACEHOLDER})")  # fmt: skip
    parser.add_argument("--name", metavar="JHID", help=text)


def submission_name(name: str | None, submission: Path) -> str:
    """`name` checked as a JHID; without it, the one `submission` remembers, else the course's placeholder."""
    if name is not None:
        if not _JHID.fullmatch(name):
            raise QDError(f"--name: got {name!r}; {EXPECTED}")
        return name
    path = submission / NAME_FILE
    if not path.is_file():
        return PLACEHOLDER
    remembered = path.read_text().strip()
    if not _JHID.fullmatch(remembered):
        raise QDError(f"{path}: got {remembered!r}; {EXPECTED}; give --name JHID, which replaces it")
    return remembered


def rename_hint(jhid: str, files: str) -> str | None:
    """What to rename before upload when the files carry the placeholder; None when they carry a JHID."""
    if jhid != PLACEHOLDER:
        return None
    return (
        f"{PLACEHOLDER} is the course's placeholder: before upload, put your JHID in its place in {files}, "
        "or rerun with --name JHID"
    )
