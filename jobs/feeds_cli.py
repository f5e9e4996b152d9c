"""The feed commands of `feedrank`: read pages, manage the store, serve over HTTP.

feedrank feed USER_ID [--limit 20] [--cursor C] [--json]   one page of a user's feed
feedrank feeds publish --ds YYYY-MM-DD                     publish gold.user_news_feed ds
feedrank feeds rollback                                    back to the previous version
feedrank feeds status                                      current and previous version
feedrank serve [--host H] [--port P]                       the HTTP read path (uvicorn)

Exit status: 0 done, 1 unknown user or nothing to serve, 2 a bad parameter (named).
"""

from __future__ import annotations

import argparse
import json
import sys

from jobs.common import parse_ds
from jobs.settings import Settings
from warehouse.feeds.base import FeedStoreError, StoreStatus
from warehouse.feeds.open import cursor_key, open_store
from warehouse.feeds.reader import BadParameter, FeedReader, UnknownUser, format_page
from warehouse.layout import DataRootError
from warehouse.store import Warehouse, WarehouseError

COMMANDS = ("feed", "feeds", "serve")


def add_commands(sub) -> None:
    """Register the subcommands on `feedrank`'s subparsers."""
    feed = sub.add_parser("feed", help="one page of a user's published feed")
    feed.add_argument("user_id", help="the user (a non-negative integer)")
    feed.add_argument("--limit", help="items per page (default: feeds.default_limit)")
    feed.add_argument("--cursor", help="next_cursor of the previous page")
    feed.add_argument("--json", action="store_true", help="print the page as JSON")
    feeds = sub.add_parser("feeds", help="manage the feed store").add_subparsers(
        dest="feeds_command", required=True
    )
    publish = feeds.add_parser("publish", help="publish gold.user_news_feed of a day")
    publish.add_argument("--ds", required=True, type=parse_ds, help="the day, YYYY-MM-DD")
    feeds.add_parser("rollback", help="make the previous version current again")
    feeds.add_parser("status", help="current and previous version: users, items, published at")
    serve = sub.add_parser("serve", help="serve pages over HTTP (FastAPI on uvicorn)")
    serve.add_argument("--host", help="default: feeds.host")
    serve.add_argument("--port", type=int, help="default: feeds.port")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one of COMMANDS; returns the exit status."""
    if args.command == "serve":
        from jobs import serve

        try:
            serve.run(settings, args.host, args.port)
        except (serve.UnsafeExposure, FeedStoreError, DataRootError) as err:
            print(f"feedrank serve: {err}", file=sys.stderr)
            return 1
        return 0
    if args.command == "feeds" and args.feeds_command == "publish":
        from jobs import publish_feed

        try:
            info = publish_feed.run(settings, args.ds)
        except (WarehouseError, FeedStoreError) as err:
            print(f"feedrank feeds publish: {err}", file=sys.stderr)
            return 1
        print(f"published {info.version}: {info.users:,} users, {info.items:,} items")
        return 0
    store = open_store(settings.feeds, settings.root)
    try:
        if args.command == "feed":
            key = cursor_key(settings.feeds, settings.root)
            return read_page(FeedReader(store, settings.feeds, key), args)
        if args.feeds_command == "rollback":
            info = store.rollback()
            print(f"rolled back: current version is {info.version} (ds {info.ds})")
            return 0
        status = store.status()
        print(format_status(status))
        if status.current is not None:
            from jobs.publish_feed import stale_inputs

            stale = stale_inputs(Warehouse(settings.root.warehouse), status.current)
            for line in stale:
                print(f"stale: {line}; run `feedrank feeds publish --ds {status.current.ds}`")
        return 0
    except FeedStoreError as err:
        print(f"feedrank {args.command}: {err}", file=sys.stderr)
        return 1
    finally:
        store.close()


def read_page(reader: FeedReader, args: argparse.Namespace) -> int:
    try:
        page = reader.page(args.user_id, args.limit, args.cursor)
    except BadParameter as err:
        print(f"feedrank feed: bad parameter {err}", file=sys.stderr)
        return 2
    except UnknownUser as err:
        print(f"feedrank feed: {err}", file=sys.stderr)
        return 1
    print(json.dumps(page.to_json()) if args.json else format_page(page))
    return 0


def format_status(status: StoreStatus) -> str:
    lines = [f"feed store: {status.backend}"]
    for name, info in (("current", status.current), ("previous", status.previous)):
        if info is None:
            lines.append(f"{name:<9} none")
        else:
            lines.append(
                f"{name:<9} {info.version} ds={info.ds} users={info.users:,} "
                f"items={info.items:,} published_at={info.published_at}"
            )
            if info.built_from:
                inputs = " ".join(f"{t}={v}" for t, v in sorted(info.built_from.items()))
                lines.append(f"{'':<9} built from {inputs}")
    return "\n".join(lines)
