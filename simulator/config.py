"""Settings of the simulated platform: its size, its calendar and its behaviour model."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict


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
    affinity: float = 1.6  # weight of user-topic affinity: log1p(T * interest) - log 2, 0 at 1/T
    closeness: float = 1.2  # bonus for a followed author; close friends get twice this
    quality: float = 0.8  # weight of the author's latent quality (standard normal)
    social_proof: float = 0.25  # weight of log1p(engagements the post had before the day)
    network_proof: float = 0.5  # weight of log1p(followees who engaged the post before the day)
    age_decay_per_day: float = 0.6  # logit lost per day of post age
    position_decay: float = 0.35  # examination probability = (1 + position) ** -position_decay
    context: float = 0.4  # device x content fit (video on mobile +, long text on mobile -)
    clickbait_click: float = 1.0  # clickbait draws clicks ...
    clickbait_hide: float = 1.8  # ... and hides ...
    clickbait_report: float = 1.5  # ... and reports
    clickbait_engage: float = 0.8  # ... but fewer likes, comments and shares
    negative_weight: float = 0.6  # hide/report logits fall by this per unit of the positive fit
    user_bias_sd: float = 0.5  # sd of a user's own propensity to engage
    dwell_median_s: float = 25.0  # median dwell of a click on a 300-char text post
    dwell_sigma: float = 0.7  # log-sd of dwell around its median


class SimulatorSettings(_Strict):
    """Size and calendar of the simulated network; every draw derives from `seed`."""

    seed: int = 7  # root seed: same seed, same logs
    start_date: dt.date = dt.date(2026, 1, 5)  # first simulated day (ds)
    days: int = 4  # number of simulated days
    n_users: int = 500  # viewers we rank feeds for (accounts 0..n_users-1)
    n_person_authors: int = 120  # users who also post (the first ones by id)
    n_authors: int = 200  # all posting accounts: person authors + pages
    posts_per_day: int = 1250  # mean posts created per day, over all authors
    n_topics: int = 20  # latent topics
    hashtags_per_topic: int = 12  # vocabulary of hashtags per topic
    avg_followees: float = 30.0  # mean authors a user follows
    homophily: float = 1.0  # exponent of user-author topic similarity in the choice of follows
    same_country_boost: float = 3.0  # odds multiplier for following a person of one's country
    clickbait_author_share: float = 0.08  # share of authors who mostly post clickbait
    close_friend_share: float = 0.15  # share of person-to-person follows that are close friends
    new_follow_share: float = 0.03  # share of follows created during the simulated days
    sessions_per_day: float = 2.5  # mean sessions per user-day (scaled by activity)
    feed_depth: float = 10.0  # mean impressions per session (geometric)
    pool_days: int = 3  # posts older than this are not served
    popular_slots: int = 2  # out-of-network popular posts mixed into each session
    popular_pool: int = 50  # most-engaged pool posts that the popular slots are drawn from
    popular_spacing: int = 4  # a popular slot follows every this many network posts
    max_depth: int = 100  # cap on impressions per session (keeps a session within minutes)
    explore_top_k: int = 5  # top slots shuffled by the logging policy (exploration)
    max_engagement_delay_s: int = 3600  # engagements arrive at most this long after the impression
    n_shards: int = 4  # user shards per day; each is generated independently
    behaviour: BehaviourSettings = BehaviourSettings()

    def dates(self) -> list[dt.date]:
        return [self.start_date + dt.timedelta(days=i) for i in range(self.days)]
