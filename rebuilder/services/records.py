"""Writing the ledger safely from several triggers at once.

The helpers every use case shares: `update_state` (read a template's row, change it, write it back if
nobody moved first — else re-read and change again) and `open_build` (claim a build under its key,
then list it on its template's row; a request that finds an open build already covering it joins that
build instead, so racing timers, redelivered events and on-demand requests share one run), and
`adopt_external` (a run somebody else started, recorded as a build keyed by its start time).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from rebuilder.domain import resource_ids
from rebuilder.domain.builds import Build, BuildReason, BuildState, Provenance, requested
from rebuilder.domain.errors import NotFound, PermanentError, StaleWrite
from rebuilder.domain.model import ImageTemplate, LastRun, TemplateId
from rebuilder.domain.ports import Ledger, Versioned
from rebuilder.domain.standing import TemplateAction, TemplateState
from rebuilder.domain.versions import version_key

from .lineage import trace

log = logging.getLogger(__name__)
T = TypeVar("T")


CONFLICT_ATTEMPTS = 20  # every optimistic write: how many times it re-reads and tries again


def retry_on_conflict(attempt: Callable[[], T], what: str) -> T:
    """`attempt` (read, change, write under the read's ETag) again while another writer moved first;
    StaleWrite, naming `what`, once it lost CONFLICT_ATTEMPTS races in a row: never a silent give-up."""
    for _ in range(CONFLICT_ATTEMPTS):
        try:
            return attempt()
        except StaleWrite:
            continue
    raise StaleWrite(f"{what} kept changing under {CONFLICT_ATTEMPTS} attempts; try again")


def update_state(
    ledger: Ledger, template_id: TemplateId, change: Callable[[TemplateState], TemplateState]
) -> TemplateState | None:
    """Apply `change` to the template's stored row (None when it has none), re-reading on a lost race."""

    def attempt() -> TemplateState | None:
        stored = ledger.get_template_state(template_id)
        if stored is None:
            return None
        updated = change(stored.record)
        if updated != stored.record:
            ledger.save_template_state(updated, etag=stored.etag)
        return updated

    return retry_on_conflict(attempt, f"the ledger row of {template_id}")


@dataclass(frozen=True)
class Caller:
    """Who asks, as the ledger records it."""

    trigger: str  # http | cli
    name: str = ""  # principal name (or the CLI user)
    object_id: str = ""
    correlation_id: str = ""

    @property
    def who(self) -> str:
        return self.name or self.object_id or self.trigger

    @property
    def identity(self) -> str:
        """What tells callers apart: the object id, else (the CLI) the name."""
        return self.object_id or self.name


@dataclass(frozen=True)
class Opened:
    build: Build  # the build that will run: the one claimed, or the open one it joined
    created: bool  # this request recorded a new build
    joined: bool = False  # the request joined a build already open for the template
    replayed: bool = False  # the caller's key named this build before: nothing new was recorded


def open_build(
    ledger: Ledger, build: Build, *, why: str, by: str, now: datetime, action: TemplateAction | None = None
) -> Opened:
    """Claim `build` (insert-only under its idempotency key), then list it on its template's row.

    Safe to repeat: a crash between the claim and the listing is healed by the same request again.
    A build that another open build covers (same template, same or newer source version, or either
    resolving `latest`) is recorded as Superseded by it and the open one is returned. `action`: the audit
    row of the person asking, claimed with the build."""
    claim = ledger.claim_build(build, why=why, by=by, action=action)
    mine = claim.build
    if mine.record.state.finished:
        if mine.record.superseded_by:  # a replay of a request that joined another build: answer with it
            return Opened(ledger.get_build(mine.record.superseded_by).record, claim.created, joined=True)
        return Opened(mine.record, claim.created, joined=mine.record.state is BuildState.SUPERSEDED)

    def attempt() -> Opened:
        stored = ledger.get_template_state(mine.record.template_id)
        if stored is not None and mine.record.id in stored.record.open_builds:
            return Opened(mine.record, claim.created)
        twin = covering(ledger, stored.record if stored else None, mine.record)
        if twin is not None:
            _supersede(ledger, mine, twin, now=now, by=by)
            return Opened(twin, claim.created, joined=True)
        if stored is None:
            fresh = TemplateState(
                mine.record.template_id, mine.record.template_name, mine.record.location, now
            )
            ledger.save_template_state(fresh.with_open(mine.record.id, at=now), etag=None)
        else:
            ledger.save_template_state(stored.record.with_open(mine.record.id, at=now), etag=stored.etag)
        return Opened(mine.record, claim.created)

    return retry_on_conflict(attempt, f"the ledger row of {mine.record.template_id}")


def covering(ledger: Ledger, state: TemplateState | None, mine: Build) -> Build | None:
    """The open build of the template that `mine` would join: same template, same or newer source
    version, or either resolving `latest`."""
    if state is None or mine.reason is BuildReason.EXTERNAL:
        return None  # what somebody else ran is a fact to record, never joined
    for build_id in state.open_builds:
        try:
            other = ledger.get_build(build_id).record
        except NotFound:
            continue
        if other.state.finished or other.id == mine.id or other.state is BuildState.CANDIDATE:
            continue  # a candidate is built already: it awaits promotion, it cannot take a request
        theirs, wanted = other.source.resolved_version, mine.source.resolved_version
        if not theirs or not wanted or version_key(theirs) >= version_key(wanted):
            return other
    return None


def _supersede(ledger: Ledger, mine: Versioned[Build], twin: Build, *, now: datetime, by: str) -> None:
    given = iter([mine])  # the first attempt writes over the build as the caller read it; later ones re-read

    def attempt() -> None:
        current = next(given, None) or ledger.get_build(mine.record.id)
        if current.record.state.finished:
            return
        before = current.record
        after = dataclasses.replace(
            before, state=BuildState.SUPERSEDED, sub_state=None, updated_at=now, superseded_by=twin.id
        )
        transition = before.becomes(
            after, why=f"joined build {twin.id}, already open for this template", by=by
        )
        ledger.save_build(after, etag=current.etag, transition=transition)

    retry_on_conflict(attempt, f"build {mine.record.id}")


def adopt_external(
    ledger: Ledger,
    template: ImageTemplate,
    run: LastRun,
    *,
    now: datetime,
    by: str,
    correlation_id: str = "",
) -> Versioned[Build]:
    """Record a run somebody else started (portal, CLI, AIB's own trigger) as a build, keyed by its
    start time so every pass that notices it records the same build."""
    if run.started_at is None:
        raise PermanentError(f"the last run of {template.name} has no start time to record it by")
    key = f"{BuildReason.EXTERNAL}:{run.started_at.isoformat()}"
    build = requested(
        template,
        reason=BuildReason.EXTERNAL,
        key=key,
        resolved_version=resource_ids.version_name(template.source.exact_version),
        now=now,
        provenance=Provenance(by, "", correlation_id),
        previous_baseline=_baseline(ledger, template.id),  # what the run replaced: exposure's floor
        state=BuildState.RUNNING,
        attempts=1,
        run_started_at=run.started_at,
    )
    build = dataclasses.replace(build, lineage=trace(ledger, build))
    opened = open_build(
        ledger,
        build,
        why=f"a run started outside rebuilder at {run.started_at:%Y-%m-%d %H:%M:%S} UTC",
        by=by,
        now=now,
    )
    return ledger.get_build(opened.build.id)


def _baseline(ledger: Ledger, template_id: TemplateId) -> str:
    stored = ledger.get_template_state(template_id)
    return stored.record.baseline_version if stored else ""
