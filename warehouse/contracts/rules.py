"""What each raw table must satisfy: its expectations, and the derived frame they run on.

Cross-table rules run on columns that `derive` adds in Spark: a left join to a reference
adds an `_in_<table>` marker (null where the reference has no such row) and the reference's
columns the rule compares with. So "the engagement's impression exists" is a not-null
expectation on `_in_impressions`, and "after it was served" a column-pair expectation on
(event_ts, _imp_served_at): no value lists shipped to the executors, one frame per table.

The building blocks (expectations with their meta, parameters, `Contract`) are in
warehouse.contracts.expectations.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pyspark.sql import functions as F

from warehouse.catalog import (
    ACTIONS,
    AGE_BUCKETS,
    AUTHOR_KINDS,
    AUTHORS,
    BUCKETS,
    CLICK,
    COUNTRIES,
    DEVICES,
    ENGAGEMENTS,
    FOLLOWS,
    GENDERS,
    IMPRESSION_SOURCES,
    IMPRESSIONS,
    MEDIA_TYPES,
    POLICIES,
    POSTS,
    USERS,
    C,
)
from warehouse.contracts.expectations import (
    DAY_END,
    DAY_START,
    DWELL_IFF_CLICK,
    LATE_END,
    MAX_DWELL_S,
    POSTS_FROM,
    Contract,
    after,
    between,
    dwell_iff_click,
    dwell_iff_click_rule,
    equal,
    exists,
    in_set,
    never,
    param,
)

_CLICK = CLICK


class D:
    """Columns the contracts derive; the leading underscore keeps them apart from the catalog."""

    IN_USERS = "_in_users"  # True where the row's user (or follower) is in users
    IN_AUTHORS = "_in_authors"  # True where the row's author (or followee) is in authors
    IN_POSTS = "_in_posts"  # True where the impression's post is in the serving pool's posts
    IN_IMPRESSIONS = "_in_impressions"  # True where the engagement's impression is in ds's
    POST_CREATED_AT = "_post_created_at"  # the impression's post's created_at
    POST_AUTHOR_ID = "_post_author_id"  # the impression's post's author_id
    IMP_SERVED_AT = "_imp_served_at"  # the engagement's impression's served_at
    IMP_USER_ID = "_imp_user_id"  # the engagement's impression's user_id
    IMP_POST_ID = "_imp_post_id"  # the engagement's impression's post_id
    SELF_FOLLOW = "_self_follow"  # True where a person follows their own author account
    FOLLOWEE_KIND = "_followee_kind"  # the followee's kind (person | page)
    DWELL_IFF_CLICK = DWELL_IFF_CLICK  # dwell_s is set exactly when action is a click
    JOIN_KEY = "_join_key"  # transient: the reference's key while joining


def _snapshot_rules() -> list[Any]:
    """A snapshot at the end of ds holds no rows created later."""
    return [between(C.CREATED_AT, high=param(DAY_END), strict_max=True)]


def _users_rules() -> list[Any]:
    sets = [(C.COUNTRY, COUNTRIES), (C.AGE_BUCKET, AGE_BUCKETS), (C.GENDER, GENDERS)]
    sets.append((C.PRIMARY_DEVICE, DEVICES))
    return [*(in_set(c, values) for c, values in sets), *_snapshot_rules()]


def _authors_rules() -> list[Any]:
    return [in_set(C.KIND, AUTHOR_KINDS), *_snapshot_rules()]


def _follows_rules() -> list[Any]:
    return [
        *_snapshot_rules(),
        exists(C.FOLLOWER_ID, D.IN_USERS, USERS),
        exists(C.FOLLOWEE_ID, D.IN_AUTHORS, AUTHORS),
        # A person's author account has their user id (pages have ids of their own).
        never(
            D.SELF_FOLLOW,
            [C.FOLLOWEE_ID],
            "follower_id != followee_id (nobody follows themself)",
            show=[C.FOLLOWER_ID, C.FOLLOWEE_ID],
        ),
    ]


def _posts_rules() -> list[Any]:
    return [
        between(C.CREATED_AT, param(POSTS_FROM), param(DAY_END), strict_max=True),
        in_set(C.MEDIA_TYPE, MEDIA_TYPES),
        between(C.LENGTH, 0),
        exists(C.AUTHOR_ID, D.IN_AUTHORS, AUTHORS),
    ]


def _impressions_rules() -> list[Any]:
    return [
        between(C.SERVED_AT, param(DAY_START), param(DAY_END), strict_max=True),
        between(C.POSITION, 0),
        in_set(C.DEVICE, DEVICES),
        in_set(C.SOURCE, IMPRESSION_SOURCES),
        in_set(C.BUCKET, BUCKETS),
        in_set(C.POLICY, POLICIES),
        # Off-policy estimates divide by it: a logged item had a chance to be shown.
        between(C.PROPENSITY, 0.0, 1.0, strict_min=True),
        exists(C.POST_ID, D.IN_POSTS, POSTS),
        after(C.SERVED_AT, D.POST_CREATED_AT, "served_at > its post's created_at"),
        equal(C.AUTHOR_ID, D.POST_AUTHOR_ID, "author_id = its post's author_id"),
        exists(C.USER_ID, D.IN_USERS, USERS),
        exists(C.AUTHOR_ID, D.IN_AUTHORS, AUTHORS),
    ]


def _engagements_rules() -> list[Any]:
    iff_click = dwell_iff_click_rule(C.ACTION, f"action = {_CLICK!r}")
    return [
        in_set(C.ACTION, ACTIONS),
        between(C.EVENT_TS, param(DAY_START), param(LATE_END), strict_max=True),
        between(C.DWELL_S, 0.0, MAX_DWELL_S),
        iff_click,
        exists(C.IMPRESSION_ID, D.IN_IMPRESSIONS, IMPRESSIONS),
        after(C.EVENT_TS, D.IMP_SERVED_AT, "event_ts > its impression's served_at"),
        equal(C.USER_ID, D.IMP_USER_ID, "user_id = its impression's user_id"),
        equal(C.POST_ID, D.IMP_POST_ID, "post_id = its impression's post_id"),
    ]


# --- derived frames --------------------------------------------------------------------------


def attach(df, ref, *, on: str, ref_key: str, marker: str, **carry: str):
    """Left-join ref where df.on == ref.ref_key: `marker` is True where a row matched, and
    carry names new columns after ref's columns. One ref row per key keeps df's row count:
    a duplicate in the reference is the reference's failure, not df's."""
    right = ref.select(
        F.col(ref_key).alias(D.JOIN_KEY),
        F.lit(True).alias(marker),
        *(F.col(src).alias(dst) for dst, src in carry.items()),
    ).dropDuplicates([D.JOIN_KEY])
    return df.join(right, F.col(on) == F.col(D.JOIN_KEY), "left").drop(D.JOIN_KEY)


def _derive_follows(df, frames):
    df = attach(df, frames[USERS.name], on=C.FOLLOWER_ID, ref_key=C.USER_ID, marker=D.IN_USERS)
    authors, kind = frames[AUTHORS.name], {D.FOLLOWEE_KIND: C.KIND}
    df = attach(df, authors, on=C.FOLLOWEE_ID, ref_key=C.AUTHOR_ID, marker=D.IN_AUTHORS, **kind)
    person = F.col(D.FOLLOWEE_KIND) == F.lit("person")
    return df.withColumn(D.SELF_FOLLOW, person & (F.col(C.FOLLOWER_ID) == F.col(C.FOLLOWEE_ID)))


def _derive_posts(df, frames):
    authors = frames[AUTHORS.name]
    return attach(df, authors, on=C.AUTHOR_ID, ref_key=C.AUTHOR_ID, marker=D.IN_AUTHORS)


def _derive_impressions(df, frames):
    post = {D.POST_CREATED_AT: C.CREATED_AT, D.POST_AUTHOR_ID: C.AUTHOR_ID}
    posts, users, authors = (frames[t.name] for t in (POSTS, USERS, AUTHORS))
    df = attach(df, posts, on=C.POST_ID, ref_key=C.POST_ID, marker=D.IN_POSTS, **post)
    df = attach(df, users, on=C.USER_ID, ref_key=C.USER_ID, marker=D.IN_USERS)
    return attach(df, authors, on=C.AUTHOR_ID, ref_key=C.AUTHOR_ID, marker=D.IN_AUTHORS)


def _derive_engagements(df, frames):
    imp = {D.IMP_SERVED_AT: C.SERVED_AT, D.IMP_USER_ID: C.USER_ID, D.IMP_POST_ID: C.POST_ID}
    impressions = frames[IMPRESSIONS.name]
    key = C.IMPRESSION_ID
    df = attach(df, impressions, on=key, ref_key=key, marker=D.IN_IMPRESSIONS, **imp)
    # Null where action is null: that row already fails action's not-null rule.
    return df.withColumn(D.DWELL_IFF_CLICK, dwell_iff_click(F.col(C.ACTION) == _CLICK))


CONTRACTS: dict[str, Contract] = {
    USERS.name: Contract((), _users_rules),
    AUTHORS.name: Contract((), _authors_rules),
    FOLLOWS.name: Contract((USERS.name, AUTHORS.name), _follows_rules, _derive_follows),
    POSTS.name: Contract((AUTHORS.name,), _posts_rules, _derive_posts),
    IMPRESSIONS.name: Contract(
        (POSTS.name, USERS.name, AUTHORS.name), _impressions_rules, _derive_impressions
    ),
    ENGAGEMENTS.name: Contract((IMPRESSIONS.name,), _engagements_rules, _derive_engagements),
}

# The tables each raw table's contract reads besides its own partition. All are ds's
# partition (users and authors: the snapshot at the end of ds), except the posts of the
# impressions' contract: the serving pool, ds - pool_days .. ds. See `reference_days`.
REFERENCES: dict[str, tuple[str, ...]] = {name: c.references for name, c in CONTRACTS.items()}


def reference_days(table_name: str, reference: str, ds: str, *, pool_days: int) -> tuple[str, ...]:
    """The ds partitions of `reference` that the contract of `table_name` on ds reads."""
    if reference not in REFERENCES[table_name]:
        raise KeyError(f"{table_name}'s contract reads {REFERENCES[table_name]}, not {reference!r}")
    if (table_name, reference) != (IMPRESSIONS.name, POSTS.name):
        return (ds,)
    day = dt.date.fromisoformat(ds)
    return tuple(str(day - dt.timedelta(days=n)) for n in range(pool_days, -1, -1))
