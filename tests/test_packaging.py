"""qd installs the Python way: a wheel whose metadata declares the course path's and the experiment's needs,
and an editable install (without its dependencies: none is needed to start) whose commands work from anywhere."""

import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The repository's files (tracked, and new ones git does not ignore), copied: builds write beside them."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()  # fmt: skip
    out = tmp_path_factory.mktemp("source") / "qd"
    for name in listed:
        if (ROOT / name).is_file():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes((ROOT / name).read_bytes())
    return out


def test_the_wheel_declares_the_course_path_and_the_experiment_stack_apart(source, tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(tmp_path)],
                           capture_output=True, text=True)  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("qd-*.whl")
    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith("/METADATA"))).decode()
        names = z.namelist()
        entry_points = z.read(next(n for n in names if n.endswith("/entry_points.txt"))).decode()
    requires = [line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    assert [r for r in requires if "extra ==" not in r] == ["torch>=1.13", "numpy>=1.21"]
    experiment = {r.split(";")[0].split("<")[0].split(">")[0] for r in requires if 'extra == "experiment"' in r}
    assert {"hydra-core", "optuna", "hydra-optuna-sweeper", "sqlalchemy", "pandas", "matplotlib"} <= experiment
    assert "Requires-Python: >=3.10" in metadata and "qd = qd.__main__:main" in entry_points
    assert "qd/core/cli.py" in names and "qd/datasets/quickdraw_fruit_real/images.npy" in names


def test_an_editable_install_gives_the_commands_anywhere(source, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run([venv / "bin/pip", "install", "-q", "--no-deps", "-e", str(source)], capture_output=True,
                               text=True)  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    commands = {
        "qd": ([venv / "bin/qd", "--help"], 0, "usage: python -m qd <command>"),
        "python -m qd": ([venv / "bin/python", "-m", "qd", "results", "--help"], 0, "usage: python -m qd results"),
        "main_densenet.py": ([venv / "bin/python", source / "main_densenet.py", "--mode", "predict"], 2,
                             "the following arguments are required to predict: --weights, --predictionsFile"),
    }  # fmt: skip
    for name, (argv, status, expected) in commands.items():
        result = subprocess.run(argv, cwd=elsewhere, capture_output=True, text=True)
        assert result.returncode == status and expected in result.stdout + result.stderr, (name, result.stderr)
