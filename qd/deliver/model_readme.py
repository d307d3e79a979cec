"""The submission's README.md: the best model and what its sweeps measured, for a grader in a minute."""

from __future__ import annotations

import inspect
from pathlib import Path
from statistics import mean

import torch
from torch import nn

from qd.core.checkpoint import load_model
from qd.core.data import IMAGE_SIDE
from qd.core.fsutil import atomic_write_text
from qd.experiment.results import evidence, label, steps, submitted


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def layer_table(model: nn.Module) -> list[tuple[str, str, tuple[int, ...], int]]:
    """(name, module, output shape, parameters) for each leaf module, in the order a 1x1x28x28 image reaches it."""
    shapes: dict[nn.Module, tuple[int, ...]] = {}

    def record(module: nn.Module, _, out: torch.Tensor) -> None:  # the first call only: tta runs layers twice
        shapes.setdefault(module, tuple(out.shape))

    hooks = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, IMAGE_SIDE, IMAGE_SIDE, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    names = {m: name for name, m in model.named_modules()}
    return [(names[m], repr(m), shape, sum(p.numel() for p in m.parameters())) for m, shape in shapes.items()]


def groups(trials: list[dict], name: str) -> list[tuple[str, list[float]]]:
    """Dev accuracies of complete trials grouped by a parameter: per value, or in thirds for numbers."""
    pairs = sorted((t["params"][name], t["best_dev_acc"]) for t in trials if name in t["params"])
    if not pairs:
        return []
    values = {v for v, _ in pairs}
    if all(isinstance(v, (int, float)) for v in values) and len(values) > 3:
        thirds = [pairs[i * len(pairs) // 3 : (i + 1) * len(pairs) // 3] for i in range(3)]
        return [(f"{_fmt(g[0][0])} to {_fmt(g[-1][0])}", [a for _, a in g]) for g in thirds if g]
    return [(_fmt(v), [a for w, a in pairs if w == v]) for v in sorted(values, key=str)]


def effect(name: str, grouped: list[tuple[str, list[float]]]) -> str:
    """One sentence on a parameter's groups: the best and worst on average, a tie said as a tie (means as printed)."""
    means = [(label, round(mean(accs), 4), len(accs)) for label, accs in grouped]

    def said(rows: list[tuple[str, float, int]]) -> str:
        return " and ".join(f"{label} ({acc:.4f}, {n} trial{'s' * (n != 1)})" for label, acc, n in rows)

    high, low = max(acc for _, acc, _ in means), min(acc for _, acc, _ in means)
    if high == low:
        return f"{name}: no difference measured between {said(means)}."
    best, worst = [g for g in means if g[1] == high], [g for g in means if g[1] == low]
    return (f"{name}: best on average with {said(best)}, worst with {said(worst)}: a difference of "
            f"{100 * (high - low):.1f} points.")  # fmt: skip


def effects(trials: list[dict]) -> list[str]:
    """A table and a sentence per searched parameter."""
    lines = []
    for name in sorted({k for t in trials for k in t["params"]}):
        grouped = groups(trials, name)
        if len(grouped) < 2:
            continue
        lines += [f"### {name}", "", "| value | trials | mean dev acc | best dev acc |", "| --- | --- | --- | --- |"]
        lines += [f"| {label} | {len(a)} | {mean(a):.4f} | {max(a):.4f} |" for label, a in grouped]
        lines += ["", effect(name, grouped), ""]
    return lines


def architecture(model: nn.Module, model_cfg: dict) -> list[str]:
    """The model in words (its class's own description and its settings) and as a layer table."""
    settings = ", ".join(f"{k} = {_fmt(v)}" for k, v in model_cfg.items() if k != "name")
    table = layer_table(model)
    return [
        f"{type(model).__name__} (`models.py` in code.zip): {' '.join(inspect.getdoc(model).split())}",
        "",
        f"Its settings: {settings}.",
        "",
        f"| layer | module | output shape (one {IMAGE_SIDE}x{IMAGE_SIDE} image) | parameters |",
        "| --- | --- | --- | --- |",
        *(f"| {name} | `{module}` | {' x '.join(map(str, shape))} | {n:,} |" for name, module, shape, n in table),
        f"| total | | | {sum(n for *_, n in table):,} |",
    ]


def recipe(cfg: dict) -> list[str]:
    """How the model was trained, from its checkpoint's config."""
    optimizer, train = cfg["optimizer"], cfg["train"]
    augmentation = ", ".join(
        f"{k} ({', '.join(f'{s} {_fmt(v)}' for s, v in op.items())})" for k, op in cfg["augmentation"].items()
        if op.get("p", 0) > 0
    )  # fmt: skip
    scheduler = ", ".join(f"{k} {_fmt(v)}" for k, v in cfg["scheduler"].items())
    return [
        f"- optimizer: {optimizer['_target_'].rsplit('.', 1)[-1]}, "
        + ", ".join(f"{k} {_fmt(v)}" for k, v in optimizer.items() if not k.startswith("_")),
        f"- batch size {train['batch_size']}, {train['steps']} steps, learning-rate schedule: {scheduler}",
        f"- label smoothing {train['label_smoothing']}, weight averaging (EMA decay) {train['ema']}, "
        f"float16 storage: {train['half_storage']}",
        f"- augmentation: {augmentation or 'none'}",
    ]


def write_model_readme(path: Path, winner: dict, records: list[dict]) -> None:
    model, ckpt = load_model(winner["checkpoint"])
    cfg = ckpt["meta"]["config"]
    comparable, left_out = evidence([r for r in records if submitted(r) == "bestmodel"], {"bestmodel": winner})
    trials = sorted(comparable, key=lambda r: (str(r.get("study")), r.get("trial") or 0, label(r)))
    complete = [r for r in trials if r.get("state") == "complete" and isinstance(r.get("params"), dict)]
    states = {s: sum(r.get("state") == s for r in trials)
              for s in ("complete", "diverged", "pruned", "failed", "unreadable")}  # fmt: skip
    unreadable = f", {states['unreadable']} unreadable" if states["unreadable"] else ""
    lines = [
        "# Best model",
        "",
        f"Dev accuracy **{winner['best_dev_acc']:.4f}** ({label(winner)}), "
        f"{winner['param_count']:,} parameters, checkpoint {winner['checkpoint_bytes']:,} bytes.",
        "",
        "## Architecture",
        "",
        *architecture(model, ckpt["model"]),
        "",
        "## Training recipe",
        "",
        *recipe(cfg),
        "",
        "## What was tried",
        "",
        f"{len(trials)} trial{'s' * (len(trials) != 1)} on the winner's data for its {steps(winner)} steps: "
        f"{states['complete']} complete, {states['diverged']} did not train, {states['pruned']} pruned early, "
        f"{states['failed']} failed{unreadable}" + (f" ({left_out})." if left_out else "."),
        "",
        "| trial | state | dev acc | parameters |",
        "| --- | --- | --- | --- |",
    ]
    for r in trials:
        acc = f"{r['best_dev_acc']:.4f}" if isinstance(r.get("best_dev_acc"), float) else ""
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in (r.get("params") or {}).items())
        lines.append(f"| {label(r)} | {r.get('state')} | {acc} | {params} |")
    lines += ["", "## What worked and what did not", "",
              "Measured on the complete trials, grouped by one setting at a time while the others varied too: "
              "a hint, not a controlled comparison.", "", *effects(complete)]  # fmt: skip
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
