"""The private parts of Hydra, Optuna and joblib that qd.experiment.compat uses, pinned: an upgrade that changes one
of them fails here, by name, not inside a sweep."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from hydra.core.utils import JobReturn, JobStatus

from qd.experiment import compat
from qd.experiment.conf import CONF_DIR


def parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_hydras_application_object_composes_runs_and_multiruns_as_compat_calls_it():
    from hydra._internal.hydra import Hydra

    assert {"config_name", "overrides", "run_mode", "validate_sweep_overrides"} <= set(parameters(Hydra.compose_config))
    for path in (Hydra.run, Hydra.multirun):
        assert parameters(path)[:4] == ["self", "config_name", "task_function", "overrides"]
    with compat.hydra_app(str(CONF_DIR), "main_densenet") as app:
        assert isinstance(app, Hydra)
        cfg = compat.compose(app, "densenet", ["+sweep=densenet_lr", "optimizer.lr=choice(0.1, 0.01)"])
    assert cfg.hydra.job.name == "main_densenet" and cfg.hydra.mode.name == "MULTIRUN"


def test_a_failed_jobs_error_is_read_without_hydras_line():
    assert "_return_value" in {f.name for f in dataclasses.fields(JobReturn)}
    failed, error = JobReturn(status=JobStatus.FAILED), ValueError("no")
    failed.return_value = error
    assert compat.job_error(failed) is error
    done = JobReturn(status=JobStatus.COMPLETED)
    done.return_value = 0.5
    assert compat.job_error(done) is None


def test_the_basic_launchers_config_names_its_class():
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher, BasicLauncherConf

    assert BasicLauncherConf._target_ == compat.BASIC_LAUNCHER == f"{BasicLauncher.__module__}.BasicLauncher"


def test_hydras_deprecation_warning_takes_a_message():
    from hydra._internal.deprecation_warning import deprecation_warning

    assert parameters(deprecation_warning)[0] == "message"


def test_optunas_table_models_name_a_study_databases_tables():
    schema = compat.optuna_schema()
    assert {"studies", "trials", "version_info"} <= set(schema) and {"study_id", "study_name"} <= schema["studies"]


def test_the_joblib_launchers_options_and_lokys_executor_are_where_compat_takes_them():
    from joblib.externals.loky import get_reusable_executor
    from joblib.externals.loky.process_executor import ProcessPoolExecutor

    assert compat.joblib_options({"_target_": "x", "n_jobs": 2, "pre_dispatch": "4"}) == {
        "n_jobs": 2, "pre_dispatch": 4, "backend": "loky"}  # fmt: skip
    assert "reuse" in parameters(get_reusable_executor)  # not called: this process's executor is joblib's to make
    assert "kill_workers" in parameters(ProcessPoolExecutor.shutdown)


def test_optunas_rdb_storage_reads_a_studys_trials_but_those_excluded_by_trial_id(tmp_path):
    from optuna.storages import RDBStorage

    from qd.experiment.lean_optuna import optuna

    assert parameters(RDBStorage._get_trials) == ["self", "study_id", "states", "excluded_trial_ids"]
    storage = RDBStorage(f"sqlite:///{tmp_path}/study.db")
    study = optuna.create_study(study_name="s", storage=storage)
    first, second = study.ask(), study.ask()
    study_id = storage.get_study_id_from_name("s")
    read = compat.rdb_trials_except(storage, study_id, {first._trial_id})
    assert [(trial_id, t.number) for trial_id, t in read.items()] == [(second._trial_id, 1)]


def test_optuna_refuses_a_study_of_other_directions_in_the_words_compat_looks_for():
    import optuna

    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="s", storage=storage, direction="maximize")
    with pytest.raises(ValueError, match=compat.OTHER_DIRECTIONS):
        optuna.create_study(study_name="s", storage=storage, direction="minimize", load_if_exists=True)
