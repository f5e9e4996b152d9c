"""The read path end to end on hand-made feeds: `feedrank feed/feeds` and the HTTP app.

A tiny warehouse is written through Warehouse.write_arrow (gold.user_news_feed and
raw.users), published with `feedrank feeds publish`, then read through the CLI, FastAPI's
TestClient and one real uvicorn on loopback.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pandas as pd
import pytest
import uvicorn
from fastapi.testclient import TestClient
from feed_data import DS, make_feeds, post_of, tag_of

from jobs.cli import main
from jobs.serve import create_app
from jobs.settings import load_settings
from warehouse.catalog import USER_NEWS_FEED, USERS
from warehouse.feeds.open import open_store
from warehouse.feeds.reader import FeedReader
from warehouse.store import Warehouse

KNOWN_WITHOUT_FEED = 9  # in raw.users, not in the feeds: gets the fallback
UNKNOWN = 77


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A data root with feeds for users 1..3 (25 items each) and users 1..3 and 9 known."""
    monkeypatch.setenv("FEEDRANK_HOME", str(tmp_path))
    warehouse = Warehouse(load_settings("tiny").root.warehouse)
    warehouse.write_arrow(USER_NEWS_FEED, DS, make_feeds(1, [1, 2, 3], 25))
    users = pd.DataFrame({"user_id": [1, 2, 3, KNOWN_WITHOUT_FEED]})
    users["created_at"] = pd.Timestamp("2025-06-01", tz="UTC")
    for column, value in [("country", "us"), ("age_bucket", "25-34"), ("gender", "f")]:
        users[column] = value
    users["primary_device"], users["is_person_author"] = "mobile", False
    warehouse.write_arrow(USERS, DS, users)
    assert main(["--profile", "tiny", "feeds", "publish", "--ds", DS]) == 0
    return tmp_path


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["--profile", "tiny", *args])
    out, err = capsys.readouterr()
    return code, out, err


# -- CLI ------------------------------------------------------------------------------------
def test_cli_pages_walk_the_whole_feed_as_json(home, capsys):
    ranks, cursor = [], None
    while True:
        extra = ["--cursor", cursor] if cursor else []
        code, out, _ = cli(capsys, "feed", "2", "--limit", "10", "--json", *extra)
        assert code == 0
        page = json.loads(out)
        assert set(page) >= {"user_id", "version", "items", "next_cursor", "fallback"}
        assert page["fallback"] is False and page["user_id"] == 2
        ranks += [i["rank"] for i in page["items"]]
        assert all(i["post_id"] == post_of(1, 2, i["rank"]) for i in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert ranks == list(range(1, 26))


def test_cli_status_rollback_and_table_output(home, capsys):
    code, out, _ = cli(capsys, "feeds", "status")
    assert code == 0 and f"current   {DS}.1 ds={DS} users=3 items=75" in out
    assert "previous  none" in out
    code, out, _ = cli(capsys, "feeds", "publish", "--ds", DS)
    code, out, _ = cli(capsys, "feeds", "status")
    assert f"current   {DS}.2" in out and f"previous  {DS}.1" in out
    code, out, _ = cli(capsys, "feeds", "rollback")
    assert code == 0 and f"current version is {DS}.1" in out
    code, _, err = cli(capsys, "feeds", "rollback")
    assert code == 1 and "no previous version" in err
    code, out, _ = cli(capsys, "feed", "1", "--limit", "3")
    assert code == 0 and out.splitlines()[0].startswith(f"user 1, version {DS}.1, generated")
    assert len(out.splitlines()) == 6  # header, column names, 3 items, next cursor


def test_cli_publish_of_a_day_without_feeds_names_the_table(home, capsys):
    code, _, err = cli(capsys, "feeds", "publish", "--ds", "2026-01-06")
    assert code == 1 and "gold.user_news_feed: no committed partition" in err
    code, out, _ = cli(capsys, "feeds", "status")
    assert f"current   {DS}.1" in out  # the failed publish changed nothing


def test_cli_before_anything_is_published(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEEDRANK_HOME", str(tmp_path))
    code, _, err = cli(capsys, "feed", "1")
    assert code == 1 and "has no published version" in err


def test_cli_fallback_and_bad_input(home, capsys):
    code, out, _ = cli(capsys, "feed", str(KNOWN_WITHOUT_FEED), "--json")
    page = json.loads(out)
    assert code == 0 and page["fallback"] is True
    assert page["items"] and all(i["sources"] == ["trending"] for i in page["items"])
    code, _, err = cli(capsys, "feed", str(UNKNOWN))
    assert code == 1 and f"unknown user {UNKNOWN}" in err
    for args, parameter in [
        (["feed", "abc"], "user_id"),
        (["feed", "-5"], "user_id"),
        (["feed", "1", "--limit", "0"], "limit"),
        (["feed", "1", "--limit", "101"], "limit"),
        (["feed", "1", "--limit", "ten"], "limit"),
        (["feed", "1", "--cursor", "not-a-cursor"], "cursor"),
    ]:
        code, _, err = cli(capsys, *args)
        assert code == 2 and f"bad parameter {parameter}:" in err, (args, err)


def test_cli_refuses_a_tampered_or_foreign_cursor(home, capsys):
    _, out, _ = cli(capsys, "feed", "1", "--limit", "5", "--json")
    cursor = json.loads(out)["next_cursor"]
    tampered = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
    code, _, err = cli(capsys, "feed", "1", "--cursor", tampered)
    assert code == 2 and "bad parameter cursor: tampered" in err
    code, _, err = cli(capsys, "feed", "2", "--cursor", cursor)
    assert code == 2 and "bad parameter cursor: was issued for another user" in err


# -- HTTP -----------------------------------------------------------------------------------
@pytest.fixture
def client(home):
    settings = load_settings("tiny")
    store = open_store(settings.feeds, settings.root)
    with TestClient(create_app(FeedReader(store, settings.feeds))) as client:
        yield client
    store.close()


def test_http_pages_fallback_and_health(client):
    first = client.get("/feed/3", params={"limit": 20})
    assert first.status_code == 200
    body = first.json()
    assert [i["rank"] for i in body["items"]] == list(range(1, 21))
    second = client.get("/feed/3", params={"limit": 20, "cursor": body["next_cursor"]}).json()
    assert [i["rank"] for i in second["items"]] == list(range(21, 26))
    assert second["next_cursor"] is None and second["cursor_status"] == "continued"
    assert {tag_of(i["post_id"]) for i in second["items"]} == {1}
    fallback = client.get(f"/feed/{KNOWN_WITHOUT_FEED}").json()
    assert fallback["fallback"] is True
    assert client.get("/healthz").json() == {"status": "ok", "version": f"{DS}.1"}


@pytest.mark.parametrize(
    ("path", "params", "status", "parameter"),
    [
        (f"/feed/{UNKNOWN}", {}, 404, None),
        ("/feed/abc", {}, 400, "user_id"),
        ("/feed/99999999999999999999", {}, 400, "user_id"),
        ("/feed/1", {"limit": "0"}, 400, "limit"),
        ("/feed/1", {"limit": "1000"}, 400, "limit"),
        ("/feed/1", {"limit": "x"}, 400, "limit"),
        ("/feed/1", {"cursor": "Zm9vYmFyYmF6cXV4cXV1eHh4eHh4"}, 400, "cursor"),
    ],
)
def test_http_bad_input(client, path, params, status, parameter):
    response = client.get(path, params=params)
    assert response.status_code == status
    body = response.json()
    assert body.get("parameter") == parameter
    assert (parameter or f"unknown user {UNKNOWN}") in body["detail"]


def test_http_metrics_count_requests_errors_and_latency(client):
    client.get("/feed/1")
    client.get("/feed/1")
    client.get("/feed/abc")
    text = client.get("/metrics").text
    assert 'feedrank_http_requests_total{route="/feed/{user_id}",status="200"} 2.0' in text
    assert 'feedrank_http_requests_total{route="/feed/{user_id}",status="400"} 1.0' in text
    assert 'feedrank_http_errors_total{route="/feed/{user_id}"} 1.0' in text
    assert 'feedrank_http_latency_seconds_count{route="/feed/{user_id}"} 3.0' in text


def test_the_root_links_every_endpoint_and_docs_describes_them(client):
    index = client.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert f"feed version {DS}.1" in index.text
    for path in ("/docs", "/healthz", "/metrics"):
        assert f'<a href="{path}">' in index.text, path
    assert "<code>/feed/{user_id}</code>" in index.text  # a template, not a link
    docs = client.get("/docs")
    assert docs.status_code == 200 and "<script" not in docs.text  # no CDN needed
    for name in ("GET /feed/{user_id}", "GET /healthz", "GET /metrics", "limit", "cursor"):
        assert name in docs.text, name
    assert "trending fallback" in docs.text  # the route's own docstring
    assert client.get("/openapi.json").json()["paths"].keys() == {
        "/feed/{user_id}",
        "/healthz",
        "/metrics",
    }


def test_a_real_uvicorn_on_loopback(home):
    settings = load_settings("tiny")
    store = open_store(settings.feeds, settings.root)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(FeedReader(store, settings.feeds)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        page = httpx.get(f"{base}/feed/1", params={"limit": 5}).json()
        assert [i["post_id"] for i in page["items"]] == [post_of(1, 1, r) for r in range(1, 6)]
        bad = httpx.get(f"{base}/feed/1", params={"limit": -1})
        assert bad.status_code == 400 and bad.json()["parameter"] == "limit"
        assert httpx.get(f"{base}/feed/{UNKNOWN}").status_code == 404
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


def test_status_names_an_input_republished_since_the_publish(home, capsys):
    warehouse = Warehouse(load_settings("tiny").root.warehouse)
    built = warehouse.version(USER_NEWS_FEED, DS)
    code, out, _ = cli(capsys, "feeds", "status")
    assert code == 0 and "stale" not in out
    assert f"built from user_news_feed={built} users={warehouse.version(USERS, DS)}" in out
    warehouse.write_arrow(USER_NEWS_FEED, DS, make_feeds(2, [1, 2, 3], 25))  # upstream rebuilt
    now = warehouse.version(USER_NEWS_FEED, DS)
    code, out, _ = cli(capsys, "feeds", "status")
    assert code == 0
    assert f"stale: gold.user_news_feed ds={DS}: built from version {built}, now {now}" in out
    assert main(["--profile", "tiny", "feeds", "publish", "--ds", DS]) == 0
    code, out, _ = cli(capsys, "feeds", "status")
    assert "stale" not in out and f"user_news_feed={now}" in out
