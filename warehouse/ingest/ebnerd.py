"""EB-NeRD (Ekstra Bladet): Parquet `behaviors` and `articles` (the `history` is not loaded).

behaviors: one row per impression (a request): impression_id, user_id, impression_time,
article_ids_inview (list), article_ids_clicked (list), device_type (0 unknown, 1 desktop,
2 mobile, 3 tablet), gender (0 male, 1 female), age (10-year bins: 20 = 20-29),
next_read_time (seconds on the clicked article), and more that are not used (read_time and
scroll_percentage belong to the page the impression was shown on, not to a click).
articles: article_id, title, subtitle, published_time, category, category_str, subcategory
(list), article_type, topics (list).

Both files are read in Parquet batches (`batch_rows`); a missing column, a null id or time, an
empty in-view list, a click on an article not in view, or an unknown gender or device code
stops the read with the file, row (1-based) and field named. Timestamps are naive in the
files and read as UTC. EB-NeRD shuffles each in-view list, so a position is the item's index
in the list, not its place on the page. The history (21 days of clicks before the behaviors)
is not loaded: its clicks have no request, so they cannot be events of the raw tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from warehouse.ingest import common as L
from warehouse.ingest.common import LogFormatError

BEHAVIORS = (
    "impression_id",
    "user_id",
    "impression_time",
    "article_ids_inview",
    "article_ids_clicked",
    "device_type",
    "gender",
    "age",
    "next_read_time",
)
ARTICLES = (
    "article_id",
    "title",
    "subtitle",
    "published_time",
    "category",
    "category_str",
    "subcategory",
    "article_type",
    "topics",
)
DEVICES = {1: "desktop", 2: "mobile", 3: "mobile"}  # a tablet is the closest to mobile; 0: null
GENDERS = {0: "m", 1: "f"}
MAX_DWELL_S = 3600.0  # warehouse.contracts.MAX_DWELL_S: longer reads are tabs left open


def read(behaviors: Path, articles: Path, *, batch_rows: int) -> L.LogData:
    """The whole log, checked and normalised (warehouse.ingest.common.LogData)."""
    requests, shown = [], []
    file = L.open_parquet(behaviors)
    _check_columns(file, BEHAVIORS, behaviors.name)
    progress = L.Progress(behaviors.name, file.metadata.num_rows, "rows")
    batches = file.iter_batches(batch_size=batch_rows, columns=list(BEHAVIORS))
    for start, batch in L.batches_with_start(batches):
        req, items = _behaviors(batch, start, behaviors.name)
        requests.append(req)
        shown.append(items)
        progress.advance(batch.num_rows)
    progress.finish()
    requests_t = L.concat(requests, L.REQUESTS)
    shown_t = L.concat(shown, L.SHOWN)
    L.check_unique_requests(requests_t, behaviors.name, "row")
    wanted = pc.unique(shown_t.column(L.POST))
    items = L.concat(_articles(articles, wanted, batch_rows), L.ITEMS)
    return L.LogData(
        "ebnerd", behaviors.name, articles.name, requests_t, shown_t, items, line_word="row"
    )


def _check_columns(file: pq.ParquetFile, names: tuple[str, ...], name: str) -> None:
    have = file.schema_arrow.names
    missing = [n for n in names if n not in have]
    if missing:
        raise LogFormatError(name, None, missing[0], f"column missing (the file has {have})")


def _fail(file: str, start: int, index: int, field: str, why: str) -> LogFormatError:
    return LogFormatError(file, f"row {start + index}", field, why)


def _not_null(batch: pa.RecordBatch, start: int, file: str, *fields: str) -> None:
    for field in fields:
        bad = L.first_false(pc.is_valid(batch.column(field)))
        if bad is not None:
            raise _fail(file, start, bad, field, "is null")


def _codes(column: pa.Array, codes: dict[int, str], start, file, field) -> pa.Array:
    """Map integer codes to names; 0 and null become null, an unknown code raises."""
    values = column.to_pylist()
    out = []
    for i, v in enumerate(values):
        if v is None or (v == 0 and 0 not in codes):
            out.append(None)
        elif int(v) in codes:
            out.append(codes[int(v)])
        else:
            raise _fail(file, start, i, field, f"unknown code {v!r} (known: {sorted(codes)})")
    return pa.array(out, pa.string())


def _age_bucket(age: pa.Array) -> pa.Array:
    """A 10-year bin (20 = 20-29) as the catalog's bucket that holds its middle (25 -> 25-34)."""
    bounds = [(13, "13-17"), (18, "18-24"), (25, "25-34"), (35, "35-44"), (45, "45-54")]
    out = []
    for v in age.to_pylist():
        if v is None or v + 5 < 13:
            out.append(None)
            continue
        mid = v + 5
        out.append(
            next((b for low, b in reversed(bounds) if mid >= low), None) if mid < 55 else "55+"
        )
    return pa.array(out, pa.string())


def _behaviors(batch: pa.RecordBatch, start: int, file: str) -> tuple[pa.Table, pa.Table]:
    _not_null(
        batch, start, file, "impression_id", "user_id", "impression_time", "article_ids_inview"
    )
    inview, clicked = batch.column("article_ids_inview"), batch.column("article_ids_clicked")
    lengths = pc.list_value_length(inview).to_numpy(zero_copy_only=False)
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise _fail(file, start, int(empty[0]), "article_ids_inview", "is empty")
    too_long = np.flatnonzero(lengths >= L.MAX_IN_VIEW)
    if too_long.size:
        raise _fail(file, start, int(too_long[0]), "article_ids_inview", "has too many items")
    shown_ids = pc.list_flatten(inview)
    if shown_ids.null_count:
        row = pc.list_parent_indices(inview)[L.first_false(pc.is_valid(shown_ids))].as_py()
        raise _fail(file, start, row, "article_ids_inview", "holds a null id")
    parent = pc.list_parent_indices(inview).to_numpy()
    shown_key = parent.astype(np.int64) * (1 << 32) + shown_ids.to_numpy().astype(np.int64)
    clicked = clicked.fill_null(pa.scalar([], clicked.type)) if clicked.null_count else clicked
    click_ids = pc.list_flatten(clicked).to_numpy(zero_copy_only=False)
    click_parent = pc.list_parent_indices(clicked).to_numpy()
    click_key = click_parent.astype(np.int64) * (1 << 32) + click_ids.astype(np.int64)
    stray = np.flatnonzero(~np.isin(click_key, shown_key))
    if stray.size:
        i = int(stray[0])
        why = f"clicks article {int(click_ids[i])}, which is not in article_ids_inview"
        raise _fail(file, start, int(click_parent[i]), "article_ids_clicked", why)
    n_clicks = pc.list_value_length(clicked).to_numpy(zero_copy_only=False)
    read_time = batch.column("next_read_time").cast(pa.float64())
    # One click: the next page read is that article. Several: which one is unknown.
    dwell = pc.if_else(pa.array(n_clicks == 1), read_time, pa.scalar(None, pa.float64()))
    # skip_nulls=False: an unknown read stays unknown (the default would make it 0 s)
    floor = pc.max_element_wise(dwell, 0.0, skip_nulls=False)
    dwell = pc.min_element_wise(floor, MAX_DWELL_S, skip_nulls=False)
    offsets = inview.offsets.to_numpy()
    position = np.arange(len(shown_ids)) - (offsets - offsets[0])[parent]
    request = batch.column("impression_id").cast(pa.int64())
    requests = pa.table(
        {
            L.REQUEST_ID: request,
            L.USER: batch.column("user_id").cast(pa.int64()),
            L.SERVED_AT: batch.column("impression_time").cast(pa.timestamp("us", tz="UTC")),
            L.DEVICE: _codes(batch.column("device_type"), DEVICES, start, file, "device_type"),
            L.AGE_BUCKET: _age_bucket(batch.column("age")),
            L.GENDER: _codes(batch.column("gender"), GENDERS, start, file, "gender"),
            L.DWELL_S: dwell,
            L.LINE: pa.array(np.arange(start, start + batch.num_rows), pa.int64()),
        }
    )
    shown = pa.table(
        {
            L.REQUEST_ID: pc.take(request, pa.array(parent)),
            L.POSITION: pa.array(position, pa.int32()),
            L.POST: shown_ids.cast(pa.int64()),
            L.CLICKED: pa.array(np.isin(shown_key, click_key)),
        }
    )
    return requests, shown


def _articles(path: Path, wanted: pa.Array, batch_rows: int) -> Iterator[pa.Table]:
    file = L.open_parquet(path)
    _check_columns(file, ARTICLES, path.name)
    progress = L.Progress(path.name, file.metadata.num_rows, "rows")
    batches = file.iter_batches(batch_size=batch_rows, columns=list(ARTICLES))
    for start, batch in L.batches_with_start(batches):
        _not_null(batch, start, path.name, "article_id")
        ids = batch.column("article_id").cast(pa.int64())
        keep = np.flatnonzero(pc.is_in(ids, value_set=wanted).to_numpy(zero_copy_only=False))
        progress.advance(batch.num_rows)
        if keep.size:
            part = batch.take(pa.array(keep))
            bad = L.first_false(pc.is_valid(part.column("category")))
            if bad is not None:  # a shown article needs its category: it is the topic
                raise _fail(path.name, start, int(keep[bad]), "category", "is null")
            yield _items(part)
    progress.finish()


def _items(part: pa.RecordBatch) -> pa.Table:
    rows = part.to_pydict()
    tags, media, length, section = [], [], [], []
    for i in range(part.num_rows):
        subs = [f"sub{s}" for s in rows["subcategory"][i] or []]
        found = list(dict.fromkeys([*subs, *(rows["topics"][i] or [])]))
        tags.append(found)
        kind = (rows["article_type"][i] or "").lower()
        media.append(
            "video"
            if "video" in kind or "webtv" in kind
            else "photo"
            if "gallery" in kind
            else "text"
        )
        length.append(len(rows["title"][i] or "") + len(rows["subtitle"][i] or ""))
        name = rows["category_str"][i] or str(rows["category"][i])
        first_sub = (rows["subcategory"][i] or [None])[0]
        section.append(f"ebnerd:{name}/{first_sub}" if first_sub is not None else f"ebnerd:{name}")
    return pa.table(
        {
            L.POST: part.column("article_id").cast(pa.int64()),
            L.TOPIC: part.column("category").cast(pa.int32()),
            L.TAGS: pa.array(tags, pa.list_(pa.string())),
            L.MEDIA: pa.array(media, pa.string()),
            L.LENGTH: pa.array(length, pa.int32()),
            L.PUBLISHED: part.column("published_time").cast(pa.timestamp("us", tz="UTC")),
            L.SECTION: pa.array(section, pa.string()),
        }
    )
