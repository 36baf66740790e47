"""The ledger in memory, with the Table ledger's semantics (claims, version tokens, append-only
transitions, pages with continuation tokens); the contract suite keeps the two in step. Thread-safe."""

from __future__ import annotations

import base64
import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import count
from typing import TypeVar

from rebuilder.domain.builds import (
    Build,
    BuildId,
    RegionStatus,
    Transition,
    check_write,
    first_transition,
    parse_build_id,
    template_key,
)
from rebuilder.domain.errors import InvalidContinuation, NotFound, PermanentError, StaleWrite
from rebuilder.domain.limits import check_idempotency_key, check_page_size, check_storable, check_version
from rebuilder.domain.model import SourceRef, TemplateId
from rebuilder.domain.ports import Claim, IndexedBuild, Join, KeyClaim, Page, Versioned
from rebuilder.domain.standing import SeenVersion, TemplateAction, TemplateState
from rebuilder.domain.versions import version_key

_T = TypeVar("_T")


@dataclass
class _StoredBuild:
    build: Build
    version: str
    transitions: list[Transition] = field(default_factory=list)
    regions: dict[str, RegionStatus] = field(default_factory=dict)


class InMemoryLedger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions = count(1)
        self._claims: dict[tuple[str, str], Join] = {}  # (template key, key): the claim row
        self._builds: dict[BuildId, _StoredBuild] = {}
        self._joins: set[tuple[str, str]] = set()  # claims that joined an open build (no build of their own)
        self._templates: dict[str, Versioned[TemplateState]] = {}
        self._seen: dict[str, dict[str, SeenVersion]] = {}
        self._actions: dict[str, dict[tuple[object, ...], TemplateAction]] = {}
        self.writes = 0  # every write that changed something: tests check refused requests write nothing

    def _token(self) -> str:
        return str(next(self._versions))

    # -- builds ----------------------------------------------------------------------------------------
    def claim_build(self, build: Build, *, why: str, by: str, action: TemplateAction | None = None) -> Claim:
        key = build.provenance.idempotency_key
        check_idempotency_key(key)
        check_storable(build)
        parse_build_id(build.id)
        if action is not None:
            check_storable(action)
            _same_partition(action, build.template_id)
        claim = (template_key(build.template_id), key)
        with self._lock:
            if claim in self._claims:
                stored = self._builds[self._claims[claim].build_id]
                return Claim(Versioned(stored.build, stored.version), created=False)
            stored = _StoredBuild(build, self._token(), [first_transition(build, why=why, by=by)])
            self.writes += 1
            prov = build.provenance
            self._claims[claim] = Join(
                build.template_id,
                key,
                build.id,
                build.created_at,
                prov.caller_id or prov.caller,
                prov.request_digest,
            )
            self._builds[build.id] = stored
            if action is not None:
                self._audit(action)
            return Claim(Versioned(build, stored.version), created=True)

    def find_claim(self, template_id: TemplateId, idempotency_key: str) -> KeyClaim | None:
        check_idempotency_key(idempotency_key)
        with self._lock:
            row = (template_key(template_id), idempotency_key)
            claim = self._claims.get(row)
            if claim is None:
                return None
            stored = self._builds[claim.build_id]
            joined = row in self._joins
            return KeyClaim(
                claim.key,
                Versioned(stored.build, stored.version),
                claim.at,
                claim.caller_id,
                claim.digest,
                joined,
            )

    def join_build(self, join: Join, *, action: TemplateAction) -> KeyClaim:
        check_idempotency_key(join.key)
        check_storable(action)
        _same_partition(action, join.template_id)
        with self._lock:
            claim = (template_key(join.template_id), join.key)
            if claim not in self._claims:
                if join.build_id not in self._builds:
                    raise NotFound(f"build {join.build_id} is not in the ledger")
                self._claims[claim] = join
                self._joins.add(claim)
                self.writes += 1
                self._audit(action)
        found = self.find_claim(join.template_id, join.key)
        assert found is not None
        return found

    def list_build_index(
        self,
        *,
        until: datetime | None = None,
        after: BuildId | None = None,
        limit: int = 100,
        continuation: str | None = None,
    ) -> Page[IndexedBuild]:
        with self._lock:
            builds = [s.build for s in self._builds.values()]
        entries = sorted(builds, key=lambda b: _order(b.id))
        if until is not None:
            entries = [
                b for b in entries if int(parse_build_id(b.id).at.timestamp()) <= int(until.timestamp())
            ]
        if after is not None:
            entries = [b for b in entries if _order(b.id) > _order(after)]
        index = [IndexedBuild(b.id, b.template_id, b.reason, b.created_at) for b in entries]
        return _page(index, limit, continuation)

    def get_build(self, build_id: str) -> Versioned[Build]:
        parse_build_id(build_id)
        with self._lock:
            stored = self._builds.get(BuildId(build_id))
            if stored is None:
                raise NotFound(f"build {build_id} is not in the ledger")
            return Versioned(stored.build, stored.version)

    def save_build(
        self,
        build: Build,
        *,
        etag: str,
        transition: Transition | None = None,
        regions: Sequence[RegionStatus] = (),
        action: TemplateAction | None = None,
    ) -> str:
        with self._lock:
            stored = self._builds.get(build.id)
            if stored is None:
                raise NotFound(f"build {build.id} is not in the ledger")
            if stored.version != etag:
                raise StaleWrite(f"build {build.id} changed since it was read; re-read it")
            for record in (build, transition, *regions, action):
                if record is not None:
                    check_storable(record)
            if action is not None:
                _same_partition(action, build.template_id)
            check_write(stored.build.state, build, transition, regions)
            if 1 + (transition is not None) + len(regions) > 100:  # one entity-group transaction
                raise PermanentError(f"build {build.id}: {len(regions)} regions exceed one transaction")
            stored.build = build
            stored.version = self._token()
            self.writes += 1
            if transition is not None:
                stored.transitions.append(transition)
            stored.regions.update({r.region: r for r in regions})
            if action is not None:
                self._audit(action)
            return stored.version

    def list_builds(
        self,
        template_id: TemplateId,
        *,
        limit: int = 50,
        continuation: str | None = None,
        until: datetime | None = None,
    ) -> Page[Build]:
        history = self._history(template_id)
        if until is not None:
            last = int(until.timestamp())
            history = [b for b in history if int(parse_build_id(b.id).at.timestamp()) <= last]
        return _page(history, limit, continuation)

    def _history(self, template_id: TemplateId) -> list[Build]:
        key = template_key(template_id)
        with self._lock:
            builds = [s.build for s in self._builds.values() if template_key(s.build.template_id) == key]
        return sorted(
            builds, key=lambda b: (-parse_build_id(b.id).at.timestamp(), parse_build_id(b.id).nonce)
        )

    def list_transitions(self, build_id: str) -> list[Transition]:
        parse_build_id(build_id)
        with self._lock:
            stored = self._builds.get(BuildId(build_id))
            return list(stored.transitions) if stored else []

    def list_regions(self, build_id: str) -> list[RegionStatus]:
        parse_build_id(build_id)
        with self._lock:
            stored = self._builds.get(BuildId(build_id))
            return [stored.regions[r] for r in sorted(stored.regions)] if stored else []

    def list_template_regions(
        self, template_id: TemplateId, *, limit: int = 1000, continuation: str | None = None
    ) -> Page[RegionStatus]:
        rows = [row for b in self._history(template_id) for row in self.list_regions(b.id)]
        return _page(rows, limit, continuation)

    # -- templates -------------------------------------------------------------------------------------
    def get_template_state(self, template_id: TemplateId) -> Versioned[TemplateState] | None:
        with self._lock:
            return self._templates.get(template_key(template_id))

    def save_template_state(self, state: TemplateState, *, etag: str | None) -> str:
        check_storable(state)
        key = template_key(state.template_id)
        with self._lock:
            current = self._templates.get(key)
            if (current is None) != (etag is None) or (current is not None and current.etag != etag):
                raise StaleWrite(f"the state of {state.template_id} changed since it was read; re-read it")
            version = self._token()
            self._templates[key] = Versioned(state, version)
            self.writes += 1
            return version

    def list_template_states(
        self, *, limit: int = 1000, continuation: str | None = None
    ) -> Page[TemplateState]:
        with self._lock:
            states = [self._templates[k].record for k in sorted(self._templates)]
        return _page(states, limit, continuation)

    # -- source versions -------------------------------------------------------------------------------
    def record_version(self, seen: SeenVersion) -> SeenVersion:
        check_storable(seen)
        check_version(seen.version)
        with self._lock:
            versions = self._seen.setdefault(seen.source.key, {})
            kept = versions.get(seen.version)
            if kept is None:
                versions[seen.version] = seen
                self.writes += 1
                return seen
            if kept.deprecation != seen.deprecation:
                kept = dataclasses.replace(
                    kept, deprecation=seen.deprecation, deprecation_changed_at=seen.first_seen_at
                )
                versions[seen.version] = kept
                self.writes += 1
            return kept

    # -- the template's audit trail --------------------------------------------------------------------
    def record_action(self, action: TemplateAction) -> TemplateAction:
        check_storable(action)
        with self._lock:
            return self._audit(action)

    def _audit(self, action: TemplateAction) -> TemplateAction:
        fact = (action.action, action.by, action.correlation_id, action.at)
        trail = self._actions.setdefault(template_key(action.template_id), {})
        if fact not in trail:
            trail[fact] = action
            self.writes += 1
        return trail[fact]

    def list_actions(
        self, template_id: TemplateId, *, limit: int = 50, continuation: str | None = None
    ) -> Page[TemplateAction]:
        with self._lock:
            trail = list(self._actions.get(template_key(template_id), {}).values())
        trail.sort(key=lambda a: -int(a.at.timestamp() * 1_000_000))
        return _page(trail, limit, continuation)

    def list_versions(
        self, source: SourceRef, *, limit: int = 1000, continuation: str | None = None
    ) -> Page[SeenVersion]:
        with self._lock:
            versions = sorted(self._seen.get(source.key, {}).values(), key=lambda s: version_key(s.version))
        return _page(versions, limit, continuation)


def _order(build_id: str) -> tuple[int, str, str]:
    parsed = parse_build_id(build_id)
    return -int(parsed.at.timestamp()), parsed.template_key, parsed.nonce


def _page(items: list[_T], limit: int, continuation: str | None) -> Page[_T]:
    check_page_size(limit)
    start = 0
    if continuation is not None:
        try:
            text = base64.urlsafe_b64decode(continuation.encode()).decode()
        except ValueError as error:
            raise InvalidContinuation("the continuation token is not one this service issued") from error
        offset = text.removeprefix("offset:")
        if not text.startswith("offset:") or not offset.isdigit():
            raise InvalidContinuation("the continuation token is not one this service issued")
        start = int(offset)
    end = start + limit
    return Page(items[start:end], _offset(end) if end < len(items) else None)


def _offset(n: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{n}".encode()).decode()


def _same_partition(action: TemplateAction, template_id: TemplateId) -> None:
    """As the Tables ledger: an audit row goes in one transaction only with a write of its template."""
    if template_key(action.template_id) != template_key(template_id):
        raise PermanentError(f"an audit row of {action.template_id} cannot go with a write of {template_id}")
