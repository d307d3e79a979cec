"""qd installs the Python way: a wheel whose metadata declares the course path's and the experiment's needs,
and an editable install (without its dependencies: none is needed to start) whose commands work from anywhere."""

import shutil
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


def test_two_makes_at_once_in_a_fresh_clone_build_the_venv_once(source, tmp_path):
    """`make venv` twice at once (two `make demo` in a fresh clone): one builds .venv, the other waits for it and
    finds it built. The lock's file is what the Makefile takes; the install here is of an empty requirements file."""
    shutil.copyfile(source / "Makefile", tmp_path / "Makefile")
    (tmp_path / "requirements.txt").write_text("")
    (tmp_path / "pyproject.toml").write_text("")
    make = ["make", "--no-print-directory", "venv", f"PYTHON={sys.executable}"]
    runs = [subprocess.Popen(make, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]  # fmt: skip
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    said = "".join(outputs).splitlines()
    assert len([line for line in said if line.endswith(" -m venv .venv")]) == 1, said
    assert said.count("waiting: another make is building .venv") == 1, said
    assert (tmp_path / ".venv/.installed").is_file()
    again = subprocess.run(make, cwd=tmp_path, capture_output=True, text=True)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", ""), "built: a later make says nothing"
