"""Speed and peak memory of qd's pipeline against the course starter's, on one course-shaped folder.

`python -m qd.bench speed` runs every measured path in a fresh Python process, the starter's (the baseline,
qd.bench.starter) and qd's alternately, `--repeat` times, and prints markdown tables of medians: seconds,
baseline/qd ratios and peak memory. A path's seconds are timed inside its process around the path alone (the
whole-process rows: from start to exit, by the parent); its peak memory is the whole process's peak resident
set (ru_maxrss from wait4): interpreter, libraries and the path's data included. Every run carries its load:
the cores other processes kept busy just before and during it (qd.bench.load); a run above a quarter of a
core is run again (`--retries`), and a row whose least disturbed runs stay above it says so.

The whole-process rows run the course's commands as run.sh does (train 2,000 steps, then predict), qd's two
processes against the starter's two; `--breakdown` shows where the time of the course processes of the models
`--rows` names goes. The header names the CPU, its instruction sets and any cap on them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from qd import ROOT
from qd.bench.load import LOAD_NOTE, least_disturbed, load_cell
from qd.bench.phases import COLUMNS
from qd.core.data import FILES
from qd.datasets.prepare import SYNTHETIC_DIR
from qd.datasets.synth import write_synthetic

if TYPE_CHECKING:
    from qd.core.cpu import CpuInfo

# Row -> (what it measures, target ratio baseline/qd).
ROWS = {
    "load": ("load and standardise train, dev and test", 5.0),
    "train densenet": ("densenet: {steps:,} steps with the course's evaluations", 2.5),
    "train convnet": ("convnet: {steps:,} steps with the course's evaluations", 5.0),
    "predict densenet": ("densenet: predict the test set", 10.0),
    "predict convnet": ("convnet: predict the test set", 10.0),
    "course densenet": ("`main_densenet.py` train {steps:,} steps, then predict: two whole processes", 2.0),
    "course convnet": ("`main_convnet.py` train {steps:,} steps, then predict: two whole processes", 3.5),
}
COURSE_LR = {"densenet": 0.0001, "convnet": 0.01}  # run.sh's training lines


@dataclass
class Setup:
    """What every measured run shares."""

    data_dir: Path
    work: Path
    steps: int
    threads: int = 0  # torch threads for both sides (0: each its own choice)
    retries: int = 2  # reruns of a disturbed run


def checkout_env() -> dict[str, str]:
    """This process's environment with qd importable as from its checkout (PYTHONPATH), installed or not."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


class Child(NamedTuple):
    """What a child process printed and cost: its wall seconds, peak resident memory in MiB, and CPU seconds with
    those of the children it waited for (a sweep's worker processes)."""

    stdout: str
    wall: float
    peak_mib: float
    cpu: float


def run_child(argv: list[str], threads: int) -> Child:
    """Run `argv` to its end; what it printed and cost."""
    env = checkout_env()
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) as proc:
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)}: exit status {proc.returncode}")
    return Child(out, wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)


def course_args(side: str, name: str, mode: str, s: Setup) -> list[str]:
    """One course process's arguments: qd's `main_<model>.py` and its flags but --mode, or the starter's."""
    from qd.bench.paths import weights_path

    weights, predictions = weights_path(s.work, side, name), s.work / side / f"{name}_predictions.txt"
    if side == "baseline" and mode == "train":
        return [name, str(s.data_dir), str(weights), str(COURSE_LR[name]), str(s.steps)]
    if side == "baseline":
        return [name, str(weights), str(s.data_dir), str(predictions)]
    if mode == "train":
        flags = {"LR": COURSE_LR[name], "bs": 100, "epochs": s.steps, "dataDir": s.data_dir,
                 "logDir": s.work / "qd" / "log", "modelSaveDir": weights.parent}  # fmt: skip
    else:
        flags = {"weights": weights, "predictionsFile": predictions, "dataDir": s.data_dir}
    return [f"main_{name}.py", *(a for flag, value in flags.items() for a in (f"--{flag}", str(value)))]


def course_argv(side: str, name: str, mode: str, s: Setup) -> list[str]:
    """The command line of one course process, as a user runs it."""
    args = course_args(side, name, mode, s)
    if side == "qd":
        return [sys.executable, str(ROOT / args[0]), "--mode", mode, *args[1:]]
    return [sys.executable, "-m", "qd.bench.starter", mode, *args]


def _run_path(row: str, side: str, s: Setup) -> dict:
    kind, _, name = row.partition(" ")
    if kind == "course":
        runs = [run_child(course_argv(side, name, mode, s), s.threads) for mode in ("train", "predict")]
        return {"seconds": sum(r.wall for r in runs), "peak_mib": max(r.peak_mib for r in runs),
                "threads": s.threads}  # fmt: skip
    spec = {"row": row, "side": side, "data_dir": str(s.data_dir), "work": str(s.work), "steps": s.steps,
            "threads": s.threads}  # fmt: skip
    code = "import sys; from qd.bench.paths import measure_json; measure_json(sys.argv[1])"
    child = run_child([sys.executable, "-c", code, json.dumps(spec)], s.threads)
    return {**json.loads(child.stdout.splitlines()[-1]), "peak_mib": child.peak_mib}


def run_path(row: str, side: str, s: Setup) -> dict:
    """Measure one row's path for `side` in fresh processes, again while disturbed (Setup.retries):
    {"seconds", "peak_mib", "threads", "load"}."""
    result, load = least_disturbed(lambda: _run_path(row, side, s), s.retries)
    return {**result, "load": load}


def breakdown(names: list[str], s: Setup) -> dict:
    """Each course process of each model and side, once, under qd.bench.phases: {(name, side, mode): result}."""
    results = {}
    for name in names:
        for side in ("baseline", "qd"):
            for mode in ("train", "predict"):
                spec = json.dumps({"side": side, "mode": mode, "argv": course_args(side, name, mode, s)})
                argv = [sys.executable, "-m", "qd.bench.phases", spec]
                child, load = least_disturbed(lambda argv=argv: run_child(argv, s.threads), s.retries)
                phases = json.loads(child.stdout.splitlines()[-1])
                results[name, side, mode] = {"wall": child.wall, "load": load, **phases}
                print(f"breakdown {name} {side} {mode}: {child.wall:.2f} s", file=sys.stderr)
    return results


def breakdown_table(results: dict) -> str:
    """Markdown: per course process, its wall time and the seconds of each phase; other is the rest (the
    interpreter's start and exit, argument parsing, the model's construction, records)."""
    lines = [
        f"| process | wall s | {' | '.join(COLUMNS)} | other | load |",
        "| --- | ---: |" + " ---: |" * (len(COLUMNS) + 1) + " --- |",
    ]
    for (name, side, mode), r in results.items():
        phases = [r.get(c, 0.0) for c in COLUMNS]
        cells = " | ".join(f"{v:.2f}" if v else "-" for v in phases)
        who = "starter" if side == "baseline" else "qd"
        lines.append(f"| {name} {mode} ({who}) | {r['wall']:.2f} | {cells} | {r['wall'] - sum(phases):.2f} "
                     f"| {load_cell([r['load']])} |")  # fmt: skip
    return "\n".join(lines)


# The tables.


CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")  # cap torch's, oneDNN's, MKL's ISA


def cpu_header(cpu: CpuInfo) -> str:
    """The machine every figure was taken on: the CPU's model and instruction sets, the level torch's kernels run
    at, oneDNN, qd's choices for the convolutions, and the environment variables that capped the instruction set."""
    import torch

    from qd.core.cpu import memory_format, onednn_isa

    isa = ", ".join(cpu.isa) or "none of AVX2, AVX-512, AMX, NEON"
    layout = "channels-last" if memory_format("auto", torch.device("cpu"), cpu) == torch.channels_last else "contiguous"
    capped = "; ".join(f"{v}={os.environ[v]}" for v in CAPS if os.environ.get(v)) or "none"
    return (
        f"CPU: {cpu.model} (vendor {cpu.vendor or 'unknown'}, family {cpu.family}), {os.cpu_count()} cores; "
        f"ISA: {isa}; torch {torch.__version__}, its kernels {cpu.kernels or 'unknown'}, "
        f"{'with' if cpu.onednn else 'without'} oneDNN; qd's convolutions: {layout}, oneDNN "
        f"{'capped at ' + onednn_isa(cpu) if onednn_isa(cpu) else 'uncapped'} unless set; capped: {capped}"
    )


def row_models(rows: list[str]) -> list[str]:
    """The models the rows `rows` measure, in COURSE_LR's order."""
    return [name for name in COURSE_LR if any(row.partition(" ")[2] == name for row in rows)]


def compare(rows: list[str], repeat: int, s: Setup) -> dict:
    """Every row's baseline and qd paths, alternating, `repeat` times: {row: {side: [result, ...]}}."""
    results: dict = {row: {"baseline": [], "qd": []} for row in rows}
    for r in range(repeat):
        for row in rows:
            for side in ("baseline", "qd") if r % 2 == 0 else ("qd", "baseline"):
                run = run_path(row, side, s)
                results[row][side].append(run)
                print(f"[{r + 1}/{repeat}] {row} {side}: {run['seconds']:.2f} s, load {run['load']:.2f}",
                      file=sys.stderr)  # fmt: skip
    return results


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _loads(*runs: list[dict]) -> str:
    return load_cell([run["load"] for side in runs for run in side])


def speed_table(results: dict, steps: int) -> str:
    """Markdown: per row, median seconds and peak MiB of each side, the ratio, its target, whether it is met, and
    the row's load."""
    lines = [
        "| path | baseline s | qd s | baseline/qd | target | met | baseline peak MiB | qd peak MiB | load |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for row, sides in results.items():
        what, target = ROWS[row]
        base, ours = _median(sides["baseline"], "seconds"), _median(sides["qd"], "seconds")
        peaks = _median(sides["baseline"], "peak_mib"), _median(sides["qd"], "peak_mib")
        met = "yes" if base / ours >= target and peaks[1] <= peaks[0] else "no"
        lines.append(
            f"| {what.format(steps=steps)} | {base:.3g} | {ours:.3g} | {base / ours:.1f}x | {target:g}x | {met} "
            f"| {peaks[0]:,.0f} | {peaks[1]:,.0f} | {_loads(sides['baseline'], sides['qd'])} |"
        )
    return "\n".join(lines)


def compare_floors(names: list[str], repeat: int, s: Setup) -> dict:
    """floor_seconds of each of `names`, `repeat` times, each in a fresh process: {model: [result, ...]}."""
    results: dict = {name: [] for name in names}
    for r in range(repeat):
        for name in names:
            results[name].append(run_path(f"train {name}", "floor", s))
            print(f"[{r + 1}/{repeat}] floor {name}: {results[name][-1]['seconds']:.2f} s", file=sys.stderr)
    return results


def floor_table(results: dict, floors: dict, steps: int) -> str:
    """Markdown: per model, the training row's medians beside the floor, and the best ratio the floor allows."""
    lines = [
        f"| model ({steps:,} steps with the course's evaluations) | baseline s | qd s | floor s "
        "| baseline/floor (the most any pipeline could reach) | target | floor load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, runs in floors.items():
        row = f"train {name}"
        base, ours = (_median(results[row][side], "seconds") for side in ("baseline", "qd"))
        floor = _median(runs, "seconds")
        lines.append(f"| {name} | {base:.3g} | {ours:.3g} | {floor:.3g} | {base / floor:.1f}x | {ROWS[row][1]:g}x "
                     f"| {_loads(runs)} |")  # fmt: skip
    return "\n".join(lines)


def compare_threads(repeat: int, s: Setup) -> dict:
    """qd's training of each model at its own thread choice (0), 1 and 2 threads, alternating."""
    results: dict = {name: {n: [] for n in (0, 1, 2)} for name in COURSE_LR}
    for r in range(repeat):
        for name in COURSE_LR:
            for n in (0, 1, 2) if r % 2 == 0 else (2, 1, 0):
                results[name][n].append(run_path(f"train {name}", "qd", replace(s, threads=n)))
                print(f"[{r + 1}/{repeat}] threads {n or 'auto'} {name}: {results[name][n][-1]['seconds']:.2f} s",
                      file=sys.stderr)  # fmt: skip
    return results


def threads_table(results: dict, steps: int) -> str:
    """Markdown: per model, median training seconds at qd's own choice, 1 and 2 threads, and their load."""
    lines = [
        f"| model ({steps:,} steps with evaluations) | auto s (threads chosen) | 1 thread s | 2 threads s | load |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, by_threads in results.items():
        chosen = ",".join(str(run["threads"]) for run in by_threads[0])
        auto, one, two = (_median(by_threads[n], "seconds") for n in (0, 1, 2))
        lines.append(f"| {name} | {auto:.2f} ({chosen}) | {one:.2f} | {two:.2f} | {_loads(*by_threads.values())} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """`python -m qd.bench speed`: print the speed, floor, thread and breakdown tables in markdown."""
    parser = argparse.ArgumentParser(prog="python -m qd.bench speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SYNTHETIC_DIR, help=f"a course-shaped folder ({SYNTHETIC_DIR})")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path and side (default 3)")
    parser.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both sides (default: each its own)")
    parser.add_argument("--retries", type=int, default=2, help="reruns of a run taken under load (default 2)")
    parser.add_argument("--rows", type=lambda s: s.split(","), default=list(ROWS), help=f"some of {','.join(ROWS)}")
    parser.add_argument("--no-thread-table", dest="thread_table", action="store_false")
    parser.add_argument("--no-floor-table", dest="floor_table", action="store_false")
    parser.add_argument("--breakdown", action="store_true", help="where each course process's time goes")
    args = parser.parse_args(argv)
    if unknown := set(args.rows) - set(ROWS):
        parser.error(f"--rows: unknown {', '.join(sorted(unknown))}")
    from qd.bench.paths import write_checkpoints  # torch: after the arguments, so that --help answers at once
    from qd.core.cpu import describe_cpu

    if not all((args.data / n).exists() for names in FILES.values() for n in names if n):
        print(f"writing the synthetic set to {args.data}", file=sys.stderr)
        write_synthetic(args.data)
    with tempfile.TemporaryDirectory(prefix="qd-speed-") as tmp:
        s = Setup(args.data.resolve(), Path(tmp), args.steps, args.threads, args.retries)
        write_checkpoints(s.work)
        results = compare(args.rows, args.repeat, s)
        threads = f"{args.threads} torch thread(s) each" if args.threads else "torch's default threads, qd's own choice"
        print(f"\n{cpu_header(describe_cpu())}\n")
        print(f"Medians of {args.repeat} alternating runs on {args.data} ({threads}):\n")
        print(speed_table(results, args.steps))
        print(LOAD_NOTE)
        if args.floor_table and (trained := [r.removeprefix("train ") for r in args.rows if r.startswith("train ")]):
            floors = compare_floors(trained, args.repeat, s)
            print(
                "\nThe training rows against their floor: the optimizer's set-up, forward, backward and fused Adam "
                "on one fixed batch, and the evaluations' forward passes, alone (torch's kernels in qd's layout, no "
                "pipeline):\n"
            )
            print(floor_table(results, floors, args.steps))
        if args.thread_table:
            thread_results = compare_threads(args.repeat, s)
            print(f"\nqd's training by thread count, medians of {args.repeat}:\n")
            print(threads_table(thread_results, args.steps))
        if args.breakdown and (names := row_models(args.rows)):
            print("\nWhere each course process's time goes (one run each, under qd.bench.phases), seconds:\n")
            print(breakdown_table(breakdown(names, s)))
