"""Exposure windows, derived from ledger rows (DESIGN §2): per template × region and per new source
version, from the moment the service first saw the version to the moment a build from that version
(or a newer one) was replicated in that region. Pure; `now` is passed in.

Two bases (labelled on each window): `direct` windows are opened by the versions of the template's own
source; `root` windows by the root Marketplace versions that flowed into it through its parents (the
lineage) — for a child, the exposure that matters to security. For a baseline the two are the same.

Versions at or below the oldest baseline the ledger knows are history from before the service
managed the template, and open no window. Several versions built as one (coalesced) each keep their
own window: the exposure to the first one began when it was first seen, not when the newest was.
A gated template's image closes its windows when it is promoted, not when it is replicated (a
candidate protects nobody yet); a revoked image closes none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from .builds import Build, BuildId, BuildState, RegionStatus
from .model import ReplicationState
from .regions import Region
from .standing import SeenVersion
from .versions import version_key


class Basis(StrEnum):
    DIRECT = "direct"  # from the first sighting of a version of the template's own source
    ROOT = "root"  # from the first sighting of the root Marketplace version (through the parents)


@dataclass(frozen=True)
class ExposureWindow:
    region: Region
    version: str
    first_seen_at: datetime
    replicated_at: datetime | None  # None: still exposed
    closed_by: BuildId | None = None
    closed_by_version: str = ""
    basis: Basis = Basis.DIRECT

    def duration(self, now: datetime) -> timedelta:
        end = self.replicated_at or now
        return max(end - self.first_seen_at, timedelta(0))

    @property
    def open(self) -> bool:
        return self.replicated_at is None


def exposure_windows(
    builds: Sequence[tuple[Build, Sequence[RegionStatus]]], seen: Iterable[SeenVersion]
) -> list[ExposureWindow]:
    """Every direct window of one template, by region then version. When no build says what the
    template was built from before (a new template's first builds), versions older than the oldest it
    was built from are history from before it existed, not exposure."""
    floor = _oldest(b.previous_baseline for b, _ in builds)
    if floor:
        return _windows(builds, seen, floor, lambda b: b.source.resolved_version, Basis.DIRECT)
    oldest = _oldest(b.source.resolved_version for b, _ in builds)
    return _windows(builds, seen, "", lambda b: b.source.resolved_version, Basis.DIRECT, since=oldest)


def root_windows(
    builds: Sequence[tuple[Build, Sequence[RegionStatus]]], seen: Iterable[SeenVersion]
) -> list[ExposureWindow]:
    """Every root window of one template: `seen` are the sightings of its root source (a baseline's
    own source; for a child, the Marketplace image at the top of its parents). A build closes a root
    window once its image, built from that root version or a newer one, is replicated in the region."""
    if not any(b.lineage for b, _ in builds):  # a baseline: its own source is its root
        return [dataclasses.replace(w, basis=Basis.ROOT) for w in exposure_windows(builds, seen)]
    floor = _oldest(b.lineage.previous_root_version for b, _ in builds if b.lineage)
    if floor:
        return _windows(builds, seen, floor, lambda b: b.root_version, Basis.ROOT)
    # What the child was built from before is unknown: versions older than the oldest root it was
    # built from are history, not exposure.
    oldest = _oldest(b.root_version for b, _ in builds if b.lineage)
    return _windows(builds, seen, "", lambda b: b.root_version, Basis.ROOT, since=oldest)


def _windows(
    builds: Sequence[tuple[Build, Sequence[RegionStatus]]],
    seen: Iterable[SeenVersion],
    floor: str,
    built_from: Callable[[Build], str],
    basis: Basis,
    *,
    since: str = "",
) -> list[ExposureWindow]:
    regions = sorted({r.region for _, rows in builds for r in rows if r.target})
    completions = [
        (row.region, at, build)
        for build, rows in builds
        for row in rows
        if row.state == ReplicationState.COMPLETED
        and built_from(build)
        and (at := protects_from(build, row.completed_at)) is not None
    ]
    exposing = [
        s
        for s in seen
        if (not floor or version_key(s.version) > version_key(floor))
        and (not since or version_key(s.version) >= version_key(since))
    ]
    windows = []
    for region in regions:
        for version in sorted(exposing, key=lambda s: version_key(s.version)):
            closing = [
                (at, build)
                for where, at, build in completions
                if where == region and version_key(built_from(build)) >= version_key(version.version)
            ]
            at, closer = min(closing, key=lambda c: c[0]) if closing else (None, None)
            windows.append(
                ExposureWindow(
                    region,
                    version.version,
                    version.first_seen_at,
                    at,
                    closer.id if closer else None,
                    built_from(closer) if closer else "",
                    basis,
                )
            )
    return windows


def protects_from(build: Build, completed_at: datetime | None) -> datetime | None:
    """When the build's image, replicated in a region at `completed_at`, began to protect it: at once
    for an ungated template; at its promotion for a gated one (a candidate is out of `latest`, so no
    scale set, child or new VM takes it); never for a revoked image (withdrawn, it protects nobody)."""
    if completed_at is None or build.state is BuildState.REVOKED:
        return None
    if build.candidate_at is None:
        return completed_at
    if build.state is not BuildState.PROMOTED or build.promoted_at is None:
        return None
    return max(completed_at, build.promoted_at)


def _oldest(versions: Iterable[str]) -> str:
    return min((v for v in versions if v), key=version_key, default="")
