"""qd's sweeper on a Hydra app that is not qd's (tests/apps/objectives.py): every setting of the Optuna sweeper with
its meaning, Hydra's callbacks, one study shared by several processes, and one line for what it cannot honour."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, ours, run_cli, run_here, running_in_group, start
from qd.experiment.outcomes import INTERRUPTED, INTERRUPTED_SWEEP, OUTCOME, REASON

APP = ROOT / "tests/apps/objectives.py"
RECORDER = "+hydra.callbacks.recorder._target_=objectives.Recorder"


def sweep(cwd: Path, config: str, *overrides: str) -> subprocess.CompletedProcess:
    """A sweep of the app with `config` (tests/apps/conf), in `cwd`, its folder `multirun`."""
    return run_here([str(APP), "--config-name", config, "-m", *overrides], cwd)


def study(cwd: Path, name: str, file: str = "study.db"):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd}/{file}")


def jobs(folder: Path) -> list[dict]:
    """What each job of a sweep folder saw: its Hydra job number and values."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/value.json"))]


def results(folder: Path) -> dict:
    return yaml.safe_load((folder / "optimization_results.yaml").read_text())


@pytest.mark.slow
def test_a_function_to_minimize_reports_the_studys_minimum_near_the_optimum(tmp_path):
    result = sweep(tmp_path, "sphere", "hydra.sweeper.storage=sqlite:///study.db", "hydra.sweeper.n_trials=25")
    assert result.returncode == 0, result.stderr
    held = study(tmp_path, "sphere")  # the name the config gives, as given
    best = held.best_trial
    assert held.direction.name == "MINIMIZE" and len(held.trials) == 25
    assert best.value == min(t.value for t in held.trials)
    assert results(tmp_path / "multirun") == {"name": "optuna", "best_params": best.params, "best_value": best.value}
    assert ours(result.stdout)[-1].endswith(f"the study's best: trial {best.number}, value {best.value:.4f}")
    assert abs(best.params["x"] - 1) < 1 and abs(best.params["y"] + 2) < 1, best.params  # the optimum is (1, -2)
    for job in jobs(tmp_path / "multirun"):  # the trial's number reaches the job as Hydra's own job number
        trial = held.trials[job["num"]]
        assert (job["x"], job["y"], job["value"]) == (trial.params["x"], trial.params["y"], trial.value)
    listed = run_here(["-m", "qd", "results", "sqlite:///study.db"], tmp_path)
    assert listed.stdout.splitlines()[0] == "study sphere: 25 trials, to minimize its value"
    assert listed.stdout.splitlines()[-1] == f"best: study sphere trial {best.number}, value {best.value:.4f}"


@pytest.mark.slow
def test_a_study_in_memory_runs_and_leaves_no_database(tmp_path):
    result = sweep(tmp_path, "sphere", "hydra.sweeper.n_trials=5", RECORDER)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "multirun"]
    values = [job["value"] for job in jobs(tmp_path / "multirun")]
    assert len(values) == 5 and results(tmp_path / "multirun")["best_value"] == min(values)


@pytest.mark.slow
def test_hydras_callbacks_hear_every_event_of_a_sweep(tmp_path):
    result = sweep(tmp_path, "sphere", "hydra.sweeper.n_trials=3", "fail_above=100", "x=101", "~hydra.sweeper.params.x",
                   "hydra.sweeper.max_failure_rate=1.0", RECORDER)  # fmt: skip
    assert result.returncode == 1, result.stderr  # every trial failed: x is fixed above fail_above
    assert ours(result.stderr)[-1].startswith("sweep failed: all 3 trials failed (ValueError: x=101 is above 100)")
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    jobs_seen = [(e["event"], e.get("num"), e.get("status")) for e in events[1:]]
    assert events[0]["event"] == "on_multirun_start"
    assert jobs_seen == [(f"on_job_{when}", n, "FAILED" if when == "end" else None) for n in range(3)
                         for when in ("start", "end")]  # fmt: skip

    result = sweep(tmp_path, "sphere", "hydra.sweeper.n_trials=2", "hydra.sweep.dir=again", RECORDER)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line)["event"] for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events[len(jobs_seen) + 1 :] == ["on_multirun_start", *["on_job_start", "on_job_end"] * 2,
                                            "on_multirun_end"]  # fmt: skip


@pytest.mark.slow
def test_the_grid_runs_each_point_once_and_caps_n_trials(tmp_path):
    result = sweep(tmp_path, "grid")
    assert result.returncode == 0, result.stderr
    assert ours(result.stdout)[0] == "new study grid: 9 trials to run"
    points = sorted((job["x"], job["y"]) for job in jobs(tmp_path / "multirun"))
    assert points == [(x, y) for x in (-1, 0, 1) for y in (-3, -2, -1)], "choice, and range(-3, 0) as Hydra means it"
    assert results(tmp_path / "multirun")["best_params"] == {"x": 1, "y": -2}


@pytest.mark.slow
def test_two_objectives_give_the_pareto_front(tmp_path):
    result = sweep(tmp_path, "pareto", "hydra.sweeper.storage=sqlite:///study.db", "hydra.sweeper.n_trials=12")
    assert result.returncode == 0, result.stderr
    front = study(tmp_path, "pareto").best_trials
    assert results(tmp_path / "multirun")["solutions"] == [{"params": t.params, "values": t.values} for t in front]
    numbers = ", ".join(str(t.number) for t in sorted(front, key=lambda t: t.number))
    assert ours(result.stdout)[-1].endswith(f"the study's Pareto front: {len(front)} trials ({numbers})")


@pytest.mark.slow
def test_the_random_and_cma_es_samplers_run_as_configured(tmp_path):
    """The random sampler, seeded, draws the same study twice; CMA-ES keeps its state in the study's trials."""
    drawn = []
    for run in ("a", "b"):
        result = sweep(tmp_path, "sphere", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=7",
                       "hydra.sweeper.n_trials=4", f"hydra.sweeper.storage=sqlite:///{run}.db")  # fmt: skip
        assert result.returncode == 0, result.stderr
        drawn.append([t.params for t in study(tmp_path, "sphere", f"{run}.db").trials])
    assert drawn[0] == drawn[1] and len({p["x"] for p in drawn[0]}) == 4
    result = sweep(tmp_path, "sphere", "hydra/sweeper/sampler=cmaes", "hydra.sweeper.n_trials=8",
                   "hydra.sweeper.storage=sqlite:///cma.db")  # fmt: skip
    assert result.returncode == 0, result.stderr
    trials = study(tmp_path, "sphere", "cma.db").trials
    assert len(trials) == 8 and any(k.startswith("cma:") for t in trials for k in t.system_attrs), "CMA-ES drew them"


@pytest.mark.slow
def test_a_custom_search_space_draws_its_keys_where_it_says(tmp_path):
    result = sweep(tmp_path, "custom", "hydra.sweeper.storage=sqlite:///study.db")
    assert result.returncode == 0, result.stderr
    trials = study(tmp_path, "custom").trials
    assert {("z" in t.params) for t in trials} == {True, False}
    assert all(("z" in t.params) == (t.params["x"] > 0) for t in trials)
    for job in jobs(tmp_path / "multirun"):
        params = trials[job["num"]].params
        assert job["value"] == (params["x"] - 1) ** 2 + (params["y"] + 2) ** 2 + params.get("z", 0.0) ** 2


@pytest.mark.slow
def test_max_failure_rate_stops_the_sweep_after_a_batch_that_failed_too_often(tmp_path):
    """The Optuna sweeper's default max_failure_rate (0) with one trial a batch: the first failure ends the sweep."""
    result = sweep(tmp_path, "sphere", "hydra.sweeper.storage=sqlite:///study.db", "fail_above=2")
    assert result.returncode == 1, result.stderr
    assert ours(result.stderr) == ["sweep stopped: 1 of 1 trial failed, more than hydra.sweeper.max_failure_rate=0"]
    trials = study(tmp_path, "sphere").trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * (len(trials) - 1) + ["FAIL"] and len(trials) < 20
    assert trials[-1].user_attrs[REASON] == f"ValueError: x={trials[-1].params['x']} is above 2"


@pytest.mark.slow
def test_the_deprecated_search_space_is_searched_with_the_sweepers_warning(tmp_path):
    result = sweep(tmp_path, "deprecated")
    assert result.returncode == 0, result.stderr
    assert "UserWarning: `hydra.sweeper.search_space` is deprecated and will be removed" in result.stderr
    seen = jobs(tmp_path / "multirun")
    assert len({job["x"] for job in seen}) == 4 and {job["y"] for job in seen} <= {-3, -2, -1, 0}
    assert set(results(tmp_path / "multirun")["best_params"]) == {"x", "y"}


@pytest.mark.slow
@pytest.mark.parametrize("config, n_trials", [("sphere", 12), ("grid", 9), ("pareto", 12)])
def test_three_sweep_processes_share_one_sqlite_study(tmp_path, config, n_trials):
    overrides = ["hydra.sweeper.storage=sqlite:///study.db", f"hydra.sweeper.n_trials={n_trials}"]
    processes = [start([sys.executable, str(APP), "--config-name", config, "-m", *overrides, f"hydra.sweep.dir=m{i}"],
                       tmp_path) for i in range(3)]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err for _, err in outputs]
    trials = study(tmp_path, config).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * n_trials
    assert len({tuple(sorted(t.params.items())) for t in trials}) == n_trials, "no set of values drawn twice"
    seen = [job for i in range(3) for job in jobs(tmp_path / f"m{i}")]
    assert sorted(job["num"] for job in seen) == list(range(n_trials)), "each trial run once, by one process"


REFUSED = [
    (["hydra.sweeper.n_jobs=0"], "error: hydra.sweeper.n_jobs=0: expected the number of trials in flight, 1 or more"),
    (["hydra.sweeper.direction=sideways"],
     "error: hydra.sweeper.direction=sideways: expected minimize, maximize, or a list of them (one a value the task "
     "returns)"),
    (["hydra.sweeper.max_failure_rate=1.5"],
     "error: hydra.sweeper.max_failure_rate=1.5: expected a share of failed trials from 0 to 1"),
    (["--config-name", "grid", "hydra.sweeper.params.x='interval(-1, 1)'"],
     "error: hydra.sweeper.sampler=grid: the grid needs each searched key as a choice or a range; searched: "
     "x=interval(-1, 1), y=range(-3, 0)"),
    (["hydra/sweeper/sampler=cmaes", "hydra.sweeper.direction=[minimize,minimize]"],
     "error: hydra.sweeper.sampler: CmaEsSampler optimizes one objective, and hydra.sweeper.direction names 2; use "
     "nsgaii, motpe or tpe"),
    (["hydra.sweeper.params.x='interval(5, 1)'"],
     "error: x=interval(5, 1): expected a low and a high number, low below high"),
    (["hydra.sweeper.custom_search_space=objectives.nowhere"],
     "error: hydra.sweeper.custom_search_space=objectives.nowhere: cannot be found; expected the dotted path of a "
     "function f(config, trial) that Python can import"),
    (["hydra.sweeper.custom_search_space=objectives.any_z", "z=0.5"],
     "error: hydra.sweeper.custom_search_space: it suggested z, which the overrides fix; search a key, or fix it, not "
     "both"),
    (["hydra.sweeper.storage=nowhere"],
     "error: hydra.sweeper.storage=nowhere: not a database URL (Could not parse SQLAlchemy URL from string "
     "'nowhere')"),
]  # fmt: skip


@pytest.mark.parametrize("overrides, expected", REFUSED, ids=lambda v: str(v)[:40])
def test_a_setting_that_cannot_be_honoured_is_one_line_before_anything_is_created(tmp_path, overrides, expected):
    result = run_here([str(APP), "-m", *overrides], tmp_path)
    assert (result.returncode, ours(result.stderr)) == (2, [expected]), result.stderr
    assert list(tmp_path.iterdir()) == [], "no folder, no database"


@pytest.mark.slow
def test_qds_own_runs_and_sweeps_go_through_hydras_run_and_multirun(course_dir, tmp_path):
    """Hydra's callbacks hear qd's single runs, failed ones too (which still end in one line), and its sweeps; a
    sweep's folder holds Hydra's multirun.yaml."""
    recorder = "+hydra.callbacks.recorder._target_=tests.apps.objectives.Recorder"
    common = [f"data.dir={course_dir}", "train.steps=20", "train.eval_every=10", recorder]
    main = str(ROOT / "main_densenet.py")

    def events() -> list[tuple]:
        lines = (tmp_path / "events.jsonl").read_text().splitlines()
        (tmp_path / "events.jsonl").unlink()
        return [(e["event"], e.get("status")) for e in map(json.loads, lines)]

    run = run_here([main, *common], tmp_path)
    assert run.returncode == 0, run.stderr
    assert events() == [("on_run_start", None), ("on_job_start", None), ("on_job_end", "COMPLETED"),
                        ("on_run_end", "COMPLETED")]  # fmt: skip

    diverging = run_here([main, *common, "optimizer=sgd", "optimizer.lr=10000"], tmp_path)
    assert diverging.returncode == 2 and ours(diverging.stderr) == [diverging.stderr.strip()], diverging.stderr
    assert diverging.stderr.startswith("error: training diverged at step ")
    assert events() == [("on_run_start", None), ("on_job_start", None), ("on_job_end", "FAILED"),
                        ("on_run_end", "FAILED")]  # fmt: skip

    swept = run_here([main, *common, "+sweep=densenet_lr", "hydra.sweeper.n_trials=2", "hydra.sweep.dir=swept",
                     "optimizer.lr=tag(log, interval(1e-4, 1e-2))"], tmp_path)  # fmt: skip
    assert swept.returncode == 0, swept.stderr
    assert events() == [("on_multirun_start", None), *[("on_job_start", None), ("on_job_end", "COMPLETED")] * 2,
                        ("on_multirun_end", None)]  # fmt: skip
    assert yaml.safe_load((tmp_path / "swept/multirun.yaml").read_text())["hydra"]["sweeper"]["n_trials"] == 2


@pytest.mark.slow
def test_a_ctrl_c_that_the_jobs_code_turns_into_another_error_still_interrupts_its_trial(tmp_path):
    sweep = start([sys.executable, str(APP), "--config-name", "sphere", "-m", "hydra.sweeper.storage=sqlite:///study.db",
                   "hydra.sweeper.n_trials=3", "+wait_for_ctrl_c=true"], tmp_path)  # fmt: skip
    for line in sweep.stdout:  # Hydra's lines, then the job's
        if line == "waiting\n":
            break
    sweep.send_signal(signal.SIGINT)
    _, err = sweep.communicate(timeout=30)
    assert (sweep.returncode, ours(err)) == (130, [INTERRUPTED_SWEEP]), err
    (trial,) = study(tmp_path, "sphere").trials
    assert (trial.user_attrs[OUTCOME], trial.user_attrs[REASON]) == (INTERRUPTED, "interrupted (Ctrl-C)")


@pytest.mark.slow
def test_a_ctrl_c_while_the_sampler_draws_marks_the_new_trial_interrupted(tmp_path):
    result = run_here([str(APP), "-m", "hydra.sweeper.storage=sqlite:///study.db", "hydra/sweeper/sampler=random",
                       "hydra.sweeper.sampler._target_=objectives.interrupted_sampler"], tmp_path)  # fmt: skip
    assert (result.returncode, ours(result.stderr)) == (130, [INTERRUPTED_SWEEP]), result.stderr
    (trial,) = study(tmp_path, "sphere").trials  # created, then cut before its values were drawn
    assert (trial.state.name, trial.user_attrs[OUTCOME]) == ("FAIL", INTERRUPTED)


@pytest.mark.slow
def test_interpolations_only_a_job_resolves_leave_a_named_study_to_resume(tmp_path):
    # A job's folder, the time and an unset variable: the sweeping process cannot (or must not) resolve them
    given = ["hydra.sweeper.storage=sqlite:///study.db", "+folder=${hydra:runtime.output_dir}",
             "+stamp=${now:%H%M%S%f}", "+unset=${oc.env:QD_TEST_NEVER_SET}"]  # fmt: skip
    first = run_here([str(APP), "-m", *given, "hydra.sweeper.n_trials=2"], tmp_path)
    assert first.returncode == 0, first.stderr
    again = run_here([str(APP), "-m", *given, "hydra.sweeper.n_trials=3"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert ours(again.stdout)[0] == "resuming study sphere: 2 finished trials kept, 1 to run"
    assert [t.state.name for t in study(tmp_path, "sphere").trials] == ["COMPLETE"] * 3


@pytest.mark.slow
def test_a_study_name_of_hydras_own_characters_reaches_each_job_as_written(tmp_path):
    name = "run(1), x=y 'b'"
    result = run_here([str(APP), "-m", "hydra.sweeper.storage=sqlite:///study.db", "hydra.sweeper.n_trials=2",
                       f"hydra.sweeper.study_name='{name}'".replace("'b'", "\\'b\\'")], tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert ours(result.stdout)[0] == f"new study {name}: 2 trials to run"
    assert [t.state.name for t in study(tmp_path, name).trials] == ["COMPLETE"] * 2


@pytest.mark.slow
def test_a_task_may_return_infinity_or_its_values_as_an_array(tmp_path):
    infinite = run_here([str(APP), "-m", "hydra.sweeper.n_trials=2", "+returned=infinity",
                         "hydra.sweeper.storage=sqlite:///study.db"], tmp_path)  # fmt: skip
    assert infinite.returncode == 0, infinite.stderr
    assert [(t.state.name, t.value) for t in study(tmp_path, "sphere").trials] == [("COMPLETE", math.inf)] * 2
    array = run_here([str(APP), "--config-name", "pareto", "-m", "hydra.sweeper.n_trials=2", "+returned=array",
                      "hydra.sweeper.storage=sqlite:///study.db"], tmp_path)  # fmt: skip
    assert array.returncode == 0, array.stderr
    trials = study(tmp_path, "pareto").trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 2
    assert all(t.values[1] == t.params["x"] ** 2 + t.params["y"] ** 2 for t in trials)


@pytest.mark.slow
def test_a_named_study_kept_to_its_direction_in_one_line(tmp_path):
    stored = ["hydra.sweeper.storage=sqlite:///study.db", "hydra.sweeper.n_trials=1"]
    assert run_here([str(APP), "-m", *stored], tmp_path).returncode == 0
    result = run_here([str(APP), "-m", *stored, "hydra.sweeper.direction=maximize"], tmp_path)
    assert (result.returncode, ours(result.stderr)) == (2, [
        "error: hydra.sweeper.direction=maximize: study sphere was created to minimize; keep its direction, or name "
        "another study (hydra.sweeper.study_name=...)"]), result.stderr  # fmt: skip


@pytest.mark.slow
def test_multivariate_tpe_draws_the_keys_together(tmp_path):
    # Optuna's warning where TPE draws a key alone goes to the stderr its logger was first given: a process's own
    result = run_cli([str(APP), "-m", "hydra.sweeper.n_trials=6", "hydra.sweeper.sampler.multivariate=true",
                      "hydra.sweeper.sampler.n_startup_trials=2"], tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "sampled independently" not in result.stderr, result.stderr


@pytest.mark.slow
def test_a_ctrl_c_to_the_group_as_joblib_workers_start_is_one_line_and_leaves_no_process(tmp_path):
    joblib = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2", "+wait_for_ctrl_c=true"]
    argv = [sys.executable, str(APP), "-m", "hydra.sweeper.storage=sqlite:///study.db", "hydra.sweeper.n_trials=2"]
    sweep = start([*argv, *joblib], tmp_path, group=True)
    for line in sweep.stdout:  # the launcher's own line (Hydra logs to stdout), as its workers start
        if "is launching 1 jobs" in line:
            break
    os.killpg(sweep.pid, signal.SIGINT)  # a terminal's Ctrl-C: to every process of the group
    _, err = sweep.communicate(timeout=30)  # its output's pipes closed: no worker lives on holding them
    assert (sweep.returncode, ours(err)) == (130, [INTERRUPTED_SWEEP]), err
    deadline = time.monotonic() + 5  # loky's resource tracker ends once it has cleaned up after the sweep
    while running_in_group(sweep.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running_in_group(sweep.pid) == set(), "the workers ended with their sweep"
    assert {t.state.name for t in study(tmp_path, "sphere").trials} == {"FAIL"}
