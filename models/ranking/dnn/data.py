"""Streaming the training days into the deep ranker: Parquet batches -> encoded, shuffled batches.

Nothing holds the training days whole: warehouse.store.Warehouse.iter_batches reads record
batches, rows no task trains on are dropped (models.ranking.dataset.any_label_or_sampled), the rest
are encoded (models.ranking.dnn.inputs) and shuffled within a seeded buffer. Each task's loss mask
is
the GBDT's sample (models.ranking.dataset.sample_mask), so the calibration correction is the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import IterableDataset

from models.ranking.base import DWELL
from models.ranking.config import TrainingSettings
from models.ranking.dataset import EXAMPLE_COLUMNS, any_label_or_sampled, feature_frame, sample_mask
from models.ranking.dnn.config import DnnSettings
from models.ranking.dnn.inputs import (
    Encoder,
    Normaliser,
    NormaliserBuilder,
    history_len,
    numeric_columns,
)
from warehouse.catalog import ACTIONS, CLICK, TRAINING_EXAMPLES, C, label_column

if TYPE_CHECKING:
    from warehouse.store import Warehouse

TARGETS = ("y", "m", "dwell", "dm")  # labels, task masks, dwell seconds, dwell mask


def read(store: Warehouse, days: Sequence[str], rows: int) -> Iterator[pa.Table]:
    yield from store.iter_batches(
        TRAINING_EXAMPLES, days, columns=list(EXAMPLE_COLUMNS), batch_rows=rows
    )


def targets(table: pa.Table, rate: float, fitted: Sequence[str]) -> dict[str, np.ndarray]:
    """Labels (n, 6), each task's sample mask (n, 6), dwell and its mask (n,), float32."""
    u = table.column(C.SAMPLE_U).to_numpy()
    y = np.column_stack([table.column(label_column(a)).to_numpy() for a in ACTIONS])
    m = np.column_stack(
        [sample_mask(y[:, i], u, rate) & (a in fitted) for i, a in enumerate(ACTIONS)]
    )
    dwell = table.column(C.DWELL_S).to_numpy(zero_copy_only=False).astype(np.float64)
    dm = (y[:, ACTIONS.index(CLICK)] == 1) & np.isfinite(dwell) & (DWELL in fitted)
    return {
        "y": y.astype(np.float32),
        "m": m.astype(np.float32),
        "dwell": np.where(dm, dwell, 0.0).astype(np.float32),
        "dm": dm.astype(np.float32),
    }


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the pass before training found: the encoder and the counts of each task."""

    encoder: Encoder
    rows: dict[str, int]  # rows each task's loss counts
    positives: dict[str, int]
    rows_read: int  # rows some task trains on: the stream's length per epoch

    def as_dict(self) -> dict:
        return {
            "encoder": self.encoder.as_dict(),
            "rows": self.rows,
            "positives": self.positives,
            "rows_read": self.rows_read,
        }

    @classmethod
    def from_dict(cls, d: dict, cfg: DnnSettings) -> Plan:
        norm = Normaliser.from_dict(d["encoder"]["normaliser"])
        encoder = Encoder(cfg, norm, d["encoder"]["history_len"])
        return cls(encoder, dict(d["rows"]), dict(d["positives"]), int(d["rows_read"]))


def plan(store, days, settings: TrainingSettings, fitted) -> Plan:
    """The streamed pass before training: statistics, rows and positives per task."""
    cfg, rate = settings.dnn, settings.negative_rate
    builder, hist, rows_read = None, 0, 0
    rows = dict.fromkeys(fitted, 0)
    positives = dict.fromkeys(fitted, 0)
    for table in read(store, days, cfg.read_rows):
        frame = feature_frame(table)
        if builder is None:
            builder = NormaliserBuilder(numeric_columns(frame.columns, cfg), cfg)
            hist = history_len(frame.columns)
        t = targets(table, rate, fitted)
        builder.add(frame, np.where(t["dm"] > 0, t["dwell"], np.nan))
        rows_read += int(any_label_or_sampled(table, rate).sum())
        for i, a in enumerate(ACTIONS):
            if a in fitted:
                rows[a] += int(t["m"][:, i].sum())
                positives[a] += int((t["m"][:, i] * t["y"][:, i]).sum())
        if DWELL in fitted:
            rows[DWELL] += int(t["dm"].sum())
            positives[DWELL] += int(t["dm"].sum())
    if builder is None:
        raise ValueError(f"{TRAINING_EXAMPLES.qualified}: no rows in {list(days)}")
    return Plan(Encoder(cfg, builder.finish(), hist), rows, positives, rows_read)


def chunks(store, days, settings: TrainingSettings, encoder, fitted) -> Iterator[dict]:
    """Encoded inputs and targets of the rows some task trains on, batch by batch."""
    for table in read(store, days, settings.dnn.read_rows):
        table = table.filter(any_label_or_sampled(table, settings.negative_rate))
        if table.num_rows:
            yield encoder.encode(feature_frame(table)) | targets(
                table, settings.negative_rate, fitted
            )


def shuffled(chunks: Iterator[dict], buffer_rows: int, batch: int, rng) -> Iterator[dict]:
    """Batches of rows shuffled within a buffer of at least `buffer_rows` rows."""
    pending: list[dict] = []
    n = 0

    def drain(last: bool) -> Iterator[dict]:
        nonlocal pending, n
        merged = {k: np.concatenate([c[k] for c in pending]) for k in pending[0]}
        order = rng.permutation(n)
        merged = {k: v[order] for k, v in merged.items()}
        end = n if last else n // batch * batch
        for start in range(0, end, batch):
            yield {k: torch.from_numpy(v[start : start + batch]) for k, v in merged.items()}
        pending = [{k: v[end:] for k, v in merged.items()}]
        n -= end

    for chunk in chunks:
        pending.append(chunk)
        n += len(chunk["num"])
        if n >= buffer_rows:
            yield from drain(last=False)
    if n:
        yield from drain(last=True)


class Stream(IterableDataset):
    def __init__(self, make: Callable[[], Iterator[dict]]):
        self.make = make

    def __iter__(self):
        return self.make()
