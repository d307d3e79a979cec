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
README and, once the three models are there, <JHID>_code.zip. The JHID is --name's, remembered in the
submission's jhid.txt for later promotions and the report; without either, the course's placeholder
(YOURJHIDHERE_code.zip). The new submission is built beside the old one, keeping the old one's files of the
models not promoted, and swapped in only when every check passed. Each model's candidates are summed up in one
line: how many, how many eligible, how many skipped and why.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from qd import ROOT
from qd.core.data import load_split
from qd.core.defaults import DEFAULTS
from qd.core.errors import QDError, disk_errors, exit_on_user_error
from qd.core.fsutil import atomic_write_text
from qd.core.job import quick_train
from qd.deliver.bundle import DELIVERABLES, MODELS, PREDICTIONS, WINNERS, write_code_zip
from qd.deliver.jhid import NAME_FILE, PLACEHOLDER, add_name_flag, rename_hint, submission_name
from qd.deliver.swap import replaced, unchanged
from qd.experiment.conf import CONF_DIR
from qd.experiment.identity import NOT_SETTINGS, differences, flatten, without
from qd.experiment.results import UNREADABLE, collect, label, may_beat, rank, rival, show, study_databases, submitted

# torch is imported inside the functions that use it (qd.core.checkpoint, predict, runtime, ...), after the
# arguments are parsed: --help answers at once.
TOLERANCE = 1e-6
# Course question 1.5.7: densenet.pt uses the default settings for all values except the learning rate.
COURSE_RULES = {"densenet": ("optimizer.lr",)}
# What the course's rules leave free besides the keys that are not settings: the data, the search space, the seed and
# how a run evaluates and gives up.
COURSE_FREE = NOT_SETTINGS + ("data", "search", "train.seed", "train.eval_every", "train.max_loss",
                              "train.not_learning_after")  # fmt: skip
DEFAULT_SOURCES = ("outputs", "model_files")  # where sweeps and run.sh's course runs leave their records
STATE_WORDS = {"fail": "failed", UNREADABLE: "with an unreadable record"}  # a trial state as a skipped count says it


def rule_breach(record: dict, data_dir: Path, any_settings: bool = False) -> tuple[str, str] | None:
    """Why this candidate may not be promoted, as (the cause, in words shared by every candidate with it; this
    candidate's details); None when it may."""
    state = record.get("state")
    if state != "complete":
        return STATE_WORDS.get(state, state), ""
    if Path(record.get("data_dir", "")).resolve() != data_dir.resolve():
        return f"trained on {show(record.get('data_dir'))}", ""
    if not any_settings and record["model"] in COURSE_RULES:
        changed = course_rule_breach(record)
        if changed:
            return ("differ from the course defaults in more than the learning rate, which course question 1.5.7 "
                    "asks for (--any-settings lifts the rule)", changed)  # fmt: skip
    return None


def checkpoint_problem(record: dict) -> tuple[str, str] | None:
    """Why this candidate's checkpoint cannot be trusted, as (cause, this candidate's details); None when it can."""
    from qd.core.checkpoint import load_model

    checkpoint = Path(record["checkpoint"])
    if not checkpoint.is_file():
        return "with the checkpoint missing", str(checkpoint)
    try:
        _, ckpt = load_model(checkpoint, expect=submitted(record))
    except QDError as e:
        return "with a checkpoint that does not load", str(e)
    if not abs(ckpt["meta"]["dev_acc"] - record["best_dev_acc"]) <= TOLERANCE:  # NaN is never close
        return ("with a checkpoint of another dev accuracy than its record",
                f"{checkpoint} records {ckpt['meta']['dev_acc']}, metrics.json {record['best_dev_acc']}")  # fmt: skip
    return None


def course_rule_breach(record: dict) -> str:
    """`key: default -> value; ...` for the record's settings that the course rule of its model does not free (the
    defaults at QD_QUICK's scale where it is set)."""
    if "config" not in record:
        return "its record holds no config"
    defaults = copy.deepcopy(DEFAULTS[record["model"]])
    quick_train(defaults["train"])
    free = COURSE_FREE + COURSE_RULES[record["model"]]
    return differences(without(flatten(defaults), free), without(flatten(record["config"]), free))


def pick_winners(
    records: list[dict], data_dir: Path, models: tuple[str, ...] = MODELS, any_settings: bool = False
) -> tuple[dict[str, dict], list[str]]:
    """The best trusted candidate of each of `models` that has one, and a summary line for each model with
    candidates. A candidate ranked below its model's winner is eligible when it keeps the rules; its checkpoint is
    not loaded."""
    winners, skipped = {}, {m: [] for m in models}
    for record in rank(records):
        model = submitted(record)
        if model not in models:
            continue
        problem = rule_breach(record, data_dir, any_settings)
        if problem is None and model not in winners:
            problem = checkpoint_problem(record)
        if problem:
            skipped[model].append((*problem, record))
        elif model not in winners:
            winners[model] = record
    lines = [summary(m, [r for r in records if submitted(r) == m], skipped[m], data_dir) for m in models]
    return {m: winners[m] for m in MODELS if m in winners}, [line for line in lines if line]


def summary(model: str, candidates: list[dict], skipped: list[tuple[str, str, dict]], data_dir: Path) -> str | None:
    """`<model>: N candidates, E eligible, S skipped: <count> <cause>; ...`, causes most frequent first, the first
    candidate's details where they are its own; with data_hint's advice. None without candidates."""
    if not candidates:
        return None
    causes = Counter(cause for cause, _, _ in skipped)
    first = {}
    for cause, details, record in skipped:
        first.setdefault(cause, f" (first {label(record)}: {details})" if details else "")
    why = "; ".join(f"{n} {cause}{first[cause]}" for cause, n in sorted(causes.items(), key=lambda c: (-c[1], c[0])))
    hint = data_hint(candidates, data_dir, f"{model} candidate")
    n = len(candidates)
    return (f"{model}: {n} candidate{'s' * (n != 1)}, {n - len(skipped)} eligible, {len(skipped)} skipped"
            + (f": {why}" if why else "") + (f". {hint[:1].upper()}{hint[1:]}" if hint else ""))  # fmt: skip


def data_hint(candidates: list[dict], data_dir: Path, whose: str) -> str | None:
    """Where no complete candidate was trained on `data_dir` but some on other data: those data sets and the
    --data-dir that takes them; None otherwise."""
    complete = [r for r in candidates if r.get("state") == "complete"]
    on = sorted({show(r["data_dir"]) for r in complete if r.get("data_dir")})
    if not on or any(Path(r.get("data_dir", "")).resolve() == data_dir.resolve() for r in complete):
        return None
    if len(on) == 1:
        return f"every complete {whose} was trained on {on[0]}: add --data-dir {on[0]}"
    return (f"the complete {whose}s were trained on {' or '.join(on)}, none on {data_dir}: add "
            + " or ".join(f"--data-dir {d}" for d in on))  # fmt: skip


def describe(record: dict) -> str:
    """`<model>: <job>, dev accuracy A, params [...], <folder>`; a model submitted as another, `bestmodel (mlp)`."""
    model, as_ = record["model"], submitted(record)
    return (
        f"{model if as_ == model else f'{as_} ({model})'}: {label(record)}, dev accuracy {record['best_dev_acc']:.4f}, "
        f"params {record.get('params') or record.get('overrides')}, {record['job_dir']}"
    )


def stage_model(record: dict, stage: Path, data_dir: Path) -> None:
    """Copy, reload and verify one winner; write its predictions."""
    from qd.core.accuracies import dev_acc_and_loss
    from qd.core.checkpoint import LIMITS, load_model
    from qd.core.predict import predict, write_predictions
    from qd.core.runtime import resolve_device

    model_name = submitted(record)
    target = stage / f"{model_name}.pt"
    shutil.copyfile(record["checkpoint"], target)
    size, limit = target.stat().st_size, LIMITS.get(model_name)
    if limit and size > limit:
        raise QDError(f"{describe(record)}: checkpoint is {size:,} bytes; the course allows at most {limit:,}")
    model, _ = load_model(target, expect=model_name, device=resolve_device("auto"))  # as the course CLI predicts
    dev = load_split(data_dir, "dev")
    acc, _ = dev_acc_and_loss(model, dev.x, dev.y)
    if not abs(acc - record["best_dev_acc"]) <= TOLERANCE:  # NaN is never close
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
    """Build, verify and swap in a new submission, its code zip named `<jhid>_code.zip` (a JHID other than the
    placeholder is remembered in the submission's NAME_FILE); return the winners promoted this time. A model with a
    completed candidate whose record cannot be read and that might beat its winner is refused, unless
    `skip_unreadable`."""
    from qd.deliver.model_readme import write_model_readme

    records = collect(sources)
    winners, summaries = pick_winners(records, data_dir, models, any_settings)
    for line in summaries:
        print(line)
    unsure = [f"{m}: {label(r)} may be better than any other candidate: {rival(r)}" for m in models
              for r in may_beat(records, winners.get(m), m)]  # fmt: skip
    if unsure and not skip_unreadable:
        raise QDError(f"{'; '.join(unsure)}; no winner chosen (--skip-unreadable chooses among the others)")
    missing = [m for m in models if m not in winners]
    if missing and (require_all or not winners):
        hint = data_hint([r for r in records if submitted(r) in missing], data_dir, "candidate")
        raise QDError(f"no complete, verifiable candidate on {data_dir} for {', '.join(missing)}"
                      + (f": {hint}" if hint else "; sweep or train those models first (the lines above say why "
                         "their candidates were skipped)"))  # fmt: skip
    with replaced(out) as stage:
        kept = keep_others(out, stage, winners)
        for model in winners:
            stage_model(winners[model], stage, data_dir)
        if "bestmodel" in winners:
            write_model_readme(stage / "README.md", winners["bestmodel"], records)
        atomic_write_text(stage / WINNERS, json.dumps(kept | winners, indent=2, sort_keys=True, default=str) + "\n")
        if jhid != PLACEHOLDER:
            atomic_write_text(stage / NAME_FILE, jhid + "\n")
        if all((stage / name).is_file() for name in DELIVERABLES):
            write_code_zip(stage / f"{jhid}_code.zip", stage)
    for model in MODELS:
        if model not in winners:
            print(f"{model}: kept from the previous submission" if model in kept else
                  f"{model}: no eligible candidate; not in the submission")  # fmt: skip
    return winners


def keep_others(out: Path, stage: Path, winners: dict[str, dict]) -> dict[str, dict]:
    """Copy the previous submission's files into `stage`, but for the models promoted now and its name (promote
    writes both anew); their winners (QDError where the previous submission's list of them is damaged)."""
    if not (out / WINNERS).is_file() or set(winners) == set(MODELS):
        return {}
    try:
        previous = json.loads((out / WINNERS).read_text())
        why = "not a mapping of models to records"
    except ValueError as e:
        previous, why = None, f"not complete JSON ({e})"
    if not (isinstance(previous, dict) and all(isinstance(r, dict) for r in previous.values())):
        raise QDError(f"{out / WINNERS}: damaged ({why}); expected the previous submission's winners: promote every "
                      f"model (--models {','.join(MODELS)}) to write it anew")  # fmt: skip
    replaced_now = {n for m in winners for n in (f"{m}.pt", PREDICTIONS[m])} | {WINNERS, NAME_FILE}
    replaced_now |= {"README.md"} if "bestmodel" in winners else set()
    for path in out.iterdir():  # the code zip is made anew, under this promotion's name
        if path.is_file() and path.name not in replaced_now and not path.name.endswith("_code.zip"):
            shutil.copy2(path, stage / path.name)
    return {m: r for m, r in previous.items() if m not in winners}


def candidate_sources(given: Sequence[str], runs: Sequence[str] = ()) -> list[str]:
    """The sources named, else those of DEFAULT_SOURCES that exist here with the study databases under them (a
    trial its study says completed is then missed by name if its folder is gone); and `runs`."""
    default = [d for d in DEFAULT_SOURCES if Path(d).is_dir()]
    sources = [*(given or [*default, *(url for d in default for url in study_databases(Path(d)))]), *runs]
    if not sources:
        raise QDError("no outputs/ or model_files/ here: name the sweep folders, course-run folders or storages")
    return sources


def model_list(text: str) -> tuple[str, ...]:
    models = tuple(m.strip() for m in text.split(",") if m.strip())
    if not models or set(models) - set(MODELS):
        others = [m for m in set(models) - set(MODELS) if (CONF_DIR / "model" / f"{m}.yaml").is_file()]
        hint = f" ({', '.join(sorted(others))}: promoted as bestmodel)" if others else ""
        raise argparse.ArgumentTypeError(f"got {text!r}; expected a comma-separated list of {', '.join(MODELS)}{hint}")
    return models


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qd promote", description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*", help="sweep folders, course-run folders or storage URLs "
                        "(default: outputs/ and model_files/, those that exist)")  # fmt: skip
    parser.add_argument(
        "--runs",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of course runs' records (run.sh's model_files/) to take candidates from",
    )
    parser.add_argument("--out", type=Path, default=Path("submission"), help="the submission folder (submission/)")
    parser.add_argument("--data-dir", type=Path, default=Path("datasets"), help="the data the candidates trained on")
    parser.add_argument("--models", type=model_list, default=MODELS, help="which models to promote (all three)")
    parser.add_argument("--require-all", action="store_true", help="fail unless every model asked for has a winner")
    parser.add_argument(
        "--any-settings",
        action="store_true",
        help="densenet: any settings, not only the course defaults but the learning rate (1.5.7)",
    )
    parser.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="choose winners among the readable records, though an unreadable one may be better",
    )
    add_name_flag(parser)
    args = parser.parse_args(argv)
    from qd.core.runtime import configure_cpu

    configure_cpu()
    with exit_on_user_error(), disk_errors(args.out, unchanged(args.out)):
        jhid = submission_name(args.name, args.out)
        winners = promote(candidate_sources(args.sources, args.runs), args.out, args.data_dir, args.models,
                          args.require_all, args.any_settings, jhid, args.skip_unreadable)  # fmt: skip
    for model in winners:
        print(describe(winners[model]))
    print(f"promoted to {args.out}/: {', '.join(sorted(p.name for p in args.out.iterdir()))}")
    zip_name = f"{jhid}_code.zip"
    if args.name is None and jhid != PLACEHOLDER and (args.out / zip_name).exists():
        print(f"{zip_name}: named after {args.out / NAME_FILE}, the JHID of the last --name (--name changes it)")
    hint = rename_hint(jhid, zip_name)
    if hint and (args.out / zip_name).exists():
        print(hint)
