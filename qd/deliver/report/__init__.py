"""The write-up: figures, measured answers and drafted explanations for the course's *** questions.

    python -m qd report --out report --name jsmith12          # submission/ and the trials in outputs/, model_files/
    python -m qd report --out report --submission submission outputs/sweeps sqlite:///outputs/sweeps/convnet.db

Reads the promoted submission (winners.json and the three checkpoints), the winners' training logs
and the sweeps' trials on the winners' data; writes report.md, the course's LaTeX document
<JHID>_hw3_programming.tex (the JHID of --name, else the submission's jhid.txt, else YOURJHIDHERE), its PDF where
a LaTeX compiler is on
PATH, and PNG figures into --out. The same inputs give the same bytes: no timestamps, seeded noise,
fixed figure sizes, fixed PDF dates. The folder is built beside --out and swapped in when complete.

measure.py measures, figures.py draws, answers.py answers, render.py writes report.md, document.py
the LaTeX document and its PDF; this module puts them together.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qd.core.errors import disk_errors, exit_on_user_error
from qd.core.fsutil import atomic_write_text
from qd.deliver.jhid import PLACEHOLDER, add_name_flag, rename_hint, submission_name
from qd.deliver.promote import candidate_sources
from qd.deliver.swap import replaced, unchanged


def write_report(submission: Path, sources: list[str], out: Path, jhid: str = PLACEHOLDER) -> str:
    """Build report.md, the LaTeX document, its PDF and the figures beside `out`, then swap them in; what the
    PDF step says."""
    # Here, not at the top: they import torch, pandas and matplotlib, which --help does without.
    from qd.deliver.report.answers import QUESTIONS
    from qd.deliver.report.document import compile_pdf, document
    from qd.deliver.report.measure import measure
    from qd.deliver.report.render import render

    m = measure(submission, sources)
    answered = [(q, q.answer(m)) for q in QUESTIONS]
    tex_name = f"{jhid}_hw3_programming.tex"
    with replaced(out) as stage:
        report_md, shown = render(m, stage, answered, tex_name)
        atomic_write_text(stage / "report.md", report_md)
        atomic_write_text(stage / tex_name, document(m, answered, shown, jhid))
        return compile_pdf(stage, tex_name, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qd report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*", help="sweep folders, course-run folders or storage URLs (default: "
                        "outputs/ and model_files/, those that exist)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("report"), help="the report folder (report/)")
    parser.add_argument("--submission", type=Path, default=Path("submission"), help="the promoted submission")
    add_name_flag(parser)
    args = parser.parse_args(argv)
    from qd.core.runtime import configure_cpu

    configure_cpu()
    with exit_on_user_error(), disk_errors(args.out, unchanged(args.out)):
        jhid = submission_name(args.name, args.submission)
        pdf = write_report(args.submission, candidate_sources(args.sources), args.out, jhid)
    print(f"wrote {args.out / 'report.md'}, {args.out / f'{jhid}_hw3_programming.tex'} and the figures")
    print(pdf)
    hint = rename_hint(jhid, f"{jhid}_hw3_programming.tex and .pdf")
    if hint:
        print(hint)
