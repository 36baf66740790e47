"""Releases (issue 13): a gated template's published image is a candidate until it has earned
promotion; a promoted one can be rolled back, which revokes it and flags every image built on it.

Pure: no I/O, `now` passed in. A template is *gated* when its gallery distributor publishes with
`excludeFromLatest: true`: gallery `latest` (and so every child and every VM scale set on automatic
OS upgrades) ignores the version until rebuilder promotes it (`excludeFromLatest: false`).

The build's own state machine carries the release (domain/builds.py): Replicating → Candidate →
Promoted | Rejected; Published or Promoted → Revoked.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from . import resource_ids
from .builds import Build, BuildState, RegionStatus
from .errors import Conflict, PermanentError
from .model import GalleryVersionId, ImageTemplate, ReplicationState
from .standing import RegionStanding, RollbackIntent, TemplateState

PROMOTE_TAG = "rebuild-promote"  # auto (default) | manual
BAKE_TAG = "rebuild-bake-hours"  # hours a candidate waits, from when it was replicated everywhere
MAX_BAKE_HOURS = 720
PARTIAL_RUN = "PartiallySucceeded"
FAILED_RUN = "Failed"  # a run whose validation failed, distributed anyway (continueDistributeOnFailure)
_RUN_WHY = {PARTIAL_RUN: "the run partially succeeded", FAILED_RUN: "its validation failed"}


PROMOTE = "promote"  # the release step claimed on a build (a rollback is claimed on the template's row)
CLAIM_LEASE = timedelta(minutes=5)  # how long a claimed step is left to its claimant (then taken over)


def claimed(build: Build, step: str, by: str, now: datetime) -> Build:
    """The build claimed for a release step: written (etag-checked) before the gallery is changed, so
    of two callers racing for one step only one changes the gallery."""
    return dataclasses.replace(build, claim=step, claimed_at=now, claimed_by=by, updated_at=now)


def unclaimed(build: Build) -> Build:
    return dataclasses.replace(build, claim="", claimed_at=None, claimed_by="")


def under_way(build: Build, step: str, now: datetime) -> str:
    """Why the step is left alone now: somebody claimed it within the lease ("" when it is free; a
    claim older than the lease is a caller that died, and is taken over)."""
    if build.claim != step or build.claimed_at is None or now >= build.claimed_at + CLAIM_LEASE:
        return ""
    free = build.claimed_at + CLAIM_LEASE
    return (
        f"{step} of {version_name(build)} is under way by {build.claimed_by or 'another caller'} since "
        f"{build.claimed_at:%Y-%m-%d %H:%M:%S} UTC (taken over from {free:%H:%M:%S} UTC if unfinished)"
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


def is_gated(template: ImageTemplate) -> bool:
    return any(d.excluded_from_latest and d.gallery_image_id for d in template.distributions)


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


def gate_for(template: ImageTemplate) -> Gate:
    return gate_of(template.tags, excluded_from_latest=is_gated(template))


def versions_of(build: Build) -> tuple[GalleryVersionId, ...]:
    """The gallery image versions a build published (its other artifacts are not releases)."""
    return tuple(v for v in map(resource_ids.maybe_gallery_version_id, build.outputs) if v)


def version_name(build: Build) -> str:
    names = [v.rstrip("/").rsplit("/", 1)[-1] for v in versions_of(build)]
    return ", ".join(names) or build.id


# -- entering: the end of distribution ------------------------------------------------------------------
def released(build: Build, *, partial_regions: bool, now: datetime) -> tuple[Build, str]:
    """A gated build whose distribution is over: a candidate when its run fully succeeded and every
    region completed, else rejected for good (never promoted)."""
    if build.run_outcome in (PARTIAL_RUN, FAILED_RUN) or partial_regions:
        why = _RUN_WHY.get(build.run_outcome, "a region failed")
        rejected = f"{version_name(build)} rejected: {why}; it is never promoted"
        after = dataclasses.replace(
            build, state=BuildState.REJECTED, sub_state=None, updated_at=now, message=rejected
        )
        return after, rejected
    candidate = dataclasses.replace(
        build, state=BuildState.CANDIDATE, sub_state=None, updated_at=now, candidate_at=now
    )
    return candidate, f"{version_name(build)} replicated everywhere as a candidate (excluded from latest)"


# -- promotion ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ready:
    why: str


@dataclass(frozen=True)
class Hold:
    why: str
    until: datetime | None = None  # when it may be looked at again (the bake's end), if known


def promotion(build: Build, gate: Gate, *, now: datetime) -> Ready | Hold:
    """Whether a candidate is promoted now: baked (counted from when it was replicated everywhere) and,
    when promotion is manual, approved."""
    if build.state is not BuildState.CANDIDATE or build.candidate_at is None:
        return Hold(f"{build.id} is {build.state.value}, not a candidate")
    baked = build.candidate_at + gate.bake
    if now < baked:
        return Hold(f"{version_name(build)} is baking until {baked:%Y-%m-%d %H:%M} UTC", baked)
    if gate.manual and not build.approved_by:
        return Hold(
            f"{version_name(build)} waits for approval (python -m rebuilder promote {build.template_name})"
        )
    approved = f", approved by {build.approved_by}" if build.approved_by else ""
    baking = f" after {gate.bake.total_seconds() / 3600:g} h of bake" if gate.bake else ""
    return Ready(f"{version_name(build)} promoted into latest{baking}{approved}")


# -- rollback -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rollback:
    revoke: Build  # the current version in latest: demoted (excludeFromLatest true), Revoked
    fallback: Build  # the previous version in latest: `latest` again


def in_latest(build: Build) -> datetime | None:
    """When the build's image entered `latest` (None: it never did, or no longer is)."""
    if build.state is BuildState.PROMOTED:
        return build.promoted_at or build.updated_at
    if build.state is BuildState.PUBLISHED:
        return build.updated_at
    return None


def _entered(build: Build) -> datetime:
    """When the build's image entered latest (a revoked promoted build: when it was promoted)."""
    return in_latest(build) or build.promoted_at or build.updated_at


def rollback(builds: Sequence[Build], *, now: datetime, by: str, why: str, of: str = "") -> Rollback:
    """Demote the template's current version in latest (or build `of`'s, a rollback asked earlier and
    being finished) so the previous one is `latest` again. `builds`: the template's, in any order;
    refused when there is nothing to fall back to."""
    if not why.strip():
        raise PermanentError("a rollback needs a reason")
    live = sorted((b for b in builds if in_latest(b) is not None and versions_of(b)), key=_entered)
    if of:
        current = next((b for b in builds if b.id == of), None)
        if current is None or (current.state is not BuildState.REVOKED and in_latest(current) is None):
            raise NoFallback(f"cannot roll back {of}: its image is not in latest")
    elif live:
        current = live[-1]
    else:
        raise NoFallback("nothing to roll back: no image of this template is in latest")
    earlier = [b for b in live if b.id != current.id and _entered(b) <= _entered(current)]
    if not earlier:
        raise NoFallback(f"cannot roll back {version_name(current)}: no earlier version to fall back to")
    revoked = current
    if current.state is not BuildState.REVOKED:
        revoked = dataclasses.replace(
            unclaimed(current), state=BuildState.REVOKED, updated_at=now, message=f"revoked by {by}: {why}"
        )
    return Rollback(revoked, earlier[-1])


def rollback_under_way(state: TemplateState, now: datetime) -> str:
    """Why a rollback of the template is refused now: another was asked within its caller's lease
    ("" when none is under way; one whose lease ran out is finished by whoever comes next)."""
    intent = state.rollback
    if intent is None or now >= intent.at + CLAIM_LEASE:
        return ""
    free = intent.at + CLAIM_LEASE
    return (
        f"a rollback of {state.name} is under way, asked by {intent.by or 'another caller'} at "
        f"{intent.at:%Y-%m-%d %H:%M:%S} UTC (finished by the next pass from {free:%H:%M:%S} UTC if its "
        "caller stops)"
    )


def asked(state: TemplateState, intent: RollbackIntent) -> TemplateState:
    """The template's row with the rollback `intent` on it: written (etag-checked) before anything
    else changes, so of two callers racing to roll one template back only one goes on."""
    busy = rollback_under_way(state, intent.at)
    if busy:
        raise Conflict(busy)
    return dataclasses.replace(state, rollback=intent, updated_at=intent.at)


def abandoned(state: TemplateState, now: datetime) -> RollbackIntent | None:
    """The rollback asked on the template whose caller's lease ran out (it died): to be finished."""
    intent = state.rollback
    return intent if intent is not None and now >= intent.at + CLAIM_LEASE else None


def forgotten(state: TemplateState, intent: RollbackIntent, *, now: datetime) -> TemplateState:
    """The row without `intent` (a rollback refused after it was asked: nothing was changed)."""
    return dataclasses.replace(state, rollback=None, updated_at=now) if state.rollback == intent else state


REVOKED_KEPT = 20  # revoked builds a template's row remembers (its children are checked against them)


def after_rollback(
    state: TemplateState,
    revoked: Build,
    fallback: Build,
    fallback_rows: Sequence[RegionStatus],
    *,
    now: datetime,
) -> TemplateState:
    """The template's row once `revoked` is rolled back (idempotent): the rollback is no longer under
    way, the row remembers the revoked build (its children are checked against it), and every region
    it stood in stands on the fallback's image again. The baseline version is kept: the same source
    is not rebuilt automatically into the same image; the next source version, a changed definition
    or an on-demand request rebuilds it."""
    entry = (str(revoked.id), version_name(revoked))
    after = state
    if state.rollback is not None and state.rollback.build_id == revoked.id:
        after = dataclasses.replace(after, rollback=None, updated_at=now)
    if entry not in state.revoked:
        after = dataclasses.replace(after, revoked=(*state.revoked, entry)[-REVOKED_KEPT:], updated_at=now)
    image = next(iter(versions_of(fallback)), "")
    for row in fallback_rows:
        standing = next((r for r in after.regions if r.region == row.region), None)
        if (
            row.state == ReplicationState.COMPLETED
            and standing is not None
            and standing.build_id == revoked.id
        ):
            back = RegionStanding(
                row.region, fallback.id, fallback.source.resolved_version, image, row.state, row.completed_at
            )
            after = after.with_region(back, at=now)
    return after


# -- provenance on the image itself ------------------------------------------------------------------------
TAG_PREFIX = "rebuilder-"
_TAG_VALUE = 256  # Azure's limit on a tag value


def provenance_tags(build: Build, definition_hash: str) -> dict[str, str]:
    """Tags every gallery version a build publishes carries: where the image came from."""
    tags = {
        "rebuilder-build": build.id,
        "rebuilder-reason": build.reason.value,
        "rebuilder-source-version": build.source.resolved_version,
        "rebuilder-root-version": build.root_version,
        "rebuilder-definition-hash": definition_hash,
    }
    return {name: value[:_TAG_VALUE] for name, value in tags.items() if value}
