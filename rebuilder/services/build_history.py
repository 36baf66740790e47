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
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from rebuilder.domain.builds import Build, BuildId, BuildReason, BuildState, parse_build_id
from rebuilder.domain.casing import fold
from rebuilder.domain.errors import InvalidContinuation, NotFound, PermanentError
from rebuilder.domain.model import TemplateId
from rebuilder.domain.ports import Ledger, Page

MAX_PAGE = 200
SCAN_LIMIT = 5_000
_READ = 100  # builds per ledger read
_LAST_SECOND = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())
_KEY = re.compile(r"[0-9a-f]{16}-[0-9a-f]{10}")


@dataclass(frozen=True)
class HistoryQuery:
    template_ids: tuple[TemplateId, ...] | None = None  # None: every template (read the history index)
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
                sorted(fold(t) for t in self.template_ids) if self.template_ids is not None else None,
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
        return cls.of_id(build.id)

    @classmethod
    def of_id(cls, build_id: str) -> Position:
        parsed = parse_build_id(build_id)
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
        position = cls(body[1], body[2], body[3])
        if not -_LAST_SECOND <= position.inverted_at <= 0 or not _KEY.fullmatch(f"{body[2]}-{body[3]}"):
            raise refused
        return position

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(-self.inverted_at, UTC)

    @property
    def build_id(self) -> BuildId:
        """The id of the build at this position (ids are built from the same parts)."""
        return BuildId(f"{self.at:%Y%m%dT%H%M%SZ}-{self.template_key}-{self.nonce}")


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
    concurrency: int = 8,
) -> HistoryPage:
    """One page of the query's builds, newest first, after `after`."""
    if not 1 <= limit <= MAX_PAGE:
        raise PermanentError(f"a page holds 1 to {MAX_PAGE} builds, not {limit}")
    size = min(limit + 1, _READ)  # a page needs at most this many builds from any one read
    if query.template_ids is None:
        found = _indexed(ledger, query, after, size, concurrency)
    else:
        readers = [_TemplateReader(ledger, t, query, after, size) for t in query.template_ids]
        with ThreadPoolExecutor(max(1, min(concurrency, len(readers)))) as pool:
            primed = list(pool.map(_TemplateReader.prime, readers))
        found = ((Position.of(b), b) for b in heapq.merge(*primed, key=Position.of))
    page: list[Build] = []
    scanned, last = 0, after
    for position, build in found:
        wanted = build is not None and query.matches(build)
        if len(page) == limit and wanted:
            return HistoryPage(page, Position.of(page[-1]), scanned)
        if scanned == scan_limit:
            return HistoryPage(page, last, scanned)
        scanned += 1
        last = position
        if build is not None and wanted and len(page) < limit:
            page.append(build)
    return HistoryPage(page, None, scanned)


def _indexed(
    ledger: Ledger, query: HistoryQuery, after: Position | None, size: int, concurrency: int
) -> Iterator[tuple[Position, Build | None]]:
    """Every template's builds from the history index, newest first: one range read per chunk, the
    builds of a chunk read at once. An entry whose build is missing (a lost claim) is None."""
    until = _start(query, after)
    token: str | None = None
    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        while True:
            chunk = ledger.list_build_index(
                until=until, after=after.build_id if after else None, limit=size, continuation=token
            )
            entries = [e for e in chunk.items if query.since is None or e.created_at >= query.since]
            wanted = [
                e
                for e in entries
                if (query.until is None or e.created_at < query.until)
                and (not query.reasons or e.reason in query.reasons)  # known from the index: no read
            ]
            builds = pool.map(lambda e: _read(ledger, e.build_id), wanted)
            read = dict(zip([e.build_id for e in wanted], builds, strict=True))
            for entry in entries:
                yield Position.of_id(entry.build_id), read.get(entry.build_id)
            if chunk.continuation is None or len(entries) < len(chunk.items):  # past `since`: done
                return
            token = chunk.continuation


def _start(query: HistoryQuery, after: Position | None) -> datetime | None:
    """Where a read starts, newest first: the query's end, or the page's position if earlier."""
    if after is None:
        return query.until
    return after.at if query.until is None else min(query.until, after.at)


def _read(ledger: Ledger, build_id: BuildId) -> Build | None:
    try:
        return ledger.get_build(build_id).record
    except NotFound:
        return None


def every_build(ledger: Ledger, query: HistoryQuery) -> Iterator[Build]:
    """Every build of the query, newest first, page after page (the export)."""
    after: Position | None = None
    while True:
        page = list_history(ledger, query, after=after, limit=MAX_PAGE)
        yield from page.builds
        if page.next is None:
            return
        after = page.next


class _TemplateReader:
    """One template's builds in the query's range, after `after`, newest first: the first ledger
    read is made up front (`prime`, run for every template at once), the rest as the merge asks."""

    def __init__(
        self, ledger: Ledger, template_id: TemplateId, query: HistoryQuery, after: Position | None, size: int
    ) -> None:
        self._ledger, self._template, self._query, self._after, self._size = (
            ledger,
            template_id,
            query,
            after,
            size,
        )
        self._start = _start(query, after)
        self._first: Page[Build] | None = None

    def prime(self) -> _TemplateReader:
        self._first = self._read(None)
        return self

    def _read(self, token: str | None) -> Page[Build]:
        return self._ledger.list_builds(
            self._template, limit=self._size, continuation=token, until=self._start
        )

    def __iter__(self) -> Iterator[Build]:
        page = self._first or self._read(None)
        while True:
            for build in page.items:
                if self._query.since is not None and build.created_at < self._query.since:
                    return
                if self._query.until is not None and build.created_at >= self._query.until:
                    continue
                if self._after is not None and Position.of(build) <= self._after:
                    continue
                yield build
            if page.continuation is None:
                return
            page = self._read(page.continuation)
