"""The deliverables: promotion of the best trials, code.zip, the best model's README, the report, the demo."""
