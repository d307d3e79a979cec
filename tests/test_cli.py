"""The course command lines as subprocesses: run.sh end to end, required flags, bad input."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli, run_here, start
from qd.main import INTERRUPTED_COURSE

STAMPED = re.compile(r"^\d{12}_(densenet|convnet|bestmodel)\.(pt|log|json)$")


@pytest.fixture
def workdir(course_dir, tmp_path):
    """An empty folder with `datasets/` holding the small synthetic set."""
    (tmp_path / "datasets").symlink_to(course_dir)
    return tmp_path


def run_sh_commands(steps: int) -> list[list[str]]:
    """The six python commands of run.sh, with the repository's scripts and `steps` optimisation steps."""
    commands = []
    for line in (ROOT / "run.sh").read_text().splitlines():
        if line.startswith("python "):
            args = [a.replace("$DATA", "datasets") for a in shlex.split(line)[1:]]
            args[0] = str(ROOT / args[0])
            commands.append([steps if a == "2000" else a for a in args])
    return [[str(a) for a in c] for c in commands]


def test_run_sh_without_the_venv_or_the_course_data_says_what_to_run(tmp_path):
    """Outside the venv (Python without torch) and without datasets/: one line each, with the command to run."""
    bare, venv = tmp_path / "bare", tmp_path / "venv"
    for folder, python in ((bare, Path(sys.base_prefix, "bin", "python3")), (venv, Path(sys.executable))):
        folder.mkdir()
        (folder / "python").write_text(f'#!/bin/sh\nexec "{python}" "$@"\n')
        (folder / "python").chmod(0o755)
    if subprocess.run([bare / "python", "-c", "import torch"], capture_output=True).returncode == 0:
        pytest.skip("this machine's Python outside the venv has torch")
    for folder, expected in (
        (bare, "run.sh: `python` cannot import numpy and torch; run `make venv && source .venv/bin/activate` first"),
        (venv, "run.sh: datasets/ holds no course data (fruit_images.npy); `bash run.sh data/real_sample` runs on the "
               "2,400 real drawings qd carries"),
    ):  # fmt: skip
        env = {**os.environ, "PATH": f"{folder}:/usr/bin:/bin"}
        result = subprocess.run(["bash", str(ROOT / "run.sh")], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert (result.returncode, result.stderr, result.stdout) == (2, expected + "\n", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare", "venv"], "nothing written"


@pytest.mark.heavy
def test_run_sh_runs_top_to_bottom(workdir):
    commands = run_sh_commands(steps=20)
    assert len(commands) == 6
    for args in commands:
        result = run_cli(args, workdir)
        assert result.returncode == 0, result.stderr
    models = sorted(p.name for p in (workdir / "model_files").iterdir())
    logs = sorted(p.name for p in (workdir / "log_files").iterdir())
    assert [m for m in models if not STAMPED.match(m)] == ["bestmodel.pt", "convnet.pt", "densenet.pt"]
    assert len(models) == 9 and len(logs) == 3 and all(STAMPED.match(name) for name in logs)
    for log in (workdir / "log_files").iterdir():
        rows = log.read_text().splitlines()
        assert rows[0] == "step,train_loss,train_acc,dev_loss,dev_acc" and [r.split(",")[0] for r in rows[1:]] == ["20"]
        # Each run's record lies beside its checkpoint, with the fields of a sweep job's metrics.json.
        record = json.loads((workdir / "model_files" / f"{log.stem}.json").read_text())
        assert record["state"] == "complete" and record["run"] == log.stem and record["steps"] == 20
        assert record["best_dev_acc"] == pytest.approx(float(rows[1].split(",")[4]), abs=1e-6)
        # Its own files relative to its folder: model_files/ and log_files/ may move together.
        assert record["checkpoint"] == f"{log.stem}.pt" and record["log"] == f"../log_files/{log.name}"
        assert record["job_dir"] == "." and record["data_dir"] == str(workdir / "datasets")
        assert {"train.batch_size=100", "train.steps=20", "data.dir=datasets"} <= set(record["overrides"])
    stems = sorted(log.stem for log in (workdir / "log_files").iterdir())
    listed = run_cli(["-m", "qd", "results", "model_files"], workdir)
    assert listed.returncode == 0, listed.stderr
    table, best = listed.stdout.split("\nbest: ")
    assert sorted(re.findall(r"\d{12}_\w+", table)) == stems, "qd results lists run.sh's three trainings"
    assert re.match(rf"\w+ run ({'|'.join(stems)}), dev accuracy 0\.\d{{4}}\n", best), best
    for name in ("densenet", "convnet", "best_model"):
        values = (workdir / f"{name}_predictions.csv").read_text().splitlines()
        assert len(values) == 600 and set(values) <= {str(c) for c in range(6)}
    assert (workdir / "model_files/bestmodel.pt").stat().st_size <= 1_000_000


def _main(model="densenet"):
    return str(ROOT / f"main_{model}.py")


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "the following arguments are required: --mode"),
        (["--LR", "0.1"], "the following arguments are required: --mode"),
        (["--mode", "train", "--LR", "0.1"], "the following arguments are required to train: --bs, --epochs"),
        (["--mode", "predict"], "the following arguments are required to predict: --weights, --predictionsFile"),
        (["--mode", "fit"], "argument --mode: invalid choice: 'fit'"),
        (["--mode", "train", "--LR", "abc"], "argument --LR: invalid float value: 'abc'"),
        (["--mode", "train", "--lr", "0.01"], "unrecognized arguments: --lr 0.01"),
    ],
)
def test_missing_or_bad_flags_get_argparse_errors_in_one_line(workdir, args, message):
    result = run_here([_main(), *args], workdir)
    (line,) = result.stderr.splitlines()  # argparse words a choice's list by its version: not compared
    assert result.returncode == 2 and line.startswith(f"main_densenet.py: error: {message}"), result.stderr
    assert line.endswith(" (see --help)"), line


TRAIN = ["--mode", "train", "--LR", "0.001", "--bs", "50", "--epochs", "20"]


@pytest.mark.parametrize(
    "change, message",
    [
        (("--LR", "-1"), "error: --LR (optimizer.lr): got -1.0; expected a positive learning rate"),
        (("--LR", "nan"), "error: --LR (optimizer.lr): got nan; expected a positive learning rate"),
        (("--bs", "0"), "error: --bs (train.batch_size): got 0; expected a whole number from 1 to 1200"),
        (("--bs", "5000"), "error: --bs (train.batch_size): got 5000; expected a whole number from 1 to 1200"),
        (("--epochs", "0"), "error: --epochs (train.steps): got 0; expected a positive number of optimisation steps"),
        (
            ("--dataDir", "nowhere"),
            "error: nowhere: missing fruit_images.npy, fruit_labels.npy, fruit_dev_images.npy, fruit_dev_labels.npy; ",
        ),
    ],
)
def test_bad_training_input_exits_2_with_one_line_and_writes_nothing(workdir, change, message):
    args = list(TRAIN)
    if change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += list(change)
    result = run_here([_main(), *args], workdir)
    assert result.returncode == 2
    assert result.stderr.strip() == message or result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (workdir / "model_files").exists() and not (workdir / "log_files").exists()


def test_prediction_errors_keep_existing_outputs(workdir):
    assert run_here([_main(), *TRAIN], workdir).returncode == 0
    predictions = workdir / "p.csv"
    predictions.write_text("keep me\n")
    cases = [
        (["--weights", "model_files/nope.pt"], "error: model_files/nope.pt: checkpoint not found"),
        (
            ["--weights", "datasets/fruit_labels.npy"],
            "error: datasets/fruit_labels.npy: not a torch checkpoint (expected the zip-based .pt format",
        ),
    ]
    for weights, message in cases:
        result = run_here([_main(), "--mode", "predict", *weights, "--predictionsFile", "p.csv"], workdir)
        assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    result = run_here(
        [_main("convnet"), "--mode", "predict", "--weights", "model_files/densenet.pt", "--predictionsFile", "p.csv"],
        workdir,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "error: model_files/densenet.pt: holds a densenet model; expected a convnet checkpoint"
    )
    (workdir / "dir.csv").mkdir()
    result = run_here(
        [_main(), "--mode", "predict", "--weights", "model_files/densenet.pt", "--predictionsFile", "dir.csv"], workdir
    )
    assert (
        result.returncode == 2
        and result.stderr.strip() == "error: --predictionsFile dir.csv: is a folder; expected a file path"
    )
    assert predictions.read_text() == "keep me\n"


def test_predictions_file_parent_is_created(workdir):
    assert run_here([_main(), *TRAIN], workdir).returncode == 0
    out = Path("deep/er/p.csv")
    result = run_here(
        [_main(), "--mode", "predict", "--weights", "model_files/densenet.pt", "--predictionsFile", str(out)], workdir
    )
    assert result.returncode == 0, result.stderr
    assert np.loadtxt(workdir / out, dtype=int).shape == (600,)
    assert not [p for p in (workdir / out).parent.iterdir() if p.name != "p.csv"], "no temporary files left"


@pytest.mark.parametrize(
    "override, message",
    [  # fmt: skip
        (
            "optimizer=nope",
            "error: optimizer=nope: no such option; expected one of adam, adamw, sgd",
        ),
        (
            "train.nope=1",
            "error: train.nope=1: no such setting; train has batch_size, device, ema, eval_every, "
            "half_storage, label_smoothing, max_loss, memory_format, not_learning_after, seed, steps, threads",
        ),
        ("trian.steps=5", "error: trian.steps=5: no such setting; did you mean train.steps?"),
        ("data.prepare=magic", "error: data.prepare: got 'magic'; expected none, synthetic or real_sample"),
        (
            "sweep=densenet_lr",
            "error: sweep=densenet_lr: sweep is a config group that the config does not load; add "
            "it with +sweep=densenet_lr",
        ),
        ("+train.stpes=50", "error: +train.stpes=50: train.stpes: no such setting; did you mean train.steps?"),
        (
            "+augmentation.shift.pixel=3",
            "error: +augmentation.shift.pixel=3: augmentation.shift.pixel: no such "
            "setting; did you mean augmentation.shift.pixels?",
        ),
        (
            "augmentation.shift=3",
            "error: augmentation.shift=3: expected the settings of shift (p, pixels), such as augmentation.shift.p=0.5",
        ),
    ],
)
def test_bad_hydra_overrides_exit_2_with_one_line_and_write_nothing(tmp_path, override, message):
    result = run_here([_main(), override, f"data.dir={tmp_path / 'data'}"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == message
    assert not (tmp_path / "data").exists()


def test_a_learning_rate_override_that_cannot_train_is_named_as_the_setting(course_dir, tmp_path):
    result = run_here([_main(), "optimizer.lr=-1", f"data.dir={course_dir}"], tmp_path)
    assert (result.returncode, result.stderr.splitlines()) == (
        2, ["error: optimizer.lr: got -1; expected a positive learning rate"])  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_a_course_command_ends_at_once_its_output_and_files_complete(workdir):
    """Done, the process skips the interpreter's teardown (qd.core.cli.exit_now): an exit handler never runs, and
    what it printed and wrote is whole."""
    code = "import atexit, sys; atexit.register(print, 'torn down'); from qd.main import main; main('densenet')"
    result = run_cli(["-c", code, *TRAIN], workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("densenet: best dev accuracy ") and "torn down" not in result.stdout
    (log,) = (workdir / "log_files").iterdir()
    assert log.read_text().splitlines()[-1].startswith("20,")
    assert json.loads(next((workdir / "model_files").glob("*.json")).read_text())["state"] == "complete"


def test_ctrl_c_in_a_course_training_is_one_line_and_leaves_only_whole_files(workdir):
    train = start([sys.executable, str(ROOT / "main_densenet.py"), "--mode", "train", "--LR", "0.001", "--bs", "50",
                   "--epochs", "100000"], workdir)  # fmt: skip
    deadline = time.time() + 120
    while not [p for p in workdir.glob("log_files/*.log") if len(p.read_text().splitlines()) > 2]:
        assert time.time() < deadline and train.poll() is None, train.communicate()
        time.sleep(0.05)
    train.send_signal(signal.SIGINT)
    out, err = train.communicate(timeout=30)
    assert (train.returncode, err) == (130, f"\n{INTERRUPTED_COURSE}\n"), out
    (log,) = (workdir / "log_files").iterdir()
    rows = log.read_text().split("\n")
    assert rows[-1] == "" and len({row.count(",") for row in rows[:-1]}) == 1, "whole rows"
    assert all(STAMPED.match(p.name) for p in (workdir / "model_files").iterdir()), "no temporary file, no densenet.pt"
    (record,) = (workdir / "model_files").glob("*.json")
    assert {k: json.loads(record.read_text())[k] for k in ("state", "reason")} == {
        "state": "interrupted", "reason": "interrupted (Ctrl-C)"}  # fmt: skip


def test_without_the_course_files_the_error_names_the_command_on_the_real_drawings_and_it_runs(tmp_path):
    train = ["--mode", "train", "--LR", "1e-3", "--bs", "64", "--epochs", "20"]
    refused = run_cli([str(ROOT / "main_densenet.py"), *train], tmp_path)
    instead = "python main_densenet.py --mode train --LR 1e-3 --bs 64 --epochs 20 --dataDir data/real_sample"
    assert (refused.returncode, refused.stderr) == (2, "error: datasets: the course's data files are not here "
                                                       "(fruit_images.npy, fruit_labels.npy, fruit_dev_images.npy, "
                                                       f"fruit_dev_labels.npy); to use the 2,400 real drawings qd "
                                                       f"carries instead, run: {instead} (with Hydra overrides: "
                                                       "data=real_sample)\n")  # fmt: skip
    assert list(tmp_path.iterdir()) == [], "nothing written"
    ran = run_cli([str(ROOT / "main_densenet.py"), *shlex.split(instead)[2:]], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "data/real_sample/fruit_test_images.npy").is_file(), "built on first use"


def test_a_course_run_that_diverges_names_the_flag_and_records_the_config_key(workdir):
    """One error, rendered once per front end: the course command line's line names --LR, the record (which results,
    promote and the report read beside sweep trials') the config key."""
    diverging = [_main(), "--mode", "train", "--LR", "10000", "--bs", "50", "--epochs", "200"]
    result = run_here(diverging, workdir)
    assert result.returncode == 2
    assert re.fullmatch(r"error: training diverged at step \d+ \(loss [^)]+\); try a smaller --LR \(optimizer\.lr\)\n",
                        result.stderr), result.stderr  # fmt: skip
    (record,) = [json.loads(p.read_text()) for p in (workdir / "model_files").glob("*.json")]
    assert record["state"] == "diverged" and record["reason"].endswith("; try a smaller optimizer.lr"), record
