"""Compose the YAML configs in conf/ with Hydra, and freeze their defaults into qd/defaults.py.

The YAML files are the one source of truth. qd/core/defaults.py is generated from them (`python -m
qd.experiment.conf`, or `make defaults`) so that the course command line works where only torch and
numpy are installed; a test fails when the two differ.
"""

from __future__ import annotations

import pprint

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from qd import ROOT
from qd.core.fsutil import atomic_write_text

CONF_DIR = ROOT / "conf"
DEFAULTS_FILE = ROOT / "qd/core/defaults.py"


def compose_config(model: str, overrides: list[str] | None = None) -> dict:
    """The composed job config of main_<model>.py with `overrides`, as a plain dict."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=model, overrides=overrides or [])
    return OmegaConf.to_container(cfg, resolve=True)


def frozen_defaults_source() -> str:
    from qd.core.models import MODELS  # here, not at the top: a sweep's main process need not import torch

    defaults = {model: compose_config(model) for model in MODELS}
    return (
        '"""Generated from conf/ by `python -m qd.experiment.conf`: do not edit (a test checks it matches)."""\n\n'
        f"DEFAULTS = {pprint.pformat(defaults, sort_dicts=False, width=100)}\n"
    )


if __name__ == "__main__":
    atomic_write_text(DEFAULTS_FILE, frozen_defaults_source())
    print(f"wrote {DEFAULTS_FILE}")
