"""The submission's README.md: the best model and what its sweeps measured, for a grader in a minute."""

from __future__ import annotations

from pathlib import Path
from statistics import mean

from qd.core.checkpoint import read_checkpoint


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _groups(trials: list[dict], name: str) -> list[tuple[str, list[float]]]:
    """Dev accuracies of complete trials grouped by a parameter: per value, or in thirds for numbers."""
    pairs = sorted((t["params"][name], t["best_dev_acc"]) for t in trials if name in t["params"])
    if not pairs:
        return []
    values = {v for v, _ in pairs}
    if all(isinstance(v, (int, float)) for v in values) and len(values) > 3:
        thirds = [pairs[i * len(pairs) // 3 : (i + 1) * len(pairs) // 3] for i in range(3)]
        return [(f"{_fmt(g[0][0])} to {_fmt(g[-1][0])}", [a for _, a in g]) for g in thirds if g]
    return [(_fmt(v), [a for w, a in pairs if w == v]) for v in sorted(values, key=str)]


def effects(trials: list[dict]) -> list[str]:
    """A table and a sentence per searched parameter."""
    lines = []
    for name in sorted({k for t in trials for k in t["params"]}):
        groups = _groups(trials, name)
        if len(groups) < 2:
            continue
        lines += [f"### {name}", "", "| value | trials | mean dev acc | best dev acc |", "| --- | --- | --- | --- |"]
        lines += [f"| {label} | {len(a)} | {mean(a):.4f} | {max(a):.4f} |" for label, a in groups]
        best = max(groups, key=lambda g: mean(g[1]))
        worst = min(groups, key=lambda g: mean(g[1]))
        gap = 100 * (mean(best[1]) - mean(worst[1]))
        lines += ["", f"Best on average with {name} = {best[0]} ({mean(best[1]):.4f}); worst with {worst[0]} "
                  f"({mean(worst[1]):.4f}): a difference of {gap:.1f} points.", ""]  # fmt: skip
    return lines


def write_model_readme(path: Path, winner: dict, records: list[dict]) -> None:
    cfg = read_checkpoint(winner["checkpoint"])["meta"]["config"]
    trials = sorted(
        (r for r in records if r.get("model") == "bestmodel"), key=lambda r: (str(r.get("study")), r.get("trial") or 0)
    )
    complete = [r for r in trials if r.get("state") == "complete" and isinstance(r.get("params"), dict)]
    states = {s: sum(r.get("state") == s for r in trials) for s in ("complete", "pruned", "failed")}
    optimizer = cfg["optimizer"]
    lines = [
        "# Best model",
        "",
        f"Dev accuracy **{winner['best_dev_acc']:.4f}** (study {winner.get('study')}, trial {winner.get('trial')}), "
        f"{winner['param_count']:,} parameters, checkpoint {winner['checkpoint_bytes']:,} bytes.",
        "",
        "## The submitted model",
        "",
        f"- architecture: `{cfg['model']}`",
        f"- optimizer: {optimizer['_target_'].rsplit('.', 1)[-1]}, "
        + ", ".join(f"{k} {_fmt(v)}" for k, v in optimizer.items() if not k.startswith("_")),
        f"- batch size {cfg['train']['batch_size']}, {cfg['train']['steps']} steps, scheduler `{cfg['scheduler']}`",
        f"- label smoothing {cfg['train']['label_smoothing']}, weight averaging (EMA decay) {cfg['train']['ema']}, "
        f"float16 storage: {cfg['train']['half_storage']}",
        f"- augmentation: `{ {k: v for k, v in cfg['augmentation'].items() if v.get('p', 0) > 0} }`",
        "",
        "## What was tried",
        "",
        f"{len(trials)} trials: {states['complete']} complete, {states['pruned']} pruned early, "
        f"{states['failed']} failed.",
        "",
        "| study | trial | state | dev acc | parameters |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in trials:
        acc = f"{r['best_dev_acc']:.4f}" if isinstance(r.get("best_dev_acc"), float) else ""
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in (r.get("params") or {}).items())
        lines.append(f"| {r.get('study')} | {r.get('trial')} | {r.get('state')} | {acc} | {params} |")
    lines += ["", "## What helped and what did not (measured on the complete trials)", ""] + effects(complete)
    path.write_text("\n".join(lines).rstrip() + "\n")
