"""Speed and peak memory of qd's pipeline against the course starter's, on one course-shaped folder.

`python -m qd.bench speed` runs every measured path in a fresh Python process, the starter's (the baseline) and
qd's alternately, `--repeat` times, and prints markdown tables of medians: seconds, baseline/qd ratios and
peak memory. A path's seconds are timed inside its process around the path alone (the predict-process row:
from start to exit, by the parent); its peak memory is the whole process's peak resident set (ru_maxrss
from wait4): interpreter, libraries and the path's data included.

The baseline is the starter as a student completes it: per-image float64 standardisation in a Python loop,
`np.random.choice` for every batch, an evaluation every 100 steps on 4,000 random training images and the
whole dev set with autograd on and the model in training mode, prediction one image at a time. It runs the
same models (qd.models), so only the pipeline differs.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qd import ROOT
from qd.core.accuracies import TRAIN_SAMPLE, scores
from qd.core.checkpoint import load_model, save_checkpoint
from qd.core.data import FILES, Split, load_split
from qd.core.defaults import DEFAULTS
from qd.core.models import TooSimpleConvNN, TwoLayerDenseNet
from qd.core.predict import predict
from qd.core.runtime import configure_cpu
from qd.core.train import build_optimizer, train
from qd.datasets.prepare import SYNTHETIC_DIR
from qd.datasets.synth import write_synthetic

MODELS = {"densenet": TwoLayerDenseNet, "convnet": TooSimpleConvNN}
# A sweep's wall time on its workers may exceed its trials' own training time by at most this factor.
SWEEP_TARGET = 1.25
# Row -> (what it measures, target ratio baseline/qd).
ROWS = {
    "load": ("load and standardise train, dev and test", 5.0),
    "train densenet": ("densenet: {steps:,} steps with the course's evaluations", 2.5),
    "train convnet": ("convnet: {steps:,} steps with the course's evaluations", 5.0),
    "predict densenet": ("densenet: predict the test set", 10.0),
    "predict convnet": ("convnet: predict the test set", 10.0),
    "process": ("`main_densenet.py --mode predict`, whole process", 1.5),
}


# The baseline: the course starter as a student completes it.


def baseline_load(data_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A split as the starter prepares it: each image standardised in float64, one at a time."""
    image_name, label_name = FILES[split]
    images = np.load(Path(data_dir, image_name))
    x = np.empty((len(images), images[0].size))
    for i, image in enumerate(images):
        pixels = image.reshape(-1).astype(np.float64)
        std = pixels.std()
        x[i] = (pixels - pixels.mean()) / (std if std > 0 else 1.0)  # the starter's NaN for a blank image: 0
    return x, np.load(Path(data_dir, label_name)) if label_name else None


def _baseline_acc_and_loss(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    logits = model(torch.from_numpy(x.astype(np.float32)))
    loss = F.cross_entropy(logits, torch.from_numpy(y.astype(np.int64)))
    return float((y == torch.max(logits, 1)[1].numpy()).mean()), loss.item()


def baseline_train(
    model: nn.Module, train: tuple[np.ndarray, np.ndarray], dev: tuple[np.ndarray, np.ndarray], steps: int, out: Path
) -> float:
    """The starter's training loop (Adam, lr 1e-3, batch 100); returns the best dev accuracy."""
    (x, y), (dev_x, dev_y) = train, dev
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    best = 0.0
    with open(out.with_suffix(".log"), "w") as log:
        log.write("step,train_loss,train_acc,dev_loss,dev_acc\n")
        for step in range(steps):
            i = np.random.choice(len(x), size=100, replace=False)
            logits = model(torch.from_numpy(x[i].astype(np.float32)))
            loss = F.cross_entropy(logits, torch.from_numpy(y[i].astype(np.int64)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % 100 == 0:
                idx = np.random.choice(len(x), min(4000, len(x)), replace=False)
                train_acc, _ = _baseline_acc_and_loss(model, x[idx], y[idx])
                dev_acc, dev_loss = _baseline_acc_and_loss(model, dev_x, dev_y)
                best = max(best, dev_acc)
                log.write(f"{step},{loss.item()},{train_acc},{dev_loss},{dev_acc}\n")
    torch.save(model.state_dict(), out.with_suffix(".pt"))
    return best


def baseline_predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """The starter's prediction: one image at a time."""
    preds = []
    for example in x:
        model.eval()
        logits = model(torch.from_numpy(example.astype(np.float32)).view(1, -1))
        preds.append(torch.max(logits, 1)[1].item())
    return np.array(preds)


def baseline_predict_process(weights: str, data_dir: str, predictions_file: str) -> None:
    """The starter's `--mode predict` for the densenet: load, standardise, predict, write."""
    model = TwoLayerDenseNet()
    model.load_state_dict(torch.load(weights, weights_only=True)["state_dict"])
    x, _ = baseline_load(data_dir, "test")
    np.savetxt(predictions_file, baseline_predict(model, x), fmt="%d")


# One measured path in a child process.


def _load_model(path: Path, name: str) -> nn.Module:
    model = MODELS[name]()
    model.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    return model


def floor_seconds(name: str, train_split: Split, dev: Split, steps: int) -> float:
    """The least time any pipeline needs for `steps` of the model's course steps with torch's kernels: the
    optimizer's set-up, forward, backward and optimizer step on one fixed batch, and the evaluations' forward
    passes (4,000 training images and the dev set); no sampling, logging or checks. The optimizer, batch size
    and evaluation interval are the model's defaults (conf/)."""
    cfg = DEFAULTS[name]
    batch = cfg["train"]["batch_size"]
    xb, yb = train_split.x[:batch], train_split.y[:batch]
    model = MODELS[name]()
    start = time.perf_counter()
    optimizer = build_optimizer(cfg["optimizer"], model.parameters())
    for step in range(1, steps + 1):
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % cfg["train"]["eval_every"] == 0:
            scores(model, train_split.x[:TRAIN_SAMPLE])
            scores(model, dev.x)
    return time.perf_counter() - start


def measure(row: str, side: str, data_dir: Path, work: Path, steps: int, threads: int) -> float:
    """Seconds of one row's path, `side` "baseline" or "qd" (or "floor": floor_seconds), in this process
    (`threads` 0: its own choice)."""
    kind, _, name = row.partition(" ")
    splits = ("train", "dev", "test") if kind == "load" else ("train", "dev") if kind == "train" else ("test",)
    if threads:
        torch.set_num_threads(threads)
    if side == "floor":
        data = {s: load_split(data_dir, s) for s in splits}
        configure_cpu(threads)
        torch.manual_seed(0)
        return floor_seconds(name, data["train"], data["dev"], steps)
    if side == "baseline":
        start = time.perf_counter()
        data = {s: baseline_load(data_dir, s) for s in splits}
        if kind == "load":
            return time.perf_counter() - start
        torch.manual_seed(0)
        np.random.seed(0)
        if kind == "train":
            start = time.perf_counter()
            baseline_train(MODELS[name](), data["train"], data["dev"], steps, work / f"baseline_{name}")
        else:
            model = _load_model(work / f"{name}.pt", name)
            start = time.perf_counter()
            baseline_predict(model, data["test"][0])
        return time.perf_counter() - start
    start = time.perf_counter()
    data = {s: load_split(data_dir, s) for s in splits}
    if kind == "load":
        return time.perf_counter() - start
    if kind == "train":
        cfg = copy.deepcopy(DEFAULTS[name])
        cfg["data"]["dir"] = str(data_dir)
        cfg["train"].update(steps=steps, threads=threads)
        start = time.perf_counter()
        train(cfg, work / f"qd_{name}.log", work / f"qd_{name}.pt")
    else:
        configure_cpu(threads)  # as predict_file does, before the model loads
        model, _ = load_model(work / f"{name}.pt")
        start = time.perf_counter()
        predict(model, data["test"].x)
    return time.perf_counter() - start


def _child(spec: str) -> None:
    """Entry point of a child process: measure the path `spec` (JSON) names; print seconds and threads."""
    args = json.loads(spec)
    args["data_dir"], args["work"] = Path(args["data_dir"]), Path(args["work"])
    seconds = measure(**args)
    print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}))


def _run_child(argv: list[str], threads: int) -> tuple[str, float, float]:
    """Run `argv`; return its stdout, wall seconds and peak resident memory in MiB."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
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
    return out, wall, usage.ru_maxrss / 1024


def run_path(row: str, side: str, data_dir: Path, work: Path, steps: int, threads: int) -> dict:
    """Measure one row's path for `side` in a fresh process: {"seconds", "peak_mib", "threads"}."""
    if row == "process":
        weights, out = str(work / "densenet.pt"), str(work / f"{side}_predictions.txt")
        if side == "baseline":
            code = "import sys; from qd.bench.speed import baseline_predict_process as p; p(*sys.argv[1:])"
            argv = [sys.executable, "-c", code, weights, str(data_dir), out]
        else:
            argv = [sys.executable, str(ROOT / "main_densenet.py"), "--mode", "predict", "--weights", weights]
            argv += ["--predictionsFile", out, "--dataDir", str(data_dir)]
        _, wall, peak = _run_child(argv, threads)
        return {"seconds": wall, "peak_mib": peak, "threads": threads}
    spec = {"row": row, "side": side, "data_dir": str(data_dir), "work": str(work), "steps": steps, "threads": threads}
    code = "import sys; from qd.bench.speed import _child; _child(sys.argv[1])"
    out, _, peak = _run_child([sys.executable, "-c", code, json.dumps(spec)], threads)
    return {**json.loads(out.splitlines()[-1]), "peak_mib": peak}


def write_checkpoints(work: Path) -> None:
    """Untrained densenet and convnet checkpoints for the prediction rows (speed does not depend on weights)."""
    torch.manual_seed(0)
    for name, model in MODELS.items():
        save_checkpoint(work / f"{name}.pt", model(), {"name": name}, meta={})


# The tables.


def compare(data_dir: Path, work: Path, rows: list[str], repeat: int, steps: int, threads: int) -> dict:
    """Every row's baseline and qd paths, alternating, `repeat` times: {row: {side: [result, ...]}}."""
    results: dict = {row: {"baseline": [], "qd": []} for row in rows}
    for r in range(repeat):
        for row in rows:
            for side in ("baseline", "qd") if r % 2 == 0 else ("qd", "baseline"):
                results[row][side].append(run_path(row, side, data_dir, work, steps, threads))
                print(f"[{r + 1}/{repeat}] {row} {side}: {results[row][side][-1]['seconds']:.2f} s", file=sys.stderr)
    return results


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def speed_table(results: dict, steps: int) -> str:
    """Markdown: per row, median seconds and peak MiB of each side, the ratio, its target and whether it is met."""
    lines = [
        "| path | baseline s | qd s | baseline/qd | target | met | baseline peak MiB | qd peak MiB |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for row, sides in results.items():
        what, target = ROWS[row]
        base, ours = _median(sides["baseline"], "seconds"), _median(sides["qd"], "seconds")
        peaks = _median(sides["baseline"], "peak_mib"), _median(sides["qd"], "peak_mib")
        met = "yes" if base / ours >= target and peaks[1] <= peaks[0] else "no"
        lines.append(
            f"| {what.format(steps=steps)} | {base:.3g} | {ours:.3g} | {base / ours:.1f}x | {target:g}x | {met} "
            f"| {peaks[0]:,.0f} | {peaks[1]:,.0f} |"
        )
    return "\n".join(lines)


def compare_floors(data_dir: Path, work: Path, names: list[str], repeat: int, steps: int, threads: int) -> dict:
    """floor_seconds of each of `names`, `repeat` times, each in a fresh process: {model: [result, ...]}."""
    results: dict = {name: [] for name in names}
    for r in range(repeat):
        for name in names:
            results[name].append(run_path(f"train {name}", "floor", data_dir, work, steps, threads))
            print(f"[{r + 1}/{repeat}] floor {name}: {results[name][-1]['seconds']:.2f} s", file=sys.stderr)
    return results


def floor_table(results: dict, floors: dict, steps: int) -> str:
    """Markdown: per model, the training row's medians beside the floor, and the best ratio the floor allows."""
    lines = [
        f"| model ({steps:,} steps with the course's evaluations) | baseline s | qd s | floor s "
        "| baseline/floor (the most any pipeline could reach) | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, runs in floors.items():
        row = f"train {name}"
        base, ours = (_median(results[row][side], "seconds") for side in ("baseline", "qd"))
        floor = _median(runs, "seconds")
        lines.append(f"| {name} | {base:.3g} | {ours:.3g} | {floor:.3g} | {base / floor:.1f}x | {ROWS[row][1]:g}x |")
    return "\n".join(lines)


def compare_threads(data_dir: Path, work: Path, repeat: int, steps: int) -> dict:
    """qd's training of each model at its own thread choice (0), 1 and 2 threads, alternating."""
    results: dict = {name: {n: [] for n in (0, 1, 2)} for name in MODELS}
    for r in range(repeat):
        for name in MODELS:
            for n in (0, 1, 2) if r % 2 == 0 else (2, 1, 0):
                results[name][n].append(run_path(f"train {name}", "qd", data_dir, work, steps, n))
                print(f"[{r + 1}/{repeat}] threads {n or 'auto'} {name}: {results[name][n][-1]['seconds']:.2f} s",
                      file=sys.stderr)  # fmt: skip
    return results


def sweep_amortisation(data_dir: Path, work: Path, trials: int, workers: int, steps: int) -> dict:
    """Run the dense-net learning-rate sweep on `workers` joblib workers; its wall time and its trials' training.

    A trial's own training time is the train_time_s of its metrics.json (a failed trial's: its wall_time_s).
    """
    out = work / f"sweep{trials}x{workers}"
    out.mkdir()
    argv = [sys.executable, str(ROOT / "main_densenet.py"), "-m", "+sweep=densenet_lr", "+launcher=parallel"]
    argv += [f"hydra.launcher.n_jobs={workers}", f"hydra.sweeper.n_trials={trials}", f"train.steps={steps}"]
    argv += [f"data.dir={data_dir}", f'hydra.sweeper.storage="sqlite:///{out}/study.db?timeout=60"']
    argv += [f"hydra.sweep.dir={out}/jobs"]
    launched = time.time()
    _, wall, _ = _run_child(argv, 0)
    ended = time.time()
    metrics = [json.loads(p.read_text()) for p in (out / "jobs").glob("*/metrics.json")]
    training = sum(m.get("train_time_s", m["wall_time_s"]) for m in metrics)
    failed = sum(m["state"] != "complete" for m in metrics)
    return {
        "wall": wall, "training": training, "trials": len(metrics), "failed": failed, "workers": workers,
        **overheads(metrics, launched, ended, workers),
    }  # fmt: skip


def overheads(metrics: list[dict], launched: float, ended: float, workers: int) -> dict:
    """Where a sweep's wall time went besides its trials' training, in seconds of wall time.

    start_up: launch to the first job's start (Python, Hydra, Optuna, the storage, worker processes);
    in_jobs: the jobs' own time outside training (data, model, optimizer, checkpoint, metrics), per worker;
    between: gaps between consecutive jobs of one worker process (Hydra's job set-up, Optuna's ask and
    tell, the launcher's batches), per worker; tail: the last job's end to the sweep's exit.
    """
    by_worker: dict[int, list[dict]] = {}
    for m in sorted(metrics, key=lambda m: m["started"]):
        by_worker.setdefault(m["pid"], []).append(m)
    gaps = sum(b["started"] - a["finished"] for jobs in by_worker.values() for a, b in pairwise(jobs))
    outside = sum(m["wall_time_s"] - m.get("train_time_s", m["wall_time_s"]) for m in metrics)
    return {
        "start_up": min(m["started"] for m in metrics) - launched,
        "in_jobs": outside / workers,
        "between": gaps / workers,
        "tail": ended - max(m["finished"] for m in metrics),
    }


def sweep_table(r: dict, steps: int) -> str:
    """Markdown: the sweep's wall time against the ideal, its trials' training time shared by its workers."""
    ideal = r["training"] / r["workers"]
    met = "yes" if r["wall"] <= SWEEP_TARGET * ideal else "no"
    return "\n".join([
        "| sweep | trials (failed) | workers | sum of training s | wall s | wall / (sum / workers) | target | met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| densenet_lr, {steps:,} steps a trial | {r['trials']} ({r['failed']}) | {r['workers']} "
        f"| {r['training']:.1f} | {r['wall']:.1f} | {r['wall'] / ideal:.2f} | {SWEEP_TARGET:g} | {met} |",
        "",
        "| wall s beyond training | start-up | in the jobs, per worker | between jobs, per worker | tail |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| {r['wall'] - ideal:.1f} | {r['start_up']:.1f} | {r['in_jobs']:.1f} | {r['between']:.1f} "
        f"| {r['tail']:.1f} |",
    ])  # fmt: skip


def threads_table(results: dict, steps: int) -> str:
    """Markdown: per model, median training seconds at qd's own choice, 1 and 2 threads."""
    lines = [
        f"| model ({steps:,} steps with evaluations) | auto s (threads chosen) | 1 thread s | 2 threads s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, by_threads in results.items():
        chosen = ",".join(str(run["threads"]) for run in by_threads[0])
        auto, one, two = (_median(by_threads[n], "seconds") for n in (0, 1, 2))
        lines.append(f"| {name} | {auto:.2f} ({chosen}) | {one:.2f} | {two:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """`python -m qd.bench speed`: print the speed table and the thread table in markdown."""
    parser = argparse.ArgumentParser(prog="python -m qd.bench speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SYNTHETIC_DIR, help=f"a course-shaped folder ({SYNTHETIC_DIR})")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path and side (default 3)")
    parser.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both sides (default: each its own)")
    parser.add_argument("--rows", type=lambda s: s.split(","), default=list(ROWS), help=f"some of {','.join(ROWS)}")
    parser.add_argument("--no-thread-table", dest="thread_table", action="store_false")
    parser.add_argument("--sweep-trials", type=int, default=16, help="trials of the sweep measured (0: none)")
    args = parser.parse_args(argv)
    if unknown := set(args.rows) - set(ROWS):
        parser.error(f"--rows: unknown {', '.join(sorted(unknown))}")
    if not all((args.data / n).exists() for names in FILES.values() for n in names if n):
        print(f"writing the synthetic set to {args.data}", file=sys.stderr)
        write_synthetic(args.data)
    data_dir = args.data.resolve()
    with tempfile.TemporaryDirectory(prefix="qd-speed-") as tmp:
        work = Path(tmp)
        write_checkpoints(work)
        results = compare(data_dir, work, args.rows, args.repeat, args.steps, args.threads)
        threads = f"{args.threads} torch thread(s) each" if args.threads else "torch's default threads, qd's own choice"
        print(f"\nMedians of {args.repeat} alternating runs on {args.data} ({os.cpu_count()} cores; {threads}):\n")
        print(speed_table(results, args.steps))
        if trained := [row.removeprefix("train ") for row in args.rows if row.startswith("train ")]:
            floors = compare_floors(data_dir, work, trained, args.repeat, args.steps, args.threads)
            print(
                "\nThe training rows against their floor: the optimizer's set-up, forward, backward and fused Adam "
                "on one fixed batch, and the evaluations' forward passes, alone (torch's kernels, no pipeline):\n"
            )
            print(floor_table(results, floors, args.steps))
        if args.thread_table:
            thread_results = compare_threads(data_dir, work, args.repeat, args.steps)
            print(f"\nqd's training by thread count, medians of {args.repeat}:\n")
            print(threads_table(thread_results, args.steps))
        if args.sweep_trials:
            sweep = sweep_amortisation(data_dir, work, args.sweep_trials, 2, args.steps)
            print(f"\nA {args.sweep_trials}-trial sweep on 2 joblib workers, training alone against the whole sweep:\n")
            print(sweep_table(sweep, args.steps))

