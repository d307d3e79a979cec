"""The one error type qd shows to users: a one-line message, exit status 2."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


class QDError(Exception):
    """Bad input or a refused operation; the message names the file or flag and what was expected."""


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn a QDError into `error: <message>` on stderr and exit status 2, like argparse."""
    try:
        yield
    except QDError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
