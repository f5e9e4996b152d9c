"""Secrets stay secret: the cursor key is the data root's own (owner-only), never the
repository's; secret settings are redacted wherever settings are written; error bodies carry
no paths; `feedrank serve` refuses to expose a development key beyond loopback."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from feed_data import batch

from jobs.cli import main
from jobs.common import log_settings
from jobs.serve import UnsafeExposure, check_exposure, create_app
from jobs.settings import describe, load_settings
from warehouse.config import FeedSettings
from warehouse.feeds.open import cursor_key, open_store
from warehouse.feeds.reader import Cursor, FeedReader
from warehouse.layout import DataRoot, DataRootError

OLD_DEFAULT_KEY = b"feedrank-local-cursor-key"  # the key the repository used to ship


def test_the_cursor_key_is_generated_per_data_root_and_owner_only(tmp_path):
    first, second = DataRoot(tmp_path / "a"), DataRoot(tmp_path / "b")
    key = cursor_key(FeedSettings(), first)
    assert len(key) == 64 and key != OLD_DEFAULT_KEY
    assert cursor_key(FeedSettings(), first) == key  # kept: cursors outlive a restart
    assert cursor_key(FeedSettings(), second) != key  # every root its own
    path = first.secrets / "cursor_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.secrets.stat().st_mode) == 0o700
    configured = FeedSettings(cursor_key="a-configured-key-of-some-length")
    assert cursor_key(configured, first) == b"a-configured-key-of-some-length"


def test_a_key_file_open_to_others_is_refused(tmp_path):
    root = DataRoot(tmp_path)
    cursor_key(FeedSettings(), root)
    (root.secrets / "cursor_key").chmod(0o644)
    with pytest.raises(DataRootError, match=r"cursor_key is open to other users .*chmod 600"):
        cursor_key(FeedSettings(), root)


def test_a_cursor_forged_with_the_old_default_key_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEEDRANK_HOME", str(tmp_path))
    settings = load_settings("tiny")
    store = open_store(settings.feeds, settings.root)
    version = store.publish(batch(1, [1], 30)).version
    store.close()
    assert main(["--profile", "tiny", "feed", "1", "--limit", "10", "--json"]) == 0
    issued = json.loads(capsys.readouterr().out)["next_cursor"]
    forged = Cursor(version, 1, 10, 1_001_010).encode(OLD_DEFAULT_KEY)
    assert forged != issued
    assert main(["--profile", "tiny", "feed", "1", "--cursor", forged]) == 2
    assert "bad parameter cursor: tampered" in capsys.readouterr().err
    assert main(["--profile", "tiny", "feed", "1", "--cursor", issued, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"][0]["rank"] == 11  # the issued one works


def test_secret_settings_are_redacted_in_logs_and_mlflow_dumps(tmp_path, caplog):
    key, password = "a-very-secret-cursor-key-0123", "hunter2-redis-password"
    settings = load_settings(
        "tiny",
        {
            "home": str(tmp_path),
            "feeds": {"cursor_key": key, "store_url": f"redis://app:{password}@cache:6380/1"},
        },
    )
    assert settings.feeds.cursor_key.get_secret_value() == key  # the value is still there
    assert settings.feeds.store_url == f"redis://app:{password}@cache:6380/1"
    with caplog.at_level(logging.INFO, logger="feedrank"):
        log_settings("some_job", settings)
    # describe(): the jobs' logs; model_dump(mode="json"): MLflow's settings.json and params
    for text in (caplog.text, describe(settings), json.dumps(settings.model_dump(mode="json"))):
        assert key not in text and password not in text
        assert "redis://app:**********@cache:6380/1" in text
    assert json.loads(describe(settings))["feeds"]["cursor_key"] == "**********"


def test_an_empty_store_answers_503_without_a_path(tmp_path):
    settings = load_settings("tiny", {"home": str(tmp_path)})
    store = open_store(settings.feeds, settings.root)
    with TestClient(create_app(FeedReader(store, settings.feeds))) as client:
        for path in ("/feed/1", "/healthz"):
            response = client.get(path)
            assert response.status_code == 503
            assert str(tmp_path) not in response.text and ".sqlite" not in response.text
            assert "no" in response.json().get("detail", response.json().get("status"))
    store.close()


def test_serving_a_development_key_beyond_loopback_is_refused(tmp_path):
    check_exposure("127.0.0.1", OLD_DEFAULT_KEY)  # loopback: a developer's machine
    check_exposure("0.0.0.0", b"0123456789abcdef0123456789abcdef")  # a real key: anywhere
    for host in ("0.0.0.0", "10.1.2.3", "feeds.example.com"):
        with pytest.raises(UnsafeExposure, match=f"refusing to serve on {host}"):
            check_exposure(host, OLD_DEFAULT_KEY)
    env = {
        **os.environ,
        "FEEDRANK_HOME": str(tmp_path),
        "FEEDRANK__FEEDS__CURSOR_KEY": OLD_DEFAULT_KEY.decode(),
    }
    feedrank = Path(sys.executable).with_name("feedrank")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    done = subprocess.run(
        [str(feedrank), "--profile", "tiny", "serve", "--host", "0.0.0.0", "--port", port],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,  # on the old code the server starts (and would run until killed)
    )
    assert done.returncode == 1
    assert "refusing to serve on 0.0.0.0: feeds.cursor_key is a development key" in done.stderr
    assert "Traceback" not in done.stderr
