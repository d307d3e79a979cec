"""Training: `fit` trains a model on tensors and returns it with its history; `train` is fit on a data folder,
writing the course's CSV log and the checkpoint.

The config is a plain nested dict (see conf/ and qd/core/defaults.py): model, optimizer, scheduler,
augmentation, data and train sections.
"""

from __future__ import annotations

import copy
import importlib
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qd.core.accuracies import approx_train_acc_and_loss, dev_acc_and_loss
from qd.core.augment import augment, is_active
from qd.core.checkpoint import LIMITS, checkpoint_bytes, save_checkpoint
from qd.core.course import submitted_as
from qd.core.cpu import MEMORY_FORMATS, memory_format
from qd.core.data import N_CLASSES, Split, load_split, require_files
from qd.core.errors import DidNotTrain, QDError
from qd.core.models import build_model, count_parameters
from qd.core.runtime import configure_cpu, resolve_device

LEARNING_MARGIN = 0.02  # how far above chance dev accuracy must get by train.not_learning_after
LOG_COLUMNS = ("step", "train_loss", "train_acc", "dev_loss", "dev_acc")
LOG_HEADER = ",".join(LOG_COLUMNS)


class Diverged(DidNotTrain):
    """The loss became NaN, infinite or larger than train.max_loss."""


class NotLearning(DidNotTrain):
    """Dev accuracy stayed at chance until train.not_learning_after of the steps."""


def build_optimizer(cfg: dict, params) -> torch.optim.Optimizer:
    """Build `cfg["_target_"](params, **options)`: what hydra.utils.instantiate does, without Hydra.

    `fused` asks for torch's one-kernel update where this torch has one for the optimizer and the device
    (torch 2.4 and later on the CPU); where it has none, the optimizer is built without it.
    """
    module, _, name = cfg["_target_"].rpartition(".")
    options = {k: v for k, v in cfg.items() if not k.startswith("_")}
    params = list(params)
    optimizer = getattr(importlib.import_module(module), name)
    try:
        return optimizer(params, **options)
    except (TypeError, ValueError, RuntimeError) as e:
        if options.get("fused") and "fused" in str(e).lower():
            return build_optimizer({k: v for k, v in cfg.items() if k != "fused"}, params)
        raise QDError(f"optimizer {cfg['_target_']}: bad options {options}: {e}") from None


def build_scheduler(cfg: dict, optimizer: torch.optim.Optimizer, steps: int):
    name = cfg.get("name", "none")
    if name == "none":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    if name == "onecycle":
        lr = optimizer.param_groups[0]["lr"]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=cfg["pct_start"])
    raise QDError(f"scheduler.name: got {name!r}; expected none, cosine or onecycle")


def check_options(cfg: dict, model: bool = True) -> None:
    """Build `cfg`'s optimizer, scheduler and (with `model`) model once, on nothing: an option every run would fail
    on raises its QDError before any run starts."""
    check_learning_rate(cfg["optimizer"]["lr"])  # named as the setting, before the optimizer's own words
    optimizer = build_optimizer(cfg["optimizer"], [torch.nn.Parameter(torch.zeros(1))])
    build_scheduler(cfg["scheduler"], optimizer, max(1, int(cfg["train"]["steps"])))
    if model:
        new_model(cfg)


def check_learning_rate(lr: object) -> None:
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise QDError(f"optimizer.lr: got {lr}; expected a positive learning rate", ("optimizer.lr",))


def check_config(cfg: dict, n_train: int) -> None:
    """Refuse settings that cannot train, naming the setting."""
    bs, steps = cfg["train"]["batch_size"], cfg["train"]["steps"]
    check_learning_rate(cfg["optimizer"]["lr"])
    if not (isinstance(bs, int) and 0 < bs <= n_train):
        raise QDError(
            f"train.batch_size: got {bs}; expected a whole number from 1 to {n_train} (training images)",
            ("train.batch_size",),
        )
    if not (isinstance(steps, int) and steps > 0):
        raise QDError(f"train.steps: got {steps}; expected a positive number of optimisation steps", ("train.steps",))
    if not (isinstance(ema := cfg["train"]["ema"], (int, float)) and 0 <= ema < 1):
        raise QDError(f"train.ema: got {ema}; expected 0 (off) or a decay from 0 to 1, such as 0.998")
    if not (isinstance(bound := cfg["train"]["max_loss"], (int, float)) and bound > 0):
        raise QDError(f"train.max_loss: got {bound}; expected a positive loss, such as 100")
    after = cfg["train"]["not_learning_after"]
    if not (after is None or (isinstance(after, int) and after > 0)):
        raise QDError(f"train.not_learning_after: got {after}; expected null (off) or a step, such as 500")
    if (layout := cfg["train"]["memory_format"]) not in ("auto", *MEMORY_FORMATS):
        raise QDError(f"train.memory_format: got {layout!r}; expected auto, {' or '.join(MEMORY_FORMATS)}")


class WeightAverage:
    """A moving average of a model's weights and buffers (`module`), the decay per update warming up to `decay`.

    The first update copies the model; after n updates the decay is min(decay, (1 + n) / (10 + n)), so that a
    short run's average is not dominated by its first, untrained weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module, self.decay, self.updates = copy.deepcopy(model), decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        n = self.updates
        weight = 1 - min(self.decay, (1 + n) / (10 + n))
        tensors = zip(self._tensors(self.module), self._tensors(model))
        for average, current in tensors:
            if n and average.is_floating_point():
                average.lerp_(current, weight)
            else:  # the first update, and batch-norm's step counter
                average.copy_(current)
        self.updates += 1

    @staticmethod
    def _tensors(model: nn.Module) -> list[torch.Tensor]:
        return [*model.parameters(), *model.buffers()]


def rounded_to_half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with its floating-point tensors rounded to float16 values (kept in float32)."""
    return {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()}


class Progress:
    """A one-line progress display on a terminal; silent otherwise."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.last = label, total, 0.0
        self.enabled = sys.stderr.isatty()

    def update(self, step: int, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.enabled and (force or now - self.last > 0.2):
            self.last = now
            print(f"\r[{self.label}] step {step}/{self.total} {text}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr)


def batch_loss(
    model: nn.Module,
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    idx: torch.Tensor,
    aug_cfg: dict | None,
    aug_gen: torch.Generator,
) -> torch.Tensor:
    """The loss of the rows `idx` (drawn on the CPU) of x and y (on the model's device), augmented by `aug_cfg`."""
    idx = idx.to(x.device)
    xb = x.index_select(0, idx)  # faster than x[idx] on the CPU
    if aug_cfg:
        xb = augment(xb, aug_cfg, aug_gen)
    return loss_fn(model(xb), y.index_select(0, idx))


@dataclass
class Fit:
    """What `fit` returns: the kept model (the evaluation of best dev accuracy) and every evaluation's row."""

    model: nn.Module
    history: list[dict]  # one row per evaluation: LOG_COLUMNS -> value
    best_step: int
    best_dev_acc: float
    train_time_s: float  # the optimisation and its evaluations, not the callbacks


def new_model(cfg: dict) -> nn.Module:
    """The model `cfg` describes, refused before training when its checkpoint would pass the course's limit."""
    model = build_model(cfg["model"])
    name = submitted_as(cfg["model"]["name"])
    limit = LIMITS.get(name)
    if limit and (size := checkpoint_bytes(model, cfg["model"], cfg["train"]["half_storage"])) > limit:
        raise QDError(f"model {cfg['model']}: its checkpoint would be {size:,} bytes; {name} allows at most {limit:,}")
    return model


def fit(
    cfg: dict,
    train_split: Split,
    dev: Split,
    on_start: Callable[[], None] | None = None,
    on_eval: Callable[[dict], None] | None = None,
    workers: int = 1,
) -> Fit:
    """Train the model `cfg` describes on `train_split`, evaluating on `dev` every train.eval_every steps.

    Settings that cannot train are refused (QDError) before anything else; then `on_start()` is called.
    `on_eval(row)` follows each evaluation (a sweep reports to Optuna there and may raise Pruned). `workers`
    parallel jobs share this machine's cores.
    """
    tcfg = cfg["train"]
    check_config(cfg, len(train_split.x))
    device = resolve_device(tcfg["device"])
    configure_cpu(tcfg["threads"], workers)
    torch.manual_seed(tcfg["seed"])
    batch_gen, eval_gen, aug_gen = (torch.Generator().manual_seed(tcfg["seed"] + i) for i in range(3))
    model = new_model(cfg).to(device, memory_format=memory_format(tcfg["memory_format"], device))
    optimizer = build_optimizer(cfg["optimizer"], model.parameters())
    # With train.ema the evaluated and kept model is a moving average of the weights (and BN statistics).
    average = WeightAverage(model, tcfg["ema"]) if tcfg["ema"] else None
    kept = average.module if average else model
    # With train.half_storage, evaluations score the weights as the checkpoint will store them.
    half = tcfg["half_storage"]
    evaluated = copy.deepcopy(kept) if half else kept
    steps, bs = tcfg["steps"], tcfg["batch_size"]
    scheduler = build_scheduler(cfg["scheduler"], optimizer, steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=tcfg["label_smoothing"])
    x, y = train_split.x.to(device), train_split.y.to(device)
    dev_x, dev_y = dev.x.to(device), dev.y.to(device)
    aug_cfg = cfg["augmentation"] if is_active(cfg["augmentation"]) else None
    if on_start:
        on_start()

    best = {"dev_acc": -1.0, "step": 0, "state": None}
    history: list[dict] = []
    order, cursor = torch.randperm(len(x), generator=batch_gen), 0
    model.train()
    start, in_callback = time.perf_counter(), 0.0
    progress, step = Progress(cfg["model"]["name"], steps), 0
    try:
        for step in range(1, steps + 1):
            if cursor + bs > len(order):
                order, cursor = torch.randperm(len(x), generator=batch_gen), 0
            loss = batch_loss(model, loss_fn, x, y, order[cursor : cursor + bs], aug_cfg, aug_gen)
            cursor += bs
            if not loss <= tcfg["max_loss"]:  # also NaN; one wait for the step, as any finiteness check
                value = loss.item()
                above = f", above train.max_loss={tcfg['max_loss']:g}" if math.isfinite(value) else ""
                raise Diverged(
                    f"training diverged at step {step} (loss {value:.4g}{above}); try a smaller optimizer.lr",
                    1 / N_CLASSES,
                    ("optimizer.lr",),
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler:
                scheduler.step()
            if average:
                average.update(model)
            if step % tcfg["eval_every"] == 0 or step == steps:
                if half:
                    evaluated.load_state_dict(rounded_to_half(kept.state_dict()))
                train_acc, train_loss = approx_train_acc_and_loss(evaluated, x, y, generator=eval_gen)
                dev_acc, dev_loss = dev_acc_and_loss(evaluated, dev_x, dev_y)
                history.append(dict(zip(LOG_COLUMNS, (step, train_loss, train_acc, dev_loss, dev_acc))))
                if dev_acc > best["dev_acc"]:
                    state = {k: v.detach().clone() for k, v in evaluated.state_dict().items()}
                    best = {"dev_acc": dev_acc, "step": step, "state": state}
                progress.update(
                    step, f"loss {loss.item():.3f} dev_acc {dev_acc:.3f} best {best['dev_acc']:.3f}", force=True
                )
                after = tcfg["not_learning_after"]
                if after and step >= after and best["dev_acc"] <= 1 / N_CLASSES + LEARNING_MARGIN:
                    raise NotLearning(
                        f"not learning: dev accuracy at most {best['dev_acc']:.4f} by step {step} (chance "
                        f"{1 / N_CLASSES:.4f}; train.not_learning_after={after}); try another optimizer.lr",
                        1 / N_CLASSES,
                        ("optimizer.lr",),
                    )
                if on_eval:
                    called = time.perf_counter()
                    on_eval(history[-1])
                    in_callback += time.perf_counter() - called
            elif progress.enabled:  # loss.item() waits for the step: only when there is a display
                progress.update(step, f"loss {loss.item():.3f}")
    except torch.cuda.OutOfMemoryError:
        raise QDError(
            f"train.device={tcfg['device']}: out of memory at step {step}; try a smaller train.batch_size or a smaller "
            "model",
            ("train.batch_size",),
        ) from None
    finally:
        progress.close()
    train_time = time.perf_counter() - start - in_callback
    model.load_state_dict(best["state"])
    return Fit(model, history, best["step"], best["dev_acc"], train_time)


def checkpoint_meta(cfg: dict, result: Fit) -> dict:
    """What a checkpoint records of the run that made it."""
    return {
        "steps": cfg["train"]["steps"],
        "best_step": result.best_step,
        "dev_acc": result.best_dev_acc,
        "seed": cfg["train"]["seed"],
        "config": cfg,
        "versions": {"torch": str(torch.__version__), "numpy": np.__version__},
    }


class CsvLog:
    """The course's CSV log: created when training starts (a refused run leaves none), a whole row at a time."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path, self.file = Path(path), None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w", buffering=1)
        self.file.write(LOG_HEADER + "\n")

    def write(self, row: dict) -> None:
        self.file.write(f"{row['step']}," + ",".join(f"{row[c]:.6f}" for c in LOG_COLUMNS[1:]) + "\n")

    def __enter__(self) -> CsvLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.file:
            self.file.close()


def train(
    cfg: dict,
    log_path: str | os.PathLike,
    checkpoint_path: str | os.PathLike,
    on_eval: Callable[[dict], None] | None = None,
    workers: int = 1,
) -> dict:
    """`fit` on the data folder cfg names; write its CSV log and, at the end and atomically, the checkpoint of
    the kept model; return the run's metrics."""
    data_dir = Path(cfg["data"]["dir"])
    require_files(data_dir, ("train", "dev"))
    train_split, dev = load_split(data_dir, "train"), load_split(data_dir, "dev")
    with CsvLog(log_path) as log:

        def evaluated(row: dict) -> None:
            log.write(row)
            if on_eval:
                on_eval(row)

        result = fit(cfg, train_split, dev, on_start=log.start, on_eval=evaluated, workers=workers)
    meta = checkpoint_meta(cfg, result)
    size = save_checkpoint(checkpoint_path, result.model, cfg["model"], meta, half=cfg["train"]["half_storage"])
    return {
        "best_dev_acc": result.best_dev_acc,
        "best_step": result.best_step,
        "final_dev_acc": result.history[-1]["dev_acc"],
        "steps": cfg["train"]["steps"],
        "train_time_s": result.train_time_s,
        "param_count": count_parameters(result.model),
        "checkpoint_bytes": size,
        "checkpoint": str(checkpoint_path),
        "log": str(log_path),
    }
