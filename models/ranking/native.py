"""Boosters' model text compiled to object files by lleaves, in worker processes where it pays.

    compile_objects([(model_file, object_file), ...], target, trees)

What models.ranking.compiled's spawned workers import: lleaves and nothing of the pipeline's
heavy modules, so that a worker starts in about a second.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import lleaves

# Below this many trees to compile, spawning worker processes (each imports lleaves and
# LLVM, about a second) costs more than it saves.
PARALLEL_TREES = 100


def compile_file(model_file: Path, object_file: Path, target: dict[str, str]) -> lleaves.Model:
    model = lleaves.Model(model_file=str(model_file))
    cpu = {"target_cpu": target["cpu"], "target_cpu_features": target["features"]}
    model.compile(cache=str(object_file), **cpu)  # loads the object file if there is one
    return model


def _compile_to(model_file: Path, object_file: Path, target: dict[str, str]) -> None:
    """A spawned worker's job: compile one booster's text into its object file."""
    compile_file(model_file, object_file, target)


def compile_objects(jobs: list[tuple[Path, Path]], target: dict[str, str], trees: int) -> None:
    """Compile each (model file, object file): in parallel processes (spawned, so no thread
    pool of this process is inherited) when there are several, several cores and at least
    PARALLEL_TREES `trees` in all."""
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers <= 1 or trees < PARALLEL_TREES:
        for model_file, object_file in jobs:
            _compile_to(model_file, object_file, target)
        return
    context = multiprocessing.get_context("spawn")
    with spawn_without_main(), ProcessPoolExecutor(workers, mp_context=context) as pool:
        done = [pool.submit(_compile_to, m, o, target) for m, o in jobs]
        for future in done:
            future.result()


@contextlib.contextmanager
def spawn_without_main() -> Iterator[None]:
    """Spawned children do not run this process's main script again.

    multiprocessing's spawn re-runs a main script given by path in every child (as
    `__mp_main__`) but skips a main named `<package>.__main__`. In an Airflow task the main
    script is `airflow`, whose import in a child reads the task's deliberately unusable
    database URL and dies, so a pool of spawned workers broke every task that used one
    (`feedrank demo --scheduler`: train_rankers' register, 3 tries each). Meanwhile the main
    module is named so; the workers' functions live in importable modules."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    if spec is not None:  # run as `-m module`: the child imports it by name, as it should
        yield
        return
    main.__spec__ = importlib.machinery.ModuleSpec("feedrank_spawn.__main__", None)
    try:
        yield
    finally:
        main.__spec__ = spec
