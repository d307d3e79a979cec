"""The write-up the course collects: a complete LaTeX document with every *** question under its section,
the answer and the figures, and its PDF where a LaTeX compiler is on PATH.

The document needs only Debian's texlive-latex-base (article, geometry, graphicx). Text from the run
(paths, trial names) is escaped; Markdown's `code` becomes typewriter text that may break after a slash.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from qd.core.errors import QDError
from qd.deliver.report.answers import SECTIONS, Question, provenance
from qd.deliver.report.measure import Measurements
from qd.deliver.report.render import Shown

ESCAPES = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#", "%": r"\%",
           "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
           ">": r"\textgreater{}", "|": r"\textbar{}"}  # fmt: skip
PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage[margin=2.5cm]{geometry}
\usepackage{graphicx}
\setlength{\parindent}{0pt}
\setlength{\parskip}{0.6\baselineskip}
\ifdefined\pdftrailerid\pdftrailerid{}\fi % no random PDF ID: the same document gives the same PDF
\makeatletter % a figure caption where the figure stands, beside its question (no float)
\newcommand{\qdcaption}[1]{\def\@captype{figure}\caption{#1}}
\makeatother
\newcommand{\studentname}{YOUR NAME} % your name, as the course asks
"""
# The first on PATH compiles {tex} in its folder, writing into the folder {out}. (latexmk needs pdflatex,
# so it adds nothing: one pdflatex pass typesets this document, which has no cross-references.)
COMPILERS = {
    "pdflatex": ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-output-directory={out}", "{tex}"],
    "tectonic": ["tectonic", "--outdir", "{out}", "{tex}"],
}


def tex(text: str) -> str:
    """Plain text with LaTeX's special characters escaped."""
    return "".join(ESCAPES.get(c, c) for c in text)


def inline(text: str) -> str:
    """Text with Markdown's inline code: the code as typewriter text that may break after a slash."""
    parts = text.split("`")
    return "".join(tex(p) if i % 2 == 0 else r"\texttt{" + tex(p).replace("/", r"/\allowbreak{}") + "}"
                   for i, p in enumerate(parts))  # fmt: skip


def figure(name: str, caption: str, source: str) -> list[str]:
    return [
        r"\begin{center}\begin{minipage}{\linewidth}\centering",
        rf"\includegraphics[width=0.8\linewidth,height=0.36\textheight,keepaspectratio]{{{name}}}",
        rf"\qdcaption{{{inline(caption)}. Source: {inline(source)}.}}",
        r"\end{minipage}\end{center}",
    ]


def document(m: Measurements, answered: list[tuple[Question, str]], shown: Shown, jhid: str) -> str:
    """The LaTeX document: title with the name field, each question under the course's section number."""
    lines = [
        PREAMBLE,
        r"\title{CS 475/675 Machine Learning: Homework 3, Programming}",
        rf"\author{{\studentname \\ JHID: {tex(jhid)}}}",
        r"\date{}",
        r"\begin{document}",
        r"\maketitle",
        r"Written by \texttt{python -m qd report}. " + inline(provenance(m)),
        "",
        r"Answers marked \textbf{Draft} were drafted from this run's measurements: check every sentence "
        r"and rewrite it in your own words before you submit.",
    ]
    section = None
    for q, answer in answered:
        if q.number[:3] != section:
            section = q.number[:3]
            lines += ["", rf"\section*{{{section}\quad {SECTIONS[section]}}}"]
        draft = r"\textbf{Draft, for you to check and rewrite:} " if q.draft else ""
        lines += ["", rf"\subsection*{{{q.number}}}", rf"\emph{{{tex(q.text)}}}", "", draft + inline(answer)]
        for name in (f for f in q.figures if f in shown):
            lines += figure(name, *shown[name])
    return "\n".join([*lines, "", r"\end{document}", ""])


def latex_error(output: str) -> str:
    """The first LaTeX error line of a compiler's output (`! ...`), else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("!")), lines[-1] if lines else "no output")


def compile_pdf(folder: Path, tex_name: str, out: Path) -> str:
    """Compile folder/tex_name with the first LaTeX compiler on PATH, in a temporary folder, and move the PDF
    beside it only when it compiled; the line to print. `out` is where the user will find the folder."""
    pdf = Path(tex_name).with_suffix(".pdf").name
    found = next((name for name in COMPILERS if shutil.which(name)), None)
    if found is None:
        return (f"no LaTeX compiler on PATH ({', '.join(COMPILERS)}): for {pdf}, run `pdflatex {tex_name}` in "
                f"{out} (Debian: apt-get install texlive-latex-base)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix=".latex-", dir=folder) as tmp:
        command = [part.format(out=Path(tmp).name, tex=tex_name) for part in COMPILERS[found]]
        # Fixed PDF dates (the same document gives the same bytes); error lines not wrapped at 79 characters.
        env = {**os.environ, "SOURCE_DATE_EPOCH": "0", "max_print_line": "1000"}
        result = subprocess.run(command, cwd=folder, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        built = Path(tmp, pdf)
        if result.returncode != 0 or not built.is_file() or built.read_bytes()[:5] != b"%PDF-":
            error = latex_error(result.stdout + result.stderr)
            raise QDError(f"{out / tex_name}: {found} could not compile it ({error}); nothing written")
        os.replace(built, folder / pdf)
    return f"compiled {out / pdf} with {found}"
