"""Releases (DESIGN §3; issue 13): a gated template's published image is a candidate until it has
earned promotion; a promoted one can be rolled back, which revokes it and flags every image built on it.

Pure: no I/O, `now` passed in. A template is *gated* when its gallery distributor publishes with
`excludeFromLatest: true`: gallery `latest` (and so every child and every VM scale set on automatic
OS upgrades) ignores the version until rebuilder promotes it (`excludeFromLatest: false`).

The release of a build moves through its own small machine — Candidate → Promoted | Rejected,
Promoted → Revoked — recorded beside the build (a finished build is history and never rewritten).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from .builds import Build, BuildId, BuildState
from .errors import PermanentError
from .model import RunState

PROMOTE_TAG = "rebuild-promote"  # auto (default) | manual
BAKE_TAG = "rebuild-bake-hours"  # hours a Published candidate waits before promotion (default 0)
MAX_BAKE_HOURS = 720


class ReleaseState(StrEnum):
    CANDIDATE = "Candidate"  # published, excluded from latest: protects nobody yet
    PROMOTED = "Promoted"  # in latest
    REJECTED = "Rejected"  # never promoted: its run did not fully succeed (or failed validation)
    REVOKED = "Revoked"  # rolled back: never chosen again


ALLOWED: dict[ReleaseState, frozenset[ReleaseState]] = {
    ReleaseState.CANDIDATE: frozenset({ReleaseState.PROMOTED, ReleaseState.REJECTED}),
    ReleaseState.PROMOTED: frozenset({ReleaseState.REVOKED}),
    ReleaseState.REJECTED: frozenset(),
    ReleaseState.REVOKED: frozenset(),
}


class IllegalRelease(PermanentError):
    def __init__(self, build_id: str, current: ReleaseState, requested: ReleaseState) -> None:
        allowed = ", ".join(sorted(ALLOWED[current])) or "none"
        super().__init__(
            f"release of {build_id}: {current} → {requested} is not allowed (allowed: {allowed})"
        )


class NoFallback(PermanentError):
    """A rollback with no earlier promoted version to fall back to."""


@dataclass(frozen=True)
class Gate:
    """How a template releases: gated (its distributor excludes new versions from latest), by hand or
    automatically, after a bake time."""

    gated: bool = False
    manual: bool = False
    bake: timedelta = timedelta(0)
    problems: tuple[str, ...] = ()


def gate_of(tags: Mapping[str, str], *, excluded_from_latest: bool) -> Gate:
    """The template's gate from its distributor's `excludeFromLatest` and its tags (names and values
    case-insensitive); an invalid tag is reported and its default used."""
    manual, bake, problems = False, timedelta(0), []
    for name, value in tags.items():
        tag, text = name.strip().lower(), (value or "").strip().lower()
        if tag == PROMOTE_TAG:
            if text in ("auto", "manual"):
                manual = text == "manual"
            else:
                problems.append(f"tag {PROMOTE_TAG}={value!r} is neither 'auto' nor 'manual'; auto is used")
        elif tag == BAKE_TAG:
            if re.fullmatch(r"[0-9]{1,4}", text) and int(text) <= MAX_BAKE_HOURS:
                bake = timedelta(hours=int(text))
            else:
                problems.append(f"tag {BAKE_TAG}={value!r} is not 0–{MAX_BAKE_HOURS} hours; 0 is used")
    return Gate(excluded_from_latest, manual, bake, tuple(problems))


@dataclass(frozen=True)
class Release:
    """One build's published gallery version, as a release."""

    build_id: BuildId
    template_name: str
    version_id: str  # the gallery image version it published
    state: ReleaseState
    at: datetime  # when it entered this state
    published_at: datetime | None = None  # when every target region completed: the bake counts from here
    approved_by: str = ""  # who approved a manual promotion
    by: str = ""  # who made the last move
    why: str = ""

    @property
    def version(self) -> str:
        return self.version_id.rstrip("/").rsplit("/", 1)[-1]

    def moved(self, to: ReleaseState, *, at: datetime, by: str, why: str) -> Release:
        if to not in ALLOWED[self.state]:
            raise IllegalRelease(self.build_id, self.state, to)
        return dataclasses.replace(self, state=to, at=at, by=by, why=why)


# -- promotion ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Promote:
    why: str


@dataclass(frozen=True)
class Reject:
    why: str


@dataclass(frozen=True)
class Hold:
    why: str
    until: datetime | None = None  # when it may be looked at again (the bake's end), if known


Verdict = Promote | Reject | Hold


def promotion(
    build: Build,
    release: Release,
    gate: Gate,
    *,
    run: RunState | None,
    validation_failed: bool,
    now: datetime,
) -> Verdict:
    """Whether a candidate is promoted now: every gate must hold — Published everywhere, the run
    Succeeded (a partial success or a failed validation is rejected for good), baked, and approved
    when promotion is manual."""
    if release.state is not ReleaseState.CANDIDATE:
        return Hold(f"{release.version} is {release.state.value}")
    rejected = _rejection(build, release, run, validation_failed)
    if rejected:
        return Reject(rejected)
    held, until = _holding(build, release, gate, now)
    if held:
        return Hold(held, until)
    approved = f", approved by {release.approved_by}" if release.approved_by else ""
    baking = f" after {gate.bake.total_seconds() / 3600:g} h of bake" if gate.bake else ""
    return Promote(f"{release.version} promoted{baking}{approved}")


def _rejection(build: Build, release: Release, run: RunState | None, validation_failed: bool) -> str:
    """Why the candidate can never be promoted ('' when it still may be)."""
    if validation_failed:
        return f"{release.version}: the run's validation failed"
    if build.state is BuildState.PARTIALLY_PUBLISHED or run is RunState.PARTIALLY_SUCCEEDED:
        return f"{release.version}: the build did not fully succeed ({build.state.value}, run {run})"
    if run is not None and run is not RunState.SUCCEEDED:
        return f"{release.version}: the run ended {run.value}"
    return ""


def _holding(build: Build, release: Release, gate: Gate, now: datetime) -> tuple[str, datetime | None]:
    """Why the candidate waits, and until when if that is known ('' when it need not)."""
    if build.state is not BuildState.PUBLISHED or release.published_at is None:
        return f"{release.version} is not replicated to every target region yet", None
    baked = release.published_at + gate.bake
    if now < baked:
        return f"{release.version} is baking until {baked:%Y-%m-%d %H:%M} UTC", baked
    if gate.manual and not release.approved_by:
        return (
            f"{release.version} waits for approval (python -m rebuilder promote {release.template_name})",
            None,
        )
    return "", None


# -- rollback -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rollback:
    revoke: Release  # the current promoted version, moved to Revoked (demote: excludeFromLatest true)
    fallback: Release  # the previous promoted version: `latest` again


def rollback(releases: Sequence[Release], *, now: datetime, by: str, why: str) -> Rollback:
    """Demote the template's current promoted version so the previous promoted one is `latest` again.
    `releases`: the template's, in any order; refused when there is nothing to fall back to."""
    promoted = sorted(
        (r for r in releases if r.state is ReleaseState.PROMOTED), key=lambda r: (r.at, r.version)
    )
    if not why.strip():
        raise PermanentError("a rollback needs a reason")
    if not promoted:
        raise NoFallback("nothing to roll back: no version of this template is promoted")
    if len(promoted) < 2:
        raise NoFallback(
            f"cannot roll back {promoted[-1].version}: no earlier promoted version to fall back to"
        )
    current, previous = promoted[-1], promoted[-2]
    return Rollback(current.moved(ReleaseState.REVOKED, at=now, by=by, why=why), previous)


# -- revocation flows down -----------------------------------------------------------------------------
def built_on_revoked(child_build: Build | None, revoked: Mapping[str, Release]) -> str:
    """Why a child's current image must be rebuilt ('' when it need not): it was built from a parent
    version that has been revoked. `revoked`: revoked releases by the parent build id."""
    if child_build is None or child_build.lineage is None:
        return ""
    parent = revoked.get(child_build.lineage.parent_build_id)
    if parent is None:
        return ""
    return f"built on revoked {child_build.lineage.parent_template} {parent.version}"
