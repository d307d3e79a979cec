"""The layers: qd/core/ stands alone (torch and numpy only, as code.zip ships it), imports point down, no circles."""

import ast
import shutil
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


NEWER_THAN_38 = {"removeprefix", "removesuffix", "pairwise"}  # str methods (3.9), itertools.pairwise (3.10)
GENERIC_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "type"}  # subscriptable from 3.9


def newer_than_38(tree: ast.AST) -> list[str]:
    """What in `tree` needs a Python newer than 3.8 at run time (annotations aside: they stay strings)."""
    annotations = set()
    for node in ast.walk(tree):
        parts = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            parts = [a.annotation for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
                     if a is not None] + [node.returns]  # fmt: skip
        elif isinstance(node, ast.AnnAssign):
            parts = [node.annotation]
        annotations.update(id(n) for part in parts if part is not None for n in ast.walk(part))
    found = []
    for node in ast.walk(tree):
        if id(node) in annotations:
            continue
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "zip" and node.keywords:
            found.append(f"line {node.lineno}: zip(..., strict=...)")
        elif (name := getattr(node, "attr", getattr(node, "id", None))) in NEWER_THAN_38:
            found.append(f"line {node.lineno}: {name}")
        elif isinstance(node, ast.Subscript) and getattr(node.value, "id", None) in GENERIC_BUILTINS:
            found.append(f"line {node.lineno}: {node.value.id}[...] outside an annotation")
        elif (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.BitOr)
            and any(
                getattr(side, "id", None) in {"int", "float", "str", "None", "bool"} for side in (node.left, node.right)
            )
        ):
            found.append(f"line {node.lineno}: a type union with | outside an annotation")
    return sorted(found)


def python38() -> str | None:
    """A Python 3.8 interpreter on PATH or in pyenv, if there is one."""
    installed = sorted(Path.home().glob(".pyenv/versions/3.8*/bin/python3.8"))  # pyenv's shim may refuse
    found = installed[-1] if installed else shutil.which("python3.8")
    return str(found) if found else None


def test_what_code_zip_ships_needs_no_python_newer_than_3_8(flat):
    files = sorted(flat.glob("*.py"))
    problems = [f"{p.name} {found}" for p in files for found in newer_than_38(ast.parse(p.read_text()))]
    assert problems == []
    interpreter = python38()
    if interpreter is None:
        pytest.skip("no Python 3.8 here to compile code.zip's files with (pyenv install 3.8)")
    result = subprocess.run([interpreter, "-m", "py_compile", *map(str, files)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_python_38_check_finds_what_it_is_for():
    source = "x: dict[str, int] = {}\ndef f(a: int | None) -> list[int]:\n    return list(zip(a, a, strict=True))\n" \
             "Row = dict[str, float]\nok = isinstance(1, int | float)\n'ab'.removeprefix('a')\n"  # fmt: skip
    assert newer_than_38(ast.parse(source)) == [  # dict[str, int], int | None and list[int] are annotations
        "line 3: zip(..., strict=...)", "line 4: dict[...] outside an annotation",
        "line 5: a type union with | outside an annotation", "line 6: removeprefix"]  # fmt: skip
