"""What makes runs comparable: a sweep's fixed configuration (its study's identity), and settings compared key by key.

A study records the configuration its trials share, everything the sweep does not search, with a fingerprint
of the data's files: trials of another fixed configuration never join it, and its default name carries a hash
of it. Promotion compares a run's settings with the course defaults the same way (`differences`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from qd.core.data import FILES

# The keys that are not settings: where a job writes, how a sweep runs it (its pruner, which trial it is; `resume`
# in the records of earlier sweeps) and the hardware (its device, threads and memory layout). None of them changes
# what a run measures.
NOT_SETTINGS = ("paths", "pruning", "trial", "resume", "data.prepare", "train.device", "train.threads",
                "train.memory_format")  # fmt: skip
# Resolvers whose value only a job knows (its folder, its name) or that differ from run to run of one sweep.
PER_JOB_RESOLVERS = ("hydra", "now")


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and scalars are values."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def without(flat: dict, prefixes: tuple[str, ...] | set[str]) -> dict:
    """`flat` without the keys that are, or lie under, one of `prefixes`."""
    return {k: v for k, v in flat.items() if not any(k == p or k.startswith(f"{p}.") for p in prefixes)}


def differences(old: dict, new: dict, most: int = 6) -> str:
    """`key: old -> new; ...` for the keys whose values differ (a missing key shows as `unset`)."""
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, "unset") != new.get(k, "unset"))
    text = "; ".join(f"{k}: {old.get(k, 'unset')} -> {new.get(k, 'unset')}" for k in keys[:most])
    return text + (f"; and {len(keys) - most} more" if len(keys) > most else "")


def data_fingerprint(data_dir: Path) -> str:
    """A short sha256 of the training and dev files: the same folder name with other drawings is other data."""
    digest = hashlib.sha256()
    for name in (*FILES["train"], *FILES["dev"]):
        digest.update(name.encode())
        with open(data_dir / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def fixed_configuration(job: dict, params: dict[str, str], conditional: set[str]) -> dict:
    """The job config's settings that every trial of the sweep shares, the search space
    (`hydra.sweeper.params.<key>`; the conditional ranges are in the config's `search`) and, where `data.dir` holds
    qd's data files, their fingerprint; as JSON stores them. A searched config group (optimizer, augmentation) takes
    every setting under it out of the fixed part."""
    fixed = without(flatten(job), NOT_SETTINGS + tuple(params) + tuple(conditional))
    data_dir = job.get("data", {}).get("dir") if isinstance(job.get("data"), dict) else None
    files = (*FILES["train"], *FILES["dev"])
    if isinstance(data_dir, str) and all((Path(data_dir) / name).is_file() for name in files):
        fixed["data.fingerprint"] = data_fingerprint(Path(data_dir))
    fixed.update({f"hydra.sweeper.params.{k}": v for k, v in params.items()})
    return json.loads(json.dumps(fixed, sort_keys=True, default=str))


def short_hash(fixed: dict) -> str:
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:8]


def job_config(cfg: DictConfig) -> dict:
    """What a job of `cfg` runs with: the config without its `hydra` node, as a plain dict, its interpolations resolved
    but those that only a job can resolve, or that differ from run to run (`${hydra:...}`, `${now:...}`) and those
    that cannot be resolved here (an unset `${oc.env:...}`), which stay as written."""
    return _resolved(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))


def _resolved(node: DictConfig | ListConfig) -> dict | list:
    written = OmegaConf.to_container(node, resolve=False)
    if isinstance(written, dict):
        return {key: _value(node, key, text) for key, text in written.items()}
    return [_value(node, index, text) for index, text in enumerate(written)]


def _value(parent: DictConfig | ListConfig, key: str | int, written: object) -> object:
    if OmegaConf.is_missing(parent, key):
        return written
    if OmegaConf.is_interpolation(parent, key):
        if any(f"${{{name}:" in written for name in PER_JOB_RESOLVERS):
            return written
        try:
            value = parent[key]
        except Exception:  # OmegaConf raises several kinds; the job meets it, not the sweep
            return written
    else:
        value = parent[key]
    return _resolved(value) if isinstance(value, (DictConfig, ListConfig)) else value
