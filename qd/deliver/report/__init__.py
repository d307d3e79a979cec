"""The write-up's evidence: figures and measured answers to the course's *** questions.

    python -m qd report --out report                          # submission/ and the trials under outputs/
    python -m qd report --out report --submission submission outputs/sweeps sqlite:///outputs/sweeps/convnet.db

Reads the promoted submission (winners.json and the three checkpoints), the winners' training logs
and the sweeps' trials on the winners' data; writes report.md, answers.tex (a LaTeX fragment) and
PNG figures into --out. The same inputs give the same bytes: no timestamps, seeded noise, fixed
figure sizes. The folder is built beside --out and swapped in when complete.

measure.py measures, figures.py draws, render.py writes the text; this module puts them together.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qd.core.errors import exit_on_user_error
from qd.core.fsutil import atomic_write_text
from qd.core.runtime import configure_cpu
from qd.deliver.report.measure import measure
from qd.deliver.report.render import render
from qd.deliver.swap import replaced


def write_report(submission: Path, sources: list[str], out: Path) -> Path:
    """Build report.md, answers.tex and the figures in a folder beside `out`, then swap it in."""
    m = measure(submission, sources)
    with replaced(out) as stage:
        report_md, answers_tex = render(m, stage)
        atomic_write_text(stage / "report.md", report_md)
        atomic_write_text(stage / "answers.tex", answers_tex)
    return out / "report.md"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qd report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*", default=["outputs"], help="sweep folders or storage URLs (outputs/)")
    parser.add_argument("--out", type=Path, default=Path("report"), help="the report folder (report/)")
    parser.add_argument("--submission", type=Path, default=Path("submission"), help="the promoted submission")
    args = parser.parse_args(argv)
    configure_cpu()
    with exit_on_user_error():
        path = write_report(args.submission, args.sources, args.out)
    print(f"wrote {path} and its figures")
