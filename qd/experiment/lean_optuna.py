"""Optuna as qd's processes use it: imported without the optional libraries it would load for its plots, data
frames and importances, and quiet below warnings (qd prints its own line for each trial).

Optuna 2.10 imports matplotlib, pandas, scikit-learn and plotly when they are installed (qd installs the first two
for its reports), about half of its import time; qd uses none of them through Optuna. Every process of a sweep
imports Optuna, so this module imports it with those libraries held back, then lets them be imported as usual.
"""

import sys
import warnings

HELD_BACK = ("matplotlib", "pandas", "sklearn", "plotly")

_held = [name for name in HELD_BACK if name not in sys.modules]
sys.modules.update(dict.fromkeys(_held))  # None: an import of it fails, and Optuna goes without
try:
    import optuna
finally:
    for name in _held:
        del sys.modules[name]

optuna.logging.set_verbosity(optuna.logging.WARNING)
# Experimental in 2.10, and stable in qd's use: enqueue_trial (requeued trials) and TPE's constant_liar.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

__all__ = ["optuna"]
