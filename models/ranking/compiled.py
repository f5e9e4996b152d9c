"""A Ranker whose LightGBM boosters are compiled to native code by lleaves (LLVM).

    compiled = CompiledRanker.compile(ranker, folder)    # folder: a Folder from warehouse/
    scores = compiled.predict(feature_frame(table))      # Ranker.predict's columns and values

Each booster's trees become one native function that makes LightGBM's comparisons and sums
in double precision, so the outputs equal LightGBM's to rounding (~1e-16; the test checks
1e-12). Scoring a 500-row request is about ten times faster than LightGBM's predict (on the
measured ranker, tests/benchmarks/bench_inference.py); the feature frame and the matrix are
Ranker's own (`model_matrix`), only `task_outputs` differs.

Compiling is slow (LLVM at -O3: about a second per tree on a loaded 2-core machine), so the
object files are kept in the folder and a later compile of the same ranker only loads them.
They are reused only when the model text and the CPU they were built for are the same as
now (stamp.json): code built for one CPU's instruction set may not run on another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.metadata import version

import lleaves
import llvmlite.binding as llvm
import numpy as np

from models.ranking.gbdt import Ranker
from warehouse.layout import Folder

STAMP = "stamp.json"


def _host_cpu() -> dict[str, str]:
    llvm.initialize_native_target()
    return {"cpu": llvm.get_host_cpu_name(), "features": llvm.get_host_cpu_features().flatten()}


class CompiledRanker(Ranker):
    """Ranker.predict with each task's trees run as compiled code on `threads` threads."""

    def __init__(self, ranker: Ranker, models: Mapping[str, lleaves.Model], threads: int = 1):
        super().__init__(
            ranker.boosters, ranker.negative_rate, ranker.weights, ranker.features, ranker.absent
        )
        if set(models) != set(ranker.boosters):
            raise ValueError(f"compiled tasks {sorted(models)} != {sorted(ranker.boosters)}")
        self.models = dict(models)
        self.threads = threads

    @classmethod
    def compile(cls, ranker: Ranker, folder: Folder, threads: int = 1) -> CompiledRanker:
        """Compile every booster into `folder` (<task>.txt, <task>.o), reusing what a
        compile of the same boosters on this CPU left there."""
        texts = {task: b.model_to_string() for task, b in ranker.boosters.items()}
        stamp = {
            "host": _host_cpu(),
            "lleaves": version("lleaves"),
            "llvmlite": version("llvmlite"),
        }
        previous = folder.file(STAMP)
        same_host = previous.exists() and json.loads(previous.read_text()) == stamp
        models = {}
        for task, text in texts.items():
            model_file, object_file = folder.file(f"{task}.txt"), folder.file(f"{task}.o")
            if not (same_host and model_file.exists() and model_file.read_text() == text):
                object_file.unlink(missing_ok=True)  # built from other trees or another CPU
                folder.writable(model_file.name).write_text(text)
            model = lleaves.Model(model_file=str(model_file))
            model.compile(cache=str(object_file))
            models[task] = model
        folder.writable(STAMP).write_text(json.dumps(stamp))
        return cls(ranker, models, threads)

    def task_outputs(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        return {task: m.predict(matrix, n_jobs=self.threads) for task, m in self.models.items()}
