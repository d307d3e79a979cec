"""qd results on sources that hold no trials, and on records that cannot be read."""

import json
import re

import pytest

from conftest import json_error
from qd.experiment.results import evidence, main


def test_a_folder_without_trials_is_named(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "empty")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'empty'}: no trials found (no job records, no study)\n"


def job(folder, name: str, model: str, acc: float, cut: int | None = None):
    """A job's record as training leaves it, its checkpoint beside it; the record cut to `cut` bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    fields = {"format": "qd-job", "model": model, "state": "complete", "best_dev_acc": acc, "best_step": 20,
              "checkpoint": f"{model}.pt", "job_dir": ".", "config": {"train": {"steps": 20}}}  # fmt: skip
    text = json.dumps(fields, indent=2)
    (folder / name).write_text(text[:cut])
    (folder / (f"{model}.pt" if name == "metrics.json" else name.replace(".json", ".pt"))).write_bytes(b"PK")
    return folder / name, text[:cut]


def test_every_unreadable_record_is_named_and_the_best_is_not_claimed_over_it(tmp_path, capsys):
    """The best job's metrics.json cut to 100 bytes, a course run's record cut too: each named in one line, and
    the best readable job is not called the best without a word."""
    sweep, runs = tmp_path / "sweep", tmp_path / "model_files"
    job(sweep / "0", "metrics.json", "densenet", 0.80)
    best, best_text = job(sweep / "1", "metrics.json", "densenet", 0.85, cut=100)
    run, run_text = job(runs, "202601011200_convnet.json", "convnet", 0.60, cut=50)
    (runs / "notes.json").write_text("{not a record")  # another file: no record, not named
    main([str(sweep), str(runs)])
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"warning: {best}: unreadable record of run 1 (not complete JSON ({json_error(best_text)}))",
        f"warning: {run}: unreadable record of run 202601011200_convnet (not complete JSON ({json_error(run_text)}))",
    ]
    assert out.splitlines()[-4:] == [
        "best: densenet run 0, dev accuracy 0.8000",
        f"      {sweep / '0'}",
        f"      run 1 may be better: it completed, but its record {best} is unreadable",
        f"      run 202601011200_convnet may be better: it completed, but its record {run} is unreadable",
    ]


def metrics(folder, **fields):
    """A job's metrics.json as a sweep trial or a single Hydra run leaves it, with its checkpoint."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"format": "qd-job", "model": "densenet", "job_dir": ".",
                                                     "checkpoint": "densenet.pt", **fields}))  # fmt: skip
    (folder / "densenet.pt").write_bytes(b"PK")


def test_each_data_set_has_its_own_table_and_best_with_only_the_columns_its_jobs_fill(tmp_path, monkeypatch, capsys):
    """A sweep on real drawings (a trial failed) and a single Hydra run on synthetic ones that scores higher: two
    tables, each with its best; the run's table has no study or trial column, the sweep's no run column."""
    monkeypatch.chdir(tmp_path)
    real, synthetic = tmp_path / "data/real", tmp_path / "data/synthetic"
    sweep, runs = tmp_path / "outputs/sweeps/densenet_lr", tmp_path / "outputs/runs/densenet"
    metrics(sweep / "0", data_dir=str(real), study="lr", trial=0, state="complete", best_dev_acc=0.83, best_step=20,
            params={"optimizer.lr": 0.0012345})  # fmt: skip
    metrics(sweep / "1", data_dir=str(real), study="lr", trial=1, state="failed", params={"optimizer.lr": 0.5},
            reason="training diverged at step 2")  # fmt: skip
    metrics(runs / "2026-01-01_12-00-00_1", data_dir=str(synthetic), state="complete", best_dev_acc=0.88,
            best_step=30, overrides=["data=synthetic", "train.steps=30"])  # fmt: skip
    main(["outputs"])
    assert capsys.readouterr().out.splitlines() == [
        "trained on data/real: 2 jobs, model densenet, study lr",
        "trial  state     best_dev_acc  params",
        "0      COMPLETE  0.8300        lr=0.001234",
        "1      FAILED    -             lr=0.5",
        "    training diverged at step 2",
        "best: densenet study lr trial 0, dev accuracy 0.8300",
        f"      {sweep / '0'}",
        "",
        "trained on data/synthetic: 1 job, model densenet",
        "run                    state     best_dev_acc  params",
        "2026-01-01_12-00-00_1  COMPLETE  0.8800        data=synthetic train.steps=30",
        "best: densenet run 2026-01-01_12-00-00_1, dev accuracy 0.8800",
        f"      {runs / '2026-01-01_12-00-00_1'}",
    ]
    main(["outputs", "--wide"])
    assert capsys.readouterr().out.splitlines()[1:4] == [
        "model     study  trial  state     best_dev_acc  best_step  params                 reason",
        "densenet  lr     0      COMPLETE  0.8300        20         optimizer.lr=0.001234  -",
        "densenet  lr     1      FAILED    -             -          optimizer.lr=0.5       training diverged at step 2",
    ]


def test_a_best_model_sweep_reads_in_100_columns_in_trial_order_and_wide_whole(tmp_path, capsys):
    """Twelve trials with the best model's eight searched settings, two tied at each accuracy, one interrupted:
    every line fits 100 columns, the params wrap in their column, ties list trials by number (2 before 10)."""
    params = {
        "optimizer": "adamw",
        "train.batch_size": 100,
        "model.width": 24,
        "model.depth": 2,
        "model.dropout": 0.123456,
        "augmentation": "bestmodel",
        "train.ema": 0.995,
        "optimizer.lr": 0.00123,
    }
    for trial in range(12):
        state = "interrupted" if trial == 11 else "complete"
        metrics(tmp_path / f"sweep/{trial}", data_dir=str(tmp_path), study="bestmodel-0123abcd", trial=trial,
                state=state, best_dev_acc=0.9 - 0.01 * (trial % 5) if state == "complete" else None, params=params,
                wall_time_s=123.4, **({"reason": "interrupted (Ctrl-C)"} if state != "complete" else {}))  # fmt: skip
    main([str(tmp_path / "sweep")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [f"trained on {tmp_path}: 12 jobs, model densenet, study bestmodel-0123abcd",
                         "trial  state        best_dev_acc  wall_time_s  params"]  # fmt: skip
    assert max(map(len, lines[1:-1])) <= 100, lines  # the first and last name folders
    assert [line.split()[0] for line in lines if re.match(r"\d+ ", line)] == [
        "0", "5", "10", "1", "6", "2", "7", "3", "8", "4", "9", "11"]  # fmt: skip
    column = lines[1].index("params")
    assert lines[2:5] == [
        "0      COMPLETE     0.9000        123.4        optimizer=adamw batch_size=100 width=24 depth=2",
        f"{'':{column}}dropout=0.1235 augmentation=bestmodel ema=0.995",
        f"{'':{column}}lr=0.00123",
    ]
    assert lines[-6:-2] == [
        "11     INTERRUPTED  -             123.4        optimizer=adamw batch_size=100 width=24 depth=2",
        f"{'':{column}}dropout=0.1235 augmentation=bestmodel ema=0.995",
        f"{'':{column}}lr=0.00123",
        "    interrupted (Ctrl-C)",
    ]
    main([str(tmp_path / "sweep"), "--wide"])
    wide = capsys.readouterr().out.splitlines()
    assert len(wide) == len(lines) - 3 * 12 + 12 - 1 and "model.dropout=0.1235" in wide[2], "a row a line"


def test_the_trials_left_out_as_not_comparable_say_their_steps_against_their_winners():
    winners = {"bestmodel": {"data_dir": "/d", "config": {"train": {"steps": 4000}}}}
    records = [{"model": "bestmodel", "data_dir": "/d", "config": {"train": {"steps": n}}} for n in (200, 1000, 200)]
    kept, left_out = evidence([*records, {"model": "bestmodel", "data_dir": "/other"}], winners)
    assert kept == [] and left_out == ("left out: 1 on other data, 3 trained for another number of steps than their "
                                       "model's winner (bestmodel: 200, 1000 against 4000)")  # fmt: skip
