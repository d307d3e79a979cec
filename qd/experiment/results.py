"""Which trial won, and where its files are: every sweep trial and course run of folders or studies, one table per
data set (its folder), each with its best.

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
import re
import sys
import textwrap
from pathlib import Path

from qd.core.course import submitted_as
from qd.core.defaults import DEFAULTS
from qd.core.errors import QDError, disk_errors, exit_on_user_error
from qd.core.fsutil import atomic_write_text
from qd.core.job import DATA_DIR_FROM_RECORD, PATH_FIELDS, RECORD_FORMAT

COLUMNS = ["model", "study", "trial", "run", "state", "best_dev_acc", "best_step", "final_dev_acc", "wall_time_s",
           "param_count", "checkpoint_bytes", "params", "job_dir", "data_dir", "reason"]  # fmt: skip
SHOWN = {"best_dev_acc": "{:.4f}", "final_dev_acc": "{:.4f}", "wall_time_s": "{:.1f}"}  # a column's format in print
COURSE_RECORD = re.compile(r"\d{12}_([a-z]+)(_\d+)?\.json")  # model_files/<YYYYmmddHHMM>_<model>[_n].json
UNREADABLE = "unreadable"  # the state of a record that cannot be read: what it says is unknown
WIDTH, LAST_COLUMN = 100, 24  # qd results' lines fit a 100-column terminal (--wide: every column, whole)
BRIEF = ["model", "study", "trial", "run", "state", "best_dev_acc", "wall_time_s", "params"]
SHARED = ("model", "study")  # said once above a table when all its rows share them


def read_record(path: Path, completed: bool | None = None) -> dict | None:
    """A job's record (a metrics.json, or a course run's <stem>.json), its paths resolved against the record's
    folder; None for any other JSON file. A record that cannot be read (missing, cut short, not one) is
    `unreadable`, marked `completed` when its study says so, else when its checkpoint lies beside it."""
    is_record = path.name == "metrics.json" or COURSE_RECORD.fullmatch(path.name) is not None
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return unreadable(path, "missing", completed) if completed else None
    except (OSError, ValueError) as e:
        why = f"cannot be read ({e.strerror})" if isinstance(e, OSError) else f"not complete JSON ({e})"
        return unreadable(path, why, completed) if is_record else None
    if not isinstance(record, dict) or not (is_record or record.get("format") == RECORD_FORMAT):
        return unreadable(path, "not a job's record", completed) if is_record else None
    missing = [f for f in ("model", "state") if not isinstance(record.get(f), str)]
    if record.get("state") == "complete":
        missing += [f for f, kind in (("best_dev_acc", (int, float)), ("checkpoint", str))
                    if not isinstance(record.get(f), kind)]  # fmt: skip
    if missing:
        return unreadable(path, f"holds no {', no '.join(missing)}", completed)
    if record["state"] == "complete" and not accuracy(record["best_dev_acc"]):
        return unreadable(path, f"holds dev accuracy {record['best_dev_acc']}; expected a number from 0 to 1",
                          completed)  # fmt: skip
    folder = Path(os.path.abspath(path.parent))
    record.setdefault("job_dir", ".")
    for name in PATH_FIELDS:
        if isinstance(record.get(name), str):
            record[name] = str(Path(os.path.normpath(folder / record[name])))
    moved = record.get(DATA_DIR_FROM_RECORD)
    if isinstance(moved, str) and not Path(str(record.get("data_dir"))).is_dir() and (folder / moved).is_dir():
        record["data_dir"] = os.path.normpath(folder / moved)  # the project moved, its data with it
    return record


def accuracy(value: object) -> bool:
    """Whether `value` is an accuracy: a finite number from 0 to 1 (NaN is none)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def study_databases(folder: Path) -> list[str]:
    """The storage URLs of the Optuna study databases (`*.db`) under `folder`; other programs' databases left out."""
    from qd.experiment.storage import is_study_database

    return [f"sqlite:///{p.resolve()}" for p in sorted(folder.rglob("*.db")) if is_study_database(p)]


def unreadable(path: Path, why: str, completed: bool | None) -> dict:
    """What is known of a job whose record cannot be read: its model and whether it completed, from the
    checkpoint beside the record (a course run's <stem>.pt, a job folder's <model>.pt)."""
    course = COURSE_RECORD.fullmatch(path.name)
    beside = [path.with_suffix(".pt")] if course else [path.parent / f"{m}.pt" for m in DEFAULTS]
    checkpoint = next((p for p in beside if p.is_file()), None)
    model = course.group(1) if course else checkpoint and checkpoint.stem
    return {"model": model, "state": UNREADABLE, "reason": why, "record": str(path.absolute()),
            "job_dir": str(path.parent.absolute()), "run": path.stem if course else None,
            "completed": bool(checkpoint) if completed is None else completed}  # fmt: skip


def submitted(record: dict) -> str | None:
    """Which of the course's three models a record's job is submitted as (None where the record does not say)."""
    return submitted_as(record["model"]) if record.get("model") else None


def may_beat(records: list[dict], best: dict | None, model: str | None = None) -> list[dict]:
    """The unreadable records (of `model`, or of any) whose job completed and might beat `best`: what they scored is
    unknown, or their study holds it above `best`'s."""
    bar = best["best_dev_acc"] if best else None
    return [r for r in records if r.get("state") == UNREADABLE and r["completed"]
            and (model is None or submitted(r) in (model, None))
            and (bar is None or r.get("best_dev_acc") is None or r["best_dev_acc"] >= bar)]  # fmt: skip


def rival(record: dict) -> str:
    """Why an unreadable record may beat the best, in words."""
    score = record.get("best_dev_acc")
    scored = f" with dev accuracy {score:.4f} in its study" if score is not None else ""
    return f"it completed{scored}, but its record {record['record']} is unreadable"


def from_folder(folder: Path) -> list[dict]:
    """Every job under `folder` that left a record."""
    if not folder.is_dir():
        raise QDError(
            f"{folder}: not a folder or a storage URL; expected a sweep folder or sqlite:///... / postgresql://..."
        )
    return [r for p in sorted(folder.rglob("*.json")) if (r := read_record(p)) is not None]


def key(record: dict) -> tuple:
    """What tells jobs apart when the same one is found twice (in a folder and in a storage)."""
    if record.get("state") == UNREADABLE:  # a folder does not know its study and trial
        return (record["record"],)
    return record.get("study"), record.get("trial"), record.get("job_dir"), record.get("run")


def label(record: dict) -> str:
    """Which job a record is: `study S trial N`, or `run <name>` for a course run or single Hydra run."""
    if record.get("study") is not None:
        return f"study {record['study']} trial {record.get('trial')}"
    return f"run {record.get('run') or Path(record.get('job_dir', '?')).name}"


def steps(record: dict) -> int | None:
    """How many steps a record's job trained for (its config's train.steps); None where it holds no config."""
    cfg = record.get("config")
    return cfg.get("train", {}).get("steps") if isinstance(cfg, dict) else None


def evidence(records: list[dict], winners: dict[str, dict]) -> tuple[list[dict], str]:
    """The records comparable with their model's winner, trained on its data for as many steps (a demo's or
    QD_QUICK's short trials say nothing of a course-scale winner), and a sentence on those left out, with the steps
    they trained for ("" if none)."""
    kept, other_data, other_steps = [], 0, {}  # model -> the other numbers of steps
    for r in records:
        winner = winners.get(model := submitted(r))
        if winner is None:
            continue
        if Path(r.get("data_dir", "/nonexistent")).resolve() != Path(winner["data_dir"]).resolve():
            other_data += 1
        elif steps(r) != steps(winner):
            other_steps.setdefault(model, []).append(steps(r))
        else:
            kept.append(r)
    why = []
    if other_data:
        why.append(f"{other_data} on other data")
    if other_steps:
        counts = "; ".join(f"{m}: {', '.join(str(k) for k in sorted(set(n), key=lambda k: (k is None, k or 0)))} "
                           f"against {steps(winners[m])}" for m, n in sorted(other_steps.items()))  # fmt: skip
        why.append(f"{sum(map(len, other_steps.values()))} trained for another number of steps than their model's "
                   f"winner ({counts})")  # fmt: skip
    return kept, f"left out: {', '.join(why)}" if why else ""


def from_storage(url: str) -> list[dict]:
    """Every trial of every study in an Optuna storage, opened read-only, joined with its job's metrics.json; a study
    that does not maximize one value (not one of qd's apps') as `other_study` gives it."""
    from qd.experiment.lean_optuna import optuna
    from qd.experiment.outcomes import OUTCOME, REASON
    from qd.experiment.storage import open_readonly

    storage = open_readonly(url)
    records = []
    for summary in optuna.get_all_study_summaries(storage=storage):
        trials = storage.get_all_trials(storage.get_study_id_from_name(summary.study_name), deepcopy=False)
        directions = [d.name.lower() for d in summary.directions]
        if directions != ["maximize"]:
            records += other_study(summary.study_name, directions, trials)
            continue
        for t in trials:
            metrics_file = Path(job_dir(t.user_attrs, url), "metrics.json")
            record = read_record(metrics_file, completed=t.state.name == "COMPLETE") or {}
            state = UNREADABLE if record.get("state") == UNREADABLE else t.user_attrs.get(OUTCOME, t.state.name.lower())
            record.update(study=summary.study_name, trial=t.number, params=t.params, state=state)
            if state in ("complete", UNREADABLE):  # a diverged trial's value is chance, told to the sampler
                record.setdefault("best_dev_acc", t.value)
            record.setdefault("reason", t.user_attrs.get(REASON, ""))
            records.append(record)
    return records


def job_dir(attrs: dict, url: str) -> str:
    """A trial's job folder: where its job recorded it, or, where that is gone and the study lies in a SQLite file,
    the same place relative to that file (the project moved, its outputs/ with it)."""
    from qd.experiment.outcomes import JOB_DIR, JOB_DIR_FROM_DATABASE
    from qd.experiment.storage import sqlite_path

    recorded, database = attrs.get(JOB_DIR, "/nonexistent"), sqlite_path(url)
    moved = attrs.get(JOB_DIR_FROM_DATABASE)
    if not Path(recorded).is_dir() and database and moved and (database.parent / moved).is_dir():
        return os.path.normpath(database.absolute().parent / moved)
    return recorded


def other_study(name: str, directions: list[str], trials: list) -> list[dict]:
    """The trials of a study that does not maximize one value: its values, by its directions (`directions`), not a
    dev accuracy."""
    from qd.experiment.outcomes import REASON

    return [{"study": name, "trial": t.number, "state": t.state.name.lower(), "values": t.values,
             "directions": directions, "params": t.params, "reason": t.user_attrs.get(REASON, "")}
            for t in trials]  # fmt: skip


def best_by_direction(records: list[dict]) -> list[dict]:
    """The best complete trials of one such study: the best value by its direction, or its Pareto front."""
    complete = [r for r in records if r["state"] == "complete"]
    signs = [1 if d == "minimize" else -1 for d in (records[0]["directions"] if records else [])]

    def dominates(a: dict, b: dict) -> bool:
        pairs = [(s * x, s * y) for s, x, y in zip(signs, a["values"], b["values"], strict=True)]
        return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)

    return [r for r in complete if not any(dominates(o, r) for o in complete)]


def recorded_configuration(sources: list[str], study: str) -> dict:
    """The fixed configuration that `study`, in one of the storages among `sources`, records."""
    from qd.experiment.lean_optuna import optuna
    from qd.experiment.outcomes import FIXED
    from qd.experiment.storage import open_readonly

    names = set()
    for url in (s for s in sources if "://" in s):
        summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage=open_readonly(url))}
        if study in summaries:
            return summaries[study].user_attrs.get(FIXED) or {}
        names |= set(summaries)
    raise QDError(
        f"--study {study}: no such study in {', '.join(sources)}; "
        + (f"expected one of {', '.join(sorted(names))}" if names else "expected a storage URL that holds it")
    )


def collect(sources: list[str]) -> list[dict]:
    """Every job the sources hold, each once though a folder and a storage both name it (what one source knows
    of it and the other does not added); each record that cannot be read named on stderr, in one line."""
    records = {}
    for source in sources:
        for record in from_storage(source) if "://" in source else from_folder(Path(source)):
            records[key(record)] = {**record, **records.get(key(record), {})}
    for record in records.values():
        if record.get("state") == UNREADABLE:
            print(f"warning: {record['record']}: unreadable record of {label(record)} ({record['reason']})",
                  file=sys.stderr)  # fmt: skip
    return list(records.values())


def rank(records: list[dict]) -> list[dict]:
    """Best dev accuracy first (ties: by study, trial number, then job folder); trials without one last."""
    return sorted(records, key=lambda r: (-(r.get("best_dev_acc") or -1.0), str(r.get("study")),
                                          r.get("trial") if isinstance(r.get("trial"), int) else -1,
                                          str(r.get("job_dir"))))  # fmt: skip


def show(path: str | Path) -> str:
    """A path relative to the current folder when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def by_data(records: list[dict]) -> dict[str | None, list[dict]]:
    """The records by the data folder they trained on (shown as `show` writes it), in folder order; those that do
    not record it (unreadable records among them) last, under None."""
    groups: dict[str | None, list[dict]] = {}
    for record in records:
        groups.setdefault(show(record["data_dir"]) if record.get("data_dir") else None, []).append(record)
    return dict(sorted(groups.items(), key=lambda g: (g[0] is None, g[0] or "")))


def rows(records: list[dict]) -> list[dict]:
    """The COLUMNS of each record in `rank` order: a run without a study named by its job folder, a run's
    overrides as its params."""
    return [{**{c: r.get(c) for c in COLUMNS}, "state": str(r.get("state")).upper(),
             "run": r.get("run") or (None if r.get("study") else Path(r["job_dir"]).name),
             "params": r.get("params") or r.get("overrides")} for r in rank(records)]  # fmt: skip


def table(records: list[dict]):
    """A pandas DataFrame of `rows`."""
    import pandas as pd

    return pd.DataFrame(rows(records), columns=COLUMNS, dtype=object)


def printable(records: list[dict], wide: bool = False) -> tuple[str, str]:
    """`rows` as aligned text, and what every row shares (", model M, study S", said once above the table).
    Without `wide`, in WIDTH columns: the main columns, the searched settings by their last name where that is
    unique and wrapped, and why a job did not complete on lines of its own beneath it; `wide`: every column
    whole, a row a line."""
    shown = rows(records)
    if wide:
        return "", aligned([{c: v for c, v in row.items() if c not in ("job_dir", "data_dir")} for row in shown])
    common = {c: shown[0][c] for c in SHARED if shown[0][c] is not None and len({row[c] for row in shown}) == 1}
    notes = [row["reason"] if row["state"] != "COMPLETE" else None for row in shown]
    brief = [{c: short(row[c]) if c == "params" else row[c] for c in BRIEF if c not in common} for row in shown]
    return "".join(f", {c} {v}" for c, v in common.items()), aligned(brief, WIDTH, notes)


def short(params: object) -> object:
    """Searched settings by their last name where no other setting of the trial has it (`lr` for `optimizer.lr`)."""
    if not isinstance(params, dict):
        return params
    last = [k.rpartition(".")[2] for k in params]
    return {n if last.count(n) == 1 else k: v for k, n, v in zip(params, last, params.values(), strict=True)}


def aligned(shown: list[dict], width: int | None = None, notes: list[str | None] | None = None) -> str:
    """Rows as aligned text: only the columns that hold a value, a dash where a row has none. With `width`, the last
    column wraps to fit in it, and each row's note follows, indented."""
    columns = [c for c in shown[0] if any(row[c] not in (None, "") for row in shown)]
    lines = [columns] + [[cell(c, row[c]) for c in columns] for row in shown]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    if width:
        widths[-1] = max(LAST_COLUMN, min(widths[-1], width - sum(widths[:-1]) - 2 * (len(widths) - 1)))
    indent = " " * (sum(widths[:-1]) + 2 * (len(widths) - 1))
    text = []
    for line, note in zip(lines, [None, *(notes or [None] * len(shown))], strict=True):
        head = "  ".join(t.ljust(w) for t, w in zip(line[:-1], widths, strict=False))
        last = textwrap.wrap(line[-1], widths[-1], break_on_hyphens=False) if width else [line[-1]]
        text += [f"{head}  {last[0]}".rstrip() if head else last[0], *(indent + rest for rest in last[1:])]
        if note and width:
            text += textwrap.wrap(note, width, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(text)


def cell(column: str, value: object) -> str:
    if value in (None, ""):
        return "-"
    if isinstance(value, dict):  # a trial's searched params
        return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
    if isinstance(value, list) and column == "value":  # a study's values
        return ", ".join(f"{v:.6g}" for v in value)
    if isinstance(value, list):  # a run's overrides
        return " ".join(map(str, value))
    return SHOWN.get(column, "{}").format(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m qd results",
        description="List sweep trials and course runs by dev accuracy, one table per data set with its best.",
    )
    parser.add_argument("sources", nargs="+", help="folders holding jobs' records, or Optuna storage URLs")
    parser.add_argument("--csv", type=Path, help="also write every trial to this CSV file (with its data_dir)")
    parser.add_argument("--study", help="only this study's trials, and the fixed configuration it records")
    parser.add_argument("--wide", action="store_true", help="every column, each row on one line")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        records = collect(args.sources)
        if args.study:
            fixed = recorded_configuration(args.sources, args.study)
            records = [r for r in records if r.get("study") == args.study]
        if not records:
            raise QDError(f"{', '.join(args.sources)}: no trials found (no job records, no study)")
    others = [r for r in records if "directions" in r]
    records = [r for r in records if "directions" not in r]
    for n, (data, group) in enumerate(by_data(records).items()):
        if n:
            print()
        heading = f"trained on {data}" if data else "data folder not recorded"
        common, text = printable(group, args.wide)
        print(f"{heading}: {len(group)} job{'s' * (len(group) != 1)}{common}\n{text}")
        print_best(group)
    for n, name in enumerate(sorted({r["study"] for r in others})):
        if n or records:
            print()
        print_other_study([r for r in others if r["study"] == name])
    records += others
    if args.study:
        print(f"\nstudy {args.study}: the fixed configuration its trials share")
        for name, value in sorted(fixed.items()):
            print(f"  {name}: {value}")
    if args.csv:
        with exit_on_user_error(), disk_errors(args.csv, f"{args.csv} is as it was" if args.csv.exists() else
                                               "nothing written"):  # fmt: skip
            atomic_write_text(args.csv, table(records).to_csv(index=False))
        print(f"wrote {args.csv}")


def print_other_study(records: list[dict]) -> None:
    """A study that is not qd's: its trials by trial number, then its best by its direction (or its Pareto front)."""
    from qd.experiment.lines import values_text

    study, directions = records[0]["study"], records[0]["directions"]
    print(f"study {study}: {len(records)} trial{'s' * (len(records) != 1)}, to {' and '.join(directions)} "
          f"{'its value' if len(directions) == 1 else f'its {len(directions)} values'}")  # fmt: skip
    rows = [{"trial": r["trial"], "state": r["state"].upper(), "value": r["values"], "params": r["params"],
             "reason": r["reason"]} for r in sorted(records, key=lambda r: r["trial"])]  # fmt: skip
    print(aligned(rows))
    best = best_by_direction(records)
    if not best:
        print(f"no complete trial: {len(records)} failed, pruned or running")
    elif len(directions) == 1:
        print(f"best: study {study} trial {best[0]['trial']}, {values_text('value', best[0]['values'])}")
    else:
        print(f"Pareto front: trials {', '.join(str(r['trial']) for r in sorted(best, key=lambda r: r['trial']))}")


def print_best(records: list[dict]) -> None:
    """The best complete job of `records`, and each unreadable one that may beat it."""
    complete = [r for r in records if r.get("state") == "complete"]
    best = rank(complete)[0] if complete else None
    if best:
        print(f"best: {best['model']} {label(best)}, dev accuracy {best['best_dev_acc']:.4f}")
        print(f"      {best['job_dir']}")
    else:
        print(f"no complete trial: {len(records)} failed, diverged, pruned or running")
    for record in may_beat(records, best):
        print(f"      {label(record)} may be better: {rival(record)}")
