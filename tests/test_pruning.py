"""The sweep's pruner, from the config group `pruning` (conf/pruning/), and Optuna as a sweep imports it."""

import re
import subprocess
import sys

import optuna
import pytest

from conftest import ROOT
from qd.core.errors import QDError
from qd.experiment.trial import make_pruner


def pruning(model: str, preset: str, *overrides: str) -> dict:
    """The `pruning` section that `+sweep=<preset>` and `overrides` compose to, resolved as a job sees it."""
    from qd.experiment import compat
    from qd.experiment.app import compose_checked
    from qd.experiment.conf import CONF_DIR
    from qd.experiment.identity import job_config

    with compat.hydra_app(str(CONF_DIR), f"main_{model}") as app:
        return job_config(compose_checked(app, model, [f"+sweep={preset}", *overrides], multirun=True))["pruning"]


def test_each_pruner_of_conf_pruning_is_built_with_its_options_and_the_presets_choose_theirs():
    assert isinstance(make_pruner(pruning("densenet", "densenet_lr")), optuna.pruners.NopPruner)
    median = make_pruner(pruning("bestmodel", "bestmodel", "pruning=median"))
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (5, 300)
    best = make_pruner(pruning("bestmodel", "bestmodel"))  # the preset's, by the pruning bench
    assert isinstance(best, optuna.pruners.HyperbandPruner) and (best._min_resource, best._max_resource) == (100, 2000)
    halving = make_pruner(pruning("convnet", "convnet", "pruning=halving", "train.eval_every=50"))
    assert isinstance(halving, optuna.pruners.SuccessiveHalvingPruner)
    assert (halving._min_resource, halving._reduction_factor) == (50, 4), "from the first evaluation"
    hyperband = make_pruner(pruning("densenet", "densenet_lr", "pruning=hyperband", "train.eval_every=15",
                                    "train.steps=150"))  # fmt: skip
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert (hyperband._min_resource, hyperband._max_resource) == (15, 150), "from the first evaluation to the last step"
    assert isinstance(make_pruner(pruning("bestmodel", "bestmodel", "pruning=none")), optuna.pruners.NopPruner)
    assert isinstance(make_pruner(None), optuna.pruners.NopPruner)


def test_any_optuna_pruner_is_built_by_its_target_a_wrapped_one_too():
    given = ("+pruning={_target_: optuna.pruners.PatientPruner, patience: 3, "
             "wrapped_pruner: {_target_: optuna.pruners.MedianPruner, n_warmup_steps: 300}}")  # fmt: skip
    patient = pruning("bestmodel", "bestmodel", "~pruning", given)
    pruner = make_pruner(patient)
    assert isinstance(pruner, optuna.pruners.PatientPruner) and pruner._patience == 3
    assert isinstance(pruner._wrapped_pruner, optuna.pruners.MedianPruner)


@pytest.mark.parametrize(("cfg", "message"), [
    ({"_target_": "optuna.pruners.AshaPruner"},
     "pruning._target_=optuna.pruners.AshaPruner: cannot be found; expected an Optuna pruner, such as "
     "optuna.pruners.MedianPruner (conf/pruning/)"),
    ({"_target_": "optuna.samplers.TPESampler"},
     "pruning._target_=optuna.samplers.TPESampler: not a pruner; expected an Optuna pruner, such as "
     "optuna.pruners.MedianPruner (conf/pruning/)"),
    ({"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": -1},
     "pruning: optuna.pruners.MedianPruner refused its options (ValueError: Number of startup trials cannot be "
     "negative but got -1.)"),
    ({"name": "median"},
     "pruning: {'name': 'median'} names no _target_; expected an Optuna pruner, such as optuna.pruners.MedianPruner "
     "(conf/pruning/), or pruning=<one of halving, hyperband, median, none>"),
    ({"_target_": "broken_pruners.Pruner"},
     "pruning._target_=broken_pruners.Pruner: cannot be imported (ZeroDivisionError: division by zero)"),
])  # fmt: skip
def test_a_pruner_that_cannot_be_built_is_one_line_naming_it(cfg, message, tmp_path, monkeypatch):
    (tmp_path / "broken_pruners.py").write_text("1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(QDError) as refused:
        make_pruner(cfg)
    assert str(refused.value) == message


def test_optuna_is_imported_without_its_plotting_libraries_which_import_as_usual_afterwards():
    """qd.experiment.lean_optuna: in a fresh process, as a sweep's processes import it."""
    code = ("import sys; import qd.experiment.trial; "
            "held = sorted({'matplotlib', 'pandas', 'sklearn'} & set(sys.modules)); "
            "import pandas, matplotlib.pyplot; print(held, pandas.DataFrame({'a': [1]}).size)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout == "[] 1\n", result.stderr


def bench(*args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "qd.bench", "pruning", *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_a_sweep_that_fails_in_the_pruning_bench_is_one_line():
    result = bench("--model", "densenet", "--data", "nope", "--trials", "1", "--retries", "0")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line == (
        "error: the densenet sweep with pruner none failed (exit 2): data=nope: no such option; expected "
        "one of course, real_sample, synthetic"
    )


@pytest.mark.heavy
def test_the_pruning_bench_runs_each_pruner_and_none_from_each_seed_and_judges_them_over_the_seeds():
    result = bench("--model", "densenet", "--data", "synthetic", "--trials", "2", "--steps", "20", "--eval-every", "10",
                   "--startup", "1", "--warmup", "10", "--retries", "0", "--seeds", "2",
                   "--pruners", "median,hyperband")  # fmt: skip
    assert result.returncode == 0, result.stderr
    progress = [re.sub(r"best \d\.\d{4}, \d+ CPU s$", "best B, C CPU s", line) for line in result.stderr.splitlines()]
    assert progress == [
        f"sweep {i + 1} of 6 (seed {s}, {p}): best B, C CPU s"
        for i, (s, p) in enumerate((s, p) for s in "01" for p in ("none", "median", "hyperband"))
    ]
    lines = result.stdout.splitlines()
    assert lines[0] == "2-trial densenet sweeps, 20 steps a trial, evaluated every 10, data=synthetic, seeds 0 to 1"
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if re.match(r"\| \d ", line)]
    assert [(r[0], r[1]) for r in rows] == [(s, p) for s in "01" for p in ("none", "median", "hyperband")]
    for seed, _, complete, pruned, failed, best, cpu, ratio, _ in rows:
        assert int(complete) + int(pruned) + int(failed) == 2 and 0 < float(best) <= 1
        none = next(r for r in rows if r[:2] == [seed, "none"])
        assert float(ratio) == pytest.approx(float(cpu) / float(none[6]), abs=0.02 + 1 / float(none[6]))
    verdicts = lines[-2:]
    for pruner, line in zip(("median", "hyperband"), verdicts, strict=True):
        judged = re.fullmatch(rf"{pruner}: best accuracy ([+-]\d+\.\d\d) points behind on average, CPU ratio "
                              r"(\d+\.\d\d): (meets|misses) the target \(within 0\.5 points in at most 60% of the "
                              r"CPU\)", line)  # fmt: skip
        assert judged, line
        runs = [r for r in rows if r[1] == pruner]
        nones = [r for r in rows if r[1] == "none"]
        gap = sum(float(n[5]) - float(r[5]) for n, r in zip(nones, runs, strict=True)) / 2
        assert float(judged[1]) == pytest.approx(100 * gap, abs=0.011)
        assert (judged[3] == "meets") == (float(judged[1]) <= 0.5 and float(judged[2]) <= 0.6)
