"""What both formats share: the normalised log, line-numbered errors, stable ids, progress.

A reader turns a format's files into a `LogData`: one row per request (`REQUESTS`), one row
per item in view (`SHOWN`, with its position in the request's list and whether it was
clicked) and one row per item with metadata (`ITEMS`). `warehouse.ingest.mapping` maps that into the
raw tables; nothing here knows the warehouse.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import zlib
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

MAX_IN_VIEW = 10_000  # impression_id = request_id * MAX_IN_VIEW + position
_TS = pa.timestamp("us", tz="UTC")

# Normalised columns (internal to logs/; the raw tables' names come from warehouse.catalog).
REQUEST_ID, USER, SERVED_AT, DEVICE = "request_id", "user_id", "served_at", "device"
AGE_BUCKET, GENDER, DWELL_S, LINE = "age_bucket", "gender", "dwell_s", "line"
POSITION, POST, CLICKED = "position", "post_id", "clicked"
TOPIC, TAGS, MEDIA, LENGTH, PUBLISHED, SECTION = (
    "topic",
    "hashtags",
    "media_type",
    "length",
    "published_at",
    "section",
)

REQUESTS = pa.schema(
    [
        pa.field(REQUEST_ID, pa.int64(), nullable=False),
        pa.field(USER, pa.int64(), nullable=False),
        pa.field(SERVED_AT, _TS, nullable=False),
        pa.field(DEVICE, pa.string()),  # null: the log does not say
        pa.field(AGE_BUCKET, pa.string()),
        pa.field(GENDER, pa.string()),
        pa.field(DWELL_S, pa.float64()),  # the click's read time, when the log has one
        pa.field(LINE, pa.int64(), nullable=False),  # where the request is in its file
    ]
)
SHOWN = pa.schema(
    [
        pa.field(REQUEST_ID, pa.int64(), nullable=False),
        pa.field(POSITION, pa.int32(), nullable=False),
        pa.field(POST, pa.int64(), nullable=False),
        pa.field(CLICKED, pa.bool_(), nullable=False),
    ]
)
ITEMS = pa.schema(
    [
        pa.field(POST, pa.int64(), nullable=False),
        pa.field(TOPIC, pa.int32(), nullable=False),
        pa.field(TAGS, pa.list_(pa.string()), nullable=False),
        pa.field(MEDIA, pa.string(), nullable=False),
        pa.field(LENGTH, pa.int32(), nullable=False),
        pa.field(PUBLISHED, _TS),  # null: the log has no publish time (MIND)
        pa.field(SECTION, pa.string(), nullable=False),  # the publisher's section: the author
    ]
)


class LogFormatError(ValueError):
    """A malformed log file; the message names the file, the line (or row) and the field."""

    def __init__(self, file: str, where: str | None, field: str | None, detail: str):
        self.file, self.where, self.field, self.detail = file, where, field, detail
        at = ", ".join(p for p in (where, f"field {field}" if field else None) if p)
        super().__init__(f"{file}: {at}: {detail}" if at else f"{file}: {detail}")


@dataclasses.dataclass(frozen=True)
class LogData:
    """A whole log, normalised: requests, the items they showed, the items' metadata."""

    format: str
    behaviors_file: str  # the file names, for messages
    items_file: str
    requests: pa.Table  # REQUESTS
    shown: pa.Table  # SHOWN
    items: pa.Table  # ITEMS: only items some request showed
    line_word: str = "line"  # "line" for text files, "row" for Parquet
    item_prefix: str = ""  # how the file writes an item id before its number (MIND: N)


def open_parquet(path) -> pq.ParquetFile:
    """A Parquet file to stream; an empty file or one that is not Parquet raises a
    LogFormatError naming it, not pyarrow's traceback."""
    if path.stat().st_size == 0:
        raise LogFormatError(path.name, None, None, "the file is empty")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise LogFormatError(path.name, None, None, f"is not a Parquet file ({err})") from None


def concat(parts: Iterable[pa.Table], schema: pa.Schema) -> pa.Table:
    tables = list(parts)
    return pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()


def stable_id(key: str) -> int:
    """A positive int64 from a string, the same in every run (ids of sections as pages)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=7).digest(), "big")


def stable_topic(name: str, known: tuple[str, ...] = ()) -> int:
    """A small int topic id for a category name: its index in `known`, else a CRC32 bucket
    above them (collisions are possible there, one in ~10^6 per pair)."""
    if name in known:
        return known.index(name)
    return 1_000 + zlib.crc32(name.encode()) % (1 << 20)


def first_false(mask: pa.Array | np.ndarray) -> int | None:
    """Index of the first False (a null counts as False), or None if all hold."""
    arr = np.asarray(mask.fill_null(False) if isinstance(mask, pa.Array) else mask, dtype=bool)
    bad = np.flatnonzero(~arr)
    return int(bad[0]) if bad.size else None


def check_unique_requests(requests: pa.Table, file: str, word: str) -> None:
    """A request id names one request: a repeated one would merge two requests' items."""
    ids = requests.column(REQUEST_ID).to_numpy()
    order = np.argsort(ids, kind="stable")
    same = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if same.size:
        second = order[same[0] + 1]
        line = requests.column(LINE)[int(second)].as_py()
        raise LogFormatError(file, f"{word} {line}", REQUEST_ID, f"repeats id {ids[second]}")


class Progress:
    """Logs how far a streamed file is, at most every `every_s` seconds."""

    def __init__(self, file: str, total: int | None = None, unit: str = "lines", every_s=5.0):
        self.file, self.total, self.unit, self.every_s = file, total, unit, every_s
        self.done, self.started, self.last = 0, time.perf_counter(), 0.0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            self._log(now)

    def finish(self) -> None:
        self._log(time.perf_counter())

    def _log(self, now: float) -> None:
        share = f" of {self.total:,} ({self.done / self.total:.0%})" if self.total else ""
        log.info(
            "reading %s: %s %s%s in %.1fs",
            self.file,
            f"{self.done:,}",
            self.unit,
            share,
            now - self.started,
        )


def batches_with_start(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Each batch with the 1-based number of its first row in the file."""
    start = 1
    for batch in batches:
        yield start, batch
        start += batch.num_rows
