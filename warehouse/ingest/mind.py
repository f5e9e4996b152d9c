"""MIND (Microsoft News): `behaviors.tsv` and `news.tsv`, tab-separated, no header.

behaviors.tsv: impression id, user id (`U123`), time (`MM/DD/YYYY hh:mm:ss AM`), history
(space-separated news ids clicked before; may be empty), impressions (space-separated
`N123-1` clicked / `N123-0` not). news.tsv: news id, category, subcategory, title, abstract,
url, title entities, abstract entities (JSON lists of objects with a `WikidataId`).

Both files are streamed (pyarrow's CSV reader, `block_bytes` at a time) and checked line by
line: a line with the wrong number of fields, an id, time or item token that does not parse,
or entities that are not JSON stop the read with the file, line and field named. The log has
no device, dwell, demographics, publish time or follow graph. The history is checked but not
loaded: its clicks have no time and no request, so they cannot be events of the raw tables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from warehouse.ingest import common as L
from warehouse.ingest.common import LogFormatError

BEHAVIORS = ("impression_id", "user_id", "time", "history", "impressions")
NEWS = (
    "news_id",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
)
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
# MIND's categories get the small topic ids 0..17 in this order; any other a hashed one.
CATEGORIES = (
    "autos",
    "entertainment",
    "finance",
    "foodanddrink",
    "health",
    "kids",
    "lifestyle",
    "middleeast",
    "movies",
    "music",
    "news",
    "northamerica",
    "sports",
    "travel",
    "tv",
    "video",
    "weather",
    "games",
)


def read(behaviors: Path, news: Path, *, block_bytes: int) -> L.LogData:
    """The whole log, checked and normalised (warehouse.ingest.common.LogData)."""
    requests, shown = [], []
    progress = L.Progress(behaviors.name)
    for start, batch in _tsv(behaviors, BEHAVIORS, block_bytes):
        req, items = _behaviors(batch, start, behaviors.name)
        requests.append(req)
        shown.append(items)
        progress.advance(batch.num_rows)
    progress.finish()
    requests_t = L.concat(requests, L.REQUESTS)
    shown_t = L.concat(shown, L.SHOWN)
    L.check_unique_requests(requests_t, behaviors.name, "line")
    wanted = pc.unique(shown_t.column(L.POST))
    items = L.concat(_news(news, wanted, block_bytes), L.ITEMS)
    return L.LogData("mind", behaviors.name, news.name, requests_t, shown_t, items, item_prefix="N")


# What each field looks like, to tell which one a line with a tab too few lacks.
_PATTERNS = {
    "impression_id": r"\d+",
    "user_id": r"U\d+",
    "time": r"\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2} [AP]M",
    "history": r"(N\d+( N\d+)*)?",
    "impressions": r"N\d+-[01]( N\d+-[01])*",
    "news_id": r"N\d+",
    "category": r"\S+",
    "subcategory": r"\S+",
    "url": r"\S*",
    "title_entities": r"(\[.*\])?",
    "abstract_entities": r"(\[.*\])?",
}


def missing_field(names: tuple[str, ...], text: str | None, found: int) -> str | None:
    """The field a line of `found` fields lacks. A tab too few runs two neighbouring fields
    together: the first value that splits (at its start, a space or its end) into two that
    read as those fields' kinds, with every other value reading as its own, names the field
    that is not where it should be (an impressions list right after the time: the empty
    history; `U2 11/10/2019 ...`: the time). Else the first field past the last found."""
    if found >= len(names):
        return None
    values = (text or "").split("\t")
    if found == len(names) - 1 and len(values) == found:
        for j in range(found):
            before = zip(names[:j], values[:j], strict=True)
            after = zip(names[j + 2 :], values[j + 1 :], strict=True)
            if not all(_reads_as(n, v) for n, v in (*before, *after)):
                continue
            value = values[j]
            cuts = [(0, 0), *((m.start(), m.end()) for m in re.finditer(" ", value))]
            for head_end, tail_start in [*cuts, (len(value), len(value))]:
                head, tail = value[:head_end], value[tail_start:]
                if _reads_as(names[j], head) and _reads_as(names[j + 1], tail):
                    return names[j] if head == "" else names[j + 1]
    return names[found]


def _reads_as(name: str, value: str) -> bool:
    return re.fullmatch(_PATTERNS.get(name, ".*"), value) is not None


def _tsv(
    path: Path, names: tuple[str, ...], block_bytes: int
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(first line number, batch) of a headerless TSV, every field a string. A line with
    another number of fields raises, naming it and the field it lacks; so does a blank line,
    except at the end of the file (an editor's trailing newlines); an empty file raises."""
    if path.stat().st_size == 0:
        raise LogFormatError(path.name, None, None, "the file is empty")
    bad: list = []

    def invalid(row) -> str:
        bad.append(row)
        return "skip"

    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(
            column_names=list(names), block_size=block_bytes, use_threads=False
        ),
        parse_options=pacsv.ParseOptions(
            delimiter="\t", quote_char=False, ignore_empty_lines=False, invalid_row_handler=invalid
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=False
        ),
    )
    held: tuple[int, pa.RecordBatch] | None = None  # the last batch with a non-blank line
    blank: list[tuple[int, pa.RecordBatch]] = []  # blank-only batches after it
    start = 1
    for batch in reader:
        if bad:
            _raise_bad(path, names, bad[0], start)
        if _nonblank(batch).size == 0:
            blank.append((start, batch))
        else:
            if held is not None:
                yield held
            yield from blank  # blank lines amid others: the checks name the first
            held, blank = (start, batch), []
        start += batch.num_rows
    if bad:  # a bad last line ends the file without another batch
        _raise_bad(path, names, bad[0], start)
    if held is None:
        raise LogFormatError(path.name, None, None, "the file holds only blank lines")
    first, batch = held
    yield first, batch.slice(0, int(_nonblank(batch)[-1]) + 1)  # trailing blank lines dropped


def _nonblank(batch: pa.RecordBatch) -> np.ndarray:
    """Indices of the rows with some field not empty (a blank line reads as all empty)."""
    empty = np.ones(batch.num_rows, dtype=bool)
    for column in batch.columns:
        empty &= np.asarray(pc.equal(column, ""), dtype=bool)
    return np.flatnonzero(~empty)


def _raise_bad(path: Path, names: tuple[str, ...], row, start: int) -> None:
    line = row.number if row.number is not None else start
    raise LogFormatError(
        path.name,
        f"line {line}",
        missing_field(names, row.text, row.actual_columns),
        f"expected {len(names)} tab-separated fields ({', '.join(names)}), "
        f"found {row.actual_columns}",
    )


def _fail(file: str, start: int, index: int, field: str, value, why: str) -> LogFormatError:
    return LogFormatError(file, f"line {start + index}", field, f"{value!r} {why}")


def _check(file, start, column: pa.Array, ok, field: str, why: str) -> None:
    bad = L.first_false(ok)
    if bad is not None:
        raise _fail(file, start, bad, field, column[bad].as_py(), why)


def _behaviors(batch: pa.RecordBatch, start: int, file: str) -> tuple[pa.Table, pa.Table]:
    col = {name: batch.column(name) for name in BEHAVIORS}
    _check(
        file,
        start,
        col["impression_id"],
        pc.match_substring_regex(col["impression_id"], r"^\d{1,12}$"),
        "impression_id",
        "is not an impression id",
    )
    _check(
        file,
        start,
        col["user_id"],
        pc.match_substring_regex(col["user_id"], r"^U\d{1,15}$"),
        "user_id",
        "is not a user id (U<digits>)",
    )
    served = pc.strptime(col["time"], format=TIME_FORMAT, unit="us", error_is_null=True)
    _check(file, start, col["time"], pc.is_valid(served), "time", "is not MM/DD/YYYY hh:mm:ss AM")
    history = pc.split_pattern(col["history"], " ")
    tokens = pc.list_flatten(history)
    ok = pc.match_substring_regex(tokens, r"^(N\d{1,15})?$")  # empty history: one "" token
    bad = L.first_false(ok)
    if bad is not None:
        row = pc.list_parent_indices(history)[bad].as_py()
        raise _fail(file, start, row, "history", tokens[bad].as_py(), "is not a news id")
    request = pc.cast(col["impression_id"], pa.int64())
    requests = pa.table(
        {
            L.REQUEST_ID: request,
            L.USER: pc.cast(pc.utf8_slice_codeunits(col["user_id"], 1), pa.int64()),
            L.SERVED_AT: served.cast(pa.timestamp("us", tz="UTC")),
            L.DEVICE: pa.nulls(batch.num_rows, pa.string()),
            L.AGE_BUCKET: pa.nulls(batch.num_rows, pa.string()),
            L.GENDER: pa.nulls(batch.num_rows, pa.string()),
            L.DWELL_S: pa.nulls(batch.num_rows, pa.float64()),
            L.LINE: pa.array(np.arange(start, start + batch.num_rows), pa.int64()),
        }
    )
    return requests, _shown(col["impressions"], request, start, file)


def _shown(impressions: pa.Array, request: pa.Array, start: int, file: str) -> pa.Table:
    lists = pc.split_pattern(impressions, " ")
    tokens = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists).to_numpy()
    ok = pc.match_substring_regex(tokens, r"^N\d{1,15}-[01]$")
    bad = L.first_false(ok)
    if bad is not None:
        why = "is not an item in view (N<digits>-1 clicked, N<digits>-0 not)"
        raise _fail(file, start, int(parent[bad]), "impressions", tokens[bad].as_py(), why)
    offsets = lists.offsets.to_numpy()
    offsets = offsets - offsets[0]
    position = np.arange(len(tokens)) - offsets[parent]
    if position.size and position.max() >= L.MAX_IN_VIEW:
        row = int(parent[np.argmax(position >= L.MAX_IN_VIEW)])
        raise _fail(file, start, row, "impressions", f"{L.MAX_IN_VIEW}+ items", "is too many")
    return pa.table(
        {
            L.REQUEST_ID: pc.take(request, pa.array(parent)),
            L.POSITION: pa.array(position, pa.int32()),
            L.POST: pc.cast(pc.utf8_slice_codeunits(tokens, 1, -2), pa.int64()),
            L.CLICKED: pc.ends_with(tokens, "-1"),
        }
    )


def _news(path: Path, wanted: pa.Array, block_bytes: int) -> Iterator[pa.Table]:
    """The metadata of the wanted items (every line is checked, only those are kept)."""
    progress = L.Progress(path.name)
    for start, batch in _tsv(path, NEWS, block_bytes):
        ids = batch.column("news_id")
        ok = pc.match_substring_regex(ids, r"^N\d{1,15}$")
        _check(path.name, start, ids, ok, "news_id", "is not a news id (N<digits>)")
        category = batch.column("category")
        _check(
            path.name,
            start,
            category,
            pc.not_equal(pc.utf8_length(category), 0),
            "category",
            "is empty",
        )
        post = pc.cast(pc.utf8_slice_codeunits(ids, 1), pa.int64())
        keep = np.flatnonzero(pc.is_in(post, value_set=wanted).to_numpy(zero_copy_only=False))
        progress.advance(batch.num_rows)
        if keep.size:
            yield _items(batch, post, keep, start, path.name)
    progress.finish()


def _items(batch: pa.RecordBatch, post: pa.Array, keep: np.ndarray, start: int, file: str):
    rows = batch.take(pa.array(keep)).to_pydict()
    tags = []
    for i in range(len(keep)):
        line = start + int(keep[i])
        found = [rows["subcategory"][i]] if rows["subcategory"][i] else []
        for field in ("title_entities", "abstract_entities"):
            found += [e for e in _entities(rows[field][i], file, line, field) if e not in found]
        tags.append(found)
    text = [len(t) + len(a) for t, a in zip(rows["title"], rows["abstract"], strict=True)]
    category, sub = rows["category"], rows["subcategory"]
    return pa.table(
        {
            L.POST: pc.take(post, pa.array(keep)),
            L.TOPIC: pa.array([L.stable_topic(c, CATEGORIES) for c in category], pa.int32()),
            L.TAGS: pa.array(tags, pa.list_(pa.string())),
            L.MEDIA: pa.array(["video" if c == "video" else "text" for c in category]),
            L.LENGTH: pa.array(text, pa.int32()),
            L.PUBLISHED: pa.nulls(len(keep), pa.timestamp("us", tz="UTC")),
            L.SECTION: pa.array([f"mind:{c}/{s}" for c, s in zip(category, sub, strict=True)]),
        }
    )


def _entities(text: str, file: str, line: int, field: str) -> list[str]:
    """The Wikidata ids of a JSON entity list ('' and '[]' are none)."""
    if not text:
        return []
    try:
        entities = json.loads(text)
        if not isinstance(entities, list):
            raise ValueError("not a list")
        return [str(e["WikidataId"]) for e in entities if e.get("WikidataId")]
    except (ValueError, TypeError, AttributeError, KeyError) as err:
        raise LogFormatError(
            file, f"line {line}", field, f"is not a JSON entity list ({err})"
        ) from None
