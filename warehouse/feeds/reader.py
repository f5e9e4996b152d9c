"""The read path: pages of a user's published feed, by opaque cursor, with a fallback.

A cursor names the version and the last item the client saw (its rank and post) and the user
it was issued to, signed with an HMAC so that a tampered or foreign cursor is refused. The next
page starts right after that item. When the version changed between two pages (a publish, a
rollback or a refresh of the user), the page continues after the same post if the new feed
still has it, else starts from the top; `cursor_status` says which:

    none        first page (no cursor)
    continued   same version, right after the last item seen
    resumed     another version, right after the same post
    restarted   the post is gone from the feed: from the top

A known user without a feed of their own gets the version's fallback feed (its trending
posts), marked `fallback: true`. The CLI and the HTTP app both call `FeedReader.page`.

The served log is best effort: a page whose log write fails (a full disk, a lock held too
long, Redis gone) is still returned; its rows are dropped and counted (`ServedLogHealth`),
the failure is logged once per outage, and the HTTP app reports itself degraded until a
write succeeds again.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import logging
import secrets
import threading

from warehouse.catalog import C
from warehouse.config import FeedSettings
from warehouse.feeds.base import Anchor, FeedStore, now_iso

log = logging.getLogger(__name__)

MAX_USER_ID = 2**63 - 1
MAX_INT64 = 2**63 - 1  # ranks and post ids in a cursor fit the stores' 64-bit integers
_SIG_BYTES = 12


class BadParameter(ValueError):
    """A request parameter that is malformed or out of range; names the parameter."""

    def __init__(self, parameter: str, message: str):
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


class UnknownUser(LookupError):
    """A user the published version does not know."""


@dataclasses.dataclass(frozen=True)
class Cursor:
    version: str
    user_id: int
    rank: int
    post_id: int

    def encode(self, key: bytes) -> str:
        body = f"{self.version}|{self.user_id}|{self.rank}|{self.post_id}".encode()
        sig = hmac.new(key, body, hashlib.sha256).digest()[:_SIG_BYTES]
        return base64.urlsafe_b64encode(body + sig).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, key: bytes) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise BadParameter("cursor", "not a cursor this service issued") from None
        body, sig = raw[:-_SIG_BYTES], raw[-_SIG_BYTES:]
        expected = hmac.new(key, body, hashlib.sha256).digest()[:_SIG_BYTES]
        if len(raw) <= _SIG_BYTES or not hmac.compare_digest(sig, expected):
            raise BadParameter("cursor", "tampered or not issued by this service")
        # Signed, but by whoever holds the key: its fields are checked like any input.
        try:
            version, *numbers = body.decode("ascii").split("|")
            user, rank, post = (_int64(n) for n in numbers)
        except ValueError:
            raise BadParameter(
                "cursor", "malformed (signed, but not as this service signs)"
            ) from None
        return cls(version, user, rank, post)


@dataclasses.dataclass(frozen=True)
class Page:
    """One page as the CLI prints it and the HTTP app returns it."""

    user_id: int
    version: str
    items: list[dict]
    next_cursor: str | None
    fallback: bool
    cursor_status: str
    generated_at: str | None  # the feed's lastGenerated
    model_version: str | None

    def to_json(self) -> dict:
        """The page as a JSON-ready dict (shallow: the items are already plain dicts)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclasses.dataclass
class ServedLogHealth:
    """What the served log lost since the reader started, and whether it is failing now."""

    dropped_pages: int = 0  # pages served whose log write failed
    dropped_rows: int = 0  # their items
    failing_since: str | None = None  # when the current outage began; None: writes succeed
    last_error: str | None = None  # the latest failure, as "ExceptionType: message"

    @property
    def failing(self) -> bool:
        return self.failing_since is not None


class FeedReader:
    """Pages of the store's current version, with parameter checks and the served log."""

    def __init__(self, store: FeedStore, settings: FeedSettings, key: bytes | None = None):
        """key signs cursors (feed_store.cursor_key); without one, `feeds.cursor_key` if set,
        else a random key of this reader: its cursors are good in this process only."""
        self.store = store
        self.settings = settings
        if key is None:
            secret = settings.cursor_key
            key = secret.get_secret_value().encode() if secret else secrets.token_bytes(32)
        self._key = key
        self.served_log = ServedLogHealth()
        self._health_lock = threading.Lock()

    def page(
        self, user_id: str | int, limit: str | int | None = None, cursor: str | None = None
    ) -> Page:
        uid = parse_user_id(user_id)
        size = self.parse_limit(limit)
        after = None
        if cursor:
            decoded = Cursor.decode(cursor, self._key)
            if decoded.user_id != uid:
                raise BadParameter("cursor", f"was issued for another user, not {uid}")
            after = decoded
        snap = self.store.read(uid, size, Anchor(after.rank, after.post_id) if after else None)
        if snap is None:
            raise UnknownUser(f"unknown user {uid}: not in the published feed version")
        items = snap.items[:size]
        more = len(snap.items) > size
        next_cursor = None
        if more:
            last = items[-1]
            next_cursor = Cursor(snap.version, uid, last[C.RANK], last[C.POST_ID]).encode(self._key)
        page = Page(
            uid,
            snap.version,
            items,
            next_cursor,
            snap.fallback,
            _status(snap.anchor, after, snap.version),
            snap.generated_at,
            snap.model_version,
        )
        if self.settings.log_served and items:
            served_at = now_iso()
            self._record([(uid, i[C.POST_ID], i[C.RANK], snap.version, served_at) for i in items])
        return page

    def _record(self, rows: list[tuple[int, int, int, str, str]]) -> None:
        """Log a served page; a failure drops the rows, counted, and never fails the read."""
        health = self.served_log
        try:
            self.store.record_served(rows)
        except Exception as err:  # any backend's failure: sqlite3, OSError, redis
            with self._health_lock:
                health.dropped_pages += 1
                health.dropped_rows += len(rows)
                health.last_error = f"{type(err).__name__}: {err}"
                first = health.failing_since is None
                if first:
                    health.failing_since = now_iso()
            if first:  # once per outage, not once per page
                log.warning(
                    "the served log is failing (%s): pages are still served, their log rows "
                    "dropped and counted in feedrank_served_log_dropped_rows",
                    health.last_error,
                )
            return
        if health.failing:
            with self._health_lock:
                health.failing_since = None
            log.warning(
                "the served log recovered; %d rows of %d pages dropped since the reader started",
                health.dropped_rows,
                health.dropped_pages,
            )

    def parse_limit(self, limit: str | int | None) -> int:
        if limit is None or limit == "":
            return self.settings.default_limit
        try:
            value = _int64(str(limit))
        except ValueError:
            top, shown = self.settings.max_limit, str(limit)[:40]
            raise BadParameter("limit", f"must be an integer in 1..{top}, got {shown!r}") from None
        if not 1 <= value <= self.settings.max_limit:
            raise BadParameter("limit", f"must be within 1..{self.settings.max_limit}, got {value}")
        return value


def parse_user_id(user_id: str | int) -> int:
    text = str(user_id)
    try:
        return _int64(text, MAX_USER_ID)
    except ValueError:
        shown = text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"
        raise BadParameter(
            "user_id", f"must be a non-negative 64-bit integer, got {shown!r}"
        ) from None


def _int64(text: str, high: int = MAX_INT64) -> int:
    """A non-negative integer of ASCII digits only (no sign, space or underscore) <= high.
    The length is checked first: int() of a huge string is slow, then refused by Python."""
    if not text or len(text) > len(str(high)) or not (text.isascii() and text.isdigit()):
        raise ValueError(f"not a non-negative integer <= {high}: {text[:40]!r}")
    value = int(text)
    if value > high:
        raise ValueError(f"{value} > {high}")
    return value


def _status(anchor: str, after: Cursor | None, version: str) -> str:
    if after is None:
        return "none"
    if anchor == "lost":
        return "restarted"
    return "continued" if anchor == "rank" and after.version == version else "resumed"


def format_page(page: Page) -> str:
    """A page as a terminal table (the CLI's `feed` and the demo's summary print it)."""
    kind = "fallback (trending)" if page.fallback else f"generated {page.generated_at}"
    lines = [f"user {page.user_id}, version {page.version}, {kind}, cursor {page.cursor_status}"]
    lines.append(f"{'rank':>5} {'post_id':>12} {'score':>9} {'value':>9}  sources")
    for item in page.items:
        lines.append(
            f"{item['rank']:>5} {item['post_id']:>12} {item['score']:>9.4f} "
            f"{item['value']:>9.4f}  {','.join(item['sources'] or [])}"
        )
    lines.append(f"next cursor: {page.next_cursor or '(end of feed)'}")
    return "\n".join(lines)
