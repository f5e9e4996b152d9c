"""One simulated day: serve every session its feed, draw engagement, write the day's logs.

Social proof lags by up to a day, on purpose: a day's behaviour reads the engagement of the
previous `pool_days` days (a `SocialState` built once, before the day), never the same day's.
That makes the user shards of a day independent, so they can run in any order or in
parallel and still give identical logs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from simulator._common import (
    DAY_US,
    Stream,
    day_start_us,
    earlier_in_session,
    rng,
    to_timestamps,
)
from simulator.behaviour import Actions, Exposure, Truth, draw_actions, true_model
from simulator.closed_loop import FeedClient, Serving, buckets, is_treatment, serve_ranked
from simulator.config import SimulatorSettings
from simulator.feed import Pool, Served, pool_start_day, popular_posts, serve
from simulator.posts import DayPosts, generate_posts
from simulator.sessions import Sessions, previous_session_us, sessions_for_day
from simulator.world import World
from warehouse.catalog import (
    ACTIONS,
    AUTHORS,
    DEVICES,
    ENGAGEMENTS,
    FOLLOWS,
    IMPRESSION_SOURCES,
    IMPRESSIONS,
    POSITIVE_ACTIONS,
    POSTS,
    TRUTH_IMPRESSIONS,
    USERS,
    C,
    truth_column,
)

ID_DAY_STRIDE = 10**15  # request/impression id = day * 10**15 + shard * 10**9 + sequence
ID_SHARD_STRIDE = 10**9
_N = "n"  # count column of SocialState.network


@dataclasses.dataclass(frozen=True, eq=False)
class SocialState:
    """Engagement seen before the day began, the source of social proof.

    Built from the previous days' ENGAGEMENTS only, so social proof lags by up to a day; the
    shards of a day therefore never depend on one another.
    """

    post_engagements: pd.Series  # post_id -> positive engagements (click/like/comment/share)
    network: pd.DataFrame  # user_id, post_id, n: the user's followees who engaged the post


def social_state(
    prior_engagements: pd.DataFrame | None,
    follows: pd.DataFrame,
    before: pd.Timestamp | None = None,
) -> SocialState:
    """Social proof from the ENGAGEMENTS rows of the previous `pool_days` days (may be empty)
    and the follow graph as of the start of the day (FOLLOWS rows). Only events before
    `before` count: a late engagement of yesterday's impression (after midnight) must not
    shape a session that happens before it."""
    if prior_engagements is None or prior_engagements.empty:
        prior_engagements = pd.DataFrame({c: [] for c in ENGAGEMENTS.columns})
    elif before is not None:
        prior_engagements = prior_engagements[prior_engagements[C.EVENT_TS] < before]
    pos = prior_engagements[prior_engagements[C.ACTION].isin(POSITIVE_ACTIONS)]
    counts = pos.groupby(C.POST_ID).size().astype(np.int64)
    engaged = pos[[C.USER_ID, C.POST_ID]].drop_duplicates()
    # A person who engaged is also an author (author_id == user_id): whoever follows them.
    ties = engaged.merge(
        follows[[C.FOLLOWER_ID, C.FOLLOWEE_ID]], left_on=C.USER_ID, right_on=C.FOLLOWEE_ID
    )
    network = (
        ties.groupby([C.FOLLOWER_ID, C.POST_ID])
        .size()
        .rename(_N)
        .reset_index()
        .rename(columns={C.FOLLOWER_ID: C.USER_ID})
        .astype(np.int64)  # typed even when empty, so that merges on it never fail
    )
    return SocialState(counts, network)


@dataclasses.dataclass(frozen=True, eq=False)
class ShardLogs:
    impressions: pd.DataFrame  # IMPRESSIONS columns
    engagements: pd.DataFrame  # ENGAGEMENTS columns
    truth: pd.DataFrame  # TRUTH_IMPRESSIONS columns


@dataclasses.dataclass(frozen=True, eq=False)
class DayLogs:
    """The logs of one day, each frame with exactly its catalog table's columns (no ds)."""

    users: pd.DataFrame
    authors: pd.DataFrame
    follows: pd.DataFrame
    posts: pd.DataFrame
    impressions: pd.DataFrame
    engagements: pd.DataFrame
    truth: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        """Frames keyed by catalog table name."""
        return {
            USERS.name: self.users,
            AUTHORS.name: self.authors,
            FOLLOWS.name: self.follows,
            POSTS.name: self.posts,
            IMPRESSIONS.name: self.impressions,
            ENGAGEMENTS.name: self.engagements,
            TRUTH_IMPRESSIONS.name: self.truth,
        }


@dataclasses.dataclass(frozen=True, eq=False)
class DayPool:
    """The posts servable on a day and the social proof each carries into it."""

    index: int
    posts: DayPosts  # created today
    pool: Pool
    pool_engagements: np.ndarray  # (pool,) positive engagements before today
    state: SocialState


@dataclasses.dataclass(frozen=True, eq=False)
class _Day(DayPool):
    """What every shard of a day shares, computed once."""

    popular: np.ndarray  # pool indices the popular slots draw from
    sessions: Sessions  # every user's sessions today
    prev_us: np.ndarray  # (sessions,) lower bound of "new since the last session"


def is_loop_day(cfg: SimulatorSettings, day_index: int) -> bool:
    """Whether the closed loop serves the day (one of the last `serving.loop_days`)."""
    return day_index >= cfg.days - cfg.serving.loop_days


def simulate_day(
    world: World,
    cfg: SimulatorSettings,
    day_index: int,
    prior_engagements: pd.DataFrame | None,
    client: FeedClient | None = None,
) -> DayLogs:
    """All shards of a day. `prior_engagements`: ENGAGEMENTS of the previous `pool_days`
    days (None or empty on the first day). A closed-loop day needs `client`, the read path of
    the feed store (simulator.closed_loop), for its treatment bucket."""
    if is_loop_day(cfg, day_index) != (client is not None):
        raise ValueError(
            f"day {day_index} is {'' if is_loop_day(cfg, day_index) else 'not '}a closed-loop "
            f"day (serving.loop_days = {cfg.serving.loop_days} of {cfg.days}): "
            + ("it needs the feed store's read path" if client is None else "no read path")
        )
    start = day_start_us(cfg, day_index)
    day_start = to_timestamps([start])[0]
    state = social_state(prior_engagements, world.follows_as_of(day_start), before=day_start)
    day = _prepare(world, cfg, day_index, state)
    shards = [_simulate(world, cfg, day, s, client) for s in range(cfg.n_shards)]
    end = to_timestamps([start + DAY_US])[0]
    return DayLogs(
        users=world.users,
        authors=world.authors,
        follows=world.follows_as_of(end),
        posts=day.posts.frame,
        impressions=_concat([s.impressions for s in shards], [C.IMPRESSION_ID]),
        engagements=_concat([s.engagements for s in shards], [C.IMPRESSION_ID, C.ACTION]),
        truth=_concat([s.truth for s in shards], [C.IMPRESSION_ID]),
    )


def simulate_shard(
    world: World,
    cfg: SimulatorSettings,
    day_index: int,
    state: SocialState,
    shard: int,
    client: FeedClient | None = None,
) -> ShardLogs:
    """The impressions, engagements and truth of the users with user_id % n_shards == shard."""
    if not 0 <= shard < cfg.n_shards:
        raise ValueError(f"shard {shard} is outside 0..{cfg.n_shards - 1}")
    return _simulate(world, cfg, _prepare(world, cfg, day_index, state), shard, client)


def day_pool(world: World, cfg: SimulatorSettings, day_index: int, state: SocialState) -> DayPool:
    """The pool of a day: the posts of its last `pool_days` days and its own, regenerated
    (a day's posts depend only on the seed), with their engagement counts from `state`."""
    first = pool_start_day(cfg, day_index)
    days = [generate_posts(world, cfg, d) for d in range(first, day_index + 1)]
    pool = Pool.from_days(days, day_start_us(cfg, first))
    counts = state.post_engagements.reindex(pool.post_id, fill_value=0).to_numpy()
    return DayPool(day_index, days[-1], pool, counts, state)


def _prepare(world: World, cfg: SimulatorSettings, day_index: int, state: SocialState) -> _Day:
    base = day_pool(world, cfg, day_index, state)
    sessions = sessions_for_day(world, cfg, day_index)
    prev = previous_session_us(world, cfg, day_index, sessions)
    popular = popular_posts(world, cfg, base.pool, base.pool_engagements)
    return _Day(**vars(base), popular=popular, sessions=sessions, prev_us=prev)


def _simulate(
    world: World, cfg: SimulatorSettings, day: _Day, shard: int, client: FeedClient | None
) -> ShardLogs:
    mask = day.sessions.user % cfg.n_shards == shard
    sessions = day.sessions.take(mask)
    serving = _serve(world, cfg, day, sessions, day.prev_us[mask], shard, client)
    served = serving.served
    x = _exposure(world, day, sessions, served)
    truth = true_model(world, cfg, x)
    actions = draw_actions(cfg, x, truth, rng(cfg.seed, Stream.ACTIONS, day.index, shard))
    base = day.index * ID_DAY_STRIDE + shard * ID_SHARD_STRIDE
    impression_id = base + np.arange(len(served.post), dtype=np.int64)
    impressions = _impressions(world, cfg, day.pool, sessions, serving, impression_id, base)
    return ShardLogs(
        impressions=impressions,
        engagements=_engagements(impressions, actions),
        truth=_truth(impression_id, truth),
    )


def _serve(world, cfg, day: _Day, sessions: Sessions, prev_us, shard, client) -> Serving:
    """Chronological for everyone, or on a loop day: chronological for control, the ranked
    feeds for treatment (each from its own random stream)."""
    r_feed = rng(cfg.seed, Stream.FEED, day.index, shard)
    if client is None:
        return Serving.chronological(
            serve(world, cfg, sessions, prev_us, day.pool, day.popular, r_feed)
        )
    treat = is_treatment(sessions.user, cfg.serving)
    control = Serving.chronological(
        serve(world, cfg, sessions.take(~treat), prev_us[~treat], day.pool, day.popular, r_feed)
    )
    r_rank = rng(cfg.seed, Stream.RANKED_FEED, day.index, shard)
    ranked = serve_ranked(
        world, cfg, sessions.take(treat), prev_us[treat], day.pool, client, r_rank
    )
    return Serving.merge(
        [control.remap(np.flatnonzero(~treat)), ranked.remap(np.flatnonzero(treat))]
    )


def _exposure(world: World, day: _Day, sessions: Sessions, served: Served) -> Exposure:
    s = served.session
    return exposure(
        world,
        day,
        sessions.user[s],
        served.post,
        served.served_us,
        sessions.device[s],
        served.position,
        session=s,
    )


def exposure(
    world: World,
    day: DayPool,
    user: np.ndarray,
    post: np.ndarray,
    served_us: np.ndarray,
    device: np.ndarray,
    position: np.ndarray,
    *,
    session: np.ndarray | None = None,
) -> Exposure:
    """What the true model needs about `user` seeing pool post `post` (an index into
    day.pool) at `served_us` on `device` (index into DEVICES) at feed `position`; rows with
    the same `session` key are one session's list (for its fatigue: the posts of the same
    author and topic at earlier positions), None: each row is seen alone."""
    pool = day.pool
    author, topic = pool.author[post], pool.topic[post]
    if session is None:
        seen_author = seen_topic = np.zeros(len(post), dtype=np.int64)
    else:
        seen_author = earlier_in_session(session, position, author)
        seen_topic = earlier_in_session(session, position, topic)
    row = world.graph.lookup(user, author, world.n_authors)
    net = pd.DataFrame({C.USER_ID: user, C.POST_ID: pool.post_id[post]}).merge(
        day.state.network, on=[C.USER_ID, C.POST_ID], how="left"
    )
    return Exposure(
        user=user,
        author=author,
        topic=topic,
        media=pool.media[post],
        length=pool.length[post],
        clickbait=pool.clickbait[post],
        created_us=pool.created_us[post],
        served_us=served_us,
        device=device,
        position=position,
        follows=row >= 0,
        close_friend=(row >= 0) & world.graph.close_friend[np.maximum(row, 0)],
        post_engagements=day.pool_engagements[post],
        network_engagers=net[_N].fillna(0).to_numpy(dtype=np.float64),
        seen_author=seen_author,
        seen_topic=seen_topic,
    )


def _impressions(world, cfg, pool: Pool, sessions: Sessions, serving: Serving, ids, base):
    served = serving.served
    user = sessions.user[served.session]
    return pd.DataFrame(
        {
            C.IMPRESSION_ID: ids,
            C.REQUEST_ID: base + served.session,
            C.USER_ID: user,
            C.POST_ID: pool.post_id[served.post],
            C.AUTHOR_ID: world.authors_latent.author_id[pool.author[served.post]].astype(np.int64),
            C.SERVED_AT: to_timestamps(served.served_us),
            C.POSITION: served.position.astype(np.int32),
            C.DEVICE: np.array(DEVICES, dtype=object)[sessions.device[served.session]],
            C.SOURCE: np.array(IMPRESSION_SOURCES, dtype=object)[served.source],
            C.BUCKET: buckets(user, cfg.serving),
            C.POLICY: serving.policy,
            C.FEED_VERSION: serving.feed_version,
            C.MODEL_VERSION: serving.model_version,
            C.PROPENSITY: served.propensity,
        },
        columns=IMPRESSIONS.columns,
    )


def _engagements(impressions: pd.DataFrame, a: Actions) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            C.IMPRESSION_ID: impressions[C.IMPRESSION_ID].to_numpy()[a.row],
            C.USER_ID: impressions[C.USER_ID].to_numpy()[a.row],
            C.POST_ID: impressions[C.POST_ID].to_numpy()[a.row],
            C.ACTION: np.array(ACTIONS, dtype=object)[a.action],
            C.EVENT_TS: to_timestamps(a.event_us),
            C.DWELL_S: a.dwell_s,
        },
        columns=ENGAGEMENTS.columns,
    )
    return frame.sort_values([C.IMPRESSION_ID, C.ACTION], kind="stable", ignore_index=True)


def _truth(impression_id: np.ndarray, t: Truth) -> pd.DataFrame:
    columns = {C.IMPRESSION_ID: impression_id}
    columns |= {truth_column(a): t.p[a] for a in ACTIONS}
    columns[C.E_DWELL_S] = t.e_dwell_s
    return pd.DataFrame(columns, columns=TRUTH_IMPRESSIONS.columns)


def _concat(frames: list[pd.DataFrame], key: list[str]) -> pd.DataFrame:
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(key, kind="stable", ignore_index=True)
