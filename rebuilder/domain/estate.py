"""Where every template stands, as the security team reads it: per template × region the image there,
the source and root versions it was built from, whether a newer patched source exists, and the
exposure. Pure: built from ledger records already read; `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .builds import Build, BuildId, BuildState, RegionStatus
from .exposure import Basis, ExposureWindow
from .model import ImageState, ReplicationState, SourceRef
from .policies import NO_RULES, Rules, eligible_at, next_due, opening, rules_of
from .regions import Region
from .releases import version_name
from .standing import SeenVersion, TemplateState
from .versions import version_key


@dataclass(frozen=True)
class Exposure:
    """The window that matters in a region now: the oldest still open, else the newest closed."""

    basis: Basis
    version: str  # the source version whose first sighting opened it
    first_seen_at: datetime
    duration: timedelta
    open: bool


@dataclass(frozen=True)
class Cell:
    region: Region
    build_id: str  # the build whose image is there ('' when none is yet)
    image_version_id: str
    source_version: str  # what the image was built from (the template's own source)
    root_version: str  # the Marketplace version at its root (the same, for a baseline)
    replication: str  # the newest build's replication state in the region
    newer: str  # the newest usable root version seen that the region's image lacks ('' if none)
    root: Exposure | None
    direct: Exposure | None
    promoted: bool = False  # the image there reached latest by promotion (a gated template)
    candidate: str = ""  # a candidate version replicated there, awaiting promotion (out of latest)
    revoked: str = ""  # a version rolled back there, newer than the image it stands on again

    @property
    def failed(self) -> bool:
        return self.replication == ReplicationState.FAILED

    @property
    def stale(self) -> bool:
        """Exposed: a newer patched source exists, or a window is still open."""
        return bool(self.newer) or bool(self.root and self.root.open)

    @property
    def image_version(self) -> str:
        return self.image_version_id.rstrip("/").rsplit("/", 1)[-1] if self.image_version_id else ""


@dataclass(frozen=True)
class TemplateSummary:
    state: TemplateState
    builds: tuple[Build, ...]  # newest first (as many as were read)
    root_source: SourceRef | None
    candidate: str  # the newest usable version seen of its own source
    newest_root: str  # the newest usable root version seen
    cells: tuple[Cell, ...]
    windows: tuple[ExposureWindow, ...]  # direct and root, labelled
    next_due_at: datetime | None = None  # when a rule next makes it due (None: a new version, or never)
    next_due_why: str = ""
    policies: str = ""  # its rebuild policies, in words
    built_on_revoked: str = ""  # a child: "built on revoked <parent> <version>" when its image is

    @property
    def is_child(self) -> bool:
        return any(b.lineage for b in self.builds) or bool(self.state.gallery_image_id)

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(b.lineage.parent_template for b in self.builds if b.lineage))

    @property
    def last_build(self) -> Build | None:
        return self.builds[0] if self.builds else None

    @property
    def open_builds(self) -> tuple[Build, ...]:
        return tuple(b for b in self.builds if b.id in self.state.open_builds)


def summarise(
    state: TemplateState,
    builds: Sequence[tuple[Build, Sequence[RegionStatus]]],
    windows: Sequence[ExposureWindow],
    root_windows: Sequence[ExposureWindow],
    seen: Sequence[SeenVersion],
    root_seen: Sequence[SeenVersion],
    root_source: SourceRef | None,
    *,
    now: datetime,
    older: Sequence[Build] = (),
    defaults: Rules = NO_RULES,
    revoked: Mapping[str, tuple[str, str]] | None = None,
) -> TemplateSummary:
    """`older`: builds whose images are still in some region although not among `builds`; `defaults`:
    the service-wide rebuild policies its tags override; `revoked`: every revoked build the ledger's
    rows remember, by id → (its template, its version)."""
    by_id = {b.id: b for b in (*older, *(b for b, _ in builds))}
    gated = any(b.candidate_at is not None for b, _ in builds)
    newest_root = _newest(root_seen)
    regions = sorted(
        {r.region for r in state.regions} | {row.region for _, rows in builds[:1] for row in rows}
    )
    cells = []
    for where in regions:
        build_id, image, source_version, root_version = _image_in(where, state, builds, by_id, gated)
        latest = next((row for _, rows in builds for row in rows if row.region == where), None)
        there = by_id.get(BuildId(build_id))
        candidate, withdrawn = _releases_in(where, builds, there)
        lacking = newest_root and (not root_version or version_key(newest_root) > version_key(root_version))
        cells.append(
            Cell(
                where,
                build_id,
                image,
                source_version,
                root_version,
                latest.state if latest else "",
                newest_root if lacking else "",
                _exposure(root_windows, where, now),
                _exposure(windows, where, now),
                there is not None and there.state is BuildState.PROMOTED,
                candidate,
                withdrawn,
            )
        )
    rules = rules_of(dict(state.policy_tags), defaults)
    due_at, why = due_next(state, rules, seen, now)
    return TemplateSummary(
        state,
        tuple(b for b, _ in builds),
        root_source,
        _newest(seen),
        newest_root,
        tuple(cells),
        (*windows, *root_windows),
        due_at,
        why,
        rules.describe(),
        _built_on_revoked(state, revoked or {}),
    )


def _built_on_revoked(state: TemplateState, revoked: Mapping[str, tuple[str, str]]) -> str:
    parent = revoked.get(state.baseline_parent_build) if state.baseline_parent_build else None
    return f"built on revoked {parent[0]} {parent[1]}" if parent else ""


def revoked_builds(states: Sequence[TemplateState]) -> dict[str, tuple[str, str]]:
    """Every revoked build the templates' rows remember: id → (template name, version)."""
    return {build_id: (s.name, version) for s in states for build_id, version in s.revoked}


_OUT_OF_LATEST = (BuildState.CANDIDATE, BuildState.REJECTED, BuildState.REVOKED)


def _completed_in(rows: Sequence[RegionStatus], where: Region) -> bool:
    return any(r.region == where and r.state == ReplicationState.COMPLETED for r in rows)


def _releases_in(
    where: Region, builds: Sequence[tuple[Build, Sequence[RegionStatus]]], there: Build | None
) -> tuple[str, str]:
    """(a candidate replicated in the region awaiting promotion, a revoked version there newer than
    the image the region stands on) — each a version name, or ''."""

    def newest(state: BuildState) -> Build | None:
        return next((b for b, rows in builds if b.state is state and _completed_in(rows, where)), None)

    candidate, revoked = newest(BuildState.CANDIDATE), newest(BuildState.REVOKED)
    if revoked is not None and there is not None and revoked.created_at < there.created_at:
        revoked = None  # rolled back before the image there was built: history
    return (version_name(candidate) if candidate else ""), (version_name(revoked) if revoked else "")


def due_next(
    state: TemplateState, rules: Rules, seen: Sequence[SeenVersion], now: datetime
) -> tuple[datetime | None, str]:
    """When the template is next due and why, from the ledger alone (the plan, which reads Azure too,
    is the authority): a newer version seen, else the next patch day or maximum age."""
    if state.disabled:
        return None, "disabled: rebuilt after it is enabled"
    if state.open_builds:
        return None, f"build {state.open_builds[-1]} is in progress"
    if state.mode == "manual":
        return None, "manual: rebuilt on request only"
    newest = max(
        (s for s in seen if s.deprecation is not ImageState.DEPRECATED),
        key=lambda s: version_key(s.version),
        default=None,
    )
    if newest is not None and (
        not state.baseline_version or version_key(newest.version) > version_key(state.baseline_version)
    ):
        ripe = eligible_at(rules, newest.first_seen_at, now) or now
        return opening(rules, ripe), f"source update to {newest.version}"
    upcoming = next_due(rules, state.baseline_at, state.known_run_started_at, now)
    return upcoming if upcoming else (None, "on a new source version")


def _image_in(
    where: Region,
    state: TemplateState,
    builds: Sequence[tuple[Build, Sequence[RegionStatus]]],
    by_id: Mapping[BuildId, Build],
    gated: bool,
) -> tuple[str, str, str, str]:
    """(build id, image version id, source version, root version) of the image in a region: the newest
    build in latest replicated there — one still replicating elsewhere counts here already, unless the
    template is gated (it is a candidate first) — else the row's."""
    standing = next((r for r in state.regions if r.region == where), None)
    for build, rows in builds:  # newest first
        if standing is not None and build.id == standing.build_id:
            break
        if build.state in _OUT_OF_LATEST or (gated and build.state is not BuildState.PROMOTED):
            continue
        if _completed_in(rows, where) and build.outputs:
            return build.id, build.outputs[0], build.source.resolved_version, build.root_version
    if standing is None:
        return "", "", "", ""
    built = by_id.get(standing.build_id)
    root = built.root_version if built else standing.source_version
    return standing.build_id, standing.image_version, standing.source_version, root


def _newest(seen: Sequence[SeenVersion]) -> str:
    usable = [s.version for s in seen if s.deprecation is not ImageState.DEPRECATED]
    return max(usable, key=version_key, default="")


def _exposure(windows: Sequence[ExposureWindow], where: Region, now: datetime) -> Exposure | None:
    here = [w for w in windows if w.region == where]
    still = [w for w in here if w.open]
    pick = min(still, key=lambda w: w.first_seen_at) if still else None
    if pick is None and here:
        pick = max(here, key=lambda w: version_key(w.version))
    if pick is None:
        return None
    return Exposure(pick.basis, pick.version, pick.first_seen_at, pick.duration(now), pick.open)


def is_failing(summary: TemplateSummary) -> bool:
    """Disabled, or its last build failed: a person should look."""
    last = summary.last_build
    return summary.state.disabled or (
        last is not None
        and last.state in (BuildState.FAILED, BuildState.PARTIALLY_PUBLISHED, BuildState.REJECTED)
    )
