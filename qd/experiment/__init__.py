"""The experiment system over the core: Hydra composition and jobs, Optuna sweeps, and their results."""
