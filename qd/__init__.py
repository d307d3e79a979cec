"""qd: train, sweep and ship small PyTorch classifiers for QuickDraw fruit doodles.

Layers, each a folder, each importing only those before it: core (what the grader's torch+numpy
environment runs, and exactly what code.zip ships), datasets, experiment (Hydra and Optuna), deliver
(promotion, code.zip, the report, the demo), bench (benchmarks; nothing imports them).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository: main_<model>.py, conf/, sweeps/
