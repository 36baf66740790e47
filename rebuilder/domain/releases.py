"""Releases: a gated template's published image is a candidate until it has earned
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
from .builds import Build, BuildId, BuildState
from .casing import fold
from .errors import Conflict, PermanentError
from .model import GalleryImageVersion, GalleryVersionId, ImageTemplate, ReplicationState
from .regions import Region
from .standing import LatestDrift, RegionStanding, RollbackIntent, TemplateState

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
        tag, text = fold(name.strip()), fold((value or "").strip())
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
class Fallback:
    """What gallery `latest` serves in one region once the revoked version is demoted, read from the
    gallery (not from the ledger): it may be a version built before rebuilder managed the template."""

    region: Region
    version: str  # the gallery version id ('' : nothing would be latest there)
    build_id: str = ""  # the ledger's build of it ('' : not built by rebuilder, or not remembered)
    source_version: str = ""
    completed_at: datetime | None = None  # when it was replicated there, where known
    expected: str = ""  # the version the ledger expected there (its previous build in latest), '' none

    @property
    def name(self) -> str:
        return self.version.rstrip("/").rsplit("/", 1)[-1] if self.version else ""

    @property
    def differs(self) -> bool:
        """The gallery will serve another version than the ledger expected."""
        return fold(self.version) != fold(self.expected)


@dataclass(frozen=True)
class Rollback:
    revoke: Build  # the current version in latest: demoted (excludeFromLatest true), Revoked
    fallbacks: tuple[Fallback, ...]  # per region, what latest serves again
    previous: Build | None = None  # the ledger's previous build in latest (what it expected)
    latest: Build | None = None  # the ledger's build every region falls back to, if there is one

    @property
    def fallback_build(self) -> str:
        """The one ledger build every region falls back to ('' : several, or one rebuilder never built)."""
        builds = {f.build_id for f in self.fallbacks}
        return next(iter(builds)) if len(builds) == 1 else ""


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


def _live(builds: Sequence[Build]) -> list[Build]:
    return sorted((b for b in builds if in_latest(b) is not None and versions_of(b)), key=_entered)


def to_roll_back(builds: Sequence[Build], *, of: str = "") -> Build:
    """The build a rollback demotes: the template's newest in latest, or build `of`'s (a rollback asked
    earlier and being finished). `builds`: the template's, in any order."""
    if of:
        current = next((b for b in builds if b.id == of), None)
        if current is None or (current.state is not BuildState.REVOKED and in_latest(current) is None):
            raise NoFallback(f"cannot roll back {of}: its image is not in latest")
        return current
    live = _live(builds)
    if not live:
        raise NoFallback("nothing to roll back: no image of this template is in latest")
    return live[-1]


def previous_in_latest(builds: Sequence[Build], current: Build) -> Build | None:
    """What the ledger expects to be latest again once `current` is demoted: its previous build in
    latest (never a revoked one, nor a candidate)."""
    earlier = [b for b in _live(builds) if b.id != current.id and _entered(b) <= _entered(current)]
    return earlier[-1] if earlier else None


def version_order(name: str) -> tuple[int, ...] | None:
    """A gallery version name's order (`Major.Minor.Patch`, each a 32-bit integer); None if it is not one."""
    parts = name.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def serves_in(version: GalleryImageVersion, where: Region) -> bool:
    """Whether `latest` may resolve to `version` in `where`: Succeeded, replicated there, and its
    effective flag there false. Compute's GalleryImageVersionPublishingProfile.excludeFromLatest: "If
    set to true, Virtual Machines deployed from the latest version of the Image Definition won't use
    this Image Version"; TargetRegion.excludeFromLatest: "...in this region" (api 2026-03-03, kept in
    tests/reference/specs/compute-gallery-2026-03-03.json); the highest such version is `latest`."""
    return (
        fold(version.provisioning_state or "") == "succeeded"
        and version_order(version.name) is not None
        and not version.excluded_in(where)
        and any(r.region == where and r.state is ReplicationState.COMPLETED for r in version.replication)
    )


def fallback_in(
    where: Region,
    served: GalleryImageVersion | None,
    builds: Sequence[Build],
    previous: Build | None,
) -> Fallback:
    """The fallback in `where` (`served`: what the gallery will serve there), named by the ledger's
    build of it when there is one, with what the ledger expected beside it."""
    expected = ""
    if previous is not None and served is not None:
        image = fold(served.id).rsplit("/versions/", 1)[0]
        expected = next((v for v in versions_of(previous) if fold(v).startswith(image + "/")), "")
    elif previous is not None:
        expected = next(iter(versions_of(previous)), "")
    if served is None:
        return Fallback(where, "", expected=expected)
    built = next((b for b in builds if fold(served.id) in {fold(v) for v in versions_of(b)}), None)
    tags = dict(served.tags)
    return Fallback(
        where,
        served.id,
        built.id if built is not None else "",
        built.source.resolved_version if built is not None else tags.get("rebuilder-source-version", ""),
        served.published_at,
        expected,
    )


def rollback(
    current: Build,
    fallbacks: Sequence[Fallback],
    *,
    now: datetime,
    by: str,
    why: str,
    previous: Build | None = None,
    builds: Sequence[Build] = (),
) -> Rollback:
    """Demote `current` so what the gallery serves once it is out of latest (`fallbacks`, per region)
    is `latest` again; refused when some region would have nothing to serve."""
    if not why.strip():
        raise PermanentError("a rollback needs a reason")
    empty = sorted(f.region for f in fallbacks if not f.version)
    if empty or not fallbacks:
        where = ", ".join(empty) or "any region"
        raise NoFallback(
            f"cannot roll back {version_name(current)}: no earlier version to fall back to in {where} "
            "(the gallery holds no earlier Succeeded version replicated there that is not excluded "
            "from latest, so latest would fail there)"
        )
    revoked = current
    if current.state is not BuildState.REVOKED:
        revoked = dataclasses.replace(
            unclaimed(current), state=BuildState.REVOKED, updated_at=now, message=f"revoked by {by}: {why}"
        )
    decided = Rollback(revoked, tuple(fallbacks), previous)
    latest = (
        next((b for b in builds if b.id == decided.fallback_build), None) if decided.fallback_build else None
    )
    return dataclasses.replace(decided, latest=latest)


def fallen_back(fallbacks: Sequence[Fallback]) -> str:
    """What is latest again, per region, and where the gallery disagrees with what the ledger expected:
    "1.0.1 is latest again in northeurope, westeurope (the ledger expected 1.0.2 in westeurope)"."""
    by_version: dict[str, list[str]] = {}
    for f in fallbacks:
        by_version.setdefault(f.name or "nothing", []).append(f.region)
    text = "; ".join(
        f"{name} is latest again in {', '.join(sorted(set(where)))}" for name, where in by_version.items()
    )
    differ = [
        f"{f.expected.rsplit('/', 1)[-1] if f.expected else 'no version'} in {f.region}"
        for f in fallbacks
        if f.differs
    ]
    return text + (f" (the ledger expected {', '.join(differ)})" if differ else "")


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
    state: TemplateState, revoked: Build, fallbacks: Sequence[Fallback], *, now: datetime
) -> TemplateState:
    """The template's row once `revoked` is rolled back (idempotent): the rollback is no longer under
    way, the row remembers the revoked build (its children are checked against it), and every region
    it stood in stands on what the gallery serves there again. The baseline version is kept: the same
    source is not rebuilt automatically into the same image; the next source version, a changed
    definition or an on-demand request rebuilds it."""
    entry = (str(revoked.id), version_name(revoked))
    after = state
    if state.rollback is not None and state.rollback.build_id == revoked.id:
        after = dataclasses.replace(after, rollback=None, updated_at=now)
    if entry not in state.revoked:
        after = dataclasses.replace(after, revoked=(*state.revoked, entry)[-REVOKED_KEPT:], updated_at=now)
    for fallback in fallbacks:
        standing = next((r for r in after.regions if r.region == fallback.region), None)
        if fallback.version and standing is not None and standing.build_id == revoked.id:
            back = RegionStanding(
                fallback.region,
                BuildId(fallback.build_id),
                fallback.source_version,
                fallback.version,
                ReplicationState.COMPLETED,
                fallback.completed_at,
            )
            after = after.with_region(back, at=now)
    return after


def latest_drift(state: TemplateState, versions: Sequence[GalleryImageVersion]) -> tuple[LatestDrift, ...]:
    """Where the gallery's effective flags (`versions`: those of the images the template distributes
    to, as listed) disagree with the ledger: every image a region stands on should be in latest there;
    every revoked version and the candidate out of latest in every region it is published to."""
    by_id = {fold(v.id): v for v in versions}
    found: list[LatestDrift] = []
    for standing in state.regions:
        image = resource_ids.maybe_gallery_version_id(standing.image_version)
        version = by_id.get(fold(image)) if image else None
        if version is not None and version.excluded_in(standing.region):
            found.append(LatestDrift(standing.region, version.name, ledger_in_latest=True))
    out = {name for _, name in state.revoked} | (
        {state.candidate_version} if state.candidate_version else set()
    )
    for version in versions:
        if version.name in out:
            found += [
                LatestDrift(r, version.name, False) for r in version.regions if not version.excluded_in(r)
            ]
    return tuple(sorted(set(found), key=lambda d: (d.region, d.version)))


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
