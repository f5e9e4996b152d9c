"""Post content features: static attributes of the post, known from its creation."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features import registry as R
from warehouse.catalog import C


def post_content(posts: DataFrame) -> DataFrame:
    """Per post_id: media_type, length, has_url, topic, hashtags (array) and hashtag_count.

    A post with no hashtag list counts 0 hashtags (size(null) is -1 in Spark).
    """
    tags = F.coalesce(F.col(C.HASHTAGS), F.array().cast("array<string>"))
    return posts.select(
        C.POST_ID,
        C.MEDIA_TYPE,
        C.LENGTH,
        C.HAS_URL,
        C.TOPIC,
        tags.alias(C.HASHTAGS),
        F.size(tags).alias(R.HASHTAG_COUNT),
    )
