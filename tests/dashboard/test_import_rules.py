"""The dashboard reads runs only through the provider (``epochscope.Runs`` and the ``Run`` it
hands out) and is drawn with one kit: checked on the source's syntax trees, so a new module
that opens a run's files itself, or a view that borrows another view's code, fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboard"

#: epochscope's file-level modules: only the provider and Run may use them
READ_INTERNALS = ("epochscope.reader", "epochscope.layout", "epochscope.maps")

#: each view: the modules it is made of (a package or files, its page included)
VIEWS = {
    "confusion": ("dashboard/confusion/", "dashboard/pages/confusion.py"),
    "map": ("dashboard/embedding_map/", "dashboard/pages/embedding_map.py"),
    "labels": ("dashboard/labels/", "dashboard/pages/labels.py"),
    "data map": ("dashboard/data_map/", "dashboard/pages/data_map.py"),
    "classify": ("dashboard/classify/", "dashboard/pages/classify.py"),
    "training": ("dashboard/training/", "dashboard/pages/training.py"),
}  # fmt: skip

#: calls that read the file system: a dashboard module asks the provider instead
FILE_CALLS = {"open", "os.stat", "os.lstat", "os.scandir", "os.listdir", "os.walk", "np.load",
              "numpy.load", "os.path.exists", "os.path.isfile", "os.path.getsize"}  # fmt: skip
PATH_METHODS = {"read_bytes", "read_text", "stat", "lstat", "iterdir", "glob", "rglob",
                "is_file", "exists"}  # fmt: skip
#: the few places that touch a file that is not a run's, and why
ALLOWED_FILE_CALLS = {
    # --runs-dir checked to be a folder before gunicorn starts (the root, not a run)
    ("dashboard/__main__.py", "os.path.isdir"),
}


def _modules() -> list[Path]:
    return sorted(p for p in DASHBOARD.rglob("*.py") if "static" not in p.parts)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else ""
    if path.name == "__init__.py":
        package = _module_name(path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            out.append(base)
            out += [f"{base}.{a.name}" for a in node.names]
    return out


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (head := _dotted(node.value)) is not None:
        return f"{head}.{node.attr}"
    return None


def _view_of(path: Path | str) -> str | None:
    rel = path if isinstance(path, str) else _rel(path)
    for view, parts in VIEWS.items():
        if any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in parts):
            return view
    return None


def _view_of_module(name: str) -> str | None:
    as_path = name.replace(".", "/")
    for candidate in (as_path + ".py", as_path + "/__init__.py", as_path + "/"):
        if (view := _view_of(candidate)) is not None:
            return view
    return None


def test_the_views_listed_exist() -> None:
    for parts in VIEWS.values():
        for p in parts:
            assert (ROOT / p).exists(), p


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_no_dashboard_module_imports_the_readers_internals(path: Path) -> None:
    bad = [m for m in _imports(path) if m.startswith(READ_INTERNALS)]
    assert not bad, f"{_rel(path)} imports {bad}: read through epochscope.Runs and Run"


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_no_dashboard_module_reads_files_itself(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name in FILE_CALLS and (_rel(path), name) not in ALLOWED_FILE_CALLS:
            found.append(f"{name} (line {node.lineno})")
        elif (
            isinstance(node.func, ast.Attribute)
            and node.func.attr in PATH_METHODS
            and (_rel(path), node.func.attr) not in ALLOWED_FILE_CALLS
        ):
            found.append(f".{node.func.attr}() (line {node.lineno})")
    assert not found, f"{_rel(path)} touches files itself: {found}"


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_no_view_imports_another_view(path: Path) -> None:
    mine = _view_of(path)
    others = {m: v for m in _imports(path) if (v := _view_of_module(m)) is not None and v != mine}
    where = f"the {mine} view ({_rel(path)})" if mine else f"{_rel(path)} (not a view)"
    assert not others, f"{where} imports views: {others}"


def test_the_kit_imports_no_view() -> None:
    for path in sorted((DASHBOARD / "kit").rglob("*.py")):
        views = {m for m in _imports(path) if _view_of_module(m) is not None}
        assert not views, f"{_rel(path)} (the kit) imports views: {views}"
