"""Bring your own log: two files, Parquet or CSV (with a header row), in the catalog's names.

impressions (`impressions.parquet` or `.csv`): one row per item in view of a request.

| column | type | |
|---|---|---|
| request_id | integer | one feed request; its rows share user_id and served_at |
| user_id | integer | the viewer |
| served_at | timestamp (UTC; in CSV ISO 8601, e.g. 2024-03-01T08:00:00Z) | when it was served |
| position | integer >= 0 | the item's place in the request's list, unique per request |
| post_id | integer | the item shown |
| clicked | boolean (CSV: true/false/1/0) | whether the viewer clicked it |
| device | optional: mobile, desktop or empty | |
| dwell_s | optional: seconds >= 0, or empty | the read time of the request's click |

posts (`posts.parquet` or `.csv`): one row per item.

| column | type | |
|---|---|---|
| post_id | integer | |
| author_id | integer | who published it (a page): authors are keyed by a hash of it |
| topic | integer >= 0 | |
| media_type | text, photo, video or link | |
| length | integer >= 0 | characters of text |
| hashtags | optional: list of strings (CSV: separated by spaces) | |
| created_at | optional: timestamp (UTC), or empty | when it was published |

Every value is checked as the file is read; the first that does not parse stops the read
with the file, line (CSV, counting the header as line 1) or row (Parquet) and column named.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from warehouse.ingest import common as L
from warehouse.ingest.common import LogFormatError

IMPRESSIONS = ("request_id", "user_id", "served_at", "position", "post_id", "clicked")
IMPRESSIONS_OPTIONAL = ("device", "dwell_s")
POSTS = ("post_id", "author_id", "topic", "media_type", "length")
POSTS_OPTIONAL = ("hashtags", "created_at")
DEVICES = ("mobile", "desktop")
MEDIA = ("text", "photo", "video", "link")
DEFAULT_FILES = {"behaviors": "impressions.parquet", "items": "posts.parquet"}


def read(behaviors: Path, items: Path) -> L.LogData:
    """The whole log, checked and normalised (warehouse.ingest.common.LogData)."""
    imps, word = _table(behaviors, IMPRESSIONS, IMPRESSIONS_OPTIONAL)
    file = behaviors.name
    col = _Columns(imps, file, word, first=2 if word == "line" else 1)
    request, position = col.integer("request_id"), col.integer("position", low=0)
    user, served = col.integer("user_id"), col.timestamp("served_at")
    post, clicked = col.integer("post_id"), col.boolean("clicked")
    device = col.choice("device", DEVICES)
    dwell = col.number("dwell_s", low=0.0)
    if len(position) and pc.max(position).as_py() >= L.MAX_IN_VIEW:
        col.fail(L.first_false(pc.less(position, L.MAX_IN_VIEW)), "position", "is too large")
    # Rows in (request, position) order: each request's rows together, its first row first.
    order = np.lexsort((position.to_numpy(), request.to_numpy()))
    req = request.to_numpy()[order]
    starts = np.concatenate(([True], req[1:] != req[:-1]))
    repeat = np.flatnonzero(~starts & (np.diff(position.to_numpy()[order], prepend=-1) == 0))
    if repeat.size:
        col.fail(int(order[repeat[0]]), "position", "repeats a position of its request")
    head = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))  # group's first
    for name, values in (("user_id", user), ("served_at", served)):
        v = pc.take(values, pa.array(order))
        bad = L.first_false(pc.equal(v, pc.take(v, pa.array(head))))
        if bad is not None:
            col.fail(int(order[bad]), name, "differs from its request's first row")
    first_row = order[starts]
    take = pa.array(first_row)
    # The request's dwell: the read time its clicked rows give (the longest, if several).
    clicked_dwell = pd.Series(
        pc.if_else(clicked, dwell, pa.nulls(len(dwell), pa.float64())).to_numpy(
            zero_copy_only=False
        )
    )
    by_request = clicked_dwell.groupby(request.to_numpy()).max()
    n = len(first_row)
    requests = pa.table(
        {
            L.REQUEST_ID: pc.take(request, take),
            L.USER: pc.take(user, take),
            L.SERVED_AT: pc.take(served, take),
            L.DEVICE: pc.take(device, take),
            L.AGE_BUCKET: pa.nulls(n, pa.string()),
            L.GENDER: pa.nulls(n, pa.string()),
            L.DWELL_S: pa.array(by_request.reindex(req[starts]), pa.float64(), from_pandas=True),
            L.LINE: pa.array(first_row + col.first, pa.int64()),
        }
    )
    shown = pa.table(
        {L.REQUEST_ID: request, L.POSITION: position, L.POST: post, L.CLICKED: clicked}
    )
    return L.LogData(
        "raw",
        file,
        items.name,
        requests.cast(L.REQUESTS),
        shown.cast(L.SHOWN),
        _items(items, pc.unique(post)),
        line_word=word,
    )


def _items(path: Path, wanted: pa.Array) -> pa.Table:
    posts, word = _table(path, POSTS, POSTS_OPTIONAL)
    col = _Columns(posts, path.name, word, first=2 if word == "line" else 1)
    post, author = col.integer("post_id"), col.integer("author_id")
    topic, length = col.integer("topic", low=0), col.integer("length", low=0)
    media = col.choice("media_type", MEDIA, required=True)
    created = col.timestamp("created_at", required=False)
    tags = col.tags("hashtags")
    keep = pc.is_in(post, value_set=wanted)
    items = pa.table(
        {
            L.POST: post,
            L.TOPIC: pc.cast(topic, pa.int32()),
            L.TAGS: tags,
            L.MEDIA: media,
            L.LENGTH: pc.cast(length, pa.int32()),
            L.PUBLISHED: created,
            L.SECTION: pc.binary_join_element_wise("raw:", pc.cast(author, pa.string()), ""),
        }
    ).filter(keep)
    return items.cast(L.ITEMS)


def _table(path: Path, required: tuple[str, ...], optional: tuple[str, ...]):
    """The file as a table and the word for its rows ("line" in CSV, "row" in Parquet); a
    missing required column is named."""
    if path.stat().st_size == 0:
        raise LogFormatError(path.name, None, None, "the file is empty")
    if path.suffix == ".csv":
        bad: list = []

        def invalid(row) -> str:
            bad.append(row)
            return "skip"

        try:
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(use_threads=False),  # line numbers in errors
                parse_options=pacsv.ParseOptions(
                    ignore_empty_lines=True, invalid_row_handler=invalid
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in (*required, *optional)},
                    strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid as err:
            raise LogFormatError(path.name, None, None, str(err).splitlines()[0]) from None
        if bad:  # a line with another number of fields than the header
            row, names = bad[0], table.column_names
            field = names[row.actual_columns] if row.actual_columns < len(names) else None
            raise LogFormatError(
                path.name,
                f"line {row.number}" if row.number is not None else None,
                field,
                f"expected {row.expected_columns} comma-separated fields, found "
                f"{row.actual_columns}",
            )
        word = "line"
    else:
        table, word = L.open_parquet(path).read(), "row"
    missing = [c for c in required if c not in table.column_names]
    if missing:
        have = table.column_names
        raise LogFormatError(path.name, None, missing[0], f"column missing (the file has {have})")
    return table, word


class _Columns:
    """Typed columns of a raw file, each checked; the first bad value raises naming its line."""

    def __init__(self, table: pa.Table, file: str, word: str, first: int):
        self.table, self.file, self.word, self.first = table, file, word, first

    def fail(self, index: int, field: str, why: str):
        value = self.table.column(field)[index].as_py()
        raise LogFormatError(
            self.file, f"{self.word} {self.first + index}", field, f"{value!r} {why}"
        )

    def _raw(self, name: str) -> pa.Array | None:
        if name not in self.table.column_names:
            return None
        return self.table.column(name).combine_chunks()

    def _parsed(self, name: str, parsed: pa.Array, why: str, required: bool = True) -> pa.Array:
        raw = self._raw(name)
        text = pa.types.is_string(raw.type)
        given = pc.not_equal(raw, "") if text else pc.is_valid(raw)
        ok = pc.or_(pc.is_valid(parsed), pc.invert(given)) if not required else pc.is_valid(parsed)
        bad = L.first_false(ok)
        if bad is not None:
            self.fail(bad, name, why if given[bad].as_py() else "is missing")
        return parsed

    def integer(self, name: str, low: int | None = None) -> pa.Array:
        raw = self._raw(name)
        if pa.types.is_string(raw.type):
            ok = pc.match_substring_regex(raw, r"^-?\d{1,18}$")
            parsed = pc.if_else(ok, pc.cast(pc.if_else(ok, raw, "0"), pa.int64()), None)
        elif pa.types.is_integer(raw.type):
            parsed = pc.cast(raw, pa.int64())
        else:
            parsed = pa.nulls(len(raw), pa.int64())
        parsed = self._parsed(name, parsed, "is not an integer")
        if low is not None:
            bad = L.first_false(pc.greater_equal(parsed, low))
            if bad is not None:
                self.fail(bad, name, f"is below {low}")
        return parsed

    def number(self, name: str, low: float) -> pa.Array:
        raw = self._raw(name)
        if raw is None:
            return pa.nulls(self.table.num_rows, pa.float64())
        if pa.types.is_string(raw.type):
            ok = pc.match_substring_regex(raw, r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
            parsed = pc.if_else(ok, pc.cast(pc.if_else(ok, raw, "0"), pa.float64()), None)
        else:
            parsed = pc.cast(raw, pa.float64())
        parsed = self._parsed(name, parsed, "is not a number", required=False)
        bad = L.first_false(pc.or_kleene(pc.greater_equal(parsed, low), pc.is_null(parsed)))
        if bad is not None:
            self.fail(bad, name, f"is below {low}")
        return parsed

    def timestamp(self, name: str, required: bool = True) -> pa.Array:
        raw = self._raw(name)
        ts = pa.timestamp("us", tz="UTC")
        if raw is None:
            return pa.nulls(self.table.num_rows, ts)
        if pa.types.is_string(raw.type):
            given = pc.not_equal(raw, "")
            parsed = pa.array(
                [
                    _iso(v) if g else None
                    for v, g in zip(raw.to_pylist(), given.to_pylist(), strict=True)
                ],
                ts,
            )
        elif pa.types.is_timestamp(raw.type):
            parsed = raw.cast(ts) if raw.type.tz else pc.assume_timezone(raw, "UTC").cast(ts)
        else:
            parsed = pa.nulls(len(raw), ts)
        return self._parsed(name, parsed, "is not a timestamp (ISO 8601, UTC)", required)

    def boolean(self, name: str) -> pa.Array:
        raw = self._raw(name)
        if pa.types.is_boolean(raw.type):
            parsed = raw
        elif pa.types.is_integer(raw.type) or pa.types.is_string(raw.type):
            text = pc.utf8_lower(pc.cast(raw, pa.string()))
            truth = {"true": True, "1": True, "false": False, "0": False}
            parsed = pa.array([truth.get(v) for v in text.to_pylist()], pa.bool_())
        else:
            parsed = pa.nulls(len(raw), pa.bool_())
        return self._parsed(name, parsed, "is not a boolean (true, false, 1, 0)")

    def choice(self, name: str, values: tuple[str, ...], required: bool = False) -> pa.Array:
        raw = self._raw(name)
        if raw is None:
            return pa.nulls(self.table.num_rows, pa.string())
        text = pc.cast(raw, pa.string())
        parsed = pc.if_else(pc.is_in(text, value_set=pa.array(values)), text, None)
        return self._parsed(name, parsed, f"is not one of {', '.join(values)}", required)

    def tags(self, name: str) -> pa.Array:
        raw = self._raw(name)
        if raw is None:
            return pa.array([[]] * self.table.num_rows, pa.list_(pa.string()))
        if pa.types.is_string(raw.type):
            return pa.array([v.split() for v in raw.to_pylist()], pa.list_(pa.string()))
        if pa.types.is_list(raw.type) and pa.types.is_string(raw.type.value_type):
            return pc.if_else(pc.is_valid(raw), raw, pa.array([[]] * len(raw), raw.type))
        raise LogFormatError(self.file, None, name, f"is {raw.type}, not a list of strings")


def _iso(value: str):
    """An ISO 8601 time as UTC (a time without a zone is read as UTC); None if it is not one."""
    import datetime as dt

    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
