"""PageRank over the follow graph with DataFrames (no GraphFrames, no driver-side loop data)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

_SRC, _DST, _NODE, _RANK = "_src", "_dst", "node", "pagerank"


def pagerank(
    edges: DataFrame,
    src: str,
    dst: str,
    iterations: int = 20,
    damping: float = 0.85,
) -> DataFrame:
    """(node, pagerank) by `iterations` power-iteration steps from the uniform vector.

    Same definition as networkx.pagerank: a node with no out-edge (dangling) spreads its rank
    uniformly over all nodes, teleport is uniform, ranks sum to 1. Nodes are those on an edge.
    The totals (n, dangling mass) stay one-row DataFrames cross-joined in, never collected.
    A step reads the ranks three times (shares, dangling mass, the join back), so the plan
    would triple per step: every step is cut with a local checkpoint (one Spark job each).
    """
    e = edges.select(F.col(src).alias(_SRC), F.col(dst).alias(_DST)).distinct()
    nodes = e.select(F.col(_SRC).alias(_NODE)).union(e.select(F.col(_DST).alias(_NODE))).distinct()
    outdeg = e.groupBy(_SRC).agg(F.count("*").alias("_deg"))
    nodes = nodes.join(outdeg.withColumnRenamed(_SRC, _NODE), _NODE, "left").localCheckpoint()
    n = nodes.agg(F.count("*").cast("double").alias("_n"))
    ranks = nodes.crossJoin(n).select(_NODE, "_deg", (1.0 / F.col("_n")).alias(_RANK))
    for _ in range(iterations):
        ranks = _step(e, ranks, n, damping).localCheckpoint()
    return ranks.select(_NODE, _RANK)


def _step(e: DataFrame, ranks: DataFrame, n: DataFrame, damping: float) -> DataFrame:
    share = ranks.where(F.col("_deg").isNotNull()).select(
        F.col(_NODE).alias(_SRC), (F.col(_RANK) / F.col("_deg")).alias("_share")
    )
    inflow = e.join(share, _SRC).groupBy(_DST).agg(F.sum("_share").alias("_in"))
    dangling = ranks.agg(
        F.coalesce(F.sum(F.when(F.col("_deg").isNull(), F.col(_RANK))), F.lit(0.0)).alias("_dm")
    )
    new = (1.0 - damping) / F.col("_n") + damping * (
        F.coalesce(F.col("_in"), F.lit(0.0)) + F.col("_dm") / F.col("_n")
    )
    return (
        ranks.join(inflow.withColumnRenamed(_DST, _NODE), _NODE, "left")
        .crossJoin(n)
        .crossJoin(dangling)
        .select(_NODE, "_deg", new.alias(_RANK))
    )
