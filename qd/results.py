"""Which trial won, and where its files are: every trial of sweep folders or studies as one table.

python -m qd.results outputs/sweeps/densenet_lr            # folders holding metrics.json files
python -m qd.results sqlite:///outputs/sweeps/densenet_lr.db  # every study in a storage
python -m qd.results outputs --csv trials.csv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qd.errors import QDError, exit_on_user_error

COLUMNS = ["model", "study", "trial", "state", "best_dev_acc", "best_step", "final_dev_acc", "wall_time_s",
           "param_count", "checkpoint_bytes", "params", "job_dir", "reason"]  # fmt: skip


def read_metrics(path: Path) -> dict:
    record = json.loads(path.read_text())
    record.setdefault("job_dir", str(path.parent.resolve()))
    return record


def from_folder(folder: Path) -> list[dict]:
    """Every job under `folder` that wrote a metrics.json."""
    if not folder.is_dir():
        raise QDError(
            f"{folder}: not a folder or a storage URL; expected a sweep folder or sqlite:///... / postgresql://..."
        )
    return [read_metrics(p) for p in sorted(folder.rglob("metrics.json"))]


def from_storage(url: str) -> list[dict]:
    """Every trial of every study in an Optuna storage, joined with its job's metrics.json."""
    import optuna

    from qd.sweep import REASON

    records = []
    for summary in optuna.get_all_study_summaries(storage=url):
        study = optuna.load_study(study_name=summary.study_name, storage=url)
        for t in study.get_trials(deepcopy=False):
            metrics_file = Path(t.user_attrs.get("job_dir", "/nonexistent"), "metrics.json")
            record = read_metrics(metrics_file) if metrics_file.exists() else {}
            record.update(study=summary.study_name, trial=t.number, params=t.params, state=t.state.name.lower())
            record.setdefault("best_dev_acc", t.value)
            record.setdefault("reason", t.user_attrs.get(REASON, ""))
            records.append(record)
    return records


def collect(sources: list[str]) -> list[dict]:
    records = []
    for source in sources:
        records += from_storage(source) if "://" in source else from_folder(Path(source))
    return records


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
    parser = argparse.ArgumentParser(prog="python -m qd.results", description="List sweep trials by dev accuracy.")
    parser.add_argument("sources", nargs="+", help="sweep folders (with metrics.json files) or Optuna storage URLs")
    parser.add_argument("--csv", type=Path, help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        records = collect(args.sources)
        if not records:
            raise QDError(f"{', '.join(args.sources)}: no trials found (no metrics.json, no study)")
        df = table(records)
    import pandas as pd

    with pd.option_context("display.max_colwidth", 60, "display.width", 200, "display.max_rows", 500):
        print(df.drop(columns=["job_dir"]).to_string(index=False))
    best = df.iloc[0]
    print(f"\nbest: {best['model']} {best['study']} trial {best['trial']}, dev accuracy {best['best_dev_acc']:.4f}")
    print(f"      {best['job_dir']}")
    if args.csv:
        df.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
