"""Benchmarks: accuracy on the real drawings, speed against the course starter, pruning. Nothing imports them."""
