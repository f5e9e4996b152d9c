"""Training of the deep ranker: streamed Parquet batches, multi-task loss, checkpoints.

    ranker, history = fit_dnn(store, split.train, split.val, settings.training, folder)

* One streamed pass over the training days first: the normalisation statistics
  (models.ranking.dnn.inputs.Normaliser), the dwell scale, rows and positives per task.
* Each epoch streams the days again (warehouse.store.Warehouse.iter_batches): a row is read if
  some task trains on it (models.ranking.dataset.any_label_or_sampled), is encoded, and goes
  through a
  seeded shuffle buffer into batches; task a's loss counts it only where
  sample_mask(label_a, sample_u, negative_rate) holds, as the GBDT samples, so the same
  calibration correction applies at prediction. Dwell: Huber on clicked rows with a dwell.
* AdamW, linear warmup then cosine decay per step, gradient clipping; after each epoch the
  validation days' NDCG@k of the value score per request (serving position and source with
  debiasing, as feeds are ranked), early stopping on it, and a checkpoint in the folder the
  caller hands over. A run that finds a checkpoint of the same settings and days resumes
  from it and ends with the weights an uninterrupted run ends with.
* Deterministic on CPU: seeded initialisation, shuffles seeded by (seed, epoch), the torch
  RNG (dropout) saved in checkpoints, deterministic algorithms, a fixed thread count; the
  order is that of the stored files (the same files, the same model).
* In a torch.distributed group (models.ranking.dnn.distributed starts one through PySpark's
  TorchDistributor) each of the N processes trains on every N-th batch of the same stream,
  batches of batch_size / N rows, so that a step still sees batch_size rows; the network is
  wrapped in DistributedDataParallel, which averages the gradients. The processes hold the
  same weights after every step, so each validates alike and they stop together; process 0
  alone writes checkpoints.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from models.evaluation.evaluate import VALUE, value_ranking
from models.ranking.base import DWELL, TASKS, VALUE_SCORE
from models.ranking.config import TrainingSettings
from models.ranking.dataset import LABELS, feature_frame
from models.ranking.dnn import data as data
from models.ranking.dnn.inputs import TENSORS, check_crosses
from models.ranking.dnn.net import DnnNet
from models.ranking.dnn.ranker import DnnRanker
from warehouse.catalog import ACTIONS, TRAINING_EXAMPLES, C
from warehouse.layout import Folder

if TYPE_CHECKING:
    from warehouse.store import Warehouse

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
LOG_EVERY = 200  # batches between progress lines when stderr is not a terminal


@dataclasses.dataclass
class DnnHistory:
    """How the network trained: rows and positives per task, losses and the validation
    metric per epoch, the best epoch, time per epoch."""

    rows: dict[str, int] = dataclasses.field(default_factory=dict)  # rows each loss counts
    positives: dict[str, int] = dataclasses.field(default_factory=dict)
    rows_read: int = 0  # rows some task trains on (each epoch's stream)
    train_loss: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    val_loss: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    val_metric: list[float] = dataclasses.field(default_factory=list)
    val_metric_name: str = "ndcg_at_10"  # of the value score per request
    best_epoch: int = 0
    epoch_seconds: list[float] = dataclasses.field(default_factory=list)
    rows_per_s: list[float] = dataclasses.field(default_factory=list)
    rows_trained: list[int] = dataclasses.field(default_factory=list)  # per epoch, all processes
    processes: int = 1  # torch.distributed processes that trained it together

    @property
    def curves(self) -> dict[str, dict[str, list[float]]]:
        """Per task the train and validation loss per epoch, and the validation value
        metric as task `value` (the shape of models.ranking.gbdt.History.curves, for the plots)."""
        out = {t: {"train": self.train_loss[t], "valid": self.val_loss[t]} for t in self.train_loss}
        return out | {VALUE: {"valid": self.val_metric}}

    @property
    def best_iteration(self) -> dict[str, int]:
        return dict.fromkeys(self.curves, self.best_epoch)

    @property
    def metric(self) -> dict[str, str]:
        names = {t: "huber / delta" if t == DWELL else "logloss" for t in self.train_loss}
        return names | {VALUE: self.val_metric_name}


def world() -> tuple[int, int]:
    """(rank, size) of the torch.distributed group this process trains in; (0, 1) alone."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def seed_everything(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)


def _losses(logits: torch.Tensor, dwell: torch.Tensor, batch: dict, cfg) -> torch.Tensor:
    """Per task mean loss over the rows it counts: (7,), dwell last."""
    bce = nn.functional.binary_cross_entropy_with_logits(logits, batch["y"], reduction="none")
    per_action = (bce * batch["m"]).sum(0) / batch["m"].sum(0).clamp(min=1.0)  # (6,)
    huber = nn.functional.huber_loss(dwell, batch["dwell"], reduction="none", delta=cfg.huber_delta)
    dm = batch["dm"]
    per_dwell = (huber / cfg.huber_delta * dm).sum() / dm.sum().clamp(min=1.0)
    return torch.cat([per_action, per_dwell.reshape(1)])


def _schedule(cfg, total_steps: int) -> Callable[[int], float]:
    warmup = int(cfg.warmup_share * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        done = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * done))

    return factor


@dataclasses.dataclass
class _Validation:
    """The validation days, encoded once: logged bias (losses) and serving (ranking)."""

    logged: dict[str, np.ndarray]
    served: dict[str, np.ndarray] | None
    targets: dict[str, torch.Tensor]
    frame: pd.DataFrame  # labels, dwell_s and request_id for the value ranking


def _validation(store, days, settings: TrainingSettings, ranker: DnnRanker, fitted) -> _Validation:
    tables = list(data.read(store, days, settings.dnn.read_rows))
    table = pa.concat_tables(tables) if tables else None
    if table is None or table.num_rows == 0:
        raise ValueError(f"{TRAINING_EXAMPLES.qualified}: no validation rows in {list(days)}")
    X = feature_frame(table)
    targets = data.targets(table, settings.negative_rate, fitted)
    frame = table.select([*LABELS, C.REQUEST_ID]).to_pandas()
    served = ranker.tensors(X) if ranker.debiased else None
    return _Validation(
        ranker.tensors(X, logged_bias=True),
        served,
        {k: torch.from_numpy(v) for k, v in targets.items()},
        frame,
    )


def _validate(ranker: DnnRanker, val: _Validation, settings: TrainingSettings) -> tuple:
    """Per-task validation loss (sampled rows) and NDCG@k of the value score per request."""
    ranker.net.eval()
    logits, dwell = ranker.forward_arrays(val.logged)
    z, d = (torch.from_numpy(v.astype(np.float32)) for v in (logits, dwell))
    losses = _losses(z, d, val.targets, settings.dnn).numpy()
    if val.served is not None:
        logits, dwell = ranker.forward_arrays(val.served)
    score = ranker.scores(logits, dwell, val.frame.index)[VALUE_SCORE].to_numpy()
    k = settings.ranking_k
    ranking = value_ranking(val.frame, {"model": score}, settings.value, k)
    return losses, float(ranking[f"ndcg_at_{k}"].iloc[0])


def _fingerprint(settings: TrainingSettings, train_days, val_days, fitted) -> str:
    return json.dumps(
        [settings.model_dump(mode="json"), list(train_days), list(val_days), list(fitted)],
        sort_keys=True,
    )


class _Progress:
    """A rich progress bar on a terminal, a log line every LOG_EVERY batches otherwise."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.done, self.bar = total, label, 0, None
        if sys.stderr.isatty():
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total)

    def advance(self, loss: float) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=f"{self.label} loss {loss:.4f}")
        elif self.done % LOG_EVERY == 0:
            log.info("%s: batch %d/%d, loss %.4f", self.label, self.done, self.total, loss)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@dataclasses.dataclass
class _State:
    """What a checkpoint holds besides the network, optimiser and scheduler."""

    epoch: int = 0  # epochs done
    best: float = -math.inf
    best_state: dict | None = None
    stale: int = 0  # epochs since the best


def _share(batches: Iterator[dict], rank: int, size: int) -> Iterator[dict]:
    """Process `rank`'s batch of each group of `size` consecutive batches, so that every
    process of a group takes the same steps (a last group short of `size` batches, under
    batch_size rows, is left out of the epoch)."""
    if size == 1:
        yield from batches
        return
    group = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group[rank]
            group = []


def _train_epoch(ranker, model, opt, sched, loader, weights, progress) -> tuple[np.ndarray, int]:
    """One pass over the stream; the mean loss per task over the rows it counted, rows (of
    every process of a distributed group; `model`: the network or its DDP wrapper)."""
    net, cfg = ranker.net, ranker.encoder.cfg
    net.train()
    sums, counts, rows = np.zeros(len(TASKS)), np.zeros(len(TASKS)), 0
    for batch in loader:
        logits, dwell = model(*(batch[k] for k in TENSORS if k in batch))
        per_task = _losses(logits, dwell, batch, cfg)  # (7,)
        loss = (per_task * weights).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        counted = torch.cat([batch["m"].sum(0), batch["dm"].sum().reshape(1)]).numpy()
        sums += per_task.detach().numpy() * counted
        counts += counted
        rows += len(batch["num"])
        progress.advance(float(loss.detach()))
    if isinstance(model, DistributedDataParallel):  # loss and rows over every process's batches
        total = torch.from_numpy(np.concatenate([sums, counts, [rows]]))
        dist.all_reduce(total)
        sums, counts, rows = np.split(total.numpy(), [len(TASKS), 2 * len(TASKS)])
        rows = int(rows[0])
    return sums / np.maximum(counts, 1), rows


def _save(folder: Folder, payload: dict) -> None:
    """Write the checkpoint whole or not at all (a kill mid-write keeps the previous one)."""
    if world()[0] != 0:  # the processes of a group hold the same state: process 0 writes it
        return
    tmp = folder.writable(CHECKPOINT + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(folder.file(CHECKPOINT))


def _restore(folder: Folder, key: str) -> dict | None:
    path = folder.file(CHECKPOINT)
    if not path.exists():
        return None
    saved = torch.load(path, weights_only=True)
    if saved.get("key") != key:
        log.warning("%s: a checkpoint of other settings or days; training from scratch", path)
        return None
    log.info("resuming from %s after epoch %d", path, saved["state"]["epoch"])
    return saved


def fit_dnn(
    store: Warehouse,
    train_days: Sequence[str],
    val_days: Sequence[str],
    settings: TrainingSettings,
    folder: Folder,
    tasks: Sequence[str] | None = None,
    *,
    on_epoch: Callable[[int, DnnHistory], None] | None = None,
) -> tuple[DnnRanker, DnnHistory]:
    """Fit the network on the training days, stopping early on the validation days.

    `folder`: where checkpoints go (and are resumed from). `tasks`: the ones the raw input
    records, the others absent (probability 0), like models.ranking.gbdt.fit_ranker; a recorded
    action without a positive in the training days raises. `on_epoch(epoch, history)` runs
    after each epoch's checkpoint (progress reports; a test interrupts there)."""
    cfg, rate = settings.dnn, settings.negative_rate
    check_crosses(cfg)
    fitted = TASKS if tasks is None else tuple(t for t in TASKS if t in tasks)
    rank, size = world()
    # The group shares num_threads: a process per core of a 2-core machine or per executor
    # task slot, each with 2 threads, oversubscribed the cores, and the OpenMP threads
    # spinning at every step's gradient exchange made an epoch minutes instead of seconds.
    seed_everything(cfg.seed, max(1, cfg.num_threads // size))
    if cfg.batch_size % size:
        raise ValueError(
            f"training.dnn.batch_size {cfg.batch_size} does not split evenly over the {size} "
            "training processes: make it a multiple of training.dnn.processes"
        )
    key = _fingerprint(settings, train_days, val_days, fitted)
    if size > 1:  # another group's checkpoint holds other steps
        key = json.dumps([key, size])
    saved = _restore(folder, key)
    plan = (
        data.Plan.from_dict(saved["plan"], cfg)
        if saved
        else data.plan(store, train_days, settings, fitted)
    )
    no_positive = [a for a in ACTIONS if a in fitted and plan.positives[a] == 0]
    if no_positive:
        raise ValueError(f"no positive {no_positive[0]!r} in the training days: cannot fit")
    net = DnnNet(cfg, plan.encoder.n_numeric, plan.encoder.history_len, settings.debias)
    net.dwell_scale.fill_(plan.encoder.norm.dwell_scale)
    absent = tuple(t for t in TASKS if t not in fitted)
    ranker = DnnRanker(net, plan.encoder, rate, settings.value, absent)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    per_epoch = max(1, math.ceil(plan.rows_read / cfg.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg, cfg.epochs * per_epoch))
    val = _validation(store, val_days, settings, ranker, fitted)
    weights = torch.tensor([getattr(cfg.loss_weights, t) if t in fitted else 0.0 for t in TASKS])
    history = DnnHistory(
        rows=plan.rows,
        positives=plan.positives,
        rows_read=plan.rows_read,
        train_loss={t: [] for t in fitted},
        val_loss={t: [] for t in fitted},
        val_metric_name=f"ndcg_at_{settings.ranking_k}",
    )
    state = _State()
    if saved:
        net.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        history = DnnHistory(**saved["history"])
        state = _State(**saved["state"])
    history.processes = size
    model = DistributedDataParallel(net) if size > 1 else net  # DDP: rank 0's weights to all

    def stream():
        rng = np.random.default_rng([cfg.seed, state.epoch])
        chunks = data.chunks(store, train_days, settings, plan.encoder, fitted)
        batches = data.shuffled(chunks, cfg.shuffle_buffer, cfg.batch_size // size, rng)
        return _share(batches, rank, size)

    loader = DataLoader(data.Stream(stream), batch_size=None)
    while state.epoch < cfg.epochs and state.stale < cfg.patience:
        started = time.perf_counter()
        progress = _Progress(per_epoch, f"dnn epoch {state.epoch + 1}/{cfg.epochs}")
        try:
            train_loss, rows = _train_epoch(ranker, model, opt, sched, loader, weights, progress)
        finally:
            progress.close()
        seconds = time.perf_counter() - started
        val_loss, metric = _validate(ranker, val, settings)
        _record(history, fitted, train_loss, val_loss, metric, seconds, rows)
        state.epoch += 1
        if state.best_state is None or (np.isfinite(metric) and metric > state.best):
            state.best, state.stale, history.best_epoch = metric, 0, state.epoch
            state.best_state = copy.deepcopy(net.state_dict())
        else:
            state.stale += 1
        log.info(
            "dnn epoch %d: %d rows in %.1fs (%.0f rows/s), train loss %.4f, validation %s %.4f",
            state.epoch,
            rows,
            seconds,
            rows / seconds,
            float(train_loss @ weights.numpy()),
            history.val_metric_name,
            metric,
        )
        _save(folder, _checkpoint(key, plan, net, opt, sched, history, state))
        if on_epoch is not None:
            on_epoch(state.epoch, history)
    net.load_state_dict(state.best_state)
    net.eval()
    return ranker, history


def _record(history, fitted, train_loss, val_loss, metric, seconds, rows) -> None:
    for i, t in enumerate(TASKS):
        if t in fitted:
            history.train_loss[t].append(float(train_loss[i]))
            history.val_loss[t].append(float(val_loss[i]))
    history.val_metric.append(metric)
    history.epoch_seconds.append(seconds)
    history.rows_per_s.append(rows / max(seconds, 1e-9))
    history.rows_trained.append(rows)


def _checkpoint(key, plan, net, opt, sched, history, state) -> dict:
    return {
        "key": key,
        "plan": plan.as_dict(),
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "history": dataclasses.asdict(history),
        "state": dataclasses.asdict(state),
    }
