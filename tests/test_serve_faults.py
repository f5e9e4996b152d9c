"""The read path under faults and hostile input (issue 28), on real files and processes.

A data root with hand-made feeds is published with `feedrank feeds publish`; one real
`feedrank serve` process answers over HTTP on loopback for the whole module. The served
log failing (SQLite's own "database or disk is full", or its lock held by another process)
never fails a page: the loss is counted in /metrics, logged once and /healthz says degraded.
Malformed, huge and hostile ids, limits and cursors get a 4xx with a JSON message, never a
500 or a traceback. On the base code (c744a08) the full served log failed every page with a
500, and a huge user id, a huge or underscored limit and a cursor signed with the default
key but malformed inside were 500s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time

import httpx
import pandas as pd
import pytest
from feed_data import DS, make_feeds

from jobs.cli import main
from jobs.settings import load_settings
from warehouse.catalog import USER_NEWS_FEED, USERS
from warehouse.feeds.open import open_store
from warehouse.feeds.reader import FeedReader
from warehouse.layout import REPO_ROOT
from warehouse.store import Warehouse

FEED_USERS = [1, 2, 3]


def _publish(home) -> None:
    """Feeds of 25 items for users 1..3, raw.users 1..3, published as version DS.1."""
    warehouse = Warehouse(load_settings("tiny").root.warehouse)
    warehouse.write_arrow(USER_NEWS_FEED, DS, make_feeds(1, FEED_USERS, 25))
    users = pd.DataFrame({"user_id": FEED_USERS})
    users["created_at"] = pd.Timestamp("2025-06-01", tz="UTC")
    for column, value in [("country", "us"), ("age_bucket", "25-34"), ("gender", "f")]:
        users[column] = value
    users["primary_device"], users["is_person_author"] = "mobile", False
    warehouse.write_arrow(USERS, DS, users)
    assert main(["--profile", "tiny", "feeds", "publish", "--ds", DS]) == 0


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("serve-home")
    patch.setenv("FEEDRANK_HOME", str(root))
    _publish(root)
    yield root
    patch.undo()


@pytest.fixture(scope="module")
def server(home, tmp_path_factory):
    """`python -m jobs.cli serve` on a free loopback port; (base url, its output file)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    output = tmp_path_factory.mktemp("serve-log") / "serve.out"
    env = {**os.environ, "FEEDRANK_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "jobs.cli", "--profile", "tiny", "serve"]
    with output.open("w") as out:
        proc = subprocess.Popen(
            [*command, "--port", str(port)], env=env, cwd=REPO_ROOT, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=2)
            break
        except httpx.TransportError:
            assert proc.poll() is None, output.read_text()
            assert time.monotonic() < deadline, "feedrank serve did not start"
            time.sleep(0.2)
    yield base, output
    proc.terminate()
    proc.wait(timeout=30)


def _metric(base: str, name: str) -> float:
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


# -- the served log fails: the read does not -------------------------------------------------

_LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(120)
"""


def test_a_served_log_locked_by_another_process_degrades_but_serves(home, server):
    base, output = server
    settings = load_settings("tiny")
    store = open_store(settings.feeds, settings.root)
    served_path, logged_before = store.served_path, store.served_log().num_rows
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok", "version": f"{DS}.1"}
    locker = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_LOCKER), str(served_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout.readline().strip() == "locked"
        for _ in range(3):
            started = time.perf_counter()
            page = httpx.get(f"{base}/feed/2", params={"limit": 5})
            assert page.status_code == 200 and len(page.json()["items"]) == 5
            assert time.perf_counter() - started < 5  # waits the log's short timeout, no more
        health = httpx.get(f"{base}/healthz")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "degraded" and body["version"] == f"{DS}.1"
        assert "OperationalError: database is locked" in body["served_log"]
        assert body["served_log_dropped_rows"] == 15
        assert _metric(base, "feedrank_served_log_dropped_rows_total") == 15
        assert _metric(base, "feedrank_served_log_dropped_pages_total") == 3
        assert _metric(base, "feedrank_served_log_failing") == 1
    finally:
        locker.kill()
        locker.wait()
    assert httpx.get(f"{base}/feed/2", params={"limit": 4}).status_code == 200
    assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
    assert _metric(base, "feedrank_served_log_failing") == 0
    assert _metric(base, "feedrank_served_log_dropped_rows_total") == 15  # a total
    assert store.served_log().num_rows == logged_before + 4  # logging resumed
    store.close()
    log = output.read_text()
    assert log.count("the served log is failing") == 1  # once per outage, not per page
    assert "the served log recovered" in log and "Traceback" not in log


def test_a_full_served_log_drops_and_counts_rows_and_logs_once(home, caplog):
    """SQLite's own SQLITE_FULL, from a page limit on the served log's connection."""
    settings = load_settings("tiny")
    store = open_store(settings.feeds, settings.root)
    reader = FeedReader(store, settings.feeds)
    log_db = store._served()
    pages = log_db.execute("PRAGMA page_count").fetchone()[0]
    log_db.execute(f"PRAGMA max_page_count = {pages}")
    # Fill the last page's room with tiny rows, so that a page's rows need a new page.
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        for _ in range(100_000):
            store.record_served([(9, 9, 9, "x", "t")])
    with caplog.at_level(logging.WARNING, logger="warehouse.feeds.reader"):
        for _ in range(3):
            assert len(reader.page(1, 7).items) == 7  # the page, though its log fails
    assert reader.served_log.dropped_rows == 21 and reader.served_log.dropped_pages == 3
    assert "database or disk is full" in reader.served_log.last_error
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("the served log is failing" in m for m in warnings) == 1
    log_db.execute(f"PRAGMA max_page_count = {pages + 1000}")  # room again
    assert reader.page(1, 2).items and not reader.served_log.failing
    store.close()


# -- hostile input gets a 4xx with a message --------------------------------------------------


def _signed(body: bytes, key: str = "feedrank-local-cursor-key") -> str:
    """A cursor signed as the service signs, with the repository's old default key."""
    sig = hmac.new(key.encode(), body, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(body + sig).decode().rstrip("=")


HUGE = "9" * 5000
HOSTILE = [
    # (path, query params, status, the parameter the message names)
    ("/feed/abc", {}, 400, "user_id"),
    ("/feed/-1", {}, 400, "user_id"),
    ("/feed/+1", {}, 400, "user_id"),
    ("/feed/1.5", {}, 400, "user_id"),
    ("/feed/1e3", {}, 400, "user_id"),
    ("/feed/0x10", {}, 400, "user_id"),
    ("/feed/1_000", {}, 400, "user_id"),
    ("/feed/%20", {}, 400, "user_id"),
    ("/feed/1%00", {}, 400, "user_id"),
    ("/feed/%D9%A1%D9%A2", {}, 400, "user_id"),  # Arabic-Indic digits: isdigit() says yes
    ("/feed/%EF%BC%91", {}, 400, "user_id"),  # a fullwidth 1
    ("/feed/%F0%9F%98%80", {}, 400, "user_id"),
    ("/feed/%27%20OR%201%3D1--", {}, 400, "user_id"),
    ("/feed/9223372036854775808", {}, 400, "user_id"),  # 2**63
    (f"/feed/{HUGE}", {}, 400, "user_id"),
    ("/feed/1", {"limit": "0"}, 400, "limit"),
    ("/feed/1", {"limit": "-1"}, 400, "limit"),
    ("/feed/1", {"limit": "101"}, 400, "limit"),
    ("/feed/1", {"limit": "1e3"}, 400, "limit"),
    ("/feed/1", {"limit": "5_0"}, 400, "limit"),
    ("/feed/1", {"limit": " 5"}, 400, "limit"),
    ("/feed/1", {"limit": "nan"}, 400, "limit"),
    ("/feed/1", {"limit": "１０"}, 400, "limit"),
    ("/feed/1", {"limit": HUGE}, 400, "limit"),
    ("/feed/1", {"cursor": "not a cursor!"}, 400, "cursor"),
    ("/feed/1", {"cursor": "%%%"}, 400, "cursor"),
    ("/feed/1", {"cursor": "é"}, 400, "cursor"),
    ("/feed/1", {"cursor": "QQ"}, 400, "cursor"),
    ("/feed/1", {"cursor": "A" * 8000}, 400, "cursor"),
    ("/feed/1", {"cursor": _signed(b"x|2|1|1")}, 400, "cursor"),  # another user's
    ("/feed/1", {"cursor": _signed(b"x|1|abc|2")}, 400, "cursor"),
    ("/feed/1", {"cursor": _signed(b"x|1|-1|2")}, 400, "cursor"),
    ("/feed/1", {"cursor": _signed(b"x|1|1")}, 400, "cursor"),
    ("/feed/1", {"cursor": _signed(b"x|1|1|2|3")}, 400, "cursor"),
    ("/feed/1", {"cursor": _signed(f"x|1|{HUGE[:30]}|2".encode())}, 400, "cursor"),
    ("/feed/1", {"cursor": _signed("x|1|١|2".encode())}, 400, "cursor"),
    ("/feed/1", {"cursor": _signed(b"\xff\xfe|1|1|2")}, 400, "cursor"),
    ("/feed/77", {}, 404, None),
    ("/feed", {}, 404, None),
    ("/feed/1/2", {}, 404, None),
    ("/nothing", {}, 404, None),
]


@pytest.mark.parametrize(("path", "params", "status", "parameter"), HOSTILE)
def test_hostile_input_gets_a_4xx_with_a_message(server, path, params, status, parameter):
    base, output = server
    response = httpx.get(base + path, params=params)
    assert response.status_code == status, response.text
    body = response.json()
    assert body.get("parameter") == parameter and body["detail"]
    assert "Traceback" not in response.text and len(response.text) < 500
    assert "Traceback" not in output.read_text()


def test_other_methods_and_a_forged_but_wellformed_cursor(server):
    base, output = server
    response = httpx.post(f"{base}/feed/1")
    assert response.status_code == 405 and response.json()["detail"]
    # Signed with the key the repository once published as the default, for an item this
    # user's feed has: the data root's own key signs cursors now, so the forgery is refused.
    page = httpx.get(f"{base}/feed/1", params={"cursor": _signed(b"x|1|3|1001003")})
    assert page.status_code == 400 and "cursor" in page.json()["detail"]
    assert "Traceback" not in output.read_text()
