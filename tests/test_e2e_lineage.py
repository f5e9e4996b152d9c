"""Lineage with the real jobs on the tiny profile (issue 32): the first day re-simulated with
another seed makes the features built on it stale; `feedrank verify` lists them, the jobs
that would build on them refuse, and rebuilding the first day makes it current and the next
day's features (built on its posts and state) still stale.

The module starts from a copy of the session's tiny days (raw logs and features).
"""

from __future__ import annotations

import pytest

from jobs import build_features, build_training_set, cli, simulate_platform
from jobs.settings import load_settings
from warehouse import lineage
from warehouse.catalog import IMPRESSION_FEATURES, IMPRESSIONS, POSTS
from warehouse.store import StaleInput

pytestmark = [pytest.mark.e2e, pytest.mark.spark]


@pytest.fixture(scope="module")
def settings(tmp_path_factory, tiny_days):
    home = tmp_path_factory.mktemp("lineage-home")
    tiny_days(home)
    patch = pytest.MonkeyPatch()
    patch.setenv("FEEDRANK_HOME", str(home))
    yield load_settings("tiny")
    patch.undo()


def test_a_resimulated_day_is_listed_refused_and_rebuilt(settings, capsys):
    d1, d2 = settings.dates()[:2]
    store = settings.open_warehouse()
    # The jobs recorded what they read, from manifests: after an in-order build, all current.
    inputs = store.info(IMPRESSION_FEATURES, d2).meta[lineage.INPUTS]
    assert inputs[IMPRESSIONS.qualified] == {
        d2: {
            "version": store.version(IMPRESSIONS, d2),
            "sha256": store.info(IMPRESSIONS, d2).checksum,
        }
    }
    assert d1 in inputs[POSTS.qualified]  # the posts of the history bound
    assert any(t.startswith("silver.state_") and d1 in days for t, days in inputs.items())
    assert lineage.stale_partitions(store) == []

    other = load_settings("tiny", {"simulator": {"seed": settings.simulator.seed + 1}})
    simulate_platform.run(other, d1)
    stale = {(s.table, s.ds) for s in lineage.stale_partitions(store)}
    assert (IMPRESSION_FEATURES.qualified, d1) in stale
    assert (IMPRESSION_FEATURES.qualified, d2) in stale  # its posts and state of d1
    assert any(t.startswith("silver.state_") and ds == d1 for t, ds in stale)

    features = next(
        s for s in lineage.stale_partitions(store) if s.table == IMPRESSION_FEATURES.qualified
    )
    assert features.ds == d1 and features.via == ()  # its own raw inputs moved
    moved = features.moved
    assert moved.table.startswith("raw.") and moved.ds == d1
    assert moved.current == store.version(lineage.as_table(moved.table), d1) != moved.recorded
    assert cli.main(["--profile", "tiny", "verify", "--layer", "silver"]) == 1
    out = capsys.readouterr().out
    assert f"rebuild: spark-submit jobs/build_features.py --profile tiny --ds {d1}" in out, out
    assert f"its input {moved}" in out, out

    with pytest.raises(StaleInput, match=f"gold.training_examples ds={d1} on silver"):
        build_training_set.run(settings, d1)
    with pytest.raises(StaleInput, match=rf"silver.impression_features ds={d2} on silver\.state_"):
        build_features.run(settings, d2)  # the lookback's state of d1 is stale

    build_features.run(settings, d1)  # raw is the log: the rebuild reads it freely
    assert lineage.stale_partitions(store, days=[d1]) == []
    # d2's features read d1's posts and state, which moved: stale until d2 is rebuilt.
    later = lineage.stale_partitions(store, days=[d2])
    features = [s for s in later if s.table == IMPRESSION_FEATURES.qualified]
    assert [(s.ds, s.moved.ds) for s in features] == [(d2, d1)]
