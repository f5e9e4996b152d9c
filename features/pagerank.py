"""PageRank over the follow graph with DataFrames (no GraphFrames, no driver-side loop data)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

_SRC, _DST, _NODE, _RANK = "_src", "_dst", "node", "pagerank"


def pagerank(
    edges: DataFrame,
    src: str,
    dst: str,
    iterations: int,
    damping: float = 0.85,
    checkpoint_every: int = 2,
) -> DataFrame:
    """(node, pagerank): networkx.pagerank's definition (uniform teleport, a node with no
    out-edge spreads its rank uniformly, ranks sum to 1); nodes are those on an edge.

    With uniform teleport and dangling, the PageRank vector r solves r = d P r + c 1 for a
    scalar c, so it is proportional to the x solving x = d P x + (1 - d) / n. Iterating x needs
    no global sum per step (dangling mass, renormalisation): each step reads x once, and only
    the end normalises x to sum 1. Error after k steps shrinks like d^k, as power iteration's.
    Lineage is cut every `checkpoint_every` steps to keep the plan small.
    """
    e = edges.select(F.col(src).alias(_SRC), F.col(dst).alias(_DST)).distinct()
    deg = e.groupBy(_SRC).agg(F.count("*").alias("_deg"))
    e = e.join(deg, _SRC).localCheckpoint()
    nodes = e.select(F.col(_SRC).alias(_NODE)).union(e.select(F.col(_DST).alias(_NODE))).distinct()
    n = nodes.agg(F.count("*").cast("double").alias("_n"))
    nodes = nodes.crossJoin(n).localCheckpoint()  # (node, _n)
    x = nodes.select(_NODE, "_n", (1.0 / F.col("_n")).alias(_RANK))
    for i in range(iterations):
        x = _step(e, nodes, x, damping)
        if (i + 1) % checkpoint_every == 0:
            x = x.localCheckpoint()
    total = x.agg(F.sum(_RANK).alias("_total"))
    return x.crossJoin(total).select(_NODE, (F.col(_RANK) / F.col("_total")).alias(_RANK))


def _step(e: DataFrame, nodes: DataFrame, x: DataFrame, damping: float) -> DataFrame:
    """x' = (1 - d) / n + d * sum over in-edges s -> t of x_s / outdeg_s."""
    share = x.select(F.col(_NODE).alias(_SRC), _RANK)
    inflow = (
        e.join(share, _SRC)
        .groupBy(F.col(_DST).alias(_NODE))
        .agg(F.sum(F.col(_RANK) / F.col("_deg")).alias("_in"))
    )
    new = (1.0 - damping) / F.col("_n") + damping * F.coalesce(F.col("_in"), F.lit(0.0))
    return nodes.join(inflow, _NODE, "left").select(_NODE, "_n", new.alias(_RANK))
