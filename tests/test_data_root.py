"""A data root belongs to one profile: `feedrank env` exports it with its data root, and a job
run with another profile's settings on it is refused before it writes anything."""

from __future__ import annotations

import shlex

import pytest

from jobs import build_features, simulate_platform
from jobs.cli import main as feedrank
from jobs.common import OutsideCalendar, check_day, range_args
from jobs.settings import available_profiles, load_settings
from warehouse.layout import DataRoot, DataRootError


def exported(text: str) -> dict[str, str]:
    """The variables of `export K=V` lines, unquoted as the shell would."""
    out = {}
    for line in text.splitlines():
        key, value = shlex.split(line.removeprefix("export "))[0].split("=", 1)
        out[key] = value
    return out


def files_under(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


@pytest.mark.parametrize("profile", available_profiles())
def test_env_exports_the_profile_and_its_data_root(profile, tmp_path, monkeypatch, capsys):
    home = tmp_path / profile
    monkeypatch.setenv("FEEDRANK_HOME", str(home))
    assert feedrank(["--profile", profile, "env"]) == 0
    env = exported(capsys.readouterr().out)
    assert env["FEEDRANK_PROFILE"] == profile
    assert env["FEEDRANK_HOME"] == str(home.resolve())
    assert env["AIRFLOW_HOME"] == str((home / "airflow").resolve())
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"  # the local UI is not on every interface
    assert DataRoot(home).owner() == profile  # the root now names its profile


def test_env_refuses_a_root_of_another_profile(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEEDRANK_HOME", str(tmp_path))
    DataRoot(tmp_path).claim("demo")
    assert feedrank(["--profile", "tiny", "env"]) == 2
    out = capsys.readouterr()
    assert out.out == ""  # nothing for `eval` to export
    assert "belongs to profile 'demo', not 'tiny'" in out.err and str(tmp_path) in out.err


def test_api_host_is_a_setting(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEEDRANK_HOME", str(tmp_path))
    monkeypatch.setenv("FEEDRANK__AIRFLOW__API_HOST", "0.0.0.0")
    assert feedrank(["--profile", "tiny", "env"]) == 0
    assert exported(capsys.readouterr().out)["AIRFLOW__API__HOST"] == "0.0.0.0"


def test_a_root_is_claimed_once(tmp_path):
    root = DataRoot(tmp_path / "new")
    assert root.owner() is None
    root.claim("tiny").claim("tiny")  # idempotent for its own profile
    assert root.owner() == "tiny"
    assert files_under(root.home) == ["profile"]  # no temporary file left behind
    with pytest.raises(DataRootError, match=r"belongs to profile 'tiny', not 'demo'"):
        root.claim("demo")
    assert root.owner() == "tiny"


def test_checkpoints_keep_one_place_per_job_day_and_model(tmp_path):
    # A retried or killed training task resumes only if every try gets the same folder; the
    # folder is made by the first checkpoint written into it, not by asking for it.
    folder = DataRoot(tmp_path).checkpoint_folder("train_rankers", "2026-01-18", "dnn")
    assert folder.path == tmp_path / "artifacts/checkpoints/train_rankers/2026-01-18/dnn"
    assert not folder.path.exists()


@pytest.mark.parametrize("job", [simulate_platform.simulate, build_features.run])
def test_a_job_refuses_another_profiles_root_before_writing(job, tmp_path):
    DataRoot(tmp_path).claim("demo")
    before = files_under(tmp_path)
    tiny = load_settings("tiny", {"home": str(tmp_path)})
    with pytest.raises(DataRootError) as err:
        job(tiny, tiny.dates()[0])
    message = str(err.value)
    assert "'demo'" in message and "'tiny'" in message and str(tmp_path) in message
    assert files_under(tmp_path) == before


def test_a_task_fails_without_retry_on_another_profiles_root(tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from jobs.airflow_support import settings_from

    monkeypatch.setenv("FEEDRANK_HOME", str(tmp_path))
    DataRoot(tmp_path).claim("demo")
    with pytest.raises(AirflowFailException, match="belongs to profile 'demo', not 'tiny'"):
        settings_from({"profile": "tiny"})
    assert settings_from({"profile": "demo"}).home == tmp_path.resolve()


def test_days_outside_the_calendar_are_named(tmp_path):
    tiny = load_settings("tiny", {"home": str(tmp_path)})
    first, last = tiny.dates()[0], tiny.dates()[-1]
    assert check_day(tiny, last) == last
    for ds in ("2026-11-23", "2026-01-04", None):
        with pytest.raises(OutsideCalendar, match=f"4 days, {first} .. {last}"):
            check_day(tiny, ds)
    with pytest.raises(
        OutsideCalendar, match="ds=2026-11-23 is not a day of the calendar of profile 'tiny'"
    ):
        simulate_platform.simulate(tiny, "2026-11-23")
    assert files_under(tmp_path) == []  # refused before anything was written


def test_a_range_of_days_is_the_calendar_days_between_its_ends(tmp_path, monkeypatch):
    monkeypatch.setenv("FEEDRANK_HOME", str(tmp_path))
    days = load_settings("tiny").dates()
    _, got = range_args("x", ["--profile", "tiny", "--from", days[0], "--to", days[2]])
    assert got == days[:3]
    _, got = range_args("x", ["--profile", "tiny", "--ds", days[1]])
    assert got == [days[1]]  # a nightly run is the one-day range
    with pytest.raises(OutsideCalendar, match="ds=2026-11-23 is not a day"):
        range_args("x", ["--profile", "tiny", "--from", days[0], "--to", "2026-11-23"])
    for bad in (["--from", days[2], "--to", days[0]], ["--from", days[0]], []):
        with pytest.raises(SystemExit):
            range_args("x", ["--profile", "tiny", *bad])
