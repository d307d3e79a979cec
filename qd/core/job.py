"""The one job runner, for course flags and Hydra jobs alike: train, then leave the run's record.

The record (a Hydra job's `metrics.json`, a course run's `model_files/<stem>.json`) holds what identifies
the run, its whole config, its outcome (complete, pruned or failed, with the reason) and its metrics. A job
refused before training starts (bad data or settings) writes nothing; every job that started leaves its record.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from qd.core.errors import DidNotTrain, Pruned, one_line
from qd.core.fsutil import atomic_write_text, trim_to_whole_lines

# QD_QUICK=1: every training takes at most QUICK_STEPS steps, evaluated every QUICK_EVAL_EVERY (and a sweep few
# trials, qd.experiment.app): a command at a toy's scale, tried in seconds (README.md's commands are tested so).
QUICK_STEPS, QUICK_EVAL_EVERY = 20, 10
RECORD_FORMAT = "qd-job"  # the records' "format" field: how qd.experiment.results tells them from other JSON files
# The job's own files, written relative to the record's folder: a moved outputs/ keeps its records true. The data
# folder, which may lie outside, is written both ways: absolute (`data_dir`, true while the data stays), and relative
# to the record (DATA_DIR_FROM_RECORD, true when the project moved with its data).
PATH_FIELDS = ("job_dir", "checkpoint", "log")
DATA_DIR_FROM_RECORD = "data_dir_from_record"


def quick() -> bool:
    """Whether QD_QUICK=1 asks for every command at a toy's scale."""
    return os.environ.get("QD_QUICK") == "1"


def quick_train(train: dict) -> None:
    """Under QD_QUICK=1, cap the `train` section's steps and evaluation interval, in place."""
    if quick():
        train["steps"] = min(train["steps"], QUICK_STEPS)
        train["eval_every"] = min(train["eval_every"], QUICK_EVAL_EVERY)


def run_job(
    cfg: dict,
    log: Path,
    checkpoint: Path,
    record: Path,
    info: dict,
    on_eval: Callable[[dict], None] | None = None,
    workers: int = 1,
) -> dict:
    """Train the job `cfg` describes into `log` and `checkpoint`; write its record, `info` included, to `record`."""
    from qd.core.train import train  # here, as peak_rss_mb: readers of records (qd results) need not import torch

    quick_train(cfg["train"])
    log, checkpoint, record = (Path(os.path.abspath(p)) for p in (log, checkpoint, record))
    data_dir = os.path.abspath(cfg["data"]["dir"])
    fields = {"format": RECORD_FORMAT, "model": cfg["model"]["name"], "data_dir": data_dir, **info, "config": cfg}
    fields.update(pid=os.getpid(), started=time.time())
    try:
        fields.update(train(cfg, log, checkpoint, on_eval=on_eval, workers=workers), state="complete")
        return fields
    except Pruned as e:
        fields.update(state="pruned", reason=str(e))
        raise
    except DidNotTrain as e:  # its settings do not train: said apart from a job that failed for other reasons
        fields.update(state="diverged", reason=one_line(e))
        raise
    except KeyboardInterrupt:
        fields.update(state="interrupted", reason="interrupted (Ctrl-C)")
        raise
    except BaseException as e:
        fields.update(state="failed", reason=one_line(e))
        raise
    finally:
        if log.exists():  # training started
            write_record(record, fields, log)


def write_record(record: Path, fields: dict, log: Path) -> None:
    """Write the job's record. A job that ended early keeps its log's whole rows only (a full disk can cut one),
    and its own error, not the record's, is the one raised when the disk cannot take the record either."""
    from qd.core.runtime import peak_rss_mb  # here: readers of records (qd results) need not import torch

    fields.update(finished=time.time(), peak_rss_mb=peak_rss_mb())
    fields["wall_time_s"] = fields["finished"] - fields["started"]
    written = {k: os.path.relpath(v, record.parent) if k in PATH_FIELDS else v for k, v in fields.items()}
    written[DATA_DIR_FROM_RECORD] = os.path.relpath(fields["data_dir"], record.parent)
    if fields.get("state") != "complete":
        trim_to_whole_lines(log)
    try:
        atomic_write_text(record, json.dumps(written, indent=2, default=str) + "\n")
    except OSError:
        if fields.get("state") == "complete":
            raise
