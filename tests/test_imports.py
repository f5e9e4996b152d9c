"""The house's import rules, read from the source (nothing is imported):

- no circle: no module of the project reaches itself through its imports, whether they run
  at import time or inside a function (a lazy import is a circle all the same);
- jobs never import jobs: a module under jobs/ imports only the shared modules of jobs/, and
  only the orchestrators (the command line, the demo and its summary) import job modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jobs", "features", "models", "warehouse", "simulator")
# Modules of jobs/ that are not one batch step: settings, the Spark factory, what every job
# shares, the reading several jobs need, Airflow's wiring, and the local stack's services.
SHARED_JOBS = {
    "settings",
    "spark",
    "common",
    "reading",
    "airflow_env",
    "airflow_support",
    "processes",
    "stack",
}
# Modules that run other jobs: the `feedrank` command line, its `feed`/`feeds`/`serve`
# commands, the demo, and the summary the demo and the CLI print.
ORCHESTRATORS = {"cli", "feeds_cli", "demo", "demo_scheduler", "summary"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules `name` imports anywhere in its source (a package's __init__ is
    left out: importing a submodule is an edge to that submodule)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and MODULES[target].name != "__init__.py" and target != name:
                out.add(target)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_every_wing():
    # A walk that found nothing would pass the rules below vacuously.
    assert {"models.ranking.base", "models.ranking.load", "warehouse.feeds.open"} <= set(MODULES)
    assert "models.ranking.base" in GRAPH["models.ranking.gbdt"]
    assert "models.ranking.gbdt" in GRAPH["models.ranking.load"]  # a lazy import counts


def test_cycles_are_found_when_there_is_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_module_imports_itself_in_a_circle():
    assert _cycles(GRAPH) == []


JOB_MODULES = sorted(
    m
    for m in MODULES
    if m.startswith("jobs.") and m.removeprefix("jobs.") not in ORCHESTRATORS | {"profiles"}
)


def test_the_job_modules_are_the_steps():
    steps = {m.removeprefix("jobs.") for m in JOB_MODULES} - SHARED_JOBS
    assert {"build_features", "precompute_feeds", "evaluate_feeds", "ab_report"} <= steps


@pytest.mark.parametrize("module", JOB_MODULES)
def test_jobs_never_import_other_jobs(module):
    jobs = {m for m in GRAPH[module] if m.startswith("jobs.")}
    assert {m.removeprefix("jobs.") for m in jobs} <= SHARED_JOBS, module


def test_shared_job_modules_import_no_job():
    for leaf in SHARED_JOBS:
        imported = {m.removeprefix("jobs.") for m in GRAPH[f"jobs.{leaf}"] if m.startswith("jobs.")}
        assert imported <= SHARED_JOBS, leaf
