"""The paths `python -m qd.bench speed` measures, each run in a fresh child process (qd.bench.speed starts them): torch
is imported here, so that the bench's command line answers --help at once."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from qd.bench.starter import MODELS, baseline_load, baseline_predict, baseline_train
from qd.core.accuracies import TRAIN_SAMPLE, scores
from qd.core.checkpoint import load_model, save_checkpoint
from qd.core.cpu import memory_format
from qd.core.data import Split, load_split
from qd.core.defaults import DEFAULTS
from qd.core.predict import predict
from qd.core.runtime import configure_cpu
from qd.core.train import build_optimizer, train


def weights_path(work: Path, side: str, name: str) -> Path:
    """Where `side` keeps the model's weights: qd's checkpoint, the starter's state_dict."""
    return work / "qd" / "model" / f"{name}.pt" if side == "qd" else work / "baseline" / f"{name}.pt"


def floor_seconds(name: str, train_split: Split, dev: Split, steps: int) -> float:
    """The least time any pipeline needs for `steps` of the model's course steps with torch's kernels: the
    optimizer's set-up, forward, backward and optimizer step on one fixed batch, and the evaluations' forward
    passes (4,000 training images and the dev set); no sampling, logging or checks. The optimizer, batch size
    and evaluation interval are the model's defaults (conf/), the memory layout qd's for this CPU."""
    cfg = DEFAULTS[name]
    batch = cfg["train"]["batch_size"]
    xb, yb = train_split.x[:batch], train_split.y[:batch]
    model = MODELS[name]().to(memory_format=memory_format("auto", torch.device("cpu")))
    start = time.perf_counter()
    optimizer = build_optimizer(cfg["optimizer"], model.parameters())
    for step in range(1, steps + 1):
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % cfg["train"]["eval_every"] == 0:
            scores(model, train_split.x[:TRAIN_SAMPLE])
            scores(model, dev.x)
    return time.perf_counter() - start


def measure(row: str, side: str, data_dir: Path, work: Path, steps: int, threads: int) -> float:
    """Seconds of one row's path, `side` "baseline" or "qd" (or "floor": floor_seconds), in this process
    (`threads` 0: its own choice)."""
    kind, _, name = row.partition(" ")
    splits = ("train", "dev", "test") if kind == "load" else ("train", "dev") if kind == "train" else ("test",)
    if threads:
        torch.set_num_threads(threads)
    if side == "floor":
        data = {s: load_split(data_dir, s) for s in splits}
        configure_cpu(threads)
        torch.manual_seed(0)
        return floor_seconds(name, data["train"], data["dev"], steps)
    if side == "baseline":
        start = time.perf_counter()
        data = {s: baseline_load(data_dir, s) for s in splits}
        if kind == "load":
            return time.perf_counter() - start
        torch.manual_seed(0)
        np.random.seed(0)
        if kind == "train":
            start = time.perf_counter()
            baseline_train(MODELS[name](), data["train"], data["dev"], steps, work / f"baseline_{name}")
        else:
            model = MODELS[name]()
            model.load_state_dict(torch.load(weights_path(work, side, name), weights_only=True))
            start = time.perf_counter()
            baseline_predict(model, data["test"][0])
        return time.perf_counter() - start
    start = time.perf_counter()
    data = {s: load_split(data_dir, s) for s in splits}
    if kind == "load":
        return time.perf_counter() - start
    if kind == "train":
        cfg = copy.deepcopy(DEFAULTS[name])
        cfg["data"]["dir"] = str(data_dir)
        cfg["train"].update(steps=steps, threads=threads)
        start = time.perf_counter()
        train(cfg, work / f"qd_{name}.log", work / f"qd_{name}.pt")
    else:
        configure_cpu(threads)  # as predict_file does, before the model loads
        model, _ = load_model(weights_path(work, side, name))
        start = time.perf_counter()
        predict(model, data["test"].x)
    return time.perf_counter() - start


def measure_json(spec: str) -> None:
    """Entry point of a child process: measure the path `spec` (JSON) names; print seconds and threads."""
    args = json.loads(spec)
    args["data_dir"], args["work"] = Path(args["data_dir"]), Path(args["work"])
    seconds = measure(**args)
    print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}))


def write_checkpoints(work: Path) -> None:
    """Untrained densenet and convnet weights for the prediction rows (speed does not depend on weights): qd's
    checkpoints and the starter's state_dicts."""
    torch.manual_seed(0)
    for name, model_class in MODELS.items():
        model = model_class()
        save_checkpoint(weights_path(work, "qd", name), model, {"name": name}, meta={})
        weights_path(work, "baseline", name).parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), weights_path(work, "baseline", name))
