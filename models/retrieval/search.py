"""The interest candidates' neighbour search: each embedded user's k nearest posts in a
published retrieval index (models.retrieval.published)."""

from __future__ import annotations

import faiss
import numpy as np
import pandas as pd

from models.retrieval import index as ix
from models.retrieval.config import IndexSettings
from models.retrieval.published import PublishedIndex
from warehouse.catalog import C


def nearest_posts(pub: PublishedIndex, k: int, settings: IndexSettings) -> pd.DataFrame:
    """(user_id, post_id, similarity): the k nearest posts of every user the index embedded
    (fewer when the index holds fewer posts), most similar first within a user."""
    faiss.omp_set_num_threads(settings.threads)
    k = min(k, pub.index.ntotal)
    ix.set_search_width(pub.index, k, settings)
    sims, rows = pub.index.search(np.ascontiguousarray(pub.user_vectors, np.float32), k)
    found = rows >= 0
    return pd.DataFrame(
        {
            C.USER_ID: np.repeat(pub.user_ids, k)[found.ravel()],
            C.POST_ID: pub.post_ids[rows[found]],
            C.SIMILARITY: sims[found].astype(np.float64),
        }
    )
