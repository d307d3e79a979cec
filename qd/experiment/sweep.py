"""What qd adds to the Hydra Optuna sweeper: trial<->job mapping, pruning, honest states, resuming.

The sweeper (hydra-optuna-sweeper 1.3) never hands the Optuna trial to the job. qd's
`prepare_trial`, set as the sweeper's `custom_search_space`, runs in the sweeping process for every
trial before its job starts: it records the job's folder on the trial, adds the conditional search
space of the preset, and makes the study record a pruned job as PRUNED rather than FAIL. The job
(`SweepTrial`) then opens the study through its storage, finds its own trial by that folder, reports
its learning curve there and, when it ends early, how and why.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import json
import os
import random
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from qd.core.errors import Pruned, QDError, SweepFailed, config_terms, one_line
from qd.experiment import slurm
from qd.experiment.identity import differences, fixed_configuration, short_hash
from qd.experiment.lean_optuna import optuna

FrozenTrial, TrialState = optuna.trial.FrozenTrial, optuna.trial.TrialState

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # enqueue_trial, in 2.10
# Trial user attributes: the job's folder, its process (host:pid), and how a job that ended early ended; the
# sweeping process that launched it (host:pid) and, when the job runs under Slurm, its Slurm job.
JOB_DIR, WORKER, OUTCOME, REASON = "job_dir", "worker", "qd_outcome", "qd_reason"
SWEEPER, SLURM_JOB = "sweeper", "slurm_job"
# The OUTCOME of a trial whose job was lost (its process died; Slurm cancelled it or lost its node): a rerun of
# the sweep runs it again with its parameters, and it does not count toward n_trials.
INTERRUPTED = "interrupted"
# The study's user attributes: the configuration its trials share; the interrupted trials already queued again.
FIXED, REQUEUED = "qd_fixed_configuration", "qd_requeued"
T = TypeVar("T")
_job_numbers = itertools.count()


def prepare_trial(cfg: DictConfig, trial: optuna.Trial) -> None:
    """The sweeper's custom_search_space hook: called once per trial, in job order, before launch."""
    job_dir = Path(cfg.hydra.sweep.dir, str(next(_job_numbers)))  # hydra.sweep.subdir is the job number
    trial.set_user_attr(JOB_DIR, str(job_dir.resolve()))
    trial.set_user_attr(WORKER, this_process())  # the job replaces it with its own
    trial.set_user_attr(SWEEPER, this_process())
    conditional = OmegaConf.select(cfg, "search.conditional")
    for name, specs in (OmegaConf.to_container(conditional) if conditional else {}).items():
        spec = next((s for s in specs if chosen(trial, s["when"]["key"]) in s["when"]["values"]), None)
        if spec and name not in trial.user_attrs:  # a user attribute: fixed on the command line
            _suggest(trial, name, spec)
    _record_prunes_honestly(trial.study, int(cfg.hydra.sweeper.n_trials), str(cfg.hydra.sweeper.storage))


def this_process() -> str:
    """`host:pid`, as the WORKER and SWEEPER attributes name a process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def chosen(trial: optuna.Trial, key: str) -> object:
    """The trial's value of `key`: searched (a parameter) or fixed on the command line (the sweeper makes
    fixed values user attributes)."""
    return trial.params.get(key, trial.user_attrs.get(key))


def _suggest(trial: optuna.Trial, name: str, spec: dict) -> None:
    if "choices" in spec:
        trial.suggest_categorical(name, spec["choices"])
    elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
        trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
    else:
        trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))


def _record_prunes_honestly(study: optuna.Study, n_trials: int, storage: str) -> None:
    """Wrap the sweeper's study.tell: a job that stopped as pruned becomes PRUNED, not FAIL.

    The job's outcome is read from the trial's attributes, which the job set through its own connection
    to `storage` (the sweeper's cached storage does not see them). When the last trial of this invocation
    is told and none completed, raise one clear line instead of the sweeper's "No trials are completed yet".
    """
    if hasattr(study, "_qd_told"):
        return
    tell, study._qd_told = study.tell, []
    uncached = optuna.storages.RDBStorage(storage)

    def honest_tell(trial, state=None, values=None, **kwargs):
        attrs = uncached.get_trial_user_attrs(trial._trial_id)
        reason = attrs.get(REASON, "the job ended without saying why")
        if attrs.get(OUTCOME):  # the job ended early and returned no accuracy (SweepTrial)
            state, values = ended_early(attrs[OUTCOME]), None
        result = tell(trial, state=state, values=values, **kwargs)
        study._qd_told.append((state, reason))
        print(trial_line(trial.number, state, values, reason), flush=True)
        if len(study._qd_told) == n_trials:
            _summarise(study, n_trials)
        return result

    study.tell = honest_tell


def ended_early(outcome: str) -> TrialState:
    """The study's state for a job that ended early: PRUNED when pruned, else FAIL (failed or interrupted)."""
    return TrialState.PRUNED if outcome == "pruned" else TrialState.FAIL


def trial_line(number: int, state: TrialState, values: list[float] | None, reason: str) -> str:
    """How a trial ended, in the one line the sweep prints for it."""
    if state == TrialState.COMPLETE:
        return f"trial {number}: dev accuracy {values[0]:.4f}"
    return f"trial {number} {'pruned' if state == TrialState.PRUNED else 'failed'}: {reason}"


def n_trials_text(n: int) -> str:
    return f"{n} trial{'' if n == 1 else 's'}"


def _summarise(study: optuna.Study, n_trials: int) -> None:
    """The invocation's last trial is told: how its trials ended, and the study's best; or, when every one
    failed, end the sweep with one line."""
    states = [state for state, _ in study._qd_told]
    counts = {"complete": states.count(TrialState.COMPLETE), "pruned": states.count(TrialState.PRUNED),
              "failed": states.count(TrialState.FAIL)}  # fmt: skip
    if counts["failed"] == n_trials:
        reasons = "; ".join(sorted({reason for _, reason in study._qd_told}))
        raise SweepFailed(f"sweep failed: all {n_trials_text(n_trials)} failed ({reasons})")
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    tail = f"; the study's best: trial {best.number}, dev accuracy {best.value:.4f}" if best else ""
    ended = ", ".join(f"{n} {k}" for k, n in counts.items())
    print(f"sweep done: {n_trials_text(n_trials)}, {ended}{tail}", flush=True)


def make_pruner(cfg: dict | None) -> optuna.pruners.BasePruner:
    """From the preset's `pruning` section: none, median or halving (successive halving)."""
    cfg = dict(cfg or {"name": "none"})
    name = cfg.pop("name")
    if name == "median":
        return optuna.pruners.MedianPruner(**cfg)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(**cfg)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise QDError(f"pruning.name: got {name!r}; expected none, median or halving")


@functools.cache
def job_storage(url: str) -> optuna.storages.RDBStorage:
    """The study database as this process's jobs open it: once a process, not once a job (a worker process runs
    many jobs, and each opening builds an engine and checks the schema)."""
    return optuna.storages.RDBStorage(url)


def attach_trial(hc: DictConfig, pruner: optuna.pruners.BasePruner) -> optuna.Trial:
    """The running trial of this job, found in the study by the job's folder."""
    storage = job_storage(str(hc.sweeper.storage))
    study = optuna.load_study(study_name=hc.sweeper.study_name, storage=storage, pruner=pruner)
    job_dir = Path(hc.runtime.output_dir)
    trial = running_trial(study, job_dir)
    if trial is None:
        raise QDError(f"{job_dir.resolve()}: no running trial of study {study.study_name} belongs to this job")
    trial.set_user_attr(WORKER, this_process())
    if slurm.job_id():
        trial.set_user_attr(SLURM_JOB, slurm.job_id())
    return trial


def running_trial(study: optuna.Study, job_dir: Path) -> optuna.Trial | None:
    """The running trial of `study` whose job's folder is `job_dir`, if any."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get(JOB_DIR) == str(job_dir.resolve()):
            return optuna.trial.Trial(study, t._trial_id)
    return None


def record_lost_job(storage: str, study_name: str, job_dir: Path, reason: str, interrupted: bool) -> None:
    """Record that the job of `job_dir` ended without a word (Slurm cancelled or killed it) and why, on its running
    trial: the sweeping process then tells the trial FAIL with that reason. An interrupted one (cancelled, its node
    lost) runs again when the sweep is run again; one that failed on its own (out of time or memory) counts."""
    trial = running_trial(optuna.load_study(study_name=study_name, storage=storage), job_dir)
    if trial is not None:
        trial.set_user_attr(OUTCOME, INTERRUPTED if interrupted else "failed")
        trial.set_user_attr(REASON, reason)


class SweepTrial:
    """This job's running trial: its learning curve goes to the study, and how the job ended early (failed or
    pruned, and why) to the trial's attributes, where the sweeping process reads it."""

    def __init__(self, hc: DictConfig, pruning: dict | None) -> None:
        pruner = make_pruner(pruning)
        self.trial = attach_trial(hc, pruner)
        self.prunes = not isinstance(pruner, optuna.pruners.NopPruner)  # should_prune() reads the storage
        self.info = {"study": hc.sweeper.study_name, "trial": self.trial.number, "params": self.trial.params}

    def on_eval(self, row: dict) -> None:
        self.trial.report(row["dev_acc"], row["step"])
        if self.prunes and self.trial.should_prune():
            raise Pruned(f"pruned at step {row['step']} with dev accuracy {row['dev_acc']:.4f}")

    def __enter__(self) -> SweepTrial:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, traceback: object) -> bool:
        """Record how a job that ended early ended, and swallow the error (not an interrupt): the sweeping
        process prints the trial's one line, instead of Hydra's traceback for a failed job."""
        if error is not None:
            self.trial.set_user_attr(OUTCOME, "pruned" if isinstance(error, Pruned) else "failed")
            self.trial.set_user_attr(REASON, str(error) if isinstance(error, Pruned) else config_terms(one_line(error)))
        return isinstance(error, Exception)


def start_study(cfg: DictConfig, job: dict, argv: list[str]) -> list[str]:
    """Name, open and check the sweep's study before the sweeper does; the overrides that make it continue.

    The study records its fixed configuration (`qd.experiment.identity`; the data, prepared, by its fingerprint).
    By default its name is the preset's with a hash of that configuration, so the same configuration resumes and
    another starts a new study; a study named on the command line must hold the same configuration. On resuming,
    trials whose process died are run again with their own parameters and do not count toward `n_trials`, and the
    sampler's seed moves on with the study, so that it proposes no parameters a second time.
    """
    sweeper = cfg.hydra.sweeper
    rdb = open_storage(str(sweeper.storage))
    overrides = OverridesParser.create().parse_overrides([a for a in argv if not a.startswith("-")])
    named = any(o.key_or_group == "hydra.sweeper.study_name" for o in overrides)
    params, conditional = search_space(sweeper, OmegaConf.select(cfg, "search.conditional"), overrides)
    fixed = fixed_configuration(job, params, conditional)
    name = sweeper.study_name if named else f"{sweeper.study_name}-{short_hash(fixed)}"
    study, existed = open_study(rdb, name, str(sweeper.direction))
    recorded = _in_database(rdb.url, lambda: _recorded_or_record(study, fixed))
    if recorded is not None and recorded != fixed:
        raise QDError(
            f"hydra.sweeper.study_name={name}: that study holds trials of another fixed configuration "
            f"({differences(recorded, fixed)}); leave study_name out for a study of this configuration"
        )
    named_override = [] if named else [f"hydra.sweeper.study_name={name}"]
    if not existed:
        print(f"new study {name}: {n_trials_text(int(sweeper.n_trials))} to run")
        return named_override
    return named_override + _resume(study, rdb, sweeper, cfg.resume.unclaimed_after_s)


def _recorded_or_record(study: optuna.Study, fixed: dict) -> dict | None:
    """The fixed configuration the study records; when it records none (new, or made by an earlier qd), record
    `fixed` and return None. Two workers may race here: the loser's insert fails, and a retry reads the winner's."""
    if FIXED in study.user_attrs:
        return study.user_attrs[FIXED]
    study.set_user_attr(FIXED, fixed)
    return None


def search_space(sweeper: DictConfig, conditional: DictConfig | None, overrides: list) -> tuple[dict, set]:
    """What the sweep searches, as the Optuna sweeper will decide it: the preset's params with the command
    line's sweep overrides added and its fixed values taken out; and the conditional keys not fixed."""
    params = {str(k): str(v) for k, v in (sweeper.params or {}).items()}
    fixed = set()
    for override in overrides:
        if override.is_sweep_override():
            params[override.key_or_group] = override.input_line.partition("=")[2]
        else:
            fixed.add(override.key_or_group)
    return {k: v for k, v in params.items() if k not in fixed}, set(conditional or {}) - fixed


def _resume(
    study: optuna.Study, uncached: optuna.storages.RDBStorage, sweeper: DictConfig, unclaimed_after_s: float
) -> list[str]:
    """Make `n_trials` count the study's usable trials, so that a rerun resumes rather than adds; with nothing
    left to run, say so and exit."""
    _adopt_orphans(study, uncached)
    _fail_dead_trials(study, unclaimed_after_s)
    rerun = _requeue_interrupted(study)
    trials = study.get_trials(deepcopy=False)
    taken = [t for t in trials if t.state != TrialState.WAITING and t.user_attrs.get(OUTCOME) != INTERRUPTED]
    remaining = int(sweeper.n_trials) - len(taken)  # trials still running elsewhere count too
    if remaining <= 0:
        print(f"study {study.study_name} already holds {n_trials_text(len(taken))} of {sweeper.n_trials}; "
              "nothing to run")  # fmt: skip
        raise SystemExit(0)
    done = sum(t.state.is_finished() for t in taken)
    running = f", {len(taken) - done} running elsewhere" if len(taken) > done else ""
    again = f", {len(rerun)} interrupted to run again" if rerun else ""
    print(f"resuming study {study.study_name}: {done} finished trials kept{running}{again}, {remaining} to run")
    seed = OmegaConf.select(sweeper, "sampler.seed")
    moved_seed = [] if seed is None else [f"hydra.sweeper.sampler.seed={seed + len(trials)}"]
    return [f"hydra.sweeper.n_trials={remaining}", *moved_seed]


def open_storage(storage: str) -> optuna.storages.RDBStorage:
    """The study database, its tables created on first use; a SQLite file's folder too."""
    if storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///").split("?")[0]).parent.mkdir(parents=True, exist_ok=True)
    return _in_database(storage, lambda: optuna.storages.RDBStorage(storage))


def open_study(rdb: optuna.storages.RDBStorage, name: str, direction: str) -> tuple[optuna.Study, bool]:
    """Create or load the study before the sweeper does; whether it existed before."""

    def create() -> tuple[optuna.Study, bool]:
        existed = name in {s.study_name for s in rdb.get_all_study_summaries()}
        return optuna.create_study(study_name=name, storage=rdb, direction=direction, load_if_exists=True), existed

    return _in_database(rdb.url, create)


def _in_database(storage: str, action: Callable[[], T], attempts: int = 5) -> T:
    """`action`, retried: Optuna 2.10 creates its tables and a study without guarding against a second worker
    doing the same at the same moment (PostgreSQL then refuses a duplicate type or row), and the loser finds
    what the winner created. A database that cannot be reached is one line (QDError)."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

    for attempt in range(attempts):
        try:
            return action()
        except ArgumentError as e:
            raise QDError(f"hydra.sweeper.storage={storage}: not a database URL ({e})") from None
        except (SQLAlchemyError, StorageInternalError) as e:  # Optuna wraps a refused duplicate row in the latter
            if (isinstance(e, OperationalError) and "connect" in str(e).lower()) or attempt == attempts - 1:
                raise database_error(storage, e) from None
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


def database_error(storage: str, error: Exception) -> QDError:
    """One line for a study database that cannot be opened, its password hidden."""
    from sqlalchemy.engine import make_url

    detail = str(getattr(error, "orig", error)).strip().splitlines()[0]
    return QDError(
        f"{make_url(storage).render_as_string(hide_password=True)}: cannot open the study's database ({detail}); "
        "check that the server runs, that host, port and database are right and that it accepts connections from here"
    )


def process_alive(pid: int) -> bool:
    """Whether a process `pid` runs on this host (signal 0 checks, sends nothing; Linux and macOS alike)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


OUTLIVED = "its job outlived the sweep that launched it"


def _adopt_orphans(study: optuna.Study, uncached: optuna.storages.RDBStorage) -> None:
    """Tell the study how the jobs of a dead sweeping process of this host ended, when they outlived it (a Slurm job
    does): wait for those still running, then take each outcome from the trial (a job that failed or was pruned
    says so there) or from the job's record (a complete one)."""
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        sweeper_host, _, pid = t.user_attrs.get(SWEEPER, ":").partition(":")
        if sweeper_host != host or process_alive(int(pid)):
            continue
        if _job_running(t):
            print(f"waiting for trial {t.number}: {OUTLIVED}", flush=True)
            while _job_running(t):
                time.sleep(1)
        attrs = uncached.get_trial_user_attrs(t._trial_id)
        path = Path(t.user_attrs.get(JOB_DIR, "."), "metrics.json")
        record = json.loads(path.read_text()) if path.is_file() else {}
        if attrs.get(OUTCOME):
            state, values = ended_early(attrs[OUTCOME]), None
        elif record.get("state") == "complete":
            state, values = TrialState.COMPLETE, [record["best_dev_acc"]]
        else:
            continue  # it died without a word: _fail_dead_trials
        study.tell(t.number, state=state, values=values)
        print(f"{trial_line(t.number, state, values, attrs.get(REASON, ''))} ({OUTLIVED})", flush=True)


def _job_running(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial's job still runs: its process, on this host; its Slurm job, elsewhere."""
    host, _, pid = trial.user_attrs.get(WORKER, ":").partition(":")
    if host == socket.gethostname():
        return process_alive(int(pid))
    return bool(trial.user_attrs.get(SLURM_JOB)) and slurm.running(trial.user_attrs[SLURM_JOB])


def _requeue_interrupted(study: optuna.Study) -> list[FrozenTrial]:
    """Queue the interrupted trials not queued yet to run again with their own parameters (enqueue_trial: the
    sweeper's next ask takes them first); return them."""
    queued = set(study.user_attrs.get(REQUEUED, []))
    again = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
             if t.user_attrs.get(OUTCOME) == INTERRUPTED and t.number not in queued]  # fmt: skip
    for trial in again:
        study.enqueue_trial(trial.params)
    if again:
        study.set_user_attr(REQUEUED, sorted(queued | {t.number for t in again}))
    return again


def _fail_dead_trials(study: optuna.Study, grace: float) -> None:
    """Mark FAIL, as interrupted, the RUNNING trials whose process on this host is gone.

    A trial the sweeper asked for but had not yet tagged with its process when killed has no
    worker; after `grace` seconds (the preset's resume.unclaimed_after_s) it is taken as abandoned too.
    """
    host, now = socket.gethostname(), datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = t.user_attrs.get(WORKER, ":").partition(":")
        dead = worker_host == host and pid and not process_alive(int(pid))
        untagged = not pid and (now - t.datetime_start).total_seconds() > grace
        if dead or untagged:
            trial = optuna.trial.Trial(study, t._trial_id)
            trial.set_user_attr(OUTCOME, INTERRUPTED)
            trial.set_user_attr(REASON, "interrupted (its process died)")
            study.tell(t.number, state=TrialState.FAIL)
