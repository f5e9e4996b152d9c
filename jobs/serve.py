"""The feed read path over HTTP: FastAPI on uvicorn (`feedrank serve`).

    GET /feed/{user_id}?limit=20&cursor=...   a page, as `feedrank feed --json` prints it
    GET /healthz                              200 with the current version, 503 without one
    GET /metrics                              Prometheus text: requests, errors, latency

Errors: 400 names the bad parameter (user_id, limit, cursor), 404 an unknown user, 503 a
store with nothing published. The page logic is warehouse.feed_reader's; this is wiring.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from jobs.settings import Settings
from warehouse.config import DEVELOPMENT_KEYS
from warehouse.feed_reader import BadParameter, FeedReader, UnknownUser
from warehouse.feed_store import NoVersion, cursor_key, open_store

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


def create_app(reader: FeedReader) -> FastAPI:
    """The app over one reader; metrics go to a registry of its own."""
    app = FastAPI(title="feedrank feeds", docs_url=None, redoc_url=None)
    registry = CollectorRegistry()
    app.add_middleware(_Metrics, registry=registry)

    # Store reads are local and sub-millisecond: answered on the event loop, no thread hop.
    @app.get("/feed/{user_id}")
    async def feed(user_id: str, limit: str | None = None, cursor: str | None = None):
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

    @app.get("/healthz")
    async def healthz():
        current = reader.store.status().current
        if current is None:
            return JSONResponse({"status": "no feed version published"}, 503)
        return {"status": "ok", "version": current.version}

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


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
