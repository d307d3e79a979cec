"""The search bench at a toy's scale: its table and verdict read back (what its figures say is the bench's, run on an
idle machine; docs/benchmarks.md)."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT, run_cli


@pytest.mark.heavy
def test_the_search_bench_prints_a_row_a_seed_against_its_grid(tmp_path):
    result = run_cli(["-m", "qd.bench", "search", "--steps", "20", "--trials", "4", "--seeds", "2", "--grid", "3"],
                     ROOT, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "densenet_lr: 2 sweeps of 4 trials, 20 steps a trial, data=real_sample, 1 in flight"
    reference = re.fullmatch(r"reference: the best of a 3-point log grid of optimizer\.lr from 1e-05 to 1: (0\.\d{4})",
                             lines[1])  # fmt: skip
    assert reference, lines[1]
    rows = [line.split(" | ") for line in lines if re.match(r"\| \d \| ", line)]
    assert [r[0] for r in rows] == ["| 0", "| 1"]
    for _, trials, diverged, *best, gap, cpu, load in rows:
        assert trials == "4" and 0 <= int(diverged) <= 4
        assert all(b == "-" or 0 <= float(b) <= 1 for b in best)
        # from the printed accuracies (4 places each) and the printed gap (2 places): up to 0.015 points apart
        assert gap == "-" or float(gap) == pytest.approx(100 * (float(reference[1]) - float(best[1])), abs=0.016)
        assert float(cpu) > 0 and re.fullmatch(r"[\d.]+( disturbed)? \|", load)
    assert re.search(r"^\d+ of 8 trials did not train \(\d+%\); the best after 10 within 1 point of the reference for "
                     r"\d of 2 seeds: (meets|misses) the target", result.stdout, re.M)  # fmt: skip
    assert lines[-1].startswith("CPU: ")
