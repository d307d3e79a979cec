"""The course's three models, and which of them any model qd builds is trained and submitted as.

The course fixes the dense net and the conv net; the best model is open: every other model of qd.core.models
(its class in MODELS, its settings in conf/model/<name>.yaml) is trained by main_bestmodel.py (model=<name>) and
may be promoted as bestmodel.pt. No torch here: the Hydra app checks a config with it before importing torch.
"""

from __future__ import annotations

SUBMITTED = ("densenet", "convnet", "bestmodel")  # main_<m>.py, <m>.pt, <m>'s predictions: the course's names
COURSE_MODELS = SUBMITTED[:2]  # fixed by the course


def submitted_as(name: str) -> str:
    """Which of the course's three models model `name` is trained and submitted as."""
    return name if name in COURSE_MODELS else "bestmodel"
