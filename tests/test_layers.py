"""The layers: qd/core/ stands alone (torch and numpy only, as code.zip ships it), imports point down, no circles."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from qd.deliver.bundle import MAIN, core_modules, flatten

PACKAGE = ROOT / "qd"
LAYERS = ("core", "datasets", "experiment", "deliver", "bench")  # each may import only those before it
EXPERIMENT_STACK = ("hydra", "omegaconf", "optuna", "pandas", "matplotlib", "sqlalchemy", "yaml")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function: `from a.b import c` counts a.b.c when that
    is a module of qd, a.b otherwise."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                names.add(full if full in MODULES else node.module)
    return names


def layer(module: str) -> float:
    """The module's layer: its folder's place in LAYERS. The package file (qd: ROOT) sits just above the core,
    the entry points (qd.main, qd.__main__) between deliver and bench."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return 0.5 if module == "qd" else LAYERS.index("bench") - 0.5


def test_every_import_of_qd_points_to_the_same_layer_or_below():
    upward = [
        f"{module} imports {target}"
        for module, path in MODULES.items()
        for target in imported(path)
        if target in MODULES and layer(target) > layer(module)
    ]
    assert upward == []


def test_there_is_no_import_circle():
    graph = {module: {t for t in imported(path) if t in MODULES and t != module} for module, path in MODULES.items()}
    done, on_path = set(), []

    def visit(module: str) -> None:
        if module in on_path:
            raise AssertionError(" -> ".join([*on_path[on_path.index(module) :], module]))
        if module in done:
            return
        on_path.append(module)
        for target in sorted(graph[module]):
            visit(target)
        on_path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_core_imports_only_itself_the_standard_library_torch_and_numpy():
    allowed = set(sys.stdlib_module_names) | {"torch", "numpy"}
    outside = [
        f"{module} imports {target}"
        for module, path in MODULES.items()
        if module.startswith("qd.core")
        for target in imported(path)
        if not target.startswith("qd.core.") and target.split(".")[0] not in allowed
    ]
    assert outside == []


def test_the_core_loads_in_a_fresh_interpreter_without_the_experiment_stack():
    core = [m for m in MODULES if m.startswith("qd.core.")]
    code = f"import sys\nfor m in {core!r}: __import__(m)\nprint(sorted(m for m in sys.modules if m.split('.')[0] in " \
           f"{EXPERIMENT_STACK!r} or m.startswith('qd.') and not m.startswith('qd.core')))"  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture
def flat(tmp_path) -> Path:
    """qd/core/ flattened as code.zip holds it, with the zip's main_<model>.py files."""
    for path in core_modules():
        (tmp_path / path.name).write_text(flatten(path.read_text()))
    for model in ("densenet", "convnet", "bestmodel"):
        (tmp_path / f"main_{model}.py").write_text(MAIN.format(model=model))
    return tmp_path


def test_the_flattened_core_resolves_every_import_inside_itself(flat):
    local = {p.stem for p in flat.glob("*.py")}
    allowed = set(sys.stdlib_module_names) | {"torch", "numpy"} | local
    unresolved = [f"{p.name} imports {t}" for p in sorted(flat.glob("*.py")) for t in imported(p)
                  if t.split(".")[0] not in allowed]  # fmt: skip
    assert unresolved == []
    names = sorted(local)
    code = f"import sys\nfor m in {names!r}: __import__(m)\nprint(sorted(m for m in sys.modules if m.startswith('qd')))"
    result = subprocess.run([sys.executable, "-E", "-c", code], cwd=flat, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", "the flat modules import nothing of the qd package"
    assert {"cli", "train", "models", "data", "checkpoint", "predict", "accuracies", "defaults"} <= local
