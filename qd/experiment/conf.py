"""Compose the YAML configs in conf/ with Hydra, and freeze their defaults into qd/core/defaults.py.

The YAML files are the one source of truth. qd/core/defaults.py is generated from them (`python -m
qd.experiment.conf`, or `make defaults`) so that the course command line works where only torch and
numpy are installed. It records a digest of each YAML file it was made from: the course command line in the
repository refuses to run when conf/ has changed since (code.zip has no conf/ and carries the defaults it was
built with).
"""

from __future__ import annotations

import difflib
import hashlib
import pprint
import re

from qd import ROOT
from qd.core.course import SUBMITTED
from qd.core.errors import QDError, exit_on_user_error
from qd.core.fsutil import atomic_write_text

CONF_DIR = ROOT / "conf"
DEFAULTS_FILE = ROOT / "qd/core/defaults.py"
NOT_DEFAULTS = ("sweep", "launcher", "pruning", "sweep_common.yaml")  # what the course command line never reads


def compose_config(model: str, overrides: list[str] | None = None) -> dict:
    """The composed job config of main_<model>.py with `overrides`, as a plain dict."""
    from hydra import compose, initialize_config_dir  # here: the course command line checks digests without Hydra
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=model, overrides=overrides or [])
    return OmegaConf.to_container(cfg, resolve=True)


AUGMENTATIONS = {
    "shift": {"p", "pixels"},
    "rotate": {"p", "degrees"},
    "scale": {"p", "amount"},
    "hflip": {"p"},
    "blur": {"p", "sigma"},
    "elastic": {"p", "pixels", "sigma"},
    "noise": {"p", "std"},
}  # qd.core.augment's operations and their settings
# The settings of the sections qd's code reads key by key: any other key there is a slip (`stpes: 50`), refused
# wherever it came from. The model's, optimizer's and scheduler's settings are checked by what they build.
SECTIONS = {
    "train": {"steps", "batch_size", "eval_every", "seed", "device", "threads", "memory_format", "label_smoothing",
              "ema", "half_storage", "max_loss", "not_learning_after"},
    "data": {"dir", "prepare"},
    "paths": {"log_dir", "model_dir"},
    "augmentation": set(AUGMENTATIONS),
}  # fmt: skip


def unknown_settings(job: dict) -> list[str]:
    """The keys (`train.stpes`) of a job's config that qd does not read."""
    unknown = [f"{s}.{k}" for s, known in SECTIONS.items() for k in job.get(s, {}) if k not in known]
    for op, keys in AUGMENTATIONS.items():
        unknown += [f"augmentation.{op}.{k}" for k in job.get("augmentation", {}).get(op) or {} if k not in keys]
    return unknown


def group_options(group: str) -> list[str]:
    """The options of config group `group` (conf/<group>/<option>.yaml); none where it is no group."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def override_of(key: str, overrides: list[str]) -> str | None:
    """The override that sets `key` (`+train.stpes=50` for train.stpes), None where none does."""
    return next((o for o in overrides if o.lstrip("+~").partition("=")[0] == key), None)


def origin(key: str, overrides: list[str]) -> str | None:
    """Where a setting came from: its override, or the YAML file of conf/ that sets it (None: not found)."""
    if given := override_of(key, overrides):
        return given
    section, name = key.split(".")[0], key.rpartition(".")[2]
    for path in sorted((CONF_DIR / section).glob("*.yaml")) + sorted(CONF_DIR.glob("*.yaml")):
        if re.search(rf"^\s*{re.escape(name)}\s*:", path.read_text(), re.M):
            return str(path.relative_to(CONF_DIR.parent))
    return None


def check_known_settings(job: dict, overrides: list[str]) -> None:
    """QDError naming the first setting qd does not read, where it came from, and the closest it reads; or an
    augmentation given a value where its settings belong."""
    for op, keys in AUGMENTATIONS.items():
        value = job.get("augmentation", {}).get(op)
        if value is not None and not isinstance(value, dict):
            where = origin(f"augmentation.{op}", overrides) or f"augmentation.{op}"
            raise QDError(f"{where}: expected the settings of {op} ({', '.join(sorted(keys))}), such as "
                          f"augmentation.{op}.p=0.5")  # fmt: skip
    if unknown := unknown_settings(job):
        key = unknown[0]
        section = key.rpartition(".")[0]
        known = SECTIONS[section] if section in SECTIONS else AUGMENTATIONS[section.partition(".")[2]]
        close = difflib.get_close_matches(key.rpartition(".")[2], known, n=1)
        hint = f"did you mean {section}.{close[0]}?" if close else f"{section} has {', '.join(sorted(known))}"
        where = origin(key, overrides)
        raise QDError(f"{f'{where}: ' if where else ''}{key}: no such setting; {hint}")


def conf_digests() -> dict[str, str]:
    """Each YAML file the defaults are composed from (relative to conf/), with a digest of its text."""
    files = (p for p in sorted(CONF_DIR.rglob("*.yaml")) if p.relative_to(CONF_DIR).parts[0] not in NOT_DEFAULTS)
    return {str(p.relative_to(CONF_DIR)): hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in files}


def check_frozen_defaults() -> None:
    """QDError naming `make defaults` and the files that changed where qd/core/defaults.py is behind conf/."""
    from qd.core.defaults import CONF_DIGESTS

    now = conf_digests()
    changed = sorted(name for name in now.keys() | CONF_DIGESTS.keys() if now.get(name) != CONF_DIGESTS.get(name))
    if changed:
        raise QDError(f"conf/{', conf/'.join(changed)}: changed since qd/core/defaults.py, which the course command "
                      "line reads, was made from conf/; run `make defaults`")  # fmt: skip


def frozen_defaults_source() -> str:
    defaults = {model: compose_config(model) for model in SUBMITTED}  # each main_<model>.py's
    for job in defaults.values():
        check_known_settings(job, [])
    return (
        '"""Generated from conf/ by `python -m qd.experiment.conf`: do not edit (a test checks it matches)."""\n\n'
        f"DEFAULTS = {pprint.pformat(defaults, sort_dicts=False, width=100)}\n\n"
        "# conf/'s files it was made from: the course command line in the repository checks them\n"
        f"CONF_DIGESTS = {pprint.pformat(conf_digests(), width=100)}\n"
    )


if __name__ == "__main__":
    with exit_on_user_error():
        atomic_write_text(DEFAULTS_FILE, frozen_defaults_source())
    print(f"wrote {DEFAULTS_FILE}")
