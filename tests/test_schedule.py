"""The calendar is the schedule: which days each scheduled DAG runs on, and what a day waits
for before it runs (jobs' `missing_inputs`), on an empty data root of its own."""

from __future__ import annotations

import pytest

from jobs.common import NothingToDo, nightly_days, retrieval_days
from jobs.settings import load_settings


@pytest.fixture
def tiny(tmp_path):
    return load_settings("tiny", environ={"FEEDRANK_HOME": str(tmp_path)})


def test_the_retrains_run_on_the_last_day_before_the_loop_and_the_loops_last_day():
    tiny, demo = load_settings("tiny", environ={}), load_settings("demo", environ={})
    assert tiny.simulator.serving.loop_days == 0 and nightly_days(tiny) == ["2026-01-08"]
    # demo: 14 days before a one-day loop (2026-01-19); the champion of the 18th serves it.
    assert demo.dates()[-1] == "2026-01-19" and demo.simulator.serving.loop_days == 1
    assert nightly_days(demo) == ["2026-01-18", "2026-01-19"]
    assert retrieval_days(demo) == ["2026-01-18"]


def test_a_simulated_day_waits_for_the_day_before(tiny):
    from jobs.simulate_platform import missing_inputs

    assert missing_inputs(tiny, "2026-01-05") is None  # the first day needs nothing
    assert "waits for the day before it, 2026-01-05" in missing_inputs(tiny, "2026-01-06")


def test_a_day_outside_the_calendar_names_the_next_day_to_build(tiny):
    from jobs.simulate_platform import missing_inputs

    with pytest.raises(NothingToDo, match=r"ds=2026-12-06 is not a day .* 2026-01-05 .. "
                       r"2026-01-08.*the next day to build is 2026-01-05"):  # fmt: skip
        missing_inputs(tiny, "2026-12-06")


def test_a_retrain_waits_for_its_days_features_and_never_runs_too_early(tiny):
    from jobs import train_rankers, train_retrieval

    for job in (train_rankers, train_retrieval):
        # tiny: 1 validation and 1 test day, so the third day is the first with a split.
        with pytest.raises(NothingToDo, match="first day a model can train on is 2026-01-07"):
            job.missing_inputs(tiny, "2026-01-06")
        with pytest.raises(NothingToDo, match="not a day of the calendar"):
            job.missing_inputs(tiny, "2026-12-06")
    assert "features" in train_rankers.missing_inputs(tiny, "2026-01-07")
    assert "engagements" in train_retrieval.missing_inputs(tiny, "2026-01-07")


@pytest.mark.airflow
def test_the_inputs_sensor_waits_passes_or_skips_with_the_reason():
    from airflow.sdk.exceptions import AirflowSkipException

    from jobs.airflow_support import inputs_ready

    def missing(answer):
        def check(settings, ds):
            if isinstance(answer, Exception):
                raise answer
            return answer

        return check

    conf = {"profile": "tiny"}
    assert inputs_ready(missing(None), conf, "2026-01-05") is True
    assert inputs_ready(missing("the day before"), conf, "2026-01-06") is False
    with pytest.raises(AirflowSkipException, match="too early"):
        inputs_ready(missing(NothingToDo("too early")), conf, "2026-01-06")


def test_a_features_backfill_builds_the_calendar_days_through_its_param_to(tiny):
    from airflow.sdk.exceptions import AirflowFailException

    from jobs.airflow_support import backfill_days, features_params

    assert features_params()["to"].value is None  # a scheduled run builds its own days
    assert backfill_days(tiny, ["2026-01-06"], None) == ["2026-01-06"]
    got = backfill_days(tiny, ["2026-01-05"], "2026-01-07")
    assert got == ["2026-01-05", "2026-01-06", "2026-01-07"]  # `feedrank demo`'s backfill
    with pytest.raises(AirflowFailException, match="to=2026-01-05 is before the run's day"):
        backfill_days(tiny, ["2026-01-07"], "2026-01-05")
