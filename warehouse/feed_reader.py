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
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import secrets

from warehouse.catalog import C
from warehouse.config import FeedSettings
from warehouse.feed_store import Anchor, FeedStore, now_iso

MAX_USER_ID = 2**63 - 1
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
        version, user, rank, post = body.decode().split("|")
        return cls(version, int(user), int(rank), int(post))


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
            self.store.record_served(
                [(uid, i[C.POST_ID], i[C.RANK], snap.version, served_at) for i in items]
            )
        return page

    def parse_limit(self, limit: str | int | None) -> int:
        if limit is None or limit == "":
            return self.settings.default_limit
        try:
            value = int(limit)
        except (TypeError, ValueError):
            raise BadParameter("limit", f"must be an integer, got {limit!r}") from None
        if not 1 <= value <= self.settings.max_limit:
            raise BadParameter("limit", f"must be within 1..{self.settings.max_limit}, got {value}")
        return value


def parse_user_id(user_id: str | int) -> int:
    text = str(user_id)
    if not text.isascii() or not text.isdigit() or int(text) > MAX_USER_ID:
        raise BadParameter("user_id", f"must be a non-negative 64-bit integer, got {text!r}")
    return int(text)


def _status(anchor: str, after: Cursor | None, version: str) -> str:
    if after is None:
        return "none"
    if anchor == "lost":
        return "restarted"
    return "continued" if anchor == "rank" and after.version == version else "resumed"
