"""`make demo` (`python -m qd demo`): the whole course workflow on the real drawings that qd carries.

Builds data/real_sample (course-shaped splits of the 2,400 vendored Quick, Draw! drawings: 1,500 train,
450 dev, 450 test) if absent, runs short sweeps of the three models with their presets, promotes the
winners into outputs/demo/submission (with YOURJHIDHERE_code.zip), prints them and writes the report
(outputs/demo/report/: report.md, YOURJHIDHERE_hw3_programming.tex and its PDF where pdflatex is on PATH).
A rerun finds the studies complete and only promotes again.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from qd import ROOT
from qd.core.interrupt import EXIT_STATUS
from qd.datasets.prepare import ensure_data
from qd.deliver.jhid import PLACEHOLDER
from qd.deliver.promote import describe, promote
from qd.deliver.report import main as report

DEMO_DIR = Path("outputs/demo")
INTERRUPTED_DEMO = "interrupted: the sweeps' finished trials are kept; `make demo` again goes on from them"
DATA = {"dir": "data/real_sample", "prepare": "real_sample"}  # conf/data/real_sample.yaml
# model, preset, trials, steps, fixed settings (the demo's best model is evaluated once, at its last
# step, is 8 channels wide: a quarter of the default's computation, in the sweep and in the eleven
# predictions of the dev and test sets that promotion and the report make, and keeps its measured
# optimizer, SGD, which two short trials cannot outsearch)
SWEEPS = (
    ("densenet", "densenet_lr", 3, 2000, ()),  # the course's defaults but the learning rate (1.5.7)
    ("convnet", "convnet", 3, 500, ("train.eval_every=100",)),
    ("bestmodel", "bestmodel", 2, 200, ("train.eval_every=200", "model.width=8", "model.depth=2", "optimizer=sgd")),
)


def stage(number: int, text: str) -> None:
    print(f"\n[{number}/6] {text}", flush=True)


def run_sweep(model: str, preset: str, trials: int, steps: int, fixed: tuple[str, ...]) -> None:
    command = [
        sys.executable, str(ROOT / f"main_{model}.py"), f"+sweep={preset}", "data=real_sample",
        f"hydra.sweeper.n_trials={trials}", f"train.steps={steps}",
        f"hydra.sweeper.study_name=demo_{model}", f"hydra.sweeper.storage=sqlite:///{DEMO_DIR}/{model}.db",
        f"hydra.sweep.dir={DEMO_DIR}/{model}/" + "${qd_run_id:}", *fixed,
    ]  # fmt: skip
    sweep = subprocess.Popen(command)
    try:
        code = sweep.wait()
    except KeyboardInterrupt:  # a terminal's Ctrl-C reached the sweep too: it says so in its own line
        try:
            code = sweep.wait(timeout=5)
        except subprocess.TimeoutExpired:  # the signal came to this process alone: passed on
            sweep.send_signal(signal.SIGINT)
            code = sweep.wait()
        if code != EXIT_STATUS:  # the sweep did not hear it (it ended meanwhile): the demo's own line says it
            raise
        raise SystemExit(EXIT_STATUS) from None
    if code:
        raise SystemExit(code)  # the sweep said why


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(prog="python -m qd demo", description=__doc__.split("\n\n")[0]).parse_args(argv)
    try:
        demo()
    except KeyboardInterrupt:
        print(f"\n{INTERRUPTED_DEMO}", file=sys.stderr)
        raise SystemExit(EXIT_STATUS) from None


def demo() -> None:
    start = time.monotonic()
    stage(1, f"data: course-shaped splits of the real drawings qd carries, in {DATA['dir']}")
    ensure_data(DATA)
    for number, (model, preset, trials, steps, fixed) in enumerate(SWEEPS, start=2):
        settings = "".join(f", {s}" for s in fixed if not s.startswith("train.eval_every"))
        stage(number, f"sweep {model}: {trials} trials of {steps} steps (preset sweeps/{preset}.yaml{settings})")
        run_sweep(model, preset, trials, steps, fixed)
    stage(5, f"promote the winners, verify them and bundle {PLACEHOLDER}_code.zip")
    from qd.core.runtime import configure_cpu  # torch: here, so that --help answers at once

    configure_cpu()
    out = DEMO_DIR / "submission"
    winners = promote([str(DEMO_DIR)], out, Path(DATA["dir"]))
    print("\nwinners:")
    for record in winners.values():
        print("  " + describe(record))
    stage(6, "the report: the course's questions answered with measured figures")
    report(["--out", str(DEMO_DIR / "report"), "--submission", str(out), str(DEMO_DIR)])
    print(f"\nsubmission: {out}/ ({PLACEHOLDER}_code.zip inside); report: {DEMO_DIR}/report/")
    print(f"{time.monotonic() - start:.0f} s in all")
