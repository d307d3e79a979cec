"""conf/ is the one source of truth: the frozen defaults match it, and every group composes."""

import pytest
from omegaconf import OmegaConf

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
    assert sweeper.study_name == preset and sweeper.storage.startswith(f"sqlite:///outputs/sweeps/{preset}.db")
    assert sweeper.custom_search_space == "qd.experiment.sweep.prepare_trial" and sweeper.max_failure_rate == 1.0
    assert "optimizer.lr" in sweeper.params
