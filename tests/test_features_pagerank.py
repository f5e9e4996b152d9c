"""PageRank in Spark against networkx and a numpy power iteration on a small graph."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from features.pagerank import DRIVER_MAX_EDGES, pagerank

pytestmark = pytest.mark.spark

# 0->1, 0->2, 1->2, 2->0, 3->2, 4->3 and 5 only followed (dangling: 2->5, 4->5).
EDGES = [(0, 1), (0, 2), (1, 2), (2, 0), (3, 2), (4, 3), (2, 5), (4, 5)]


def _power_iteration(edges, iterations, d=0.85):
    """x <- (1 - d)/n + d P x from the uniform vector, then x / sum(x) (the scheme the Spark
    code uses; its fixed point is networkx's PageRank)."""
    nodes = sorted({u for e in edges for u in e})
    idx = {u: i for i, u in enumerate(nodes)}
    n = len(nodes)
    out = np.zeros(n)
    for s, _ in edges:
        out[idx[s]] += 1
    r = np.full(n, 1 / n)
    for _ in range(iterations):
        new = np.zeros(n)
        for s, t in edges:
            new[idx[t]] += r[idx[s]] / out[idx[s]]
        r = (1 - d) / n + d * new
    return dict(zip(nodes, r / r.sum(), strict=True))


@pytest.mark.parametrize("driver_max_edges", [DRIVER_MAX_EDGES, 0], ids=["numpy", "spark"])
def test_pagerank_matches_networkx(spark, driver_max_edges):
    # A duplicated edge counts once (the graph is a set of edges), on either path.
    df = spark.createDataFrame([*EDGES, EDGES[0]], ["src", "dst"])
    ranks = pagerank(df, "src", "dst", iterations=20, driver_max_edges=driver_max_edges)
    got = {r["node"]: r["pagerank"] for r in ranks.collect()}
    # Same number of steps: equal up to float rounding.
    ref = _power_iteration(EDGES, 20)
    assert got == pytest.approx(ref, abs=1e-12)
    # networkx iterates to convergence; on this graph the scheme is 1.6e-4 away from it after
    # 15 steps and 2e-6 after 25 (numpy), about 2e-5 after 20, so 5e-5 tells a wrong dangling
    # or teleport term (errors of order 1e-2) from truncation.
    nxr = nx.pagerank(nx.DiGraph(EDGES), alpha=0.85, tol=1e-12)
    assert got == pytest.approx(nxr, abs=5e-5)
    assert sum(got.values()) == pytest.approx(1.0)
