"""Where a sweep's study lives: its database opened for a sweep (tables created on first use) or read-only for
the commands that only read it (results, promote, report), the lock that lets the sweep processes of one study
take turns, and one line for each way a database can fail, with hints that fit a local file or a server."""

from __future__ import annotations

import contextlib
import copy
import fcntl
import functools
import hashlib
import inspect
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from qd.core.errors import QDError, disk_errors
from qd.core.interrupt import held
from qd.experiment.lean_optuna import optuna

T = TypeVar("T")
REQUIRED_TABLES = {"studies", "trials", "version_info"}  # what every Optuna 2.x study database holds
LOCK_POLL_S = 0.02  # how often a waiting process tries the study's lock again (a Python loop: Ctrl-C stays prompt)


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///` URL, None for any other storage."""
    return Path(url.removeprefix("sqlite:///").split("?")[0]) if url.startswith("sqlite:///") else None


def shown(url: str) -> str:
    """The URL as messages show it: a local file by its path, a server's with its password hidden."""
    from sqlalchemy.engine import make_url

    path = sqlite_path(url)
    return str(path) if path else make_url(url).render_as_string(hide_password=True)


def open_for_sweep(url: str) -> optuna.storages.RDBStorage:
    """The study database a sweep records to: a SQLite file and its folder are created on first use; a file or
    database that holds another program's tables and no study is refused, never written into."""
    path = sqlite_path(url)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
    ours, theirs = _tables(url) if not path or path.exists() else (set(), set())
    if theirs and not REQUIRED_TABLES <= ours:
        raise not_a_study_database(url)
    return with_retries(url, lambda: HeldStorage(url))


_IN_MEMORY: dict[str, optuna.storages.InMemoryStorage] = {}


def new_in_memory(study_name: str) -> optuna.storages.InMemoryStorage:
    """A new in-memory storage for study `study_name` (`hydra.sweeper.storage: null`), as Optuna's `storage=None`:
    each sweep starts it empty, even after another of that name in this process (a notebook's, a test's). The
    sweep's jobs that run in its process reach it; no other process can."""
    _IN_MEMORY[study_name] = optuna.storages.InMemoryStorage()
    return _IN_MEMORY[study_name]


def reachable(url: str | None, study_name: str) -> optuna.storages.BaseStorage | None:
    """The storage of study `study_name` as a job opens it: its database (once a process: a worker process runs
    many jobs, and each opening builds an engine and checks the schema), or its memory when the job runs in the
    sweeping process; None when the study lies in another process's memory."""
    return _database(absolute_url(url)) if url is not None else _IN_MEMORY.get(study_name)


@functools.cache
def _database(url: str) -> optuna.storages.RDBStorage:
    return HeldStorage(url)


def absolute_url(url: str) -> str:
    """`url` with a SQLite file's path made absolute: one text for one file, wherever the process stands."""
    path = sqlite_path(url)
    return url if path is None else url.replace(str(path), str(path.absolute()), 1)


def _held(method: Callable) -> Callable:
    @functools.wraps(method)
    def call(*args: object, **kwargs: object) -> object:
        with held():
            return method(*args, **kwargs)

    return call


def _each_call_held(cls: type) -> type:
    for name, method in vars(optuna.storages.RDBStorage).items():
        if inspect.isfunction(method):
            setattr(cls, name, _held(vars(cls).get(name, method)))
    return cls


@_each_call_held
class HeldStorage(optuna.storages.RDBStorage):
    """Optuna's storage, each of its calls held whole against Ctrl-C (qd.core.interrupt.held): a KeyboardInterrupt
    raised inside SQLAlchemy can leave the database locked, or print SQLAlchemy's traceback.

    A finished trial is read from the database once: Optuna refuses every write to it, so it never changes. The
    sweeping process reads its study's trials at each ask; each read fetches the unfinished trials and the newly
    finished ones only (Optuna's cached storage keeps a process's own running trials too, and writes their values
    late, which the other processes of a sweep must see at once). With deepcopy=False, the finished trials returned
    are the ones kept: read them, never change them.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._finished: dict[int, dict[int, optuna.trial.FrozenTrial]] = {}  # study id -> trial id -> trial

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: tuple | None = None) -> list:
        from qd.experiment.compat import rdb_trials_except

        finished = self._finished.setdefault(study_id, {})
        unfinished = []
        for trial_id, trial in rdb_trials_except(self, study_id, set(finished)).items():
            if trial.state.is_finished():
                finished[trial_id] = trial
            else:
                unfinished.append(trial)
        trials = sorted([*finished.values(), *unfinished], key=lambda t: t.number)
        if states is not None:
            trials = [t for t in trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def delete_study(self, study_id: int) -> None:
        super().delete_study(study_id)
        self._finished.pop(study_id, None)  # SQLite may give a new study the deleted one's id


def open_readonly(url: str) -> optuna.storages.RDBStorage:
    """The study database as a reader opens it: a SQLite file read-only (`mode=ro`), a server's in read-only
    transactions; nothing is created or written. A missing file, and a database without Optuna's tables, are one
    line each."""
    path = sqlite_path(url)
    if path and not path.is_file():
        raise QDError(f"{url}: no such database file ({path}); expected the storage of a sweep's study")
    if not REQUIRED_TABLES <= _tables(url)[0]:
        raise not_a_study_database(url)
    engine_url, engine_kwargs = _readonly(url)
    return with_retries(url, lambda: HeldStorage(engine_url, engine_kwargs=engine_kwargs))


def is_study_database(path: Path) -> bool:
    """Whether the SQLite file `path` holds Optuna's tables (read without writing; an unreadable file holds none)."""
    try:
        return REQUIRED_TABLES <= _tables(f"sqlite:///{path.resolve()}")[0]
    except QDError:
        return False


def _readonly(url: str) -> tuple[str, dict]:
    """The engine URL and options that open `url` read-only."""
    from sqlalchemy.engine import make_url

    path = sqlite_path(url)
    if path:
        query = "".join(f"&{k}={v}" for k, v in make_url(url).query.items())
        return f"sqlite:///file:{path.resolve()}?mode=ro&uri=true{query}", {}
    if make_url(url).get_backend_name() == "postgresql":
        return url, {"connect_args": {"options": "-c default_transaction_read_only=on"}}
    return url, {}


def _tables(url: str) -> tuple[set[str], set[str]]:
    """The tables of the database `url` names, read without writing anything: Optuna's (their names and columns), and
    any other program's."""
    from sqlalchemy import create_engine
    from sqlalchemy import inspect as inspect_database

    def read() -> dict[str, set[str]]:
        engine_url, engine_kwargs = _readonly(url)
        engine = create_engine(engine_url, **engine_kwargs)
        with held():
            try:
                found = inspect_database(engine)
                return {name: {c["name"] for c in found.get_columns(name)} for name in found.get_table_names()}
            finally:
                engine.dispose()

    from qd.experiment.compat import optuna_schema

    schema = {**optuna_schema(), "alembic_version": {"version_num"}}
    found = with_retries(url, read)
    ours = {name for name, columns in found.items() if schema.get(name) == columns}
    return ours, set(found) - ours


def not_a_study_database(url: str) -> QDError:
    return QDError(f"{shown(url)}: not an Optuna study database (it holds other tables); expected the storage of a "
                   "sweep's study")  # fmt: skip


def with_retries(url: str, action: Callable[[], T], attempts: int = 5) -> T:
    """`action`, retried: Optuna 2.10 creates its tables and a study without guarding against a second process
    doing the same at the same moment (PostgreSQL then refuses a duplicate type or row), and the loser finds what
    the winner created. A database that cannot be opened is one line (QDError)."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    for attempt in range(attempts):
        try:
            return action()
        except ArgumentError as e:
            raise QDError(f"hydra.sweeper.storage={url}: not a database URL ({e})") from None
        except (SQLAlchemyError, StorageInternalError) as e:  # Optuna wraps a refused duplicate row in the latter
            if _unreachable(e) or attempt == attempts - 1:
                raise storage_error(url, e) from None
            time.sleep(0.2 + random.random())
        except RuntimeError as e:  # Optuna's check of the tables' schema
            if "compatible with the table schema" not in str(e):
                raise
            raise schema_error(url, str(e)) from None
    raise AssertionError("unreachable")


def schema_error(url: str, message: str) -> QDError:
    """One line for a study database whose tables another Optuna set up: a newer one's (which this Optuna cannot
    read), or an older one's (which it can, once upgraded)."""
    written = re.search(r"set up by optuna ([^)\s]+)", message)
    by = written[1] if written else "another version"
    if "optuna storage upgrade" in message:
        return QDError(f"{shown(url)}: a study database of Optuna {by}, older than the Optuna {optuna.__version__} "
                       f"qd runs; upgrade it first: optuna storage upgrade --storage {url}")  # fmt: skip
    return QDError(f"{shown(url)}: a study database written by Optuna {by}, which the Optuna {optuna.__version__} "
                   "qd runs cannot read (the Hydra Optuna sweeper needs Optuna 2); open it with that Optuna, or "
                   "give the sweep another storage")  # fmt: skip


def _unreachable(error: Exception) -> bool:
    """Whether retrying cannot help: no server answers, or the file cannot be opened or written at all."""
    text = _cause(error).lower()
    return any(words in text for words in ("connect", "unable to open", "readonly", "read-only", "disk", "not a"))


def _cause(error: BaseException) -> str:
    """The database's own words for a failure: the driver's error under SQLAlchemy's, under Optuna's (which says
    only that a commit failed)."""
    while getattr(error, "orig", None) is None and error.__cause__ is not None:
        error = error.__cause__
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0]


def storage_error(url: str, error: Exception) -> QDError:
    """One line for a study database that cannot be opened or written: a file's hints speak of files, a server's of
    servers (its password hidden)."""
    detail = _cause(error)
    path = sqlite_path(url)
    if not path:
        return QDError(
            f"{shown(url)}: cannot open the study's database ({detail}); check that the server runs, that host, port "
            "and database are right and that it accepts connections from here"
        )
    hint = {
        "locked": "another process holds it locked: wait for it, or give the storage URL a longer ?timeout=",
        "full": "its disk is full: free some space; the trials recorded so far are kept",
        "not a database": "it is not an SQLite database: give the sweep another storage file",
        "readonly": "it cannot be written here: check the file's and its folder's permissions",
        "unable to open": "it cannot be opened: check that its folder exists and may be written",
    }
    found = next((h for k, h in hint.items() if k in detail.lower().replace("read-only", "readonly")), None)
    return QDError(f"{path}: cannot use the study's database file ({detail}); {found or 'check the file'}")


@contextlib.contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Turn a database's failure in the block (a full disk, a lost server, a locked file) into storage_error's line."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (SQLAlchemyError, StorageInternalError) as e:
        raise storage_error(url, e) from None


@contextlib.contextmanager
def study_lock(storage: optuna.storages.BaseStorage, study_name: str) -> Iterator[None]:
    """Hold the lock of study `study_name`: its sweep processes take turns at counting, reaping, requeueing and
    asking for trials, so that none proposes what another just did or runs a trial past the study's total.

    SQLite: an advisory lock on a file beside the database (`<db>-qdlock`; processes of one machine, as SQLite
    needs). PostgreSQL: a session advisory lock, released by the server when the process dies. Other databases,
    and a study in memory, take no lock.
    """
    from sqlalchemy import text

    if not isinstance(storage, optuna.storages.RDBStorage):  # in this process's memory: no other process shares it
        yield
        return
    path = sqlite_path(str(storage.url))
    if path:
        with disk_errors(f"{path}-qdlock", "the study's lock file lies beside its database, which is unchanged"):
            lock_file = open(f"{path}-qdlock", "a")  # closed by the `with` below
        with lock_file:
            _poll(lambda: _try_flock(lock_file))
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        return
    if storage.engine.dialect.name != "postgresql":
        yield
        return
    key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
    with held(), storage.engine.connect() as connection:  # the connection's statements whole; the wait is short
        _poll(lambda: connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})


def _try_flock(lock_file) -> bool:
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _poll(taken: Callable[[], bool]) -> None:
    while not taken():
        time.sleep(LOCK_POLL_S)
