"""A normalised log (warehouse.ingest.common.LogData) as the raw tables, one set per day of its
calendar.

The rules, for every format (README, "Real logs"):
* users: a snapshot at the end of each day of everyone served so far; created_at is their
  first request; age bucket and gender where the log has them (EB-NeRD), country never (the
  logs name none per user), primary device the one of most of their requests so far (ties
  in the catalog's order; null if the log has no device, as MIND).
* posts: one per item shown; topic from the category, hashtags from the subcategory and the
  entities (MIND) or topics (EB-NeRD), media type and length as the readers derive them, no
  URL flag (the item is the article itself). created_at is the publish time where the log
  has one, else (MIND) one second before the first time the log shows the item, and never
  later than that: an item is not served before it exists. A post lands in the partition of
  its created_at's day, or of the log's first day if it was created earlier (the first day
  carries that backlog, and its posts contract allows it).
* authors: the publisher's sections (category/subcategory) as pages, never verified; a
  snapshot at the end of each day of the sections with a post so far, created at their
  first post.
* impressions: one per item in view, impression_id = request_id * 10,000 + position, served
  at the request's time, on its device (null when unknown), source `popular`: without a
  follow graph nothing is in-network. A log has no experiment: every impression is in the
  `control` bucket, served by the `logged` policy (the publisher's own), propensity unknown.
* engagements: one `click` per clicked item, at served_at + 1 s (the logs have no click time),
  dwell_s the read time of the clicked article where the log has one (EB-NeRD, a request with
  one click), else null.
* follows: empty.
* an impression of an item without metadata is dropped with its click (`Dropped` counts them);
  more than `max_missing_share` of all impressions refuses the log (a wrong metadata file).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from warehouse.catalog import (
    AUTHORS,
    BUCKETS,
    CLICK,
    DEVICES,
    ENGAGEMENTS,
    FOLLOWS,
    IMPRESSIONS,
    LOGGED,
    POSTS,
    USERS,
    C,
)
from warehouse.ingest import common as L

log = logging.getLogger(__name__)

SOURCE = "popular"  # no follow graph: every impression is out-of-network
BUCKET = BUCKETS[0]  # no experiment in a log: everyone is control
CLICK_DELAY = pd.Timedelta(seconds=1)  # event_ts of a click the log gives no time for
BEFORE_FIRST_SHOWN = pd.Timedelta(seconds=1)  # created_at of an item without a publish time


class IngestError(ValueError):
    """A log that reads well but cannot be loaded as it is; the message says why."""


@dataclasses.dataclass(frozen=True)
class Dropped:
    """Impressions left out because their item has no metadata."""

    impressions: int  # rows dropped
    clicks: int  # of which clicked
    items: tuple[int, ...]  # the item ids, at most 10
    where: tuple[str, ...]  # e.g. "line 12" of the behaviors file, at most 10


def raw_days(
    data: L.LogData, calendar: Sequence[dt.date] | None, *, max_missing_share: float
) -> tuple[dict[str, dict[str, pd.DataFrame | pa.Table]], Dropped]:
    """The raw tables of each day of the calendar (name -> frame with the catalog's columns,
    no ds), and what was dropped. `calendar` None: the log's first to last day. Raises
    IngestError if the log's days are not the calendar's (or, inferred, leave a day without
    a request), or too many impressions lack their item."""
    imps = _impressions(data)
    imps, dropped = _drop_unknown(imps, data, max_missing_share)
    seen = sorted(imps["ds"].unique())
    if not seen:
        raise IngestError(f"{data.behaviors_file}: the log holds no impression to load")
    if calendar is None:
        first, last = dt.date.fromisoformat(seen[0]), dt.date.fromisoformat(seen[-1])
        calendar = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    days = [d.isoformat() for d in calendar]
    if seen != days:
        missing = sorted(set(days) - set(seen))
        raise IngestError(
            f"{data.behaviors_file}: the log's requests fall on {len(seen)} days "
            f"({seen[0]} .. {seen[-1]}), the calendar is {days[0]} .. {days[-1]} "
            f"({len(days)} days{', no request on ' + ', '.join(missing[:3]) if missing else ''})"
            ": give the log's days (feedrank ingest --first-day, --days) or leave them out to "
            "take the log's own"
        )
    posts = _posts(data, imps, days[0])
    imps = imps.merge(posts[[C.POST_ID, C.AUTHOR_ID]], on=C.POST_ID, how="left")
    requests = data.requests.to_pandas()
    requests["ds"] = requests[L.SERVED_AT].dt.strftime("%Y-%m-%d")
    out = {}
    for ds in days:
        day = imps[imps["ds"] == ds]
        out[ds] = {
            USERS.name: _users(requests[requests["ds"] <= ds]),
            AUTHORS.name: _authors(posts[posts["ds"] <= ds]),
            FOLLOWS.name: FOLLOWS.schema.empty_table(),
            POSTS.name: posts.loc[posts["ds"] == ds, POSTS.columns],
            IMPRESSIONS.name: day[IMPRESSIONS.columns],
            ENGAGEMENTS.name: _engagements(day),
        }
    return out, dropped


def _impressions(data: L.LogData) -> pd.DataFrame:
    shown = data.shown.join(data.requests, L.REQUEST_ID, join_type="inner")
    frame = shown.to_pandas()
    frame[C.IMPRESSION_ID] = frame[L.REQUEST_ID] * L.MAX_IN_VIEW + frame[L.POSITION]
    frame[C.SOURCE] = SOURCE
    frame[C.BUCKET], frame[C.POLICY] = BUCKET, LOGGED
    frame[C.FEED_VERSION] = frame[C.MODEL_VERSION] = None
    frame[C.PROPENSITY] = np.nan
    frame["ds"] = frame[L.SERVED_AT].dt.strftime("%Y-%m-%d")
    return frame.sort_values(C.IMPRESSION_ID, kind="stable").reset_index(drop=True)


def _drop_unknown(imps: pd.DataFrame, data: L.LogData, max_share: float):
    known = imps[L.POST].isin(data.items.column(L.POST).to_numpy())
    lost = imps[~known]
    dropped = Dropped(
        impressions=len(lost),
        clicks=int(lost[L.CLICKED].sum()),
        items=tuple(int(i) for i in lost[L.POST].drop_duplicates().head(10)),
        where=tuple(f"{data.line_word} {n}" for n in lost[L.LINE].drop_duplicates().head(10)),
    )
    if len(lost):
        share = len(lost) / len(imps)
        what = (
            f"{len(lost)} of {len(imps)} impressions ({share:.2%}, {dropped.clicks} clicked) "
            f"show items missing from {data.items_file}, e.g. "
            f"{', '.join(data.item_prefix + str(i) for i in dropped.items)} at "
            f"{data.behaviors_file} {', '.join(dropped.where)}"
        )
        if share > max_share:
            raise IngestError(f"{what}: more than log.max_missing_share = {max_share}")
        log.warning("%s: dropped with their clicks", what)
    return imps[known].reset_index(drop=True), dropped


def _posts(data: L.LogData, imps: pd.DataFrame, first_day: str) -> pd.DataFrame:
    first = imps.groupby(L.POST)[L.SERVED_AT].min().rename("first_shown")
    items = data.items.to_pandas().drop_duplicates(L.POST).merge(first, on=L.POST)
    latest = items["first_shown"] - BEFORE_FIRST_SHOWN
    published = items[L.PUBLISHED]
    created = published.where(published.notna() & (published <= latest), latest)
    sections = items[L.SECTION]
    posts = pd.DataFrame(
        {
            C.POST_ID: items[L.POST],
            C.AUTHOR_ID: sections.map(L.stable_id).astype("int64"),
            C.CREATED_AT: created,
            C.TOPIC: items[L.TOPIC].astype("int32"),
            C.HASHTAGS: items[L.TAGS],
            C.MEDIA_TYPE: items[L.MEDIA],
            C.LENGTH: items[L.LENGTH].astype("int32"),
            C.HAS_URL: False,
            "section": sections,
        }
    )
    posts["ds"] = posts[C.CREATED_AT].dt.strftime("%Y-%m-%d").clip(lower=first_day)
    return posts.sort_values(C.POST_ID).reset_index(drop=True)


def _users(requests: pd.DataFrame) -> pd.DataFrame:
    """Everyone served up to the day's end, as the day's snapshot."""
    ordered = requests.sort_values([L.SERVED_AT, L.REQUEST_ID], kind="stable")
    by_user = ordered.groupby(L.USER, sort=True)
    users = pd.DataFrame(
        {
            C.CREATED_AT: by_user[L.SERVED_AT].min(),
            C.AGE_BUCKET: by_user[L.AGE_BUCKET].first(),  # first non-null
            C.GENDER: by_user[L.GENDER].first(),
        }
    )
    users[C.PRIMARY_DEVICE] = _primary_device(ordered)
    users[C.COUNTRY] = None
    users[C.IS_PERSON_AUTHOR] = False
    return users.rename_axis(C.USER_ID).reset_index()[USERS.columns]


def _primary_device(requests: pd.DataFrame) -> pd.Series:
    """Each user's most frequent device, ties to the first in catalog.DEVICES; None if none."""
    known = requests[requests[L.DEVICE].notna()]
    counts = pd.crosstab(known[L.USER], known[L.DEVICE]).reindex(
        columns=list(DEVICES), fill_value=0
    )
    best = pd.Series(
        np.asarray(DEVICES, dtype=object)[counts.to_numpy().argmax(axis=1)], counts.index
    )
    return best.reindex(requests[L.USER].unique()).astype(object).where(lambda s: s.notna(), None)


def _authors(posts: pd.DataFrame) -> pd.DataFrame:
    by = posts.groupby(C.AUTHOR_ID, sort=True)[C.CREATED_AT].min()
    return pd.DataFrame(
        {C.AUTHOR_ID: by.index, C.KIND: "page", C.CREATED_AT: by.to_numpy(), C.VERIFIED: False}
    )


def _engagements(day: pd.DataFrame) -> pd.DataFrame:
    clicks = day[day[L.CLICKED]]
    return pd.DataFrame(
        {
            C.IMPRESSION_ID: clicks[C.IMPRESSION_ID],
            C.USER_ID: clicks[L.USER],
            C.POST_ID: clicks[L.POST],
            C.ACTION: CLICK,
            C.EVENT_TS: clicks[L.SERVED_AT] + CLICK_DELAY,
            C.DWELL_S: clicks[L.DWELL_S],
        }
    )
