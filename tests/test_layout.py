"""The package layout: no import cycles between files, and only public faces at the package top."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from tests_paths import ROOT

PACKAGES = ("gazecxr", "stages", "data_prep", "bench")
TOP_LEVEL_MODULES = {"__init__.py", "__main__.py", "predict.py"}
"""The only modules allowed loose at ``gazecxr/``: the package itself and its public faces."""


def module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    return files


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ``known`` that ``path`` imports anywhere (top level or inside functions)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_file_imports_a_file_that_imports_it():
    files = module_files()
    graph = {name: imported_modules(name, path, set(files)) for name, path in files.items()}
    assert graph["gazecxr.predict"], "the import walker found no imports at all"
    assert import_cycles(graph) == []


def test_cycle_detector_finds_a_lazy_import_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]


def test_package_top_holds_only_public_faces():
    loose = {p.name for p in (ROOT / "gazecxr").glob("*.py")} - TOP_LEVEL_MODULES
    assert loose == set()


@pytest.mark.parametrize("module, name", [
    ("gazecxr.predict", "load_predictor"),
    ("gazecxr.predict", "Prediction"),
    ("gazecxr.metrics", "kl_divergence"),
    ("gazecxr.metrics", "classification_metrics"),
    ("gazecxr.losses", "SaliencyKLLoss"),
    ("gazecxr.models", "create_model"),
    ("gazecxr.data", "GazeCXRDataset"),
    ("gazecxr.config", "load_config"),
])
def test_documented_imports_still_work(module, name):
    assert hasattr(importlib.import_module(module), name)
