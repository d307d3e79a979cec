"""main_<model>.py: course flags go to the course command line (qd.core.cli), anything else to the Hydra app."""

from __future__ import annotations

import argparse
import shlex
import sys

from qd.core import cli
from qd.core.closed_pipe import quiet_on_closed_pipe
from qd.core.errors import QDError, exit_on_user_error
from qd.core.interrupt import exit_on_ctrl_c
from qd.experiment.conf import check_frozen_defaults
from qd.experiment.outcomes import INTERRUPTED_SWEEP

INTERRUPTED_RUN = "interrupted: the run stopped; its folder keeps what it had written"
INTERRUPTED_COURSE = "interrupted: the command stopped; each file it had written is whole, and none is half-written"


def main(model: str, argv: list[str] | None = None) -> None:
    """Entry point of main_<model>.py in the repository (code.zip's calls qd.core.cli directly)."""
    with quiet_on_closed_pipe():
        run(model, sys.argv[1:] if argv is None else argv)


def run(model: str, argv: list[str]) -> None:
    if cli.is_course_command(argv):
        with exit_on_ctrl_c(INTERRUPTED_COURSE):
            with exit_on_user_error():
                check_frozen_defaults()
            args = cli.parse_args(model, argv)
            course_data(model, args, argv)
            cli.run(model, args)
        return
    sweep = any(a in ("-m", "--multirun") or a.lstrip("+").startswith("sweep=") for a in argv)
    with exit_on_ctrl_c(INTERRUPTED_SWEEP if sweep else INTERRUPTED_RUN), exit_on_user_error():
        try:
            from qd.experiment.app import run_hydra
        except ImportError as e:
            raise QDError(f"Hydra overrides need hydra-core ({e}); course flags (--mode ...) work without it") from None
        run_hydra(model, argv)


def course_data(model: str, args: argparse.Namespace, argv: list[str]) -> None:
    """The data of the course command line `argv` (parsed: `args`): data/real_sample is built from the drawings qd
    carries on first use, and datasets/ without the course's files is one line naming the same command on those
    drawings."""
    from pathlib import Path

    from qd.datasets.prepare import REAL_SAMPLE_DIR, check_course_data, ensure_data

    data_dir = Path(args.dataDir)
    with exit_on_user_error():
        if data_dir == REAL_SAMPLE_DIR:
            ensure_data({"dir": str(data_dir), "prepare": "real_sample"})
        instead = shlex.join(["python", f"main_{model}.py", *without_flag(argv, "--dataDir"), "--dataDir",
                              str(REAL_SAMPLE_DIR)])  # fmt: skip
        check_course_data(data_dir, ("test",) if args.mode == "predict" else ("train", "dev"),
                          f"{instead} (with Hydra overrides: data=real_sample)")  # fmt: skip


def without_flag(argv: list[str], flag: str) -> list[str]:
    """`argv` without `flag` and its value (`--flag VALUE` or `--flag=VALUE`)."""
    kept, value_next = [], False
    for arg in argv:
        if not value_next and arg != flag and not arg.startswith(f"{flag}="):
            kept.append(arg)
        value_next = arg == flag
    return kept
