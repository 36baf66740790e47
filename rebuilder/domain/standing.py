"""Where each template stands: one current record per template, and every source version ever seen.

Pure records. `TemplateState` is the answer to "where do we stand" (baseline, open builds, failures,
disabled, and per region the newest image version replicated there); `SeenVersion` records when the
service first saw a source version — the start of an exposure window — and is never rewritten.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from .builds import BuildId, BuildState, bounded
from .model import ImageState, SourceRef, TemplateId
from .regions import Region


@dataclass(frozen=True)
class RegionStanding:
    """The newest image of a template that is replicated (or replicating) in one region."""

    region: Region
    build_id: BuildId
    source_version: str
    image_version: str  # the gallery image version id, or '' before distribution
    state: str  # replication state as Azure reports it
    completed_at: datetime | None = None


@dataclass(frozen=True)
class LatestDrift:
    """A region where the gallery's effective `excludeFromLatest` for one of the template's versions
    disagrees with the ledger: a version the ledger stands on there is out of latest, or one it
    revoked, rejected or holds as a candidate is in it."""

    region: Region
    version: str  # the gallery version's name
    ledger_in_latest: bool  # what the ledger says: True when the version should be `latest` there

    def describe(self) -> str:
        where = f"{self.region}: {self.version} is"
        if self.ledger_in_latest:
            return f"{where} excluded from latest in the gallery; the ledger stands on it"
        return f"{where} in latest in the gallery; the ledger has it out of latest"


@dataclass(frozen=True)
class RollbackIntent:
    """A rollback asked for and not finished yet, written on the template's row before anything else
    changes: while its caller's lease runs, a second rollback is refused; once it has run out (the
    caller died), the next reconcile pass, or asking again, finishes it."""

    build_id: str  # the build whose image is demoted and revoked
    at: datetime  # when it was asked
    by: str  # who asked (principal name, else object id)
    by_id: str = ""
    reason: str = ""
    correlation_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", bounded(self.reason, 2_000))


@dataclass(frozen=True)
class TemplateState:
    template_id: TemplateId
    name: str
    location: Region
    updated_at: datetime
    mode: str = "auto"  # the golden-image-rebuild tag: auto | manual
    gallery_image_id: str = ""  # lower-cased, when the source is a gallery image: events find templates by it
    baseline_version: str = ""  # source version of the last successful build (or adopted on first sight)
    baseline_build_id: str = ""  # '' when the baseline was adopted from the template's own last run
    baseline_at: datetime | None = None  # when the last successful build began: the image's age
    last_build_id: str = ""
    last_build_state: BuildState | None = None
    open_builds: tuple[BuildId, ...] = ()  # unfinished builds, oldest first: what the reconciler follows
    consecutive_failures: int = 0
    disabled: bool = False
    disabled_reason: str = ""
    disabled_at: datetime | None = None
    regions: tuple[RegionStanding, ...] = ()
    known_run_started_at: datetime | None = None  # newest AIB run the ledger accounts for (else: external)
    distributes_to: tuple[str, ...] = ()  # gallery images (lower-cased ids) it publishes to: its children's
    follow_after: datetime | None = None  # Azure answered with a temporary error: look again from then
    follow_errors: int = 0  # temporary errors in a row while following its builds (the backoff grows)
    source: SourceRef | None = None  # where the ledger keeps its source's sightings (its candidates)
    baseline_parent_build: str = ""  # a child: the parent build whose image its baseline was built on
    revoked: tuple[tuple[str, str], ...] = ()  # (build id, gallery version) rolled back, newest last
    candidate_build: str = ""  # a gated build whose image awaits promotion (excluded from latest)
    candidate_version: str = ""  # its gallery version
    policy_tags: tuple[tuple[str, str], ...] = ()  # its rebuild-* tags (name lower-cased, value as written)
    rollback: RollbackIntent | None = None  # a rollback under way (or whose caller died)
    latest_drift: tuple[LatestDrift, ...] = ()  # regions where the gallery disagrees (last watch pass)

    def __post_init__(self) -> None:
        object.__setattr__(self, "disabled_reason", bounded(self.disabled_reason, 2_000))

    def with_open(self, build_id: BuildId, *, at: datetime) -> TemplateState:
        if build_id in self.open_builds:
            return self
        return dataclasses.replace(self, open_builds=(*self.open_builds, build_id), updated_at=at)

    def without_open(self, build_id: BuildId, *, at: datetime) -> TemplateState:
        remaining = tuple(b for b in self.open_builds if b != build_id)
        return dataclasses.replace(self, open_builds=remaining, updated_at=at)

    def with_region(self, standing: RegionStanding, *, at: datetime) -> TemplateState:
        others = tuple(r for r in self.regions if r.region != standing.region)
        ordered = tuple(sorted((*others, standing), key=lambda r: r.region))
        return dataclasses.replace(self, regions=ordered, updated_at=at)


@dataclass(frozen=True)
class TemplateAction:
    """One append-only row of a template's own audit trail: what a person did to it and why (e.g.
    re-enabled it after it was disabled). Never updated, never deleted."""

    template_id: TemplateId
    at: datetime
    action: str  # enabled
    by: str  # the person (principal name, else object id) or the CLI user
    by_id: str = ""  # their object id, when known
    why: str = ""
    correlation_id: str = ""
    changed: str = ""  # what the call changed (the build and its new state, the row, …), for people

    def __post_init__(self) -> None:
        object.__setattr__(self, "why", bounded(self.why, 2_000))
        object.__setattr__(self, "changed", bounded(self.changed, 1_000))


@dataclass(frozen=True)
class SeenVersion:
    source: SourceRef
    version: str
    first_seen_at: datetime
    deprecation: ImageState = ImageState.ACTIVE
    deprecation_changed_at: datetime | None = None
