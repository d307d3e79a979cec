"""Faults: kill -9 during training and promotion, concurrent sweep workers on PostgreSQL, load."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, digest, run_cli, run_here, start, study_trials, sweep_metrics

pytestmark = pytest.mark.slow


def test_kill_9_mid_training_leaves_no_checkpoint_and_a_log_of_whole_rows(course_dir, tmp_path):
    args = [str(ROOT / "main_densenet.py"), "--mode", "train", "--dataDir", str(course_dir), "--LR", "1e-3",
            "--bs", "50", "--epochs", "100000"]  # fmt: skip
    (tmp_path / "model_files").mkdir()
    (tmp_path / "model_files/densenet.pt").write_bytes(b"the user's previous checkpoint")
    proc = start([sys.executable, *args], tmp_path)
    deadline = time.time() + 120
    while (
        not list((tmp_path / "log_files").glob("*.log"))
        or len(next((tmp_path / "log_files").glob("*.log")).read_text().splitlines()) < 3
    ):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log = next((tmp_path / "log_files").glob("*.log")).read_text()
    assert log.endswith("\n"), "every row is whole"
    rows = log.splitlines()
    assert rows[0] == "step,train_loss,train_acc,dev_loss,dev_acc" and int(rows[-1].split(",")[0]) < 100000
    assert [p.name for p in (tmp_path / "model_files").iterdir()] == ["densenet.pt"], "no checkpoint, no temp file"
    assert (tmp_path / "model_files/densenet.pt").read_bytes() == b"the user's previous checkpoint"


def kill_when(proc: subprocess.Popen, happened, timeout: float = 120) -> bool:
    """SIGKILL `proc` as soon as `happened()` is true (polled every millisecond); whether it was still running."""
    deadline = time.time() + timeout
    while proc.poll() is None and not happened():
        assert time.time() < deadline, "neither the event nor the end came"
        time.sleep(0.001)
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return running


@pytest.mark.heavy
def test_kill_9_mid_promotion_leaves_the_old_or_the_new_submission_whole(swept, swept_data, tmp_path):
    promote = ["-m", "qd", "promote", "--any-settings", "--name", "jdoe12", "--data-dir", str(swept_data),
               str(swept / "outputs")]  # fmt: skip
    assert run_here(promote, tmp_path).returncode == 0
    old = digest(tmp_path / "submission")
    # More trials, trained longer, in this workdir's outputs/: the next promotion's winners differ.
    args = [str(ROOT / "main_densenet.py"), "-m", f"data.dir={swept_data}", "train.steps=60", "train.eval_every=10",
            "+sweep=densenet_lr", "hydra.sweeper.n_trials=3"]  # fmt: skip
    result = run_here(args, tmp_path)
    assert result.returncode == 0, result.stderr
    promote.append("outputs")
    # Promotion is deterministic: the new submission, made once elsewhere.
    began = time.time()
    assert run_here([*promote, "--out", "new"], tmp_path).returncode == 0
    took = time.time() - began
    new = digest(tmp_path / "new")
    assert new != old and set(new) == set(old) and "jdoe12_code.zip" in new

    def staging(name: str):
        return lambda: any(tmp_path.glob(f".submission.staging-*/{name}"))

    def after(fraction: float):
        return lambda: time.time() > began + fraction * took

    # Kills at points of promotion's own making, and at fractions of its run time, whatever it does then.
    events = {"staging begun": staging(""), "first checkpoint staged": staging("densenet.pt"),
              "code.zip staged, the swap next": staging("jdoe12_code.zip"), "a fifth in": after(0.2),
              "two fifths in": after(0.4), "three fifths in": after(0.6)}  # fmt: skip
    for event, happened in events.items():
        began = time.time()
        running = kill_when(start([sys.executable, *promote], tmp_path), happened)
        assert running or event.startswith("code.zip"), f"promotion ended before {event}"
        recover = "from pathlib import Path; from qd.deliver.swap import recover; recover(Path('submission'))"
        recovered = run_cli(["-c", recover], tmp_path)
        assert recovered.returncode == 0, recovered.stderr
        assert digest(tmp_path / "submission") in (old, new), f"killed at {event}: neither the old nor the new one"
        assert not list(tmp_path.glob(".submission.*")), f"killed at {event}: recover left a staging folder"
    assert run_here(promote, tmp_path).returncode == 0
    assert digest(tmp_path / "submission") == new


@pytest.mark.heavy
def test_a_200_trial_sweep_stays_consistent_and_flat_in_memory(course_dir, tmp_path):
    args = [str(ROOT / "main_densenet.py"), "-m", f"data.dir={course_dir}", "train.steps=1", "train.eval_every=1",
            "+sweep=densenet_lr", "hydra.sweeper.n_trials=200"]  # fmt: skip
    result = run_cli(args, tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr
    trials = study_trials(tmp_path, "densenet_lr")
    records = sorted(sweep_metrics(tmp_path), key=lambda r: r["trial"])
    assert len(trials) == 200 and all(t.state.name == "COMPLETE" for t in trials)
    assert [r["trial"] for r in records] == list(range(200))
    growth = records[-1]["peak_rss_mb"] - records[19]["peak_rss_mb"]
    assert growth < 20, f"the sweeping process grew by {growth:.1f} MB over 180 trials"
