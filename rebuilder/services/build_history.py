"""The build history across templates (GET /api/builds, the CLI's `builds` and `export`): newest
first, filtered, a bounded page at a time, resumable from an opaque continuation token.

Each template's builds are one range read in the ledger, newest first; a page merges those reads and
resumes after the last build it returned (keyset paging: the token names a position, not an offset,
so builds recorded meanwhile never shift a page). Reading is bounded: a page stops after `scan_limit`
builds even when filters matched fewer than `limit`, and says where to go on.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from rebuilder.domain.builds import Build, BuildReason, BuildState, parse_build_id
from rebuilder.domain.errors import InvalidContinuation
from rebuilder.domain.model import TemplateId
from rebuilder.domain.ports import Ledger

from .history import every

MAX_PAGE = 200
SCAN_LIMIT = 5_000
_READ = 100  # builds per ledger read


@dataclass(frozen=True)
class HistoryQuery:
    template_ids: tuple[TemplateId, ...]  # the templates to read (every template the ledger knows)
    states: frozenset[BuildState] = frozenset()  # empty: any
    reasons: frozenset[BuildReason] = frozenset()
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before

    def matches(self, build: Build) -> bool:
        return (not self.states or build.state in self.states) and (
            not self.reasons or build.reason in self.reasons
        )

    def fingerprint(self) -> str:
        """What a continuation token is bound to: the same query, or the token is refused."""
        text = json.dumps(
            [
                sorted(t.lower() for t in self.template_ids),
                sorted(self.states),
                sorted(self.reasons),
                self.since.isoformat() if self.since else None,
                self.until.isoformat() if self.until else None,
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, order=True)
class Position:
    """Where a page ended, in history order: newer first, then template key, then nonce."""

    inverted_at: int
    template_key: str
    nonce: str

    @classmethod
    def of(cls, build: Build) -> Position:
        parsed = parse_build_id(build.id)
        return cls(-int(parsed.at.timestamp()), parsed.template_key, parsed.nonce)

    def token(self, query: HistoryQuery) -> str:
        body = json.dumps([1, self.inverted_at, self.template_key, self.nonce, query.fingerprint()])
        return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str, query: HistoryQuery) -> Position:
        refused = InvalidContinuation("the continuation token is not one this service issued for this query")
        if not token or len(token) > 200 or not token.isascii():
            raise refused
        try:
            body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except ValueError as error:
            raise refused from error
        if (
            not isinstance(body, list)
            or len(body) != 5
            or body[0] != 1
            or type(body[1]) is not int
            or not all(isinstance(v, str) for v in body[2:])
        ):
            raise refused
        if body[4] != query.fingerprint():
            raise InvalidContinuation("the continuation token belongs to another query (other filters)")
        return cls(body[1], body[2], body[3])


@dataclass(frozen=True)
class HistoryPage:
    builds: list[Build]
    next: Position | None  # None: nothing more
    scanned: int  # builds read for this page


def list_history(
    ledger: Ledger,
    query: HistoryQuery,
    *,
    after: Position | None = None,
    limit: int = 50,
    scan_limit: int = SCAN_LIMIT,
) -> HistoryPage:
    """One page of the query's builds, newest first, after `after`."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"a page holds 1 to {MAX_PAGE} builds, not {limit}")
    merged = heapq.merge(*(_one(ledger, t, query, after) for t in query.template_ids), key=Position.of)
    page: list[Build] = []
    scanned, last = 0, after
    for build in merged:
        if len(page) == limit and query.matches(build):
            return HistoryPage(page, Position.of(page[-1]), scanned)
        if scanned == scan_limit:
            return HistoryPage(page, last, scanned)
        scanned += 1
        last = Position.of(build)
        if query.matches(build) and len(page) < limit:
            page.append(build)
    return HistoryPage(page, None, scanned)


def every_build(ledger: Ledger, query: HistoryQuery) -> Iterator[Build]:
    """Every build of the query, newest first, page after page (the export)."""
    after: Position | None = None
    while True:
        page = list_history(ledger, query, after=after, limit=MAX_PAGE)
        yield from page.builds
        if page.next is None:
            return
        after = page.next


def _one(
    ledger: Ledger, template_id: TemplateId, query: HistoryQuery, after: Position | None
) -> Iterator[Build]:
    """One template's builds in the query's range, after `after`, newest first."""
    start = query.until
    if after is not None:
        resume = datetime.fromtimestamp(-after.inverted_at, UTC)
        start = resume if start is None else min(start, resume)
    for build in every(
        lambda token: ledger.list_builds(template_id, limit=_READ, continuation=token, until=start)
    ):
        if query.since is not None and build.created_at < query.since:
            return
        if query.until is not None and build.created_at >= query.until:
            continue
        if after is not None and Position.of(build) <= after:
            continue
        yield build
