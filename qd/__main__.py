"""`python -m qd <command>`: data, results, promote, report, demo (each with its own --help)."""

from __future__ import annotations

import importlib
import sys

from qd.core.closed_pipe import quiet_on_closed_pipe

COMMANDS = {
    "data": ("qd.datasets.prepare", "build a data set: synth (the embedded synthetic set) or fetch (Google's bitmaps)"),
    "results": ("qd.experiment.results", "list sweep trials and course runs by dev accuracy"),
    "promote": ("qd.deliver.promote", "promote the best trials into a verified submission with <JHID>_code.zip"),
    "report": ("qd.deliver.report", "the write-up: the course's LaTeX document and PDF, with measured figures"),
    "demo": ("qd.deliver.demo", "the whole course workflow on the embedded data set (make demo)"),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        usage = "\n".join(f"  {name:<8} {about}" for name, (_, about) in COMMANDS.items())
        print(f"usage: python -m qd <command> [options]\n\ncommands:\n{usage}\n\nbenchmarks: python -m qd.bench")
        return
    if argv[0] not in COMMANDS:
        known = ", ".join(COMMANDS)
        print(f"error: python -m qd: unknown command {argv[0]!r}; expected one of {known}", file=sys.stderr)
        raise SystemExit(2)
    importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])


if __name__ == "__main__":
    with quiet_on_closed_pipe():
        main()
