"""A Ranker whose LightGBM boosters are compiled to native code by lleaves (LLVM).

    compiled = CompiledRanker.compile(ranker, folder)    # folder: a Folder from warehouse/
    scores = compiled.predict(feature_frame(table))      # Ranker.predict's columns and values
    compile_saved(ranker_folder)                          # once per version made champion
    ranker = load_ranker_folder(ranker_folder)            # compiled, loaded without compiling

Each booster's trees become one native function that makes LightGBM's comparisons and sums
in double precision, so the outputs equal LightGBM's to rounding (~1e-16; the test checks
1e-12). Scoring a 500-row request is about ten times faster than LightGBM's predict (on the
measured ranker, tests/benchmarks/bench_inference.py); the feature frame and the matrix are
Ranker's own (`model_matrix`), only `task_outputs` differs.

Compiling is slow (LLVM at -O3: about a second per tree on a loaded 2-core machine), so the
object files are kept in the folder and a later compile of the same ranker only loads them.
They are reused only when the model text and the target they were built for are the same as
now (stamp.json): code built for one CPU's instruction set may not run on another. A `cache`
folder (the data root's `compiled_cache`) keeps object files by a hash of the model text and
the target, so that the same trees are compiled once however many folders hold them (a
night's gbdt version and the ensemble that has it as a member); the boosters still to compile
are compiled in parallel, one spawned process each, up to the machine's cores.

A saved ranker folder carries its compiled boosters in COMPILED (`compile_saved`: every GBDT
in it, an ensemble's members included), built for the architecture's baseline CPU
(`portable`), so that any worker of the same architecture loads them (`load_compiled`)
without compiling; a worker where they do not fit scores through LightGBM, never compiles.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path

import lleaves
import llvmlite.binding as llvm
import numpy as np

from models.ranking.base import COMPILED, ENSEMBLE, GBDT, ranker_kind, read_meta
from models.ranking.gbdt import Ranker
from models.ranking.native import compile_file, compile_objects
from warehouse.layout import Folder

log = logging.getLogger(__name__)

STAMP = "stamp.json"
CACHE_KEEP = 64  # object files a cache keeps, the most recently used
# The baseline CPU of an architecture (LLVM's names): code for it runs on every CPU of that
# architecture, a few percent slower than code tuned to the host.
_BASELINE = {"x86_64": "x86-64", "aarch64": "generic", "arm64": "generic"}


class NotCompiled(ValueError):
    """A folder's compiled boosters cannot be loaded here (missing, other trees, other CPU)."""


def _target(portable: bool) -> dict[str, str]:
    """What the code is built for: the process's triple and the host's or the baseline CPU."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    triple = llvm.get_process_triple()
    if portable:
        arch = triple.split("-")[0]
        return {"triple": triple, "cpu": _BASELINE.get(arch, "generic"), "features": ""}
    cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    return {"triple": triple, "cpu": cpu, "features": features}


def _stamp(portable: bool) -> dict:
    return {
        "target": _target(portable),
        "portable": portable,
        "lleaves": version("lleaves"),
        "llvmlite": version("llvmlite"),
    }


def _lleaves_model(folder: Folder, task: str, target: dict[str, str]) -> lleaves.Model:
    return compile_file(folder.file(f"{task}.txt"), folder.file(f"{task}.o"), target)


def _cache_key(text: str, stamp: dict) -> str:
    blob = json.dumps(stamp, sort_keys=True) + "\n" + text
    return hashlib.sha256(blob.encode()).hexdigest()


def _from_cache(cache: Folder, key: str, object_file: Path) -> bool:
    cached = cache.file(f"{key}.o")
    if not cached.exists():
        return False
    shutil.copyfile(cached, object_file)
    os.utime(cached)  # recently used: kept by the pruning
    return True


def _to_cache(cache: Folder, key: str, object_file: Path) -> None:
    """Copy an object file into the cache (written aside, then renamed: readers never see a
    part), and keep only the CACHE_KEEP most recently used."""
    target = cache.writable(f"{key}.o")
    if target.exists():
        return
    partial = target.with_name(f".{key}.{os.getpid()}.part")
    shutil.copyfile(object_file, partial)
    os.replace(partial, target)
    kept = sorted(target.parent.glob("*.o"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in kept[CACHE_KEEP:]:
        old.unlink(missing_ok=True)


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
    def compile(
        cls,
        ranker: Ranker,
        folder: Folder,
        threads: int = 1,
        *,
        portable: bool = False,
        cache: Folder | None = None,
    ) -> CompiledRanker:
        """Compile every booster into `folder` (<task>.txt, <task>.o), reusing what a
        compile of the same boosters for the same target left there or in `cache`.
        `portable`: for the architecture's baseline CPU rather than this host's."""
        texts = {task: b.model_to_string() for task, b in ranker.boosters.items()}
        stamp = _stamp(portable)
        previous = folder.file(STAMP)
        same_target = previous.exists() and json.loads(previous.read_text()) == stamp
        todo = []
        for task, text in texts.items():
            model_file, object_file = folder.file(f"{task}.txt"), folder.file(f"{task}.o")
            if not (same_target and model_file.exists() and model_file.read_text() == text):
                object_file.unlink(missing_ok=True)  # built from other trees or another CPU
                folder.writable(model_file.name).write_text(text)
            if object_file.exists():
                continue
            if cache is None or not _from_cache(cache, _cache_key(text, stamp), object_file):
                todo.append((task, model_file, object_file))
        if todo:
            log.info("compiling %d boosters: %s", len(todo), ", ".join(t for t, _, _ in todo))
            trees = sum(ranker.boosters[t].num_trees() for t, _, _ in todo)
            compile_objects([(m, o) for _, m, o in todo], stamp["target"], trees)
        if cache is not None:
            for task, _, object_file in todo:
                _to_cache(cache, _cache_key(texts[task], stamp), object_file)
        models = {task: _lleaves_model(folder, task, stamp["target"]) for task in texts}
        folder.writable(STAMP).write_text(json.dumps(stamp))
        return cls(ranker, models, threads)

    @classmethod
    def load(cls, ranker: Ranker, folder: Folder, threads: int = 1) -> CompiledRanker:
        """The boosters `compile` left in `folder`, loaded without compiling; NotCompiled
        when they are missing, of other trees, or built for a CPU this process is not."""
        if not folder.file(STAMP).exists():
            raise NotCompiled(f"{folder}: no {STAMP}")
        stamp = json.loads(folder.file(STAMP).read_text())
        here = _stamp(stamp.get("portable", False))
        if stamp != here:
            raise NotCompiled(f"{folder}: built for {stamp}, this process is {here}")
        models = {}
        for task, booster in ranker.boosters.items():
            model_file, object_file = folder.file(f"{task}.txt"), folder.file(f"{task}.o")
            if not object_file.exists() or not model_file.exists():
                raise NotCompiled(f"{folder}: {task} is not compiled")
            if model_file.read_text() != booster.model_to_string():
                raise NotCompiled(f"{folder}: {task} was compiled from other trees")
            models[task] = _lleaves_model(folder, task, stamp["target"])
        return cls(ranker, models, threads)

    def task_outputs(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        return {task: m.predict(matrix, n_jobs=self.threads) for task, m in self.models.items()}


def load_compiled(ranker: Ranker, folder: Folder) -> Ranker:
    """The GBDT saved in `folder` with its COMPILED boosters when they load here without
    compiling, else the ranker as it is (LightGBM's predict: the same scores, slower)."""
    if not folder.file(f"{COMPILED}/{STAMP}").exists():
        return ranker
    try:
        return CompiledRanker.load(ranker, folder.sub(COMPILED))
    except NotCompiled as err:
        log.warning("scoring through LightGBM: %s", err)
        return ranker


def compile_saved(folder: Folder, cache: Folder | None = None) -> int:
    """Compile every GBDT in a saved ranker folder (itself, or an ensemble's members) into its
    COMPILED subfolder, for the architecture's baseline CPU, reusing `cache`'s object files of
    the same trees; how many GBDTs it holds."""
    kind = ranker_kind(folder)
    if kind == GBDT:
        ranker = Ranker.load(folder)
        CompiledRanker.compile(ranker, folder.sub(COMPILED), portable=True, cache=cache)
        return 1
    if kind == ENSEMBLE:
        members = read_meta(folder)["members"]
        return sum(compile_saved(folder.sub(name), cache) for name in members)
    return 0
