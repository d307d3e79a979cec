"""What the report measures: every figure and answer is drawn from a `Measurements`, and nothing else."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qd.core.checkpoint import load_model
from qd.core.data import CLASS_NAMES, FILES, IMAGE_SIDE, N_CLASSES, require_files, standardise
from qd.core.errors import QDError
from qd.core.predict import predict
from qd.core.runtime import resolve_device
from qd.deliver.bundle import MODELS, WINNERS
from qd.deliver.model_readme import layer_table
from qd.experiment.results import UNREADABLE, collect, evidence, label, show, submitted

SEED = 0
N_SHOWN = 10
NOISE = 0.1  # the course's noise: std one tenth of each image's value range
NOISE_LEVELS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
STROKE = 128  # a pixel at least this bright (of 255) counts as part of a stroke
PERTURBATIONS = {  # kind -> how the report describes it
    "noise": f"with Gaussian noise of std {NOISE} of each image's range (seed {SEED})",
    "vflip": "flipped vertically",
    "hflip": "flipped horizontally",
}


@dataclass
class Perturbed:
    """The dev images changed one way, the best model's predictions of them, and how many of the shown
    correct images stay correct."""

    images: np.ndarray
    pred: np.ndarray
    kept: int
    acc: float


@dataclass
class Measurements:
    """Everything the report shows, measured once."""

    submission: Path
    sources: list[str]
    data_dir: Path
    winners: dict[str, dict]
    records: list[dict]  # the trials comparable with their model's winner (results.evidence)
    left_out: str  # which were left out, and why
    logs: dict[str, pd.DataFrame] = field(default_factory=dict)  # the winners' CSV logs
    majority: dict[str, tuple[str, float]] = field(default_factory=dict)  # split -> (class, share)
    dense_weights: list[tuple[int, int]] = field(default_factory=list)  # (inputs, outputs) per layer
    dense_biases: list[int] = field(default_factory=list)
    configs: dict[str, dict] = field(default_factory=dict)  # model -> the promoted checkpoint's config
    layers: dict[str, list] = field(default_factory=dict)  # model -> its layer table (model_readme.layer_table)
    best_file_bytes: int = 0
    images: np.ndarray | None = None  # the dev images, (N, 28, 28)
    y: np.ndarray | None = None
    pred: np.ndarray | None = None  # the best model's predictions
    noise_levels: list[tuple[float, float]] = field(default_factory=list)  # (noise std, dev accuracy)
    perturbed: dict[str, Perturbed] = field(default_factory=dict)
    tta: bool = False

    @property
    def complete(self) -> list[dict]:
        return [r for r in self.records if r.get("state") == "complete"]

    @property
    def lr_trials(self) -> list[dict]:
        """The complete dense-net trials that searched the learning rate."""
        return [r for r in self.complete if r["model"] == "densenet" and "optimizer.lr" in (r.get("params") or {})]

    @property
    def lr_diverged(self) -> list[dict]:
        """The dense-net trials that searched the learning rate and did not train (diverged, or not learning)."""
        return [r for r in self.records if r.get("state") == "diverged" and r.get("model") == "densenet"
                and "optimizer.lr" in (r.get("params") or {})]  # fmt: skip

    @property
    def studies(self) -> list[tuple[str, str, list[tuple[int, float]]]]:
        """Per study: its name, its model and its complete trials' (number, dev accuracy), in trial order."""
        names = sorted({r["study"] for r in self.complete if r.get("study")})
        return [
            (
                name,
                next(r["model"] for r in self.complete if r.get("study") == name),
                sorted((r["trial"], r["best_dev_acc"]) for r in self.complete if r.get("study") == name),
            )
            for name in names
        ]

    @property
    def right(self) -> np.ndarray:
        return self.pred == self.y

    @property
    def clean(self) -> float:
        return float(self.right.mean())

    @property
    def correct(self) -> np.ndarray:
        return np.flatnonzero(self.right)[:N_SHOWN]

    @property
    def wrong(self) -> np.ndarray:
        return np.flatnonzero(~self.right)[:N_SHOWN]

    @property
    def confusion(self) -> np.ndarray:
        """Counts (true class, predicted class) on the dev set."""
        cells = self.y * N_CLASSES + self.pred
        return np.bincount(cells, minlength=N_CLASSES * N_CLASSES).reshape(N_CLASSES, N_CLASSES)

    @property
    def class_accuracy(self) -> np.ndarray:
        """Per true class, the share of its dev images predicted right."""
        return np.diag(self.confusion) / self.confusion.sum(axis=1).clip(min=1)

    def stroke_share(self, rows: np.ndarray) -> float:
        """The mean share of stroke pixels in the dev images `rows` (indices or a mask)."""
        return float((self.images[rows] >= STROKE).mean())

    @property
    def best_trials(self) -> list[dict]:
        """The complete best-model trials with their searched settings."""
        return [r for r in self.complete if submitted(r) == "bestmodel" and isinstance(r.get("params"), dict)]

    @property
    def worst_confusion(self) -> str:
        off = self.confusion * (1 - np.eye(N_CLASSES, dtype=np.int64))
        true, taken = np.unravel_index(off.argmax(), off.shape)
        return f"{CLASS_NAMES[true]} taken for {CLASS_NAMES[taken]} ({off.max()} of {(~self.right).sum()} errors)"

    def trial(self, model: str) -> str:
        """`<model> study S trial N` of a winner."""
        return f"{model} {label(self.winners[model])}"


def load_winners(submission: Path) -> dict[str, dict]:
    """The winners.json of a promoted submission, with a record for each of the three models."""
    path = submission / WINNERS
    if not path.is_file():
        missing = submission if not submission.is_dir() else path
        raise QDError(f"{missing}: not found; run `python -m qd promote --out {submission}` first")
    try:
        winners = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise QDError(f"{path}: not valid JSON ({e}); run `python -m qd promote --out {submission}` again") from None
    missing_models = [m for m in MODELS if m not in winners]
    if missing_models:
        raise QDError(f"{path}: no winner for {', '.join(missing_models)}; run `python -m qd promote` first")
    return winners


def perturb(images: np.ndarray, kind: str, level: float = NOISE, seed: int = SEED) -> np.ndarray:
    """A float32 copy of raw (N, 28, 28) images: flipped ("vflip", "hflip"), or with Gaussian noise
    ("noise") of standard deviation `level` times each image's value range, drawn from `seed`."""
    x = images.astype(np.float32)
    if kind == "vflip":
        return x[:, ::-1, :]
    if kind == "hflip":
        return x[:, :, ::-1]
    span = x.max(axis=(1, 2), keepdims=True) - x.min(axis=(1, 2), keepdims=True)
    return x + np.random.default_rng(seed).standard_normal(x.shape, dtype=np.float32) * (level * span)


def read_log(record: dict, model: str) -> pd.DataFrame:
    log_path = Path(record.get("log", ""))
    if not log_path.is_file():
        raise QDError(f"{log_path}: the training log of {model} {label(record)} is missing (winners.json names it)")
    return pd.read_csv(log_path)


def measure(submission: Path, sources: list[str]) -> Measurements:
    """Read the submission and the trials, and measure what the report shows."""
    winners = load_winners(submission)
    data_dir = Path(winners["bestmodel"]["data_dir"]).resolve()
    require_files(data_dir, ("train", "dev"))
    found = [r for r in collect(sources) if r.get("state") != UNREADABLE]  # each named by collect already
    records, left_out = evidence(found, winners)
    if not records:
        raise QDError(f"{', '.join(sources)}: no sweep trial or course run on {show(data_dir)}, the submission's "
                      f"data at its winners' number of steps{f' ({left_out})' if left_out else ''}; expected the "
                      "folders or storages the submission was promoted from")  # fmt: skip
    m = Measurements(submission, sources, data_dir, winners, records, left_out)
    m.logs = {model: read_log(winners[model], model) for model in MODELS}
    for split in ("dev", "train"):
        counts = np.bincount(np.load(data_dir / FILES[split][1]), minlength=N_CLASSES)
        m.majority[split] = (CLASS_NAMES[counts.argmax()], counts.max() / counts.sum())
    loaded = {model: load_model(submission / f"{model}.pt", expect=model) for model in MODELS}
    named = list(loaded["densenet"][0].named_parameters())
    m.dense_weights = [(p.shape[1], p.shape[0]) for n, p in named if n.endswith("weight")]
    m.dense_biases = [p.numel() for n, p in named if n.endswith("bias")]
    m.configs = {model: ckpt["meta"]["config"] for model, (_, ckpt) in loaded.items()}
    m.layers = {model: layer_table(net) for model, (net, _) in loaded.items()}
    m.best_file_bytes = (submission / "bestmodel.pt").stat().st_size
    measure_failures(m)
    return m


def measure_failures(m: Measurements) -> None:
    """The best model on the dev set: clean, perturbed each way, and against the noise level."""
    model, ckpt = load_model(m.submission / "bestmodel.pt", expect="bestmodel", device=resolve_device("auto"))
    m.tta = bool(ckpt["model"].get("tta"))
    m.images = np.load(m.data_dir / FILES["dev"][0]).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    m.y = np.load(m.data_dir / FILES["dev"][1]).astype(np.int64)
    m.pred = predict(model, standardise(m.images))
    for kind in PERTURBATIONS:
        changed = perturb(m.images, kind)
        pred = predict(model, standardise(changed))
        kept = int((pred[m.correct] == m.y[m.correct]).sum())
        m.perturbed[kind] = Perturbed(changed, pred, kept, float((pred == m.y).mean()))
    measured = {0.0: m.clean, NOISE: m.perturbed["noise"].acc}  # the same images and seed: not predicted again
    for level in NOISE_LEVELS:
        if level not in measured:
            measured[level] = float((predict(model, standardise(perturb(m.images, "noise", level))) == m.y).mean())
    m.noise_levels = [(level, measured[level]) for level in NOISE_LEVELS]
