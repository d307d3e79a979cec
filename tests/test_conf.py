"""conf/ is the one source of truth: the frozen defaults match it, and every group composes."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, copy_of_the_repository, run_here
from qd.core.defaults import DEFAULTS
from qd.experiment.conf import CONF_DIR, DEFAULTS_FILE, compose_config, frozen_defaults_source


def test_frozen_defaults_match_conf():
    assert DEFAULTS_FILE.read_text() == frozen_defaults_source(), "run `make defaults` after editing conf/"


def group_options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["model", "optimizer", "scheduler", "augmentation", "data", "train"])
def test_every_option_of_every_group_composes(group):
    for option in group_options(group):
        cfg = compose_config("densenet", [f"{group}={option}"])
        assert set(cfg) == set(DEFAULTS["densenet"]), option
        assert cfg[group] == OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{option}.yaml"))


def test_course_flags_and_overrides_give_the_same_config():
    from qd.core.cli import course_config, course_parser

    args = course_parser("densenet").parse_args(
        ["--mode", "train", "--LR", "1e-3", "--bs", "64", "--epochs", "500", "--dataDir", "d", "--logDir", "l"]
    )
    overrides = ["optimizer.lr=1e-3", "train.batch_size=64", "train.steps=500", "data.dir=d", "paths.log_dir=l"]
    assert course_config("densenet", args) == compose_config("densenet", overrides)


@pytest.mark.parametrize("preset, model", [("densenet_lr", "densenet"), ("convnet", "convnet")])
def test_every_sweep_preset_composes_with_its_search_space(preset, model):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=model, overrides=[f"+sweep={preset}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper.study_name is None, "named after the preset and its configuration's hash"
    assert sweeper.storage.startswith(f"sqlite:///outputs/sweeps/{preset}.db")
    assert sweeper._target_ == "hydra_plugins.qd_sweeper.QDSweeper" and sweeper.max_failure_rate == 1.0
    assert "optimizer.lr" in sweeper.params


OPTIMIZER_DEFAULTS = {"adam": {"lr": 0.001, "weight_decay": 0.0}, "adamw": {"lr": 0.001, "weight_decay": 0.01},
                      "sgd": {"lr": 0.01, "weight_decay": 0.0, "momentum": 0.9}}  # fmt: skip


@pytest.mark.parametrize("model", ["densenet", "convnet", "bestmodel"])
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_a_models_tuned_optimizer_settings_apply_to_that_optimizer_only(model, optimizer):
    expected = {**OPTIMIZER_DEFAULTS[optimizer]}
    if (model, optimizer) == ("bestmodel", "sgd"):  # measured for the best model with SGD (conf/tuned/)
        expected.update(lr=0.1, weight_decay=0.0005)
    cfg = compose_config(model, [f"optimizer={optimizer}"])
    assert {k: cfg["optimizer"][k] for k in expected} == expected
    assert cfg["optimizer"]["_target_"].lower().endswith(optimizer)


PRESETS = [("densenet_lr", "densenet"), ("convnet", "convnet"), ("bestmodel", "bestmodel")]


@pytest.mark.parametrize("preset, model", PRESETS)
def test_every_presets_search_space_contains_its_models_defaults(preset, model):
    """A search that cannot reach the model's own default cannot tell whether it beat it."""
    from hydra import compose, initialize_config_dir

    from qd.experiment.search import SearchSpace, finite_values

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=model, overrides=[f"+sweep={preset}"], return_hydra_config=True)
    default, choices = compose_config(model), dict(cfg.hydra.runtime.choices)

    def value(key):  # a config group's choice (optimizer, augmentation) or a setting's default
        if key in choices:
            return choices[key]
        section, name = key.split(".")
        return default[section][name]

    def contains(distribution, value) -> bool:
        finite = finite_values(distribution)
        return value in finite if finite is not None else distribution.low <= value <= distribution.high

    space = SearchSpace.read(cfg.hydra.sweeper, [], cfg)
    assert space.searched
    for key, distribution in space.searched.items():
        assert contains(distribution, value(key)), f"{preset}: {key} = {value(key)} is outside {distribution}"
    for key, branches in space.conditional.items():
        branch = next(b for b in branches if value(b.key) in b.values)
        assert contains(branch.distribution, value(key)), f"{preset}: {key} = {value(key)} is outside {branch}"


def test_an_unknown_key_in_a_yaml_file_is_refused_naming_the_file_by_runs_and_by_make_defaults(course_dir, tmp_path):
    repo = copy_of_the_repository(tmp_path)
    (repo / "conf/train/default.yaml").write_text((CONF_DIR / "train/default.yaml").read_text() + "stpes: 50\n")
    env = {**os.environ, "PYTHONPATH": str(repo)}
    expected = "error: conf/train/default.yaml: train.stpes: no such setting; did you mean train.steps?\n"
    for argv in (["main_bestmodel.py", f"data.dir={course_dir}", "train.steps=5"], ["-m", "qd.experiment.conf"]):
        refused = subprocess.run([sys.executable, *argv], cwd=repo, env=env, capture_output=True, text=True)
        assert (refused.returncode, refused.stderr) == (2, expected)
    assert (repo / "qd/core/defaults.py").read_bytes() == DEFAULTS_FILE.read_bytes()
    assert not (repo / "outputs").exists()


def test_the_course_command_line_in_the_repository_sees_a_conf_edit(course_dir, tmp_path):
    """A copy of the repository whose best model is made 8 wide in conf/: the course command line refuses in one
    line naming the file and `make defaults` (its command) until the defaults are made again, then trains 8 wide."""
    repo = copy_of_the_repository(tmp_path)
    edited = repo / "conf/model/bestmodel.yaml"
    edited.write_text(edited.read_text().replace("width: 16 ", "width: 8  "))
    env = {**os.environ, "PYTHONPATH": str(repo)}
    train = [sys.executable, "main_bestmodel.py", "--mode", "train", "--LR", "0.01", "--bs", "50", "--epochs", "5",
             "--dataDir", str(course_dir)]  # fmt: skip
    refused = subprocess.run(train, cwd=repo, env=env, capture_output=True, text=True)
    assert (refused.returncode, refused.stderr) == (2, (
        "error: conf/model/bestmodel.yaml: changed since qd/core/defaults.py, which the course command line reads, "
        "was made from conf/; run `make defaults`\n"))  # fmt: skip
    assert not (repo / "model_files").exists()
    made = subprocess.run([sys.executable, "-m", "qd.experiment.conf"], cwd=repo, env=env, capture_output=True)
    assert made.returncode == 0, made.stderr
    trained = subprocess.run(train, cwd=repo, env=env, capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr
    (record,) = (repo / "model_files").glob("*_bestmodel.json")
    assert json.loads(record.read_text())["config"]["model"]["width"] == 8


def test_help_lists_the_models_own_presets_from_conf(tmp_path):
    repo = copy_of_the_repository(tmp_path)
    shutil.copyfile(CONF_DIR / "sweep/bestmodel.yaml", repo / "conf/sweep/bestmodel_wide.yaml")
    env = {**os.environ, "PYTHONPATH": str(repo)}
    shown = subprocess.run([sys.executable, "main_bestmodel.py", "--help"], cwd=repo, env=env, capture_output=True,
                           text=True)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "and sweeps: +sweep=bestmodel|bestmodel_wide [+launcher=parallel|slurm|submitit_local]." in shown.stdout


def test_qd_quick_shows_in_cfg_job_as_it_would_run(tmp_path):
    def shown(*argv: str, quick: str | None) -> str:
        result = run_here([str(ROOT / "main_densenet.py"), *argv], tmp_path, env={"QD_QUICK": quick})
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert shown("--cfg", "job", "-p", "train", quick=None).startswith("# @package train\nsteps: 2000\n")
    capped = "# @package train\nsteps: {}\nbatch_size: 100\neval_every: 10\n"
    assert shown("--cfg", "job", "-p", "train", quick="1").startswith(capped.format(20))
    assert shown("--cfg", "job", "-p", "train", "train.steps=5", quick="1").startswith(capped.format(5))
    assert shown("+sweep=densenet_lr", "--cfg", "hydra", "-p", "hydra.sweeper.n_trials", quick="1") == "2\n"
