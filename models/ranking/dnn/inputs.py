"""Feature frame -> the deep ranker's tensors: hashed ids, category codes, normalised numbers.

* numbers: log1p first for counts (settings.log1p patterns, sign-preserving), then the mean and
  std of the training split (`Normaliser`, one streamed pass, stored with the model); NaN
  becomes 0 and, for a column where training saw NaN, a 0/1 missing flag joins the numbers;
* categories: code 1..n of the fixed vocabulary (models.ranking.dataset.CATEGORIES), integer ones
  (topic, hour, weekday) modulo their bucket count plus 1; 0 is missing or unknown;
* ids: models.retrieval.data.hash_ids (stable across processes), 1..buckets;
* history slots (hist_<kind>_<i>, when the frame holds them): topic and media codes and hashed
  authors as above, 0 for padding (NaN);
* wide crosses: a stable hash of the pair of codes into wide_buckets;
* position (clipped) and source: the position tower's inputs only.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Sequence

import numpy as np
import pandas as pd

from features import registry as R
from models.ranking.dataset import BIAS, CATEGORIES, FEATURES, HISTORY_KINDS, IDS, history_column
from models.ranking.dnn.config import DnnSettings
from models.retrieval.data import hash_ids
from warehouse.catalog import IMPRESSION_SOURCES, MEDIA_TYPES, C

# Integer categories and their bucket counts (topic's comes from settings).
HOURS, WEEKDAYS = 24, 8  # ctx_dow is 1..7
STRING_CATEGORIES = tuple(c for c in CATEGORIES if c not in BIAS)  # source: position tower
# Tensor names, in the order the scoring graph takes them
# (models.ranking.dnn.ranker.DnnNet.forward).
TENSORS = ("num", "cat", "ids", "wide", "pos", "src", "h_topic", "h_author", "h_media")
HISTORY_TENSORS = TENSORS[-3:]


def integer_categories(cfg: DnnSettings) -> dict[str, int]:
    return {"topic": cfg.topic_buckets, R.CTX_HOUR: HOURS, R.CTX_DOW: WEEKDAYS}


def categorical_sizes(cfg: DnnSettings) -> dict[str, int]:
    """Embedding rows of each categorical field (index 0: missing or unknown)."""
    sizes = {c: len(CATEGORIES[c]) + 1 for c in STRING_CATEGORIES}
    return sizes | {c: n + 1 for c, n in integer_categories(cfg).items()}


def numeric_columns(columns: Sequence[str], cfg: DnnSettings) -> tuple[str, ...]:
    categorical = set(categorical_sizes(cfg))
    return tuple(c for c in FEATURES if c in columns and c not in categorical)


def history_len(columns: Sequence[str]) -> int:
    """Slots of history the frame holds: all kinds for slots 0..L-1."""
    have, n = set(columns), 0
    while all(history_column(k, n) in have for k in HISTORY_KINDS):
        n += 1
    return n


@dataclasses.dataclass(frozen=True)
class Normaliser:
    """Statistics of the training split: numbers' mean and std (after log1p where asked),
    which columns get a missing flag, and the dwell scale of the dwell head."""

    columns: tuple[str, ...]
    log1p: tuple[bool, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flagged: tuple[str, ...]  # columns where training saw NaN
    dwell_scale: float  # mean dwell of clicked training rows, seconds

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Normaliser:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def log1p_mask(columns: Sequence[str], patterns: Sequence[str]) -> tuple[bool, ...]:
    return tuple(any(fnmatch.fnmatchcase(c, p) for p in patterns) for c in columns)


def _numbers(frame: pd.DataFrame, columns: Sequence[str], log1p: Sequence[bool]) -> np.ndarray:
    x = frame.loc[:, list(columns)].to_numpy(dtype=np.float64, na_value=np.nan)  # (B, n_num)
    logged = np.asarray(log1p, dtype=bool)
    x[:, logged] = np.sign(x[:, logged]) * np.log1p(np.abs(x[:, logged]))
    return x


class NormaliserBuilder:
    """Sums over streamed training frames; `finish` gives the Normaliser."""

    def __init__(self, columns: Sequence[str], cfg: DnnSettings):
        self.columns = tuple(columns)
        self.log1p = log1p_mask(self.columns, cfg.log1p)
        n = len(self.columns)
        self.count, self.total, self.squares = np.zeros(n), np.zeros(n), np.zeros(n)
        self.nan = np.zeros(n, dtype=bool)
        self.dwell_sum, self.dwell_n = 0.0, 0

    def add(self, frame: pd.DataFrame, dwell: np.ndarray) -> None:
        """A frame's numbers, and the dwell seconds of its clicked rows (NaN elsewhere)."""
        x = _numbers(frame, self.columns, self.log1p)
        seen = np.isfinite(x)
        self.nan |= (~seen).any(axis=0)
        x = np.where(seen, x, 0.0)
        self.count += seen.sum(axis=0)
        self.total += x.sum(axis=0)
        self.squares += (x * x).sum(axis=0)
        d = dwell[np.isfinite(dwell)]
        self.dwell_sum, self.dwell_n = self.dwell_sum + float(d.sum()), self.dwell_n + d.size

    def finish(self) -> Normaliser:
        n = np.maximum(self.count, 1)
        mean = self.total / n
        var = np.maximum(self.squares / n - mean * mean, 0.0)
        std = np.where(np.sqrt(var) > 1e-6, np.sqrt(var), 1.0)
        scale = self.dwell_sum / self.dwell_n if self.dwell_n else 1.0
        return Normaliser(
            self.columns,
            self.log1p,
            tuple(float(v) for v in mean),
            tuple(float(v) for v in std),
            tuple(c for c, flag in zip(self.columns, self.nan, strict=True) if flag),
            float(max(scale, 1.0)),
        )


def _codes(values: pd.Series, vocabulary: Sequence[str]) -> np.ndarray:
    """1..len(vocabulary) for known values, 0 for missing or unknown ones."""
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype) and tuple(dtype.categories) == tuple(vocabulary):
        codes = values.cat.codes.to_numpy()  # feature_frame's categories: no lookup
    else:
        codes = pd.Categorical(values.astype("object"), categories=list(vocabulary)).codes
    return codes.astype(np.int64) + 1


def _modulo(values: np.ndarray, buckets: int) -> np.ndarray:
    """v mod buckets + 1 for integer-valued v, 0 for NaN."""
    v = np.asarray(values, dtype=np.float64)
    seen = np.isfinite(v)
    out = np.zeros(v.shape, np.int64)
    out[seen] = np.mod(v[seen].astype(np.int64), buckets) + 1
    return out


def _hashed(values: np.ndarray, buckets: int) -> np.ndarray:
    """hash_ids of integer-valued v (1..buckets), 0 for NaN."""
    v = np.asarray(values, dtype=np.float64)
    seen = np.isfinite(v)
    out = np.zeros(v.shape, np.int64)
    out[seen] = hash_ids(v[seen].astype(np.int64), buckets)
    return out


def _cross(a: np.ndarray, b: np.ndarray, k: int, buckets: int) -> np.ndarray:
    """A stable bucket (1..buckets) of each pair of codes; k keeps crosses apart."""
    key = a.astype(np.uint64) * np.uint64(1_000_003) + b.astype(np.uint64)
    return hash_ids(key * np.uint64(31) + np.uint64(k), buckets)


@dataclasses.dataclass(frozen=True)
class Encoder:
    """What the network reads of a frame, with the statistics to read it the same way."""

    cfg: DnnSettings
    norm: Normaliser
    history_len: int  # 0: no history columns

    @property
    def n_numeric(self) -> int:
        return len(self.norm.columns) + len(self.norm.flagged)

    def columns(self, debias: bool) -> tuple[str, ...]:
        """The frame columns read, in models.ranking.dataset.INPUTS order then history."""
        cats = categorical_sizes(self.cfg)
        base = [c for c in FEATURES if c in cats or c in self.norm.columns]
        hist = [history_column(k, i) for k in HISTORY_KINDS for i in range(self.history_len)]
        return (*base, *(BIAS if debias else ()), *IDS, *hist)

    def encode(
        self, frame: pd.DataFrame, bias: pd.DataFrame | None = None
    ) -> dict[str, np.ndarray]:
        """The tensors of TENSORS (history ones only with history) as numpy arrays; position
        and source from `bias` (rows aligned with frame's) when given, else from frame."""
        cfg, norm = self.cfg, self.norm
        x = _numbers(frame, norm.columns, norm.log1p)
        missing = ~np.isfinite(x)
        x = (x - np.asarray(norm.mean)) / np.asarray(norm.std)
        if cfg.clip is not None:
            np.clip(x, -cfg.clip, cfg.clip, out=x)
        x[missing] = 0.0
        flags = [missing[:, norm.columns.index(c)] for c in norm.flagged]
        num = np.column_stack([x, *flags]) if flags else x  # (B, n_numeric)
        codes = {c: _codes(frame[c], CATEGORIES[c]) for c in STRING_CATEGORIES}
        for c, n in integer_categories(cfg).items():
            codes[c] = _modulo(frame[c].to_numpy(dtype=np.float64, na_value=np.nan), n)
        ids = {
            C.USER_ID: hash_ids(frame[C.USER_ID].to_numpy(np.int64), cfg.user_buckets),
            C.AUTHOR_ID: hash_ids(frame[C.AUTHOR_ID].to_numpy(np.int64), cfg.author_buckets),
            C.POST_ID: hash_ids(frame[C.POST_ID].to_numpy(np.int64), cfg.post_buckets),
        }
        raw = {c: frame[c].to_numpy(np.int64) for c in IDS} | codes
        wide = [
            _cross(raw[a], raw[b], k, cfg.wide_buckets) for k, (a, b) in enumerate(cfg.wide_crosses)
        ]
        n = len(frame)
        bias = frame if bias is None else bias
        position = bias[C.POSITION].to_numpy(dtype=np.float64, na_value=0.0)
        out = {
            "num": num.astype(np.float32),
            "cat": np.column_stack([codes[c] for c in categorical_sizes(cfg)]).astype(np.int64),
            "ids": np.column_stack([ids[c] for c in IDS]).astype(np.int64),
            "wide": (np.column_stack(wide) if wide else np.zeros((n, 0))).astype(np.int64),
            "pos": np.clip(np.nan_to_num(position), 0, cfg.max_position).astype(np.int64),
            "src": _codes(bias[C.SOURCE], IMPRESSION_SOURCES),
        }
        if self.history_len:
            out |= self.encode_history(frame)
        return out

    def encode_history(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        def slots(kind: str) -> np.ndarray:  # (B, L) float, NaN = padding
            cols = [history_column(kind, i) for i in range(self.history_len)]
            return frame.loc[:, cols].to_numpy(dtype=np.float64, na_value=np.nan)

        return {
            "h_topic": _modulo(slots("topic"), self.cfg.topic_buckets),
            "h_author": _hashed(slots("author"), self.cfg.author_buckets),
            "h_media": _modulo(slots("media"), len(MEDIA_TYPES)),
        }

    def as_dict(self) -> dict:
        return {"normaliser": self.norm.as_dict(), "history_len": self.history_len}


def check_crosses(cfg: DnnSettings) -> None:
    known = set(IDS) | set(categorical_sizes(cfg))
    bad = [c for pair in cfg.wide_crosses for c in pair if c not in known]
    if bad:
        raise ValueError(f"wide crosses need ids or categorical columns, got {bad}")
