"""The one training function: a config in, a checkpoint and a CSV log out, metrics returned.

The config is a plain nested dict (see conf/ and qd/defaults.py): model, optimizer, scheduler,
augmentation, data and train sections.
"""

from __future__ import annotations

import copy
import ctypes
import importlib
import io
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qd.accuracies import approx_train_acc_and_loss, dev_acc_and_loss
from qd.augment import augment, is_active
from qd.checkpoint import save_checkpoint
from qd.data import load_split, require_files
from qd.errors import QDError
from qd.models import build_model, count_parameters

LOG_HEADER = "step,train_loss,train_acc,dev_loss,dev_acc"
CHECKPOINT_LIMITS = {"bestmodel": 1_000_000}
# Config keys as the course command line spells them, for error messages.
COURSE_FLAGS = {"optimizer.lr": "--LR", "train.batch_size": "--bs", "train.steps": "--epochs"}


class Diverged(QDError):
    """The loss became NaN or infinite."""


def flag(key: str) -> str:
    """A config key with its course flag, e.g. `--LR (optimizer.lr)`."""
    return f"{COURSE_FLAGS[key]} ({key})" if key in COURSE_FLAGS else key


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise QDError("train.device=cuda: no CUDA device is available; use auto or cpu")
    if name not in ("cpu", "cuda"):
        raise QDError(f"train.device: got {name!r}; expected auto, cpu or cuda")
    return torch.device(name)


def busy_cores(seconds: float = 0.1) -> float:
    """How many cores other processes kept busy while this one slept `seconds` (0.0 without /proc/stat)."""

    def idle_and_total() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:8]]
        return ticks[3] + ticks[4], sum(ticks)

    try:
        idle, total = idle_and_total()
        time.sleep(seconds)
        idle2, total2 = idle_and_total()
    except OSError:
        return 0.0
    return (os.cpu_count() or 1) * (1 - (idle2 - idle) / max(1, total2 - total))


def auto_threads() -> int:
    """OMP_NUM_THREADS if set, else the idle cores divided among the parallel workers (QD_WORKERS); at least 1.

    A second torch thread on a core that another process keeps busy spin-waits: under load the course's
    models trained 2-8 times slower on 2 threads than on 1 (`python -m qd.speed` measures it).
    """
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = len(os.sched_getaffinity(0))
    share = cores // max(1, int(os.environ.get("QD_WORKERS", "1")))
    return 1 if share <= 1 else max(1, min(share, int(cores - busy_cores() + 0.25)))


def configure_cpu(threads: int = 0) -> int:
    """Use `threads` torch threads (0: auto_threads()) and let glibc reuse freed memory; return the threads.

    Each step frees and reallocates the same activations; when glibc hands them back to the system, every
    page faults in again (about 1,900 faults a convnet step, a quarter of its time). Blocks up to 32 MiB,
    glibc's largest threshold, are kept for reuse instead.
    """
    torch.set_num_threads(threads or auto_threads())
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None) if sys.platform == "linux" else None
    if mallopt:
        mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    return torch.get_num_threads()


def build_optimizer(cfg: dict, params) -> torch.optim.Optimizer:
    """Build `cfg["_target_"](params, **options)`: what hydra.utils.instantiate does, without Hydra."""
    module, _, name = cfg["_target_"].rpartition(".")
    options = {k: v for k, v in cfg.items() if not k.startswith("_")}
    try:
        return getattr(importlib.import_module(module), name)(params, **options)
    except (TypeError, ValueError, RuntimeError) as e:
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


def check_config(cfg: dict, n_train: int) -> None:
    """Refuse settings that cannot train, naming the flag."""
    lr, bs, steps = cfg["optimizer"]["lr"], cfg["train"]["batch_size"], cfg["train"]["steps"]
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise QDError(f"{flag('optimizer.lr')}: got {lr}; expected a positive learning rate")
    if not (isinstance(bs, int) and 0 < bs <= n_train):
        raise QDError(
            f"{flag('train.batch_size')}: got {bs}; expected a whole number from 1 to {n_train} (training images)"
        )
    if not (isinstance(steps, int) and steps > 0):
        raise QDError(f"{flag('train.steps')}: got {steps}; expected a positive number of optimisation steps")
    if not (isinstance(ema := cfg["train"]["ema"], (int, float)) and 0 <= ema < 1):
        raise QDError(f"train.ema: got {ema}; expected 0 (off) or a decay from 0 to 1, such as 0.998")


def averaged(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """A moving average of `model`'s weights and buffers, the decay per step warming up to `decay`.

    The warm-up, min(decay, (1 + n) / (10 + n)) after n updates, keeps a short run's average from
    being dominated by its first, untrained weights.
    """

    def update(averages: list[torch.Tensor], currents: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        n = int(n_averaged)
        weight = 1 - min(decay, (1 + n) / (10 + n))
        for average, current in zip(averages, currents, strict=True):
            if average.is_floating_point():
                average.lerp_(current, weight)
            else:  # batch-norm's step counter
                average.copy_(current)

    return torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def rounded_to_half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with its floating-point tensors rounded to float16 values (kept in float32)."""
    return {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()}


def checkpoint_bytes(model: nn.Module, model_cfg: dict, half: bool) -> int:
    """The size the model's checkpoint will have (it does not change during training)."""
    buffer = io.BytesIO()
    state = {k: v.half() if half and v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"model": dict(model_cfg), "state_dict": state}, buffer)
    return buffer.tell() + 1024  # room for the metadata


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


def train(
    cfg: dict,
    log_path: str | os.PathLike,
    checkpoint_path: str | os.PathLike,
    on_eval: Callable[[int, float], None] | None = None,
) -> dict:
    """Train the model `cfg` describes; keep the checkpoint of best dev accuracy; return metrics.

    `on_eval(step, dev_acc)` is called after each evaluation (a sweep reports to Optuna there and
    may raise to prune). The checkpoint is written once, at the end, atomically.
    """
    tcfg = cfg["train"]
    require_files(Path(cfg["data"]["dir"]), ("train", "dev"))
    train_split, dev = load_split(cfg["data"]["dir"], "train"), load_split(cfg["data"]["dir"], "dev")
    check_config(cfg, len(train_split.x))
    device = resolve_device(tcfg["device"])
    configure_cpu(tcfg["threads"])
    torch.manual_seed(tcfg["seed"])
    batch_gen, eval_gen, aug_gen = (torch.Generator().manual_seed(tcfg["seed"] + i) for i in range(3))

    model = build_model(cfg["model"]).to(device)
    name, half = cfg["model"]["name"], tcfg["half_storage"]
    limit = CHECKPOINT_LIMITS.get(name)
    if limit and (size := checkpoint_bytes(model, cfg["model"], half)) > limit:
        raise QDError(f"model {cfg['model']}: its checkpoint would be {size:,} bytes; {name} allows at most {limit:,}")
    optimizer = build_optimizer(cfg["optimizer"], model.parameters())
    # With train.ema the evaluated and kept model is a moving average of the weights (and BN statistics).
    scored = averaged(model, tcfg["ema"]) if tcfg["ema"] else model
    kept = getattr(scored, "module", scored)  # the averaged model's own network, or the model itself
    # With train.half_storage, evaluations score the weights as the checkpoint will store them.
    evaluated = copy.deepcopy(kept) if half else kept
    steps, bs = tcfg["steps"], tcfg["batch_size"]
    scheduler = build_scheduler(cfg["scheduler"], optimizer, steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=tcfg["label_smoothing"])
    x, y = train_split.x.to(device), train_split.y.to(device)
    dev_x, dev_y = dev.x.to(device), dev.y.to(device)
    aug_cfg = cfg["augmentation"] if is_active(cfg["augmentation"]) else None

    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    best = {"dev_acc": -1.0, "step": 0, "state": None}
    history = []
    progress = Progress(name, steps)
    order, cursor = torch.randperm(len(x), generator=batch_gen), 0
    model.train()
    # train_time_s: the optimisation and its evaluations; not the data loading, nor the time on_eval takes
    # (a sweep's reports to its study are the sweep's cost, not the training's)
    start, in_callback = time.perf_counter(), 0.0
    with open(log_path, "w", buffering=1) as log:
        log.write(LOG_HEADER + "\n")
        for step in range(1, steps + 1):
            if cursor + bs > len(order):
                order, cursor = torch.randperm(len(x), generator=batch_gen), 0
            idx = order[cursor : cursor + bs].to(device)
            cursor += bs
            xb = x.index_select(0, idx)  # faster than x[idx] on the CPU
            if aug_cfg:
                xb = augment(xb, aug_cfg, aug_gen)
            loss = loss_fn(model(xb), y.index_select(0, idx))
            if not torch.isfinite(loss):
                progress.close()
                raise Diverged(
                    f"training diverged at step {step} (loss {loss.item()}); try a smaller {flag('optimizer.lr')}"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler:
                scheduler.step()
            if scored is not model:
                scored.update_parameters(model)
            if step % tcfg["eval_every"] == 0 or step == steps:
                if half:
                    evaluated.load_state_dict(rounded_to_half(kept.state_dict()))
                train_acc, train_loss = approx_train_acc_and_loss(evaluated, x, y, generator=eval_gen)
                dev_acc, dev_loss = dev_acc_and_loss(evaluated, dev_x, dev_y)
                log.write(f"{step},{train_loss:.6f},{train_acc:.6f},{dev_loss:.6f},{dev_acc:.6f}\n")
                history.append((step, dev_acc))
                if dev_acc > best["dev_acc"]:
                    state = {k: v.detach().clone() for k, v in evaluated.state_dict().items()}
                    best = {"dev_acc": dev_acc, "step": step, "state": state}
                progress.update(
                    step, f"loss {loss.item():.3f} dev_acc {dev_acc:.3f} best {best['dev_acc']:.3f}", force=True
                )
                if on_eval:
                    called = time.perf_counter()
                    on_eval(step, dev_acc)
                    in_callback += time.perf_counter() - called
            elif progress.enabled:  # loss.item() waits for the step: only when there is a display
                progress.update(step, f"loss {loss.item():.3f}")
    progress.close()
    train_time = time.perf_counter() - start - in_callback
    model.load_state_dict(best["state"])
    meta = {
        "steps": steps,
        "best_step": best["step"],
        "dev_acc": best["dev_acc"],
        "seed": tcfg["seed"],
        "config": cfg,
        "versions": {"torch": str(torch.__version__), "numpy": np.__version__},
    }
    size = save_checkpoint(checkpoint_path, model, cfg["model"], meta, half=half)
    return {
        "best_dev_acc": best["dev_acc"],
        "best_step": best["step"],
        "final_dev_acc": history[-1][1],
        "steps": steps,
        "train_time_s": train_time,
        "param_count": count_parameters(model),
        "checkpoint_bytes": size,
        "checkpoint": str(checkpoint_path),
        "log": str(log_path),
    }
