"""Builds, their transitions and per-region replication: the records the ledger keeps.

Pure. A build moves through a small state machine; `Build.moved` returns the new record and the
transition row that must be appended with it, and refuses a move the machine does not allow, so no
caller can write history that could not have happened (e.g. Published → Running).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import NewType

from .casing import fold
from .errors import PermanentError
from .model import ImageTemplate, RunSubState, SourceKind, SourceRef, TemplateId
from .regions import Region, region

BuildId = NewType("BuildId", str)

MESSAGE_LIMIT = 8_000  # characters: far below the 64 KiB (32K UTF-16 units) property limit
_TRUNCATED = "… [truncated {} characters]"


class BuildState(StrEnum):
    QUEUED = "Queued"  # claimed; waiting to start (a free slot, the template, or next_attempt_at)
    RUNNING = "Running"  # AIB accepted a run; sub_state follows lastRunStatus.runSubState
    REPLICATING = "Replicating"  # the run succeeded; following the gallery version to every region
    PUBLISHED = "Published"  # replicated to every target region
    PARTIALLY_PUBLISHED = "PartiallyPublished"  # some regions failed beyond the repair budget
    FAILED = "Failed"
    CANCELED = "Canceled"
    SUPERSEDED = "Superseded"  # a newer build of the same template made this one pointless
    # A gated template's build (its distributor publishes with excludeFromLatest): the image is a
    # candidate until it has earned promotion into `latest` (domain/releases.py).
    CANDIDATE = "Candidate"  # replicated everywhere, excluded from latest: protects nobody yet
    PROMOTED = "Promoted"  # in latest
    REJECTED = "Rejected"  # never promoted: the run or a region did not fully succeed
    REVOKED = "Revoked"  # rolled back: never chosen again

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset(
    {
        BuildState.PUBLISHED,
        BuildState.PARTIALLY_PUBLISHED,
        BuildState.FAILED,
        BuildState.CANCELED,
        BuildState.SUPERSEDED,
        BuildState.PROMOTED,
        BuildState.REJECTED,
        BuildState.REVOKED,
    }
)
SUCCEEDED = frozenset({BuildState.PUBLISHED, BuildState.PARTIALLY_PUBLISHED, BuildState.PROMOTED})

# Which moves the machine allows. A move to the same state records a change of sub-state or a retry.
ALLOWED: dict[BuildState, frozenset[BuildState]] = {
    BuildState.QUEUED: frozenset(
        {BuildState.QUEUED, BuildState.RUNNING, BuildState.FAILED, BuildState.CANCELED, BuildState.SUPERSEDED}
    ),
    BuildState.RUNNING: frozenset(
        {
            BuildState.RUNNING,
            BuildState.QUEUED,  # the run failed and a retry is scheduled
            BuildState.REPLICATING,
            BuildState.PUBLISHED,
            BuildState.PARTIALLY_PUBLISHED,
            BuildState.FAILED,
            BuildState.CANCELED,
            BuildState.CANDIDATE,
            BuildState.REJECTED,
        }
    ),
    BuildState.REPLICATING: frozenset(
        {
            BuildState.REPLICATING,
            BuildState.PUBLISHED,
            BuildState.PARTIALLY_PUBLISHED,
            BuildState.FAILED,
            BuildState.CANDIDATE,
            BuildState.REJECTED,
        }
    ),
    **{state: frozenset() for state in _FINISHED},
    # A candidate is approved (a move to itself), promoted or rejected; what reached latest may be revoked.
    BuildState.CANDIDATE: frozenset({BuildState.CANDIDATE, BuildState.PROMOTED, BuildState.REJECTED}),
    BuildState.PUBLISHED: frozenset({BuildState.REVOKED}),
    BuildState.PROMOTED: frozenset({BuildState.REVOKED}),
}


class BuildReason(StrEnum):
    SOURCE_UPDATE = "source-update"
    PARENT_PUBLISHED = "parent-published"
    MAX_AGE = "max-age"
    PATCH_DAY = "patch-day"
    PARENT_REVOKED = "parent-revoked"  # the parent image it was built on was rolled back
    ON_DEMAND = "on-demand"
    EXTERNAL = "external"  # a run somebody else started


class IllegalTransition(PermanentError):
    def __init__(self, build_id: str, current: BuildState, requested: BuildState) -> None:
        allowed = ", ".join(sorted(ALLOWED[current])) or "none: the build is finished"
        super().__init__(
            f"build {build_id}: {current} → {requested} is not a legal transition (allowed: {allowed})"
        )
        self.current = current
        self.requested = requested


NOTE_LIMIT = 500  # characters of a caller's free-text reason


@dataclass(frozen=True)
class Provenance:
    trigger: str  # timer | eventgrid | http | cli | reconciler
    caller: str = ""  # identity that asked (principal name, else its object id), empty for timers
    correlation_id: str = ""
    idempotency_key: str = ""
    caller_id: str = ""  # the caller's object id (Microsoft Entra ID), when the request carried one
    note: str = ""  # the caller's own words: why they asked
    bypassed: str = ""  # the rebuild policies an on-demand request went past (window, cooldown, …)
    request_digest: str = ""  # of what an on-demand request asked (template, reason): its key names it

    def __post_init__(self) -> None:
        object.__setattr__(self, "note", bounded(self.note, NOTE_LIMIT))
        object.__setattr__(self, "bypassed", bounded(self.bypassed, NOTE_LIMIT))


@dataclass(frozen=True)
class Lineage:
    """Where a child's image came from: the parent build that published the gallery version it builds
    on, and the root Marketplace version that flowed into it through its parents. The exposure that
    matters to security starts at the root version's first sighting."""

    parent_build_id: str
    parent_template: str  # the parent template's name, for people
    root_version: str  # the Marketplace version at the root of the chain
    root_source: SourceRef  # where the ledger keeps the root's sightings
    previous_root_version: str = ""  # the root version of the image this build replaces, if known


@dataclass(frozen=True)
class BuildSource:
    kind: SourceKind
    publisher: str = ""
    offer: str = ""
    sku: str = ""
    gallery_image_id: str = ""
    declared_version: str = ""  # what the template says: latest, a pinned version, a version id
    resolved_version: str = ""  # what this build builds from


@dataclass(frozen=True)
class Build:
    id: BuildId
    template_id: TemplateId
    template_name: str
    location: Region
    reason: BuildReason
    provenance: Provenance
    source: BuildSource
    created_at: datetime
    updated_at: datetime
    previous_baseline: str = ""
    state: BuildState = BuildState.QUEUED
    sub_state: RunSubState | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    run_started_at: datetime | None = None
    run_ended_at: datetime | None = None
    outputs: tuple[str, ...] = ()  # artifact ids (gallery image versions, managed images, VHD URIs)
    message: str = ""
    definition_hash_before: str = ""  # pinned templates are recreated: the definition before and after
    definition_hash_after: str = ""
    definition_after: str = ""  # the recreated definition, written before the old template is deleted
    cancel_requested_at: datetime | None = None  # the service canceled the run (timeout): a failed attempt
    lineage: Lineage | None = None  # a child's parent build and root source version (None: a baseline)
    superseded_by: str = ""  # the open build this one joined (Superseded): what a replay answers with
    temporary_refusals: int = 0  # run requests refused with a temporary error in a row (throttling)
    candidate_at: datetime | None = (
        None  # a gated build's image replicated everywhere: the bake counts from here
    )
    approved_by: str = ""  # who approved a manual promotion
    approved_by_id: str = ""  # their object id (Microsoft Entra ID), when the call carried one
    promoted_at: datetime | None = None
    run_outcome: str = ""  # how the build's last run ended, as AIB said it (Succeeded, PartiallySucceeded)
    claim: str = ""  # a release step under way on its image (promote): one caller at a time
    claimed_at: datetime | None = None
    claimed_by: str = ""

    @property
    def root_version(self) -> str:
        """The Marketplace version at the root of this build's image: its own source for a baseline."""
        return self.lineage.root_version if self.lineage else self.source.resolved_version

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", bounded(self.message))

    def moved(self, to: BuildState, *, at: datetime, why: str, by: str) -> tuple[Build, Transition]:
        """The build in state `to` (its sub-state kept by a move to the same state, cleared by any
        other), and the transition row that records the move."""
        sub_state = self.sub_state if to is self.state else None
        after = dataclasses.replace(self, state=to, sub_state=sub_state, updated_at=at)
        return after, self.becomes(after, why=why, by=by)

    def becomes(self, after: Build, *, why: str, by: str) -> Transition:
        """The transition row that records `after` (this build, moved and changed): refused when the
        state machine does not allow the move."""
        if after.id != self.id:
            raise PermanentError(f"build {self.id}: a move cannot turn it into build {after.id}")
        if after.state not in ALLOWED[self.state]:
            raise IllegalTransition(self.id, self.state, after.state)
        return Transition(
            build_id=self.id,
            at=after.updated_at,
            from_state=self.state,
            from_sub_state=self.sub_state,
            to_state=after.state,
            to_sub_state=after.sub_state,
            why=why,
            by=by,
        )


@dataclass(frozen=True)
class Transition:
    """One append-only row of the audit trail: never updated, never deleted."""

    build_id: BuildId
    at: datetime
    from_state: BuildState | None  # None for the row that records the claim
    from_sub_state: RunSubState | None
    to_state: BuildState
    to_sub_state: RunSubState | None
    why: str
    by: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "why", bounded(self.why))


def check_write(
    stored: BuildState, build: Build, transition: Transition | None, regions: Sequence[RegionStatus] = ()
) -> None:
    """Refuse a write that would record history the state machine does not allow, whoever built it.
    A finished build is history: it is never written again, but for a revocation of what it published
    (and the claim written just before it, which changes no state)."""
    if not ALLOWED[stored] or (stored.finished and transition is None and not build.claim):
        raise IllegalTransition(build.id, stored, build.state)
    if transition is None:
        if build.state is not stored:
            raise IllegalTransition(build.id, stored, build.state)
    elif transition.build_id != build.id or transition.to_state is not build.state:
        raise PermanentError(f"build {build.id}: the transition does not describe this write")
    elif transition.from_state is not stored or transition.to_state not in ALLOWED[stored]:
        raise IllegalTransition(build.id, stored, transition.to_state)
    for row in regions:
        if row.build_id != build.id:
            raise PermanentError(f"build {build.id}: a region row of {row.build_id} in its write")


def requested(
    template: ImageTemplate,
    *,
    reason: BuildReason,
    key: str,
    resolved_version: str,
    now: datetime,
    provenance: Provenance,
    previous_baseline: str = "",
    state: BuildState = BuildState.QUEUED,
    attempts: int = 0,
    run_started_at: datetime | None = None,
) -> Build:
    """A new build of `template` (Queued unless said otherwise), keyed by `key`."""
    src, image = template.source, template.source.image
    return Build(
        id=new_build_id(template.id, now, key),
        template_id=template.id,
        template_name=template.name,
        location=region(template.location),
        reason=reason,
        provenance=dataclasses.replace(provenance, idempotency_key=key),
        source=BuildSource(
            src.kind,
            image.publisher if image else "",
            image.offer if image else "",
            image.sku if image else "",
            (src.image_version_id or "") if src.kind is SourceKind.SHARED_IMAGE_VERSION else "",
            src.version or src.image_version_id or "",
            resolved_version,
        ),
        created_at=now,
        updated_at=now,
        previous_baseline=previous_baseline,
        state=state,
        attempts=attempts,
        run_started_at=run_started_at,
    )


def first_transition(build: Build, *, why: str, by: str) -> Transition:
    return Transition(build.id, build.created_at, None, None, build.state, build.sub_state, why, by)


@dataclass(frozen=True)
class RegionStatus:
    """Replication of one build's gallery image version in one region."""

    build_id: BuildId
    region: Region
    target: bool  # the distributor asked for this region
    state: str  # ReplicationState value; kept as text so an unknown newer value is still recorded
    progress: int = 0
    details: str = ""
    first_seen_replicating_at: datetime | None = None
    completed_at: datetime | None = None
    repairs: int = 0
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", bounded(self.details))


def bounded(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text`, cut to `limit` characters with a note saying how much was cut."""
    if len(text) <= limit:
        return text
    keep = limit - len(_TRUNCATED.format(len(text)))
    return text[:keep] + _TRUNCATED.format(len(text) - keep)


# -- identifiers ---------------------------------------------------------------------------------------
_BUILD_ID = re.compile(r"(?P<at>[0-9]{8}T[0-9]{6}Z)-(?P<template>[0-9a-f]{16})-(?P<nonce>[0-9a-f]{10})")


def template_key(template_id: str) -> str:
    """A short, key-safe identity for a template: resource ids are case-insensitive and contain '/'."""
    return hashlib.sha256(fold(template_id.strip()).encode()).hexdigest()[:16]


def new_build_id(template_id: str, created_at: datetime, idempotency_key: str) -> BuildId:
    """Readable (when, which template) and unique per request: the nonce comes from the request's key."""
    nonce = hashlib.sha256(f"{template_key(template_id)}\n{idempotency_key}".encode()).hexdigest()[:10]
    return BuildId(f"{created_at:%Y%m%dT%H%M%SZ}-{template_key(template_id)}-{nonce}")


@dataclass(frozen=True)
class ParsedBuildId:
    at: datetime
    template_key: str
    nonce: str


class InvalidBuildId(PermanentError):
    pass


def parse_build_id(build_id: str) -> ParsedBuildId:
    found = _BUILD_ID.fullmatch(build_id)
    refused = InvalidBuildId(
        f"{build_id[:100]!r} is not a build id (expected e.g. 20261110T060000Z-<16 hex>-<10 hex>)"
    )
    if not found:
        raise refused
    try:
        at = datetime.strptime(found["at"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:  # the shape of a time, but no such time (month 13)
        raise refused from None
    if at.year < 1970:
        raise refused
    return ParsedBuildId(at, found["template"], found["nonce"])
