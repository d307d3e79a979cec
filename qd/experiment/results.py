"""Which trial won, and where its files are: every sweep trial and course run of folders or studies as one table.

python -m qd results outputs/sweeps/densenet_lr            # folders holding jobs' metrics.json files
python -m qd results model_files                           # the course runs' records (run.sh's trainings)
python -m qd results sqlite:///outputs/sweeps/densenet_lr.db  # every study in a storage
python -m qd results outputs --csv trials.csv
python -m qd results sqlite:///outputs/sweeps/densenet_lr.db --study densenet_lr-06152caf   # and what it fixed
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from qd.core.errors import QDError, exit_on_user_error
from qd.core.job import PATH_FIELDS, RECORD_FORMAT

COLUMNS = ["model", "study", "trial", "run", "state", "best_dev_acc", "best_step", "final_dev_acc", "wall_time_s",
           "param_count", "checkpoint_bytes", "params", "job_dir", "reason"]  # fmt: skip


def read_record(path: Path) -> dict | None:
    """A job's record (a metrics.json, or a course run's <stem>.json), its paths resolved against the record's
    folder; None for any other JSON file."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or (path.name != "metrics.json" and record.get("format") != RECORD_FORMAT):
        return None
    folder = Path(os.path.abspath(path.parent))
    record.setdefault("job_dir", ".")
    for name in PATH_FIELDS:
        if isinstance(record.get(name), str):
            record[name] = str(Path(os.path.normpath(folder / record[name])))
    return record


def from_folder(folder: Path) -> list[dict]:
    """Every job under `folder` that left a record."""
    if not folder.is_dir():
        raise QDError(
            f"{folder}: not a folder or a storage URL; expected a sweep folder or sqlite:///... / postgresql://..."
        )
    return [r for p in sorted(folder.rglob("*.json")) if (r := read_record(p)) is not None]


def key(record: dict) -> tuple:
    """What tells jobs apart when the same one is found twice (in a folder and in a storage)."""
    return record.get("study"), record.get("trial"), record.get("job_dir"), record.get("run")


def label(record: dict) -> str:
    """Which job a record is: `study S trial N`, or `run <name>` for a course run or single Hydra run."""
    if record.get("study") is not None:
        return f"study {record['study']} trial {record.get('trial')}"
    return f"run {record.get('run') or Path(record.get('job_dir', '?')).name}"


def from_storage(url: str) -> list[dict]:
    """Every trial of every study in an Optuna storage, joined with its job's metrics.json."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    from qd.experiment.sweep import REASON, database_error

    path = url.removeprefix("sqlite:///").split("?")[0]
    if url.startswith("sqlite:///") and not Path(path).is_file():
        raise QDError(f"{url}: no such database file ({path}); expected the storage of a sweep's study")
    try:
        summaries = optuna.get_all_study_summaries(storage=url)
    except SQLAlchemyError as e:
        raise database_error(url, e) from None
    records = []
    for summary in summaries:
        study = optuna.load_study(study_name=summary.study_name, storage=url)
        for t in study.get_trials(deepcopy=False):
            metrics_file = Path(t.user_attrs.get("job_dir", "/nonexistent"), "metrics.json")
            record = read_record(metrics_file) or {}
            record.update(study=summary.study_name, trial=t.number, params=t.params, state=t.state.name.lower())
            record.setdefault("best_dev_acc", t.value)
            record.setdefault("reason", t.user_attrs.get(REASON, ""))
            records.append(record)
    return records


def recorded_configuration(sources: list[str], study: str) -> dict:
    """The fixed configuration that `study`, in one of the storages among `sources`, records."""
    import optuna

    from qd.experiment.sweep import FIXED

    names = set()
    for url in (s for s in sources if "://" in s):
        summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage=url)}
        if study in summaries:
            return summaries[study].user_attrs.get(FIXED) or {}
        names |= set(summaries)
    raise QDError(
        f"--study {study}: no such study in {', '.join(sources)}; "
        + (f"expected one of {', '.join(sorted(names))}" if names else "expected a storage URL that holds it")
    )


def collect(sources: list[str]) -> list[dict]:
    """Every job the sources hold, each once though a folder and a storage both name it."""
    records = {}
    for source in sources:
        for record in from_storage(source) if "://" in source else from_folder(Path(source)):
            records.setdefault(key(record), record)
    return list(records.values())


def rank(records: list[dict]) -> list[dict]:
    """Best dev accuracy first (ties: by study, then job folder); trials without one last."""
    return sorted(records, key=lambda r: (-(r.get("best_dev_acc") or -1.0), str(r.get("study")), str(r.get("job_dir"))))


def table(records: list[dict]):
    """A pandas DataFrame of the trials in `rank` order."""
    import pandas as pd

    df = pd.DataFrame([{"reason": "", **r} for r in rank(records)], columns=COLUMNS)
    df["state"] = df["state"].str.upper()
    return df


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m qd results", description="List sweep trials and course runs by dev accuracy."
    )
    parser.add_argument("sources", nargs="+", help="folders holding jobs' records, or Optuna storage URLs")
    parser.add_argument("--csv", type=Path, help="also write the table to this CSV file")
    parser.add_argument("--study", help="only this study's trials, and the fixed configuration it records")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        records = collect(args.sources)
        if args.study:
            fixed = recorded_configuration(args.sources, args.study)
            records = [r for r in records if r.get("study") == args.study]
        if not records:
            raise QDError(f"{', '.join(args.sources)}: no trials found (no job records, no study)")
        df = table(records)
    import pandas as pd

    with pd.option_context("display.max_colwidth", 60, "display.width", 200, "display.max_rows", 500):
        print(df.drop(columns=["job_dir"]).to_string(index=False))
    complete = [r for r in records if r.get("state") == "complete"]
    if complete:
        best = rank(complete)[0]
        print(f"\nbest: {best['model']} {label(best)}, dev accuracy {best['best_dev_acc']:.4f}")
        print(f"      {best['job_dir']}")
    else:
        print(f"\nno complete trial: {len(records)} failed, pruned or running")
    if args.study:
        print(f"\nstudy {args.study}: the fixed configuration its trials share")
        for name, value in sorted(fixed.items()):
            print(f"  {name}: {value}")
    if args.csv:
        df.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")

