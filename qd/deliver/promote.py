"""Promotion: the best candidate of each model becomes a verified deliverable.

    python -m qd promote --out submission --name jsmith12   # sweeps under outputs/, course runs in model_files/
    python -m qd promote outputs/sweeps/bestmodel sqlite:///outputs/sweeps/bestmodel.db --data-dir data/synthetic
    python -m qd promote --models densenet                # densenet only; the submission's other files are kept

Candidates are sweep trials and course runs (run.sh's trainings leave model_files/<stem>.json). For each
model asked for it takes the complete candidate of best dev accuracy whose checkpoint exists, loads and
matches its record; for densenet, only one trained with the course defaults but for the learning rate
(course question 1.5.7; --any-settings lifts it). A completed candidate whose record cannot be read might be
the better one: promotion then refuses (--skip-unreadable chooses among the others). It copies the
checkpoint to <model>.pt, predicts the test images, checks that the checkpoint reproduces the recorded dev
accuracy, that the course command line predicts the same, and bestmodel's size; writes the best model's
README and, once the three models are there, <JHID>_code.zip (--name; the course's YOURJHIDHERE_code.zip
without it). The new submission is built beside the old one, keeping the old one's files of the models not
promoted, and swapped in only when every check passed.
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
from qd.core.defaults import DEFAULTS
from qd.core.errors import QDError, disk_errors, exit_on_user_error
from qd.core.fsutil import atomic_write_text
from qd.core.predict import predict, write_predictions
from qd.core.runtime import configure_cpu, resolve_device
from qd.deliver.bundle import DELIVERABLES, MODELS, PREDICTIONS, WINNERS, write_code_zip
from qd.deliver.jhid import PLACEHOLDER, add_name_flag, prefix, rename_hint
from qd.deliver.model_readme import write_model_readme
from qd.deliver.swap import replaced, unchanged
from qd.experiment.identity import NOT_SETTINGS, differences, flatten, without
from qd.experiment.results import UNREADABLE, collect, label, may_beat, rank, rival

TOLERANCE = 1e-6
# Course question 1.5.7: densenet.pt uses the default settings for all values except the learning rate.
COURSE_RULES = {"densenet": ("optimizer.lr",)}
# What the course's rules leave free besides the keys that are not settings: the data, the search space, the seed and
# how a run evaluates and gives up.
COURSE_FREE = NOT_SETTINGS + ("data", "search", "train.seed", "train.eval_every", "train.max_loss",
                              "train.not_learning_after")  # fmt: skip


def check_trial(record: dict, data_dir: Path, any_settings: bool = False) -> str | None:
    """Why this candidate cannot be promoted, or None when it can."""
    if record.get("state") != "complete":
        return f"state {record.get('state')}"
    if str(Path(record.get("data_dir", "")).resolve()) != str(data_dir.resolve()):
        return f"trained on {record.get('data_dir')}, not {data_dir}"
    if not any_settings and record["model"] in COURSE_RULES:
        changed = course_rule_breach(record)
        if changed:
            return (f"settings other than the learning rate differ from the course defaults ({changed}); course "
                    "question 1.5.7 asks for those (--any-settings lifts the rule)")  # fmt: skip
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


def course_rule_breach(record: dict) -> str:
    """`key: default -> value; ...` for the record's settings that the course rule of its model does not free."""
    if "config" not in record:
        return "its record holds no config"
    free = COURSE_FREE + COURSE_RULES[record["model"]]
    return differences(without(flatten(DEFAULTS[record["model"]]), free), without(flatten(record["config"]), free))


def pick_winners(
    records: list[dict], data_dir: Path, models: tuple[str, ...] = MODELS, any_settings: bool = False
) -> tuple[dict[str, dict], list[str]]:
    """The best trusted candidate of each of `models` that has one, and a line for each candidate skipped."""
    winners, skipped = {}, []
    for record in rank(records):
        model = record.get("model")
        if model not in models or model in winners or record.get("state") == UNREADABLE:  # unreadable: named already
            continue
        problem = check_trial(record, data_dir, any_settings)
        if problem:
            skipped.append(f"skipped {model} {label(record)}: {problem}")
        else:
            winners[model] = record
    return {m: winners[m] for m in MODELS if m in winners}, skipped


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


def promote(
    sources: list[str],
    out: Path,
    data_dir: Path,
    models: tuple[str, ...] = MODELS,
    require_all: bool = False,
    any_settings: bool = False,
    jhid: str = PLACEHOLDER,
    skip_unreadable: bool = False,
) -> dict[str, dict]:
    """Build, verify and swap in a new submission, its code zip named `<jhid>_code.zip`; return the winners
    promoted this time. A model with a completed candidate whose record cannot be read and that might beat its
    winner is refused, unless `skip_unreadable`."""
    records = collect(sources)
    winners, skipped = pick_winners(records, data_dir, models, any_settings)
    for line in skipped:
        print(line)
    unsure = [f"{m}: {label(r)} may be better than any other candidate: {rival(r)}" for m in models
              for r in may_beat(records, winners.get(m), m)]  # fmt: skip
    if unsure and not skip_unreadable:
        raise QDError(f"{'; '.join(unsure)}; no winner chosen (--skip-unreadable chooses among the others)")
    missing = [m for m in models if m not in winners]
    if missing and (require_all or not winners):
        raise QDError(f"no complete, verifiable candidate on {data_dir} for {', '.join(missing)}; sweep or train "
                      "those models first (a line above says why each candidate was skipped)")  # fmt: skip
    with replaced(out) as stage:
        kept = keep_others(out, stage, winners)
        for model in winners:
            stage_model(winners[model], stage, data_dir)
        if "bestmodel" in winners:
            write_model_readme(stage / "README.md", winners["bestmodel"], records)
        atomic_write_text(stage / WINNERS, json.dumps(kept | winners, indent=2, sort_keys=True, default=str) + "\n")
        if all((stage / name).is_file() for name in DELIVERABLES):
            write_code_zip(stage / f"{jhid}_code.zip", stage)
    for model in MODELS:
        if model not in winners:
            print(f"{model}: kept from the previous submission" if model in kept else
                  f"{model}: no candidate; not in the submission")  # fmt: skip
    return winners


def keep_others(out: Path, stage: Path, winners: dict[str, dict]) -> dict[str, dict]:
    """Copy the previous submission's files into `stage`, but for the models promoted now; their winners."""
    if not (out / WINNERS).is_file():
        return {}
    replaced_now = {n for m in winners for n in (f"{m}.pt", PREDICTIONS[m])} | {WINNERS}
    replaced_now |= {"README.md"} if "bestmodel" in winners else set()
    for path in out.iterdir():  # the code zip is made anew, under this promotion's name
        if path.is_file() and path.name not in replaced_now and not path.name.endswith("_code.zip"):
            shutil.copy2(path, stage / path.name)
    previous = json.loads((out / WINNERS).read_text())
    return {m: r for m, r in previous.items() if m not in winners}


def model_list(text: str) -> tuple[str, ...]:
    models = tuple(m.strip() for m in text.split(",") if m.strip())
    if not models or set(models) - set(MODELS):
        raise argparse.ArgumentTypeError(f"got {text!r}; expected a comma-separated list of {', '.join(MODELS)}")
    return models


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qd promote", description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*", help="sweep folders, course-run folders or storage URLs "
                        "(default: outputs/ and model_files/, those that exist)")  # fmt: skip
    parser.add_argument("--runs", action="append", default=[], metavar="DIR",
                        help="a folder of course runs' records (run.sh's model_files/) to take candidates from")
    parser.add_argument("--out", type=Path, default=Path("submission"), help="the submission folder (submission/)")
    parser.add_argument("--data-dir", type=Path, default=Path("datasets"), help="the data the candidates trained on")
    parser.add_argument("--models", type=model_list, default=MODELS, help="which models to promote (all three)")
    parser.add_argument("--require-all", action="store_true", help="fail unless every model asked for has a winner")
    parser.add_argument("--any-settings", action="store_true",
                        help="densenet: any settings, not only the course defaults but the learning rate (1.5.7)")
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="choose winners among the readable records, though an unreadable one may be better")
    add_name_flag(parser)
    args = parser.parse_args(argv)
    sources = args.sources or [d for d in ("outputs", "model_files") if Path(d).is_dir()]
    configure_cpu()
    with exit_on_user_error(), disk_errors(args.out, unchanged(args.out)):
        if not sources + args.runs:
            raise QDError("no outputs/ or model_files/ here: name the sweep folders, course-run folders or storages")
        jhid = prefix(args.name)
        winners = promote(sources + args.runs, args.out, args.data_dir, args.models, args.require_all,
                          args.any_settings, jhid, args.skip_unreadable)  # fmt: skip
    for model in winners:
        print(describe(winners[model]))
    print(f"promoted to {args.out}/: {', '.join(sorted(p.name for p in args.out.iterdir()))}")
    hint = rename_hint(jhid, f"{jhid}_code.zip")
    if hint and (args.out / f"{jhid}_code.zip").exists():
        print(hint)
