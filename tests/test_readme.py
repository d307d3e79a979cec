"""README.md followed top to bottom as a newcomer does: every command of its ```bash blocks, in order, in a fresh
clone of the repository with nothing beside it, at a toy's scale (QD_QUICK=1: at most 20 steps a training and 2
trials a sweep). The clone is of what is committed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow
NOT_RUN = {"make test"}  # runs this test


def readme_commands() -> list[str]:
    """The lines of README.md's ```bash blocks, in order, comment lines left out."""
    blocks = re.findall(r"^```bash\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)
    return [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]


def command(line: str) -> str:
    return line.partition("  #")[0].strip()


@pytest.mark.heavy
def test_every_command_of_the_readme_runs_in_a_fresh_clone(tmp_path):
    clone = tmp_path / "qd"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    (clone / ".venv").symlink_to(ROOT / ".venv")  # built already: `make` installs nothing when it is newer than these
    for name in ("requirements.txt", "pyproject.toml"):
        os.utime(clone / name, (0, 0))
    lines = readme_commands()
    assert NOT_RUN <= {command(line) for line in lines}
    script = "\n".join(["set -e", *(line for line in lines if command(line) not in NOT_RUN)])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(["bash", "-c", script], cwd=clone, env={**env, "QD_QUICK": "1"}, capture_output=True,
                            text=True, timeout=1200)  # fmt: skip
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert "Traceback" not in result.stdout + result.stderr
    assert not (clone / "datasets").exists(), "the README needs no course files"
    assert list(clone.rglob("submission/*_code.zip")), "the README's commands make a submission"
    assert list(clone.rglob("report/*_hw3_programming.tex")), "and a report"


def test_the_readme_stays_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "/work/" not in text and "/tmp/" not in text, "no path of one machine"
    for link in re.findall(r"\]\((docs/[^)#]+)", text):
        assert Path(ROOT, link).is_file(), f"README links to a missing page: {link}"
