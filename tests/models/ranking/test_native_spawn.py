"""A pool of spawned workers (models.ranking.native compiles boosters in one) must not run the
parent's main script again: under an Airflow task that script is `airflow`, which dies in a
child (the task's database URL is unusable there), and `train_rankers`' register failed so
under the scheduler (`feedrank demo --scheduler`), though never under `dag.test()`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

SCRIPT = """
if __name__ != "__main__":  # what `airflow` does in a spawned child: die on import
    raise SystemExit("the main script ran again in a spawned child")
import multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor
from models.ranking.native import spawn_without_main

guard = spawn_without_main() if sys.argv[1] == "guarded" else __import__("contextlib").nullcontext()
with guard, ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
    child = pool.submit(os.getpid).result(timeout=120)
print("child", child != os.getpid())
print("spec restored", getattr(sys.modules["__main__"], "__spec__", None) is None)
"""


def _run(tmp_path, mode):
    script = tmp_path / "main_script"  # no .py: a console script, as bin/airflow
    script.write_text(textwrap.dedent(SCRIPT))
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, str(script), mode], env=env, capture_output=True, text=True, timeout=300
    )


def test_spawned_workers_do_not_rerun_the_main_script(tmp_path):
    done = _run(tmp_path, "guarded")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["child True", "spec restored True"]


def test_without_the_guard_the_child_reruns_it_and_the_pool_breaks(tmp_path):
    done = _run(tmp_path, "bare")
    assert done.returncode != 0
    assert "the main script ran again in a spawned child" in done.stderr
