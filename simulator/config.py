"""Settings of the simulated platform: its size, its calendar and its behaviour model."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BehaviourSettings(_Strict):
    """Coefficients of the true engagement model (logits unless said otherwise)."""

    base_click: float = -4.4  # intercept of the click logit
    base_like: float = -5.7  # intercept of the like logit
    base_comment: float = -7.3  # intercept of the comment logit
    base_share: float = -7.6  # intercept of the share logit
    base_hide: float = -6.2  # intercept of the hide logit
    base_report: float = -7.1  # intercept of the report logit
    # weight of user-topic affinity: log1p(T * interest) - log 2, 0 at 1/T
    affinity: float = Field(1.6, ge=0)
    closeness: float = Field(1.2, ge=0)  # bonus for a followed author; close friends get twice this
    quality: float = Field(0.8, ge=0)  # weight of the author's latent quality (standard normal)
    # weight of log1p(engagements the post had before the day)
    social_proof: float = Field(0.25, ge=0)
    # weight of log1p(followees who engaged the post before the day)
    network_proof: float = Field(0.5, ge=0)
    age_decay_per_day: float = Field(0.6, ge=0)  # logit lost per day of post age
    # examination probability = (1 + position) ** -position_decay
    position_decay: float = Field(0.35, ge=0)
    # device x content fit (video on mobile +, long text on mobile -)
    context: float = Field(0.4, ge=0)
    clickbait_click: float = Field(1.0, ge=0)  # clickbait draws clicks ...
    clickbait_hide: float = Field(1.8, ge=0)  # ... and hides ...
    clickbait_report: float = Field(1.5, ge=0)  # ... and reports
    clickbait_engage: float = Field(0.8, ge=0)  # ... but fewer likes, comments and shares
    # hide/report logits fall by this per unit of the positive fit
    negative_weight: float = Field(0.6, ge=0)
    # Satisfaction within a session: the positive actions' logits fall by this for each post of
    # the same author (topic) shown earlier in the session; 0 turns it off (the default, so the
    # profiles' logs stay as they were)
    author_fatigue: float = Field(0.0, ge=0)
    topic_fatigue: float = Field(0.0, ge=0)
    user_bias_sd: float = Field(0.5, ge=0)  # sd of a user's own propensity to engage
    dwell_median_s: float = Field(25.0, gt=0)  # median dwell of a click on a 300-char text post
    dwell_sigma: float = Field(0.7, ge=0)  # log-sd of dwell around its median


class ServingSettings(_Strict):
    """The closed loop: which days the ranked feeds serve, to whom, and how (simulator.closed_loop).

    Users are split into buckets by a hash of their id, every day, so the days before the loop
    are an A/A period. On the last `loop_days` days of the calendar the treatment bucket reads
    the published feed through the read path; control keeps the chronological policy.
    """

    loop_days: int = Field(0, ge=0)  # last days of the calendar served by the closed loop
    control_share: float = Field(0.5, gt=0, lt=1)  # share of users in the control bucket
    bucket_salt: int = 20260101  # the bucket hash's salt: a new salt, a new split
    # Fresh network posts (created after the feed was generated and since the session before)
    # take every `fresh_every`-th slot of a treatment session, newest first; 0 turns it off.
    fresh_every: int = Field(2, ge=0)
    # share of the ranked slots that show a uniform draw from the unserved part of the page
    explore_share: float = Field(0.05, ge=0, lt=1)
    page_size: int = Field(100, ge=1, le=500)  # items per read-path page the client fetches
    report_boot: int = Field(2000, ge=100)  # bootstrap draws of the A/B report's intervals


class SimulatorSettings(_Strict):
    """Size and calendar of the simulated network; every draw derives from `seed`."""

    seed: int = 7  # root seed: same seed, same logs
    start_date: dt.date = dt.date(2026, 1, 5)  # first simulated day (ds)
    days: int = Field(4, ge=1)  # number of simulated days
    n_users: int = Field(500, ge=1)  # viewers we rank feeds for (accounts 0..n_users-1)
    n_person_authors: int = Field(120, ge=0)  # users who also post (the first ones by id)
    n_authors: int = Field(200, ge=1)  # all posting accounts: person authors + pages
    posts_per_day: int = Field(1250, gt=0)  # mean posts created per day, over all authors
    n_topics: int = Field(20, ge=1)  # latent topics
    hashtags_per_topic: int = Field(12, ge=1)  # vocabulary of hashtags per topic
    avg_followees: float = Field(30.0, gt=0)  # mean authors a user follows
    # exponent of user-author topic similarity in the choice of follows
    homophily: float = Field(1.0, ge=0)
    # odds multiplier for following a person of one's country
    same_country_boost: float = Field(3.0, gt=0)
    # share of authors who mostly post clickbait
    clickbait_author_share: float = Field(0.08, ge=0, le=1)
    # share of person-to-person follows that are close friends
    close_friend_share: float = Field(0.15, ge=0, le=1)
    # share of follows created during the simulated days
    new_follow_share: float = Field(0.03, ge=0, lt=1)
    sessions_per_day: float = Field(2.5, gt=0)  # mean sessions per user-day (scaled by activity)
    feed_depth: float = Field(10.0, ge=1)  # mean impressions per session (geometric)
    pool_days: int = Field(3, ge=1)  # posts older than this are not served
    popular_slots: int = Field(2, ge=0)  # out-of-network popular posts mixed into each session
    # most-engaged pool posts that the popular slots are drawn from
    popular_pool: int = Field(50, ge=1)
    popular_spacing: int = Field(4, ge=1)  # a popular slot follows every this many network posts
    # cap on impressions per session (keeps a session within minutes)
    max_depth: int = Field(100, ge=1)
    explore_top_k: int = Field(5, ge=0)  # top slots shuffled by the logging policy (exploration)
    # engagements arrive at most this long after the impression
    max_engagement_delay_s: int = Field(3600, ge=1)
    n_shards: int = Field(4, ge=1)  # user shards per day; each is generated independently
    behaviour: BehaviourSettings = BehaviourSettings()
    serving: ServingSettings = ServingSettings()

    @model_validator(mode="after")
    def _authors_fit(self) -> SimulatorSettings:
        if self.n_person_authors > min(self.n_users, self.n_authors):
            raise ValueError(
                f"n_person_authors ({self.n_person_authors}) must not exceed n_users "
                f"({self.n_users}) nor n_authors ({self.n_authors})"
            )
        if self.serving.loop_days >= self.days:
            raise ValueError(
                f"serving.loop_days ({self.serving.loop_days}) must leave at least one day "
                f"before the loop (days = {self.days}): the first feeds are trained on it"
            )
        return self

    def loop_dates(self) -> list[dt.date]:
        """The days the closed loop serves: the last `serving.loop_days` of the calendar."""
        return self.dates()[self.days - self.serving.loop_days :]

    def dates(self) -> list[dt.date]:
        return [self.start_date + dt.timedelta(days=i) for i in range(self.days)]
