"""Shared fixtures: a small course-shaped synthetic folder and a runner for the command lines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qd.datasets.real import REAL_DIR
from qd.datasets.synth import write_synthetic

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def course_dir(tmp_path_factory) -> Path:
    """A course-shaped synthetic set: 1,200 train, 600 dev, 600 test images."""
    return write_synthetic(tmp_path_factory.mktemp("course") / "datasets", seed=1, sizes=(1200, 600, 600))


@pytest.fixture
def real_dir() -> Path:
    """The real drawings vendored in the repository."""
    return REAL_DIR


def run_cli(
    args: list[str], cwd: Path, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `python <args>` from `cwd` with the repository importable, and `env` added; capture its output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


TINY_BEST = "model.width=8"  # a best model small enough for quick tests
# The classes that swept_data keeps whole in train and in dev: every other class loses a quarter.
TRAIN_MAJORITY, DEV_MAJORITY = 4, 3  # strawberry, pineapple


@pytest.fixture(scope="session")
def swept_data(course_dir, tmp_path_factory) -> Path:
    """course_dir made unbalanced, with a majority class other than 0 in train (strawberry) and dev (pineapple).

    Train keeps 200 strawberries and 150 of each other class (950), dev 100 pineapples and 75 of each other
    (475); the 600 test images are course_dir's.
    """
    out = tmp_path_factory.mktemp("unbalanced") / "datasets"
    out.mkdir()
    for images, labels, whole in (("fruit_images.npy", "fruit_labels.npy", TRAIN_MAJORITY),
                                  ("fruit_dev_images.npy", "fruit_dev_labels.npy", DEV_MAJORITY)):  # fmt: skip
        y = np.load(course_dir / labels)
        keep = np.concatenate([np.flatnonzero(y == c)[: None if c == whole else 3 * (y == c).sum() // 4]
                               for c in range(6)])  # fmt: skip
        keep.sort()
        np.save(out / images, np.load(course_dir / images)[keep])
        np.save(out / labels, y[keep])
    shutil.copyfile(course_dir / "fruit_test_images.npy", out / "fruit_test_images.npy")
    return out


@pytest.fixture(scope="session")
def swept(swept_data, tmp_path_factory) -> Path:
    """A workdir whose outputs/ holds tiny real sweeps of the three models (densenet in two studies) on swept_data.

    Shared by the promotion, report and fault tests: they read outputs/ and never write into this workdir.
    """
    work = tmp_path_factory.mktemp("swept")
    common = ["-m", f"data.dir={swept_data}", "train.steps=20", "train.eval_every=10", "hydra.sweeper.n_trials=2"]
    for model, extra in [("densenet", ["+sweep=densenet_lr", "hydra.sweeper.n_trials=3"]),
                         ("convnet", ["+sweep=convnet"]),
                         ("bestmodel", ["+sweep=densenet_lr", "hydra.sweeper.study_name=best", TINY_BEST,
                                        "hydra.sweeper.storage=sqlite:///outputs/sweeps/best.db"]),
                         ("densenet", ["+sweep=densenet_lr", "hydra.sweeper.study_name=dense2",
                                       "hydra.sweeper.storage=sqlite:///outputs/sweeps/dense2.db"])]:  # fmt: skip
        result = run_cli([str(ROOT / f"main_{model}.py"), *common, *extra], work, timeout=400)
        assert result.returncode == 0, result.stderr
    return work


@pytest.fixture(scope="session")
def submission(swept, swept_data) -> Path:
    """`swept`/submission, promoted once from `swept`/outputs; read-only, like `swept`."""
    from qd.deliver.promote import promote

    promote([str(swept / "outputs")], swept / "submission", swept_data, any_settings=True)  # 20-step densenets
    return swept / "submission"


def metrics_under(folder: Path) -> list[dict]:
    """Every metrics.json under `folder`, the paths it holds (relative to its own folder) made absolute."""
    import json

    paths = ("job_dir", "checkpoint", "log")
    return [{k: str((p.parent / v).resolve()) if k in paths else v for k, v in json.loads(p.read_text()).items()}
            for p in sorted(folder.rglob("metrics.json"))]  # fmt: skip


def sweep_metrics(workdir: Path) -> list[dict]:
    """Every metrics.json under `workdir`/outputs/sweeps."""
    return metrics_under(workdir / "outputs/sweeps")


def study_trials(workdir: Path, preset: str) -> list:
    """The trials of the one study in the preset's storage (named `<preset>-<hash of its fixed configuration>`)."""
    import optuna

    storage = f"sqlite:///{workdir}/outputs/sweeps/{preset}.db"
    (summary,) = optuna.get_all_study_summaries(storage=storage)
    assert summary.study_name.startswith(f"{preset}-"), summary.study_name
    return optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()


def tiny_config(model: str, data_dir: Path, steps: int = 20, **train) -> dict:
    """The frozen defaults of `model` on `data_dir`, with a short run."""
    import copy

    from qd.core.defaults import DEFAULTS

    cfg = copy.deepcopy(DEFAULTS[model])
    cfg["data"]["dir"] = str(data_dir)
    cfg["train"].update(steps=steps, eval_every=10, threads=1, **train)
    return cfg
