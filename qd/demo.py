"""`make demo`: the course workflow on the embedded synthetic set, from nothing downloaded.

Generates data/synthetic if absent, then trains each of the three models briefly through its
course command line and predicts the test set with it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from qd.data import SYNTHETIC_DIR, ensure_data

DEMO_DIR = Path("outputs/demo")
RUNS = (("densenet", 1e-3, 100, 1000), ("convnet", 1e-2, 100, 1000), ("bestmodel", 1e-2, 100, 300))
PREDICTIONS = {
    "densenet": "densenet_predictions.csv",
    "convnet": "convnet_predictions.csv",
    "bestmodel": "best_model_predictions.csv",
}


def course_command(model: str, *args: object) -> None:
    command = [sys.executable, f"main_{model}.py", *map(str, args)]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    ensure_data({"dir": str(SYNTHETIC_DIR), "prepare": "synthetic"})
    dirs = ("--dataDir", SYNTHETIC_DIR, "--logDir", DEMO_DIR / "log_files", "--modelSaveDir", DEMO_DIR / "model_files")
    for model, lr, bs, steps in RUNS:
        course_command(model, "--mode", "train", *dirs, "--LR", lr, "--bs", bs, "--epochs", steps)
    for model, *_ in RUNS:
        course_command(
            model,
            "--mode",
            "predict",
            "--dataDir",
            SYNTHETIC_DIR,
            "--weights",
            DEMO_DIR / "model_files" / f"{model}.pt",
            "--predictionsFile",
            DEMO_DIR / PREDICTIONS[model],
        )


if __name__ == "__main__":
    main()
