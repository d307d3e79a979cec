"""The student's JHID, which prefixes the files the course collects (`<JHID>_code.zip`,
`<JHID>_hw3_programming.pdf`); without `--name` the course's own placeholder, to be renamed before upload."""

from __future__ import annotations

import argparse
import re

from qd.core.errors import QDError

PLACEHOLDER = "YOURJHIDHERE"  # the course's placeholder, as its instructions spell it
_JHID = re.compile(r"[A-Za-z0-9_]{1,64}")


def add_name_flag(parser: argparse.ArgumentParser) -> None:
    text = f"your JHID, the prefix of the course's file names (default: the course's {PLACEHOLDER})"
    parser.add_argument("--name", metavar="JHID", help=text)


def prefix(name: str | None) -> str:
    """`name` checked as a JHID, or the course's placeholder when there is none."""
    if name is None:
        return PLACEHOLDER
    if not _JHID.fullmatch(name):
        raise QDError(
            f"--name: got {name!r}; expected your JHID: 1 to 64 letters, digits or underscores (e.g. jsmith12)"
        )
    return name


def rename_hint(jhid: str, files: str) -> str | None:
    """What to rename before upload when the files carry the placeholder; None when they carry a JHID."""
    if jhid != PLACEHOLDER:
        return None
    return (
        f"{PLACEHOLDER} is the course's placeholder: before upload, put your JHID in its place in {files}, "
        "or rerun with --name JHID"
    )
