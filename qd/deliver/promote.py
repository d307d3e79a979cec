"""Promotion: the best trial of each model becomes a verified deliverable, all or nothing.

    python -m qd promote --out submission --name jsmith12   # trials under outputs/, data in datasets/
    python -m qd promote outputs/sweeps/bestmodel sqlite:///outputs/sweeps/bestmodel.db --data-dir data/synthetic

For densenet, convnet and bestmodel it takes the complete trial of best dev accuracy whose
checkpoint exists, loads and matches its metrics.json; copies the checkpoint to <model>.pt;
predicts the test images; checks that the checkpoint reproduces the recorded dev accuracy, that
the course command line predicts the same, and bestmodel's size; writes the best model's README
and <JHID>_code.zip (--name; the course's YOURJHIDHERE_code.zip without it). The new submission is
built beside the old one and swapped in only when every check passed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from qd import ROOT
from qd.core.accuracies import dev_acc_and_loss
from qd.core.checkpoint import LIMITS, load_model
from qd.core.data import load_split
from qd.core.errors import QDError, exit_on_user_error
from qd.core.predict import predict, write_predictions
from qd.core.runtime import configure_cpu, resolve_device
from qd.deliver.bundle import MODELS, PREDICTIONS, write_code_zip
from qd.deliver.jhid import PLACEHOLDER, add_name_flag, prefix, rename_hint
from qd.deliver.model_readme import write_model_readme
from qd.deliver.swap import replaced
from qd.experiment.results import collect, label, rank

TOLERANCE = 1e-6


def check_trial(record: dict, data_dir: Path) -> str | None:
    """Why this trial cannot be promoted, or None when it can."""
    if record.get("state") != "complete":
        return f"state {record.get('state')}"
    if str(Path(record.get("data_dir", "")).resolve()) != str(data_dir.resolve()):
        return f"trained on {record.get('data_dir')}, not {data_dir}"
    checkpoint = Path(record.get("checkpoint", ""))
    if not checkpoint.is_file():
        return f"checkpoint {checkpoint} is missing"
    try:
        _, ckpt = load_model(checkpoint, expect=record["model"])
    except QDError as e:
        return str(e)
    if abs(ckpt["meta"]["dev_acc"] - record["best_dev_acc"]) > TOLERANCE:
        return f"checkpoint records dev accuracy {ckpt['meta']['dev_acc']}, metrics.json {record['best_dev_acc']}"
    return None


def pick_winners(records: list[dict], data_dir: Path) -> tuple[dict[str, dict], list[str]]:
    """The best trusted trial per model, and a line for each trial skipped."""
    winners, skipped = {}, []
    for record in rank(records):
        model = record.get("model")
        if model not in MODELS or model in winners:
            continue
        problem = check_trial(record, data_dir)
        if problem:
            skipped.append(f"skipped {model} {label(record)}: {problem}")
        else:
            winners[model] = record
    missing = [m for m in MODELS if m not in winners]
    if missing:
        raise QDError(f"no complete, verifiable trial on {data_dir} for {', '.join(missing)}; sweep those models first")
    return winners, skipped


def describe(record: dict) -> str:
    return (
        f"{record['model']}: {label(record)}, dev accuracy {record['best_dev_acc']:.4f}, "
        f"params {record.get('params') or record.get('overrides')}, {record['job_dir']}"
    )


def stage_model(record: dict, stage: Path, data_dir: Path) -> None:
    """Copy, reload and verify one winner; write its predictions."""
    model_name = record["model"]
    target = stage / f"{model_name}.pt"
    shutil.copyfile(record["checkpoint"], target)
    size, limit = target.stat().st_size, LIMITS.get(model_name)
    if limit and size > limit:
        raise QDError(f"{describe(record)}: checkpoint is {size:,} bytes; the course allows at most {limit:,}")
    model, _ = load_model(target, expect=model_name, device=resolve_device("auto"))  # as the course CLI predicts
    dev = load_split(data_dir, "dev")
    acc, _ = dev_acc_and_loss(model, dev.x, dev.y)
    if abs(acc - record["best_dev_acc"]) > TOLERANCE:
        raise QDError(f"{target}: reloaded, scores {acc:.6f} on dev, not the recorded {record['best_dev_acc']:.6f}")
    labels = predict(model, load_split(data_dir, "test").x)
    write_predictions(stage / PREDICTIONS[model_name], labels)
    check_course_predict(model_name, target, data_dir, stage / PREDICTIONS[model_name])


def check_course_predict(model: str, weights: Path, data_dir: Path, expected: Path) -> None:
    """The course command line on the promoted file must write the same predictions, byte for byte."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "p.csv")
        command = [sys.executable, str(ROOT / f"main_{model}.py"), "--mode", "predict", "--weights", str(weights),
                   "--dataDir", str(data_dir), "--predictionsFile", str(out)]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or out.read_bytes() != expected.read_bytes():
            raise QDError(
                f"main_{model}.py --mode predict on {weights} disagrees with promotion: {result.stderr.strip()}"
            )


def promote(sources: list[str], out: Path, data_dir: Path, jhid: str = PLACEHOLDER) -> dict[str, dict]:
    """Build, verify and swap in a new submission, its code zip named `<jhid>_code.zip`; return the winners."""
    records = collect(sources)
    winners, skipped = pick_winners(records, data_dir)
    for line in skipped:
        print(line)
    with replaced(out) as stage:
        for model in MODELS:
            stage_model(winners[model], stage, data_dir)
        write_model_readme(stage / "README.md", winners["bestmodel"], records)
        (stage / "winners.json").write_text(json.dumps(winners, indent=2, sort_keys=True, default=str) + "\n")
        write_code_zip(stage / f"{jhid}_code.zip", stage)
    return winners


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qd promote", description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*", default=["outputs"], help="sweep folders or storage URLs (outputs/)")
    parser.add_argument("--out", type=Path, default=Path("submission"), help="the submission folder (submission/)")
    parser.add_argument("--data-dir", type=Path, default=Path("datasets"), help="the data the trials trained on")
    add_name_flag(parser)
    args = parser.parse_args(argv)
    configure_cpu()
    with exit_on_user_error():
        jhid = prefix(args.name)
        winners = promote(args.sources, args.out, args.data_dir, jhid)
    for model in MODELS:
        print(describe(winners[model]))
    files = f"{jhid}_code.zip, {', '.join(f'{m}.pt' for m in MODELS)}, predictions, README.md"
    print(f"promoted to {args.out}/ ({files})")
    hint = rename_hint(jhid, f"{jhid}_code.zip")
    if hint:
        print(hint)

