"""The deep ranker trained by several processes at once, through PySpark's TorchDistributor.

    ranker, history = fit_dnn_distributed(store, split.train, split.val, settings, folder,
                                          processes=2)

Each process runs models.ranking.dnn.train.fit_dnn in one torch.distributed group (gloo, on
CPU): every process streams the training days, trains on its share of the batches and
averages gradients with the others (DistributedDataParallel). Process 0 writes the
checkpoints and the fitted ranker to `folder`, and this process loads it from there.

`local_mode=True` runs the processes beside this one (torchrun on the driver), the way to use
several cores of one machine. `local_mode=False` runs one process per Spark task of a barrier
stage on the cluster's executors (the Spark session must be active): the warehouse and
`folder` must then be on storage every executor sees, as the data root already must be.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from models.ranking.config import TrainingSettings
from models.ranking.dnn.ranker import DnnRanker
from models.ranking.dnn.train import DnnHistory, fit_dnn, world
from warehouse.layout import Folder
from warehouse.store import Warehouse

FITTED = "fitted"  # the subfolder of `folder` process 0 saves the ranker in


def fit_dnn_distributed(
    store: Warehouse,
    train_days: Sequence[str],
    val_days: Sequence[str],
    settings: TrainingSettings,
    folder: Folder,
    tasks: Sequence[str] | None = None,
    *,
    processes: int,
    local_mode: bool = True,
) -> tuple[DnnRanker, DnnHistory]:
    """fit_dnn in `processes` processes started by TorchDistributor; the ranker and history
    process 0 ends with (every process ends with the same weights)."""
    from pyspark.ml.torch.distributor import TorchDistributor

    distributor = TorchDistributor(num_processes=processes, local_mode=local_mode, use_gpu=False)
    history = distributor.run(
        _train_process,
        str(store.root),
        list(train_days),
        list(val_days),
        settings,
        str(folder.path),
        None if tasks is None else list(tasks),
    )
    return DnnRanker.load(folder.sub(FITTED)), DnnHistory(**history)


def _train_process(root, train_days, val_days, settings, folder, tasks) -> dict:
    """One process of the group (run by torchrun, which sets its rank and rendezvous)."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        out = Folder(Path(folder))
        ranker, history = fit_dnn(Warehouse(Path(root)), train_days, val_days, settings, out, tasks)
        if world()[0] == 0:
            ranker.save(out.sub(FITTED))
        return dataclasses.asdict(history)
    finally:
        dist.destroy_process_group()
