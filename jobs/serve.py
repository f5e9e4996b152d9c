"""The feed read path over HTTP: FastAPI on uvicorn (`feedrank serve`).

    GET /feed/{user_id}?limit=20&cursor=...   a page, as `feedrank feed --json` prints it
    GET /healthz                              200 with the current version ("ok", or
                                              "degraded" while the served log fails), 503
                                              without one
    GET /metrics                              Prometheus text: requests, errors, latency,
                                              served-log rows dropped
    GET /                                     an index linking the endpoints
    GET /docs                                 the endpoints and their parameters (OpenAPI:
                                              /openapi.json), a page without scripts

Errors: 400 names the bad parameter (user_id, limit, cursor), 404 an unknown user or path,
405 another method, 503 a store with nothing published or that cannot be read; every error
is JSON with a `detail`, never a traceback. A failing served log never fails a page
(warehouse.feeds.reader). The page logic is warehouse.feeds.reader's; this is wiring.
"""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import sqlite3
import time

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.exceptions import HTTPException

from jobs.settings import Settings
from warehouse.config import DEVELOPMENT_KEYS
from warehouse.feeds.base import FeedStoreError, NoVersion
from warehouse.feeds.open import cursor_key, open_store
from warehouse.feeds.reader import BadParameter, FeedReader, UnknownUser

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _Metrics:
    """Pure ASGI middleware: requests, errors and latency per route (the route's template)."""

    def __init__(self, app, registry: CollectorRegistry):
        self.app = app
        self.requests = Counter(
            "feedrank_http_requests", "Requests served", ["route", "status"], registry=registry
        )
        self.errors = Counter(
            "feedrank_http_errors", "Requests answered 4xx or 5xx", ["route"], registry=registry
        )
        self.latency = Histogram(
            "feedrank_http_latency_seconds",
            "Time to answer",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")  # set by the router
            self.latency.labels(route).observe(time.perf_counter() - started)
            self.requests.labels(route, str(status[0])).inc()
            if status[0] >= 400:
                self.errors.labels(route).inc()


class _ServedLogMetrics:
    """The reader's served-log losses, read at each scrape."""

    def __init__(self, reader: FeedReader):
        self.reader = reader

    def collect(self):
        health = self.reader.served_log
        rows = CounterMetricFamily(
            "feedrank_served_log_dropped_rows", "Served items whose log write failed"
        )
        rows.add_metric([], health.dropped_rows)
        pages = CounterMetricFamily(
            "feedrank_served_log_dropped_pages", "Served pages whose log write failed"
        )
        pages.add_metric([], health.dropped_pages)
        failing = GaugeMetricFamily(
            "feedrank_served_log_failing", "1 while the served log's writes fail"
        )
        failing.add_metric([], int(health.failing))
        return [rows, pages, failing]


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    """A store that cannot answer: SQLite's errors, the OS's, Redis's when installed."""
    errors: tuple[type[BaseException], ...] = (FeedStoreError, sqlite3.Error, OSError)
    try:
        from redis.exceptions import RedisError
    except ModuleNotFoundError:
        return errors
    return (*errors, RedisError)


def create_app(reader: FeedReader) -> FastAPI:
    """The app over one reader; metrics go to a registry of its own."""
    app = FastAPI(title="feedrank feeds", docs_url=None, redoc_url=None)
    registry = CollectorRegistry()
    registry.register(_ServedLogMetrics(reader))
    app.add_middleware(_Metrics, registry=registry)
    unavailable = _unavailable_errors()

    @app.exception_handler(HTTPException)
    async def http_error(request, err: HTTPException):  # 404 path, 405 method: JSON
        return JSONResponse({"detail": str(err.detail)}, err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, err: RequestValidationError):
        return JSONResponse({"detail": "malformed request"}, 400)

    # Store reads are local and sub-millisecond: answered on the event loop, no thread hop.
    @app.get("/feed/{user_id}")
    async def feed(user_id: str, limit: str | None = None, cursor: str | None = None):
        """A page of the user's feed in the current version: `limit` items (default and cap in
        `feeds`), after `cursor` (the previous page's `next_cursor`); the trending fallback
        for a user without a feed. 400 names a bad parameter, 404 an unknown user, 503 a
        store with nothing published."""
        try:
            page = reader.page(user_id, limit, cursor).to_json()
            # json.dumps directly: FastAPI's generic encoder costs more than the read itself.
            return Response(json.dumps(page), media_type="application/json")
        except BadParameter as err:
            return JSONResponse({"detail": str(err), "parameter": err.parameter}, 400)
        except UnknownUser as err:
            return JSONResponse({"detail": str(err)}, 404)
        except NoVersion as err:
            return JSONResponse({"detail": str(err)}, 503)
        except unavailable as err:  # the store cannot answer now: say so, no traceback
            log.error("feed store read failed: %s: %s", type(err).__name__, err)
            return JSONResponse({"detail": "the feed store cannot be read now; retry"}, 503)

    @app.get("/healthz")
    async def healthz():
        """200 with the current feed version; 503 when nothing is published."""
        try:
            current = reader.store.status().current
        except unavailable as err:
            return JSONResponse({"status": f"feed store unreadable: {type(err).__name__}"}, 503)
        if current is None:
            return JSONResponse({"status": "no feed version published"}, 503)
        served = reader.served_log
        if served.failing:  # pages are still served: degraded, not down
            return {
                "status": "degraded",
                "version": current.version,
                "served_log": f"failing since {served.failing_since}: {served.last_error}",
                "served_log_dropped_rows": served.dropped_rows,
            }
        return {"status": "ok", "version": current.version}

    @app.get("/metrics")
    async def metrics():
        """Prometheus text: requests, errors and latency per route."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def index():
        current = reader.store.status().current
        version = f"feed version {current.version}" if current else "no feed version published"
        links = [("/docs", "the endpoints and their parameters")]
        links += [(path, op["summary"]) for path, op in _operations(app.openapi())]
        return HTMLResponse(_page("feedrank feeds", f"<p>{html.escape(version)}</p>", links))

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return HTMLResponse(_docs_page(app.openapi()))

    return app


def _operations(openapi: dict) -> list[tuple[str, dict]]:
    """(path, GET operation) of every endpoint in the OpenAPI document."""
    return [(path, ops["get"]) for path, ops in openapi["paths"].items() if "get" in ops]


def _page(title: str, body: str, links: list[tuple[str, str]]) -> str:
    items = "".join(f"<li>{_link(href)}: {html.escape(text)}</li>" for href, text in links)
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"</head><body><h1>{html.escape(title)}</h1>{body}<ul>{items}</ul></body></html>"
    )


def _link(path: str) -> str:
    """A link to the path; a templated one (/feed/{user_id}) as code, as it cannot be opened."""
    if "{" in path:
        return f"<code>{html.escape(path)}</code>"
    return f'<a href="{html.escape(path)}">{html.escape(path)}</a>'


def _docs_page(openapi: dict) -> str:
    """The endpoints from the app's own OpenAPI document, as plain HTML: no Swagger UI, whose
    scripts come from a CDN a local machine may not reach."""
    sections = []
    for path, op in _operations(openapi):
        params = "".join(
            f"<li><code>{html.escape(p['name'])}</code> ({p['in']}"
            f"{', required' if p.get('required') else ''})</li>"
            for p in op.get("parameters", ())
        )
        sections.append(
            f"<h2><code>GET {html.escape(path)}</code></h2>"
            f"<p>{html.escape(op.get('description', op['summary']))}</p>"
            + (f"<ul>{params}</ul>" if params else "")
        )
    body = '<p>OpenAPI document: <a href="/openapi.json">/openapi.json</a></p>' + "".join(sections)
    return _page(f"{openapi['info']['title']}: endpoints", body, [])


def run(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve the settings' feed store until interrupted."""
    import uvicorn

    host, port = host or settings.feeds.host, port or settings.feeds.port
    key = cursor_key(settings.feeds, settings.root)
    check_exposure(host, key)
    store = open_store(settings.feeds, settings.root)
    app = create_app(FeedReader(store, settings.feeds, key))
    log.info("serving feeds from the %s store on http://%s:%d", store.backend, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


class UnsafeExposure(RuntimeError):
    """Serving beyond loopback with a key anyone can read in the repository."""


def check_exposure(host: str, key: bytes) -> None:
    """Refuse a non-loopback address when cursors are signed with a development key (one
    published in this repository): anyone could forge a cursor for any user."""
    if key.decode(errors="replace") not in DEVELOPMENT_KEYS or _is_loopback(host):
        return
    raise UnsafeExposure(
        f"refusing to serve on {host}: feeds.cursor_key is a development key published in the "
        "repository. Unset it (the data root's own key, secrets/cursor_key, is used) or set "
        "FEEDRANK__FEEDS__CURSOR_KEY to a long random secret, or serve on 127.0.0.1"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: may resolve anywhere
