"""Settings: profiles load, overrides apply, unknown keys fail loudly."""

from __future__ import annotations

import pytest

from jobs.settings import SettingsError, available_profiles, load_settings


def test_every_profile_loads_and_sizes_grow():
    assert set(available_profiles()) == {"tiny", "demo", "large", "mind", "ebnerd", "raw"}
    sizes = {p: load_settings(p, environ={}).simulator.n_users for p in ("tiny", "demo", "large")}
    assert sizes["tiny"] < sizes["demo"] < sizes["large"]


@pytest.mark.parametrize("fmt", ["mind", "ebnerd", "raw"])
def test_a_log_profile_takes_its_calendar_from_the_ingest(tmp_path, fmt):
    env = {"FEEDRANK_HOME": str(tmp_path)}
    settings = load_settings(fmt, environ=env)
    assert settings.log.format == fmt and not settings.has_truth
    # Before any ingest the calendar is unknown, and a job says what to do.
    with pytest.raises(SettingsError, match=f"no {fmt} log has been ingested into .* first"):
        settings.dates()
    with pytest.raises(SettingsError, match=f"feedrank --profile {fmt} ingest --format {fmt}"):
        _ = settings.first_day
    # What an ingest records in the data root, every later job reads: files and calendar.
    recorded = {"format": fmt, "path": "/logs/x", "items": "meta.tsv"}
    settings.root.remember_log(recorded | {"start_date": "2019-11-09", "days": 3})
    later = load_settings(fmt, environ=env)
    assert later.dates() == ["2019-11-09", "2019-11-10", "2019-11-11"]
    assert str(later.log.path) == "/logs/x" and later.log.file("items") == "meta.tsv"
    # The environment and explicit overrides still win; another format's root is not read.
    assert load_settings(fmt, {"log": {"days": 1}}, environ=env).dates() == ["2019-11-09"]
    other = "ebnerd" if fmt != "ebnerd" else "mind"
    assert load_settings(other, environ=env).log.start_date is None


def test_profile_and_seed_from_environment(tmp_path):
    env = {"FEEDRANK_PROFILE": "demo", "FEEDRANK_SEED": "11", "FEEDRANK_HOME": str(tmp_path)}
    settings = load_settings(environ=env)
    assert settings.profile == "demo"
    assert settings.simulator.seed == 11
    assert settings.home == tmp_path.resolve()


def test_nested_environment_override_is_parsed():
    env = {"FEEDRANK__SPARK__MASTER": "spark://h:7077", "FEEDRANK__SIMULATOR__DAYS": "2"}
    settings = load_settings("tiny", environ=env)
    assert settings.spark.master == "spark://h:7077"
    assert settings.simulator.days == 2
    assert settings.dates() == ["2026-01-05", "2026-01-06"]


def test_explicit_overrides_win_over_environment():
    settings = load_settings("tiny", {"simulator": {"seed": 3}}, environ={"FEEDRANK_SEED": "9"})
    assert settings.simulator.seed == 3


@pytest.mark.parametrize(
    "overrides, environ, message",
    [
        ({"simulator": {"n_userz": 3}}, {}, "n_userz"),
        ({"sparkk": {}}, {}, "sparkk"),
        ({"simulator": {"days": "many"}}, {}, "days"),
        (None, {"FEEDRANK__SIMULATOR__NOPE": "1"}, "nope"),
        (None, {"FEEDRANK_PROFLE": "demo"}, "FEEDRANK_PROFLE"),
    ],
)
def test_unknown_or_mistyped_keys_fail(overrides, environ, message):
    with pytest.raises(SettingsError, match=message):
        load_settings("tiny", overrides, environ=environ)


def test_unknown_profile_names_the_choices():
    with pytest.raises(SettingsError, match="tiny"):
        load_settings("huge", environ={})


def test_profiles_get_their_own_default_data_root():
    tiny, demo = (load_settings(p, environ={}) for p in ("tiny", "demo"))
    assert tiny.home != demo.home
    assert tiny.home.name == "tiny" and demo.home.name == "demo"


def test_mlflow_defaults_to_the_data_root_and_a_server_is_configuration():
    local = load_settings("tiny", environ={"FEEDRANK_HOME": "/data/fr"})
    assert local.tracking_uri == "sqlite:////data/fr/mlflow/mlflow.db"
    server = load_settings("tiny", environ={"FEEDRANK__MLFLOW__TRACKING_URI": "http://mlflow:5000"})
    assert server.tracking_uri == "http://mlflow:5000"


def test_training_params_become_training_overrides():
    from jobs.airflow_support import settings_from

    s = settings_from({"profile": "tiny", "train_days": 2, "negative_rate": 0.05, "seed": None})
    assert (s.training.train_days, s.training.negative_rate) == (2, 0.05)
    assert settings_from({"profile": "tiny"}).training == load_settings("tiny").training


@pytest.mark.parametrize(
    "overrides, message",
    [
        # A geometric session depth has mean >= 1; 0 divided by zero in simulator.feed.
        ({"simulator": {"feed_depth": 0}}, "feed_depth"),
        ({"simulator": {"days": 0}}, "days"),
        ({"simulator": {"clickbait_author_share": 1.5}}, "clickbait_author_share"),
        ({"simulator": {"behaviour": {"dwell_sigma": -1}}}, "dwell_sigma"),
        ({"simulator": {"n_person_authors": 600}}, "n_person_authors"),  # tiny has 500 users
        ({"features": {"prior_rate": 2}}, "prior_rate"),
        ({"features": {"pagerank_iterations": 0}}, "pagerank_iterations"),
    ],
)
def test_out_of_range_values_fail_with_their_field(overrides, message):
    with pytest.raises(SettingsError, match=message):
        load_settings("tiny", overrides, environ={})


def test_airflow_reads_dag_processor_limits_that_keep_every_dag_listed():
    """The values Airflow itself reads (conftest applied airflow_environ before its import):
    a slow import ends as an import error before the processor is killed, files are not
    re-parsed back to back, and a DAG is deactivated only after several failed parse cycles."""
    from airflow.configuration import conf

    import_timeout = conf.getfloat("core", "dagbag_import_timeout")
    processor_timeout = conf.getint("dag_processor", "dag_file_processor_timeout")
    interval = conf.getint("dag_processor", "min_file_process_interval")
    stale = conf.getint("dag_processor", "stale_dag_threshold")
    assert import_timeout < processor_timeout
    assert interval >= 60  # Airflow's 30 s re-parses 8 files twice a minute
    assert stale > 2 * (interval + processor_timeout)
    assert conf.getfloat("workers", "execution_api_timeout") >= 30  # Airflow's 5 s, under load


def test_the_profile_params_help_gives_each_profiles_own_calendar(tmp_path):
    from jobs.airflow_support import params
    from jobs.settings import SettingsError

    help_text = params()["profile"].description
    for name in available_profiles():
        settings = load_settings(name, environ={})
        assert f"{name} (" in help_text
        try:
            days = settings.dates()
        except SettingsError:  # a log profile whose log is not ingested in its root yet
            assert (
                f"{name} (the {settings.log.format} log, its calendar from `feedrank ingest`)"
                in help_text
            )
            continue
        assert f"{len(days)} days, {days[0]} .. {days[-1]})" in help_text, name
    assert "tiny (500 simulated users, 4 days, 2026-01-05 .. 2026-01-08)" in help_text


@pytest.mark.parametrize(
    ("host", "exposed"),
    [("127.0.0.1", "True"), ("::1", "True"), ("localhost", "True"), ("0.0.0.0", "False"),
     ("192.168.1.5", "False"), ("myhost", "False")],
)  # fmt: skip
def test_a_local_ui_shows_why_a_trigger_was_refused_one_on_the_network_does_not(
    tmp_path, host, exposed
):
    from jobs.airflow_env import airflow_environ
    from warehouse.layout import DataRoot

    assert airflow_environ(DataRoot(tmp_path), host)["AIRFLOW__API__EXPOSE_STACKTRACE"] == exposed


def test_the_ui_runs_airflows_parts_without_the_log_servers_that_listen_everywhere():
    from jobs.airflow_env import ui_commands

    commands = {cmd[0]: cmd[1:] for cmd in ui_commands("127.0.0.1")}
    assert sorted(commands) == ["api-server", "dag-processor", "scheduler", "triggerer"]
    assert commands["scheduler"] == commands["triggerer"] == ["--skip-serve-logs"]
    assert commands["api-server"] == ["--host", "127.0.0.1"]
