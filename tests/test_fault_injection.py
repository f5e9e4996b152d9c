"""Fault injection on the tiny profile, with real files and real processes (issue 17).

Each corruption is written with pyarrow into a staged or committed partition on disk, and the
step then runs as the DAG runs it (simulate -> validate -> publish, build_features). Kills are
SIGKILLs of a real publishing process at chosen points. The module has its own data root.
Tests run in file order: they share one staged day and undo each corruption.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import jobs.simulate_platform as job
from jobs import build_features, reading
from jobs.settings import load_settings
from warehouse.catalog import (
    ENGAGEMENTS,
    IMPRESSION_FEATURES,
    IMPRESSIONS,
    POSTS,
    RAW_TABLES,
    SIMULATED_TABLES,
    TRUTH_IMPRESSIONS,
    C,
    Layer,
    truth_column,
)
from warehouse.contracts import DataContractError
from warehouse.store import MARKER, Warehouse, WarehouseError

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

DAYS = load_settings("tiny").dates()[:2]
FIRST, DAY = DAYS


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv("FEEDRANK_HOME", str(tmp_path_factory.mktemp("fault-home")))
    yield load_settings("tiny")
    patch.undo()


@pytest.fixture(scope="module")
def store(settings):
    return Warehouse(settings.root.warehouse)


@pytest.fixture(scope="module")
def staged(settings, store, spark):
    """The first day published, the second staged; the staged files' bytes, to undo with."""
    job.run(settings, FIRST)
    job.simulate(settings, DAY)
    return {t.name: _file(store, t).read_bytes() for t in SIMULATED_TABLES}


@pytest.fixture
def pristine(store, staged):
    """Put the staged files back as simulated after a test corrupts them."""
    yield
    for t in SIMULATED_TABLES:
        _file(store, t).write_bytes(staged[t.name])


def _file(store: Warehouse, t, *, staged: bool = True):
    return store.partition_dir(t, DAY if staged else FIRST, staged=staged) / "part-00000.parquet"


def _rewrite(store, t, change, *, staged: bool = True) -> None:
    """Corrupt a partition's file in place, as a bad writer or a bad disk would."""
    path = _file(store, t, staged=staged)
    pq.write_table(change(pq.read_table(path)), path)


def _failures(err: DataContractError) -> set[tuple[str, str | None, str]]:
    return {(f.table, f.column, f.expectation) for f in err.failures}


def _nothing_published(store) -> None:
    for t in SIMULATED_TABLES:
        assert DAY not in store.partitions(t), t.name


# -- bad data that was published (1, 3, 4) and the messages it gives (5) ------------------


def _with_type(column: str, arrow_type):
    def change(data: pa.Table) -> pa.Table:
        i = data.schema.get_field_index(column)
        return data.set_column(i, column, data.column(column).cast(arrow_type))

    return change


FILE_CASES = {
    # 1: a dropped column used to be read back as nulls and pass.
    "impressions without device": (IMPRESSIONS, lambda d: d.drop_columns([C.DEVICE]), C.DEVICE,
                                   "expect_column_to_exist", "absent from part-00000.parquet"),
    "posts without length": (POSTS, lambda d: d.drop_columns([C.LENGTH]), C.LENGTH,
                             "expect_column_to_exist", "absent from part-00000.parquet"),
    # 5: type drift and truncation used to fail as raw Spark errors naming a path only.
    "position int -> string": (IMPRESSIONS, _with_type(C.POSITION, pa.string()), C.POSITION,
                               "expect_column_values_to_be_of_type",
                               "part-00000.parquet has string, the catalog says int32"),
    "served_at timestamp -> int64": (IMPRESSIONS, _with_type(C.SERVED_AT, pa.int64()),
                                     C.SERVED_AT, "expect_column_values_to_be_of_type",
                                     "has int64, the catalog says timestamp[us, tz=UTC]"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(FILE_CASES))
def test_a_staged_file_that_disagrees_with_the_catalog_is_rejected(name, settings, store, pristine):
    t, change, column, check, detail = FILE_CASES[name]
    _rewrite(store, t, change)
    with pytest.raises(DataContractError) as err:
        job.validate(settings, DAY)
    assert _failures(err.value) == {(t.name, column, check)}
    assert f"{t.qualified} ds={DAY}: column {column} failed {check}" in str(err.value)
    assert detail in str(err.value)
    with pytest.raises(WarehouseError, match="has not passed its contract"):
        job.publish(settings, DAY)
    _nothing_published(store)


def test_a_truncated_file_is_rejected_by_name(settings, store, pristine):
    path = _file(store, ENGAGEMENTS)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataContractError) as err:
        job.validate(settings, DAY)
    assert _failures(err.value) == {(ENGAGEMENTS.name, None, "parquet_file_readable")}
    assert f"raw.engagements ds={DAY}: table failed parquet_file_readable" in str(err.value)
    assert "part-00000.parquet" in str(err.value)


def _bad_values(data: pa.Table, column: str, values: dict[int, float]) -> pa.Table:
    col = data.column(column).to_pylist()
    for row, value in values.items():
        col[row] = value
    return data.set_column(data.schema.get_field_index(column), column, pa.array(col))


def test_bad_values_are_rejected_with_example_rows_and_never_published(settings, store, pristine):
    # 3: truth had no contract; 5: a NaN quoted no row. 500 truth rows go missing too.
    def truth(data: pa.Table) -> pa.Table:
        bad = _bad_values(data, truth_column("click"), {0: float("nan"), 1: 1.7, 2: -0.3})
        return bad.slice(0, bad.num_rows - 500)

    def dwell(data: pa.Table) -> pa.Table:
        clicks = pc.equal(data.column(C.ACTION), "click").to_pylist()
        first, second = [i for i, is_click in enumerate(clicks) if is_click][:2]
        return _bad_values(data, C.DWELL_S, {first: float("nan"), second: -5.0})

    _rewrite(store, TRUTH_IMPRESSIONS, truth)
    _rewrite(store, ENGAGEMENTS, dwell)
    with pytest.raises(DataContractError) as err:
        job.validate(settings, DAY)
    message = str(err.value)
    click = truth_column("click")
    assert _failures(err.value) >= {
        (TRUTH_IMPRESSIONS.name, None, "expect_table_row_count_to_equal"),
        (TRUTH_IMPRESSIONS.name, click, "expect_column_values_to_be_in_set"),  # the NaN
        (TRUTH_IMPRESSIONS.name, click, "expect_column_values_to_be_between"),
        (ENGAGEMENTS.name, C.DWELL_S, "expect_column_values_to_be_in_set"),  # the NaN
        (ENGAGEMENTS.name, C.DWELL_S, "expect_column_values_to_be_between"),
    }
    assert f"{click} is not NaN): 1 unexpected, e.g. [impression_id=" in message
    assert f"{click}=nan]" in message
    assert "dwell_s is not NaN): 1 unexpected, e.g. [impression_id=" in message
    assert "dwell_s=-5.0" in message
    assert "(one row per impression of ds (" in message
    # 4: publish after a failed validation used to publish the staged day anyway.
    with pytest.raises(WarehouseError, match="has not passed its contract"):
        job.publish(settings, DAY)
    _nothing_published(store)


def test_files_changed_after_validation_are_not_published(settings, store, staged):
    job.validate(settings, DAY)  # the simulated day is sound
    path = _file(store, ENGAGEMENTS)
    _rewrite(store, ENGAGEMENTS, lambda d: d.slice(0, d.num_rows - 500))
    with pytest.raises(WarehouseError, match=r"raw\.engagements.*changed after.*validated"):
        job.publish(settings, DAY)
    _nothing_published(store)
    path.write_bytes(staged[ENGAGEMENTS.name])  # back to the bytes that passed


# -- a day is one unit (6) --------------------------------------------------------------------

_KILLER = """
import os, signal, sys
from pathlib import Path
import jobs.simulate_platform as job
from jobs.settings import load_settings
from warehouse import store

target, nth = sys.argv[1], int(sys.argv[2])
calls = []
real = {"replace": os.replace, "unlink": Path.unlink}[target]

def die_on_nth(*args, **kwargs):
    calls.append(args)
    if len(calls) == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)

if target == "replace":
    store.os.replace = die_on_nth
else:
    Path.unlink = die_on_nth
job.publish(load_settings("tiny"), sys.argv[3])
"""


def _publish_killed(settings, target: str, nth: int) -> int:
    env = {**os.environ, "FEEDRANK_HOME": str(settings.home), "PYSPARK_PYTHON": sys.executable}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLER), target, str(nth), DAY],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode


def _visible(store) -> dict[str, bool]:
    return {t.name: DAY in store.partitions(t) for t in SIMULATED_TABLES}


def test_a_publish_killed_at_any_point_shows_no_partial_day(settings, store, staged):
    snapshot = {t.name: store.read_arrow(t, DAY, staged=True) for t in SIMULATED_TABLES}
    raw = [t.name for t in RAW_TABLES]
    # (call to die on, which call): before the truth commit, before the raw layer's commit,
    # and after it, while unstaging.
    for target, nth, truth_seen, raw_seen in [
        ("replace", 1, False, False),
        ("replace", 2, True, False),
        ("unlink", 3, True, True),
    ]:
        assert _publish_killed(settings, target, nth) == -signal.SIGKILL
        seen = _visible(store)
        assert seen[TRUTH_IMPRESSIONS.name] is truth_seen, (target, nth)
        assert {seen[name] for name in raw} == {raw_seen}, (target, nth, seen)  # all or none
    job.publish(settings, DAY)  # the rerun finishes the day, with the data that was staged
    for t in SIMULATED_TABLES:
        assert store.read_arrow(t, DAY).equals(snapshot[t.name]), t.name


# -- overlapping runs (7) ---------------------------------------------------------------------

_HOLDER = """
import sys, time
from pathlib import Path
from warehouse.catalog import Layer
from warehouse.store import Warehouse

with Warehouse(Path(sys.argv[1])).lock(Layer.RAW, sys.argv[2], job="a test's run"):
    print("locked", flush=True)
    time.sleep(300)
"""


def test_an_overlapping_run_fails_fast_and_a_killed_one_frees_the_day(settings, store):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_HOLDER), str(store.root), DAY],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.perf_counter()
        with pytest.raises(WarehouseError) as err:
            job.simulate(settings, DAY)
        assert time.perf_counter() - started < 30  # no waiting on the other run
        message = str(err.value)
        assert f"raw ds={DAY} is being written by a test's run (pid {holder.pid}" in message
        assert "overlapping simulate_platform.simulate" in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with store.lock(Layer.RAW, DAY, job="the next run"):  # kill -9 released it
        pass


# -- a committed day is checked on read (issue 28) -----------------------------------------


def _recommit(store: Warehouse, t, ds: str) -> None:
    """Make a version's marker agree with its (rewritten) files again."""
    folder = store.partition_dir(t, ds)
    marker = json.loads((folder / MARKER).read_text())
    marker["rows"] = store.footer_rows(t, ds, folder.name)
    marker["checksum"] = store.files_checksum(folder)
    (folder / MARKER).write_text(json.dumps(marker))


def test_half_the_rows_of_a_published_day_stop_the_features(settings, store):
    """Issue 28: build_features read 5,291 rows of a raw.impressions day whose marker says
    10,582 and published features for them (the base code c744a08 still does)."""
    path = _file(store, IMPRESSIONS, staged=False)
    original = path.read_bytes()
    n = pq.read_metadata(path).num_rows
    _rewrite(store, IMPRESSIONS, lambda d: d.slice(0, n // 2), staged=False)
    try:
        message = (
            rf"raw\.impressions ds={FIRST}: the files of version v-\S+ hold {n // 2} rows, "
            rf"its commit marker says {n}; refusing to read them"
        )
        with pytest.raises(WarehouseError, match=message):
            build_features.run(settings, FIRST)
        assert FIRST not in store.partitions(IMPRESSION_FEATURES)
    finally:
        path.write_bytes(original)


# -- state is published with the features, after their contract (2) -------------------------


def test_features_that_fail_their_contract_publish_no_state(settings, store):
    # A duplicated impression in a committed raw day, written past the contracts by a writer
    # that committed it properly (its marker records the rows and checksum it wrote).
    _rewrite(store, IMPRESSIONS, lambda d: pa.concat_tables([d, d.slice(0, 1)]), staged=False)
    _recommit(store, IMPRESSIONS, FIRST)
    with pytest.raises(DataContractError) as err:
        build_features.run(settings, FIRST)
    assert (IMPRESSION_FEATURES.name, C.IMPRESSION_ID, "expect_column_values_to_be_unique") in (
        _failures(err.value)
    )
    assert FIRST not in store.partitions(IMPRESSION_FEATURES)
    for name in build_features.TILES:
        assert FIRST not in store.partitions(reading.state_table(name)), name
