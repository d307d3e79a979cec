"""main_<model>.py: course flags go to the course command line (qd.core.cli), anything else to the Hydra app."""

from __future__ import annotations

import sys

from qd.core import cli
from qd.core.errors import QDError, exit_on_user_error


def main(model: str, argv: list[str] | None = None) -> None:
    """Entry point of main_<model>.py in the repository (code.zip's calls qd.core.cli directly)."""
    argv = sys.argv[1:] if argv is None else argv
    if cli.is_course_command(argv):
        cli.main(model, argv)
        return
    with exit_on_user_error():
        try:
            from qd.experiment.app import run_hydra
        except ImportError as e:
            raise QDError(f"Hydra overrides need hydra-core ({e}); course flags (--mode ...) work without it") from None
    run_hydra(model, argv)
