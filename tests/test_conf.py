"""conf/ is the one source of truth: the frozen defaults match it, and every group composes."""

import pytest
from omegaconf import OmegaConf

from qd.conf import CONF_DIR, DEFAULTS_FILE, compose_config, frozen_defaults_source
from qd.defaults import DEFAULTS


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
