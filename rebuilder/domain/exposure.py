"""Exposure windows, derived from ledger rows (DESIGN §2): per template × region and per new source
version, from the moment the service first saw the version to the moment a build from that version
(or a newer one) was replicated in that region. Pure; `now` is passed in.

Versions at or below the oldest baseline the ledger knows are history from before the service
managed the template, and open no window. Several versions built as one (coalesced) each keep their
own window: the exposure to the first one began when it was first seen, not when the newest was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from . import resource_ids
from .builds import Build, BuildId, RegionStatus
from .model import ReplicationState, SourceKind
from .regions import Region
from .standing import SeenVersion, SourceRef
from .versions import version_key


@dataclass(frozen=True)
class ExposureWindow:
    region: Region
    version: str
    first_seen_at: datetime
    replicated_at: datetime | None  # None: still exposed
    closed_by: BuildId | None = None
    closed_by_version: str = ""

    def duration(self, now: datetime) -> timedelta:
        end = self.replicated_at or now
        return max(end - self.first_seen_at, timedelta(0))

    @property
    def open(self) -> bool:
        return self.replicated_at is None


def source_ref(build: Build) -> SourceRef:
    """Where the ledger keeps the versions seen for this build's source (a gallery source is keyed by
    its image definition, whatever version the template names)."""
    src = build.source
    if src.kind is SourceKind.PLATFORM_IMAGE:
        return SourceRef(src.kind, build.location, src.publisher, src.offer, src.sku)
    try:
        image = resource_ids.gallery_image_id(src.gallery_image_id).lower()
    except ValueError:
        image = src.gallery_image_id
    return SourceRef(src.kind, gallery_image_id=image)


def exposure_windows(
    builds: Sequence[tuple[Build, Sequence[RegionStatus]]],
    seen: Iterable[SeenVersion],
    *,
    baseline: str = "",
) -> list[ExposureWindow]:
    """Every window of one template, by region then version. `baseline` is used when no build says
    what the template was built from before the service managed it."""
    floor = _oldest_baseline(builds) or baseline
    regions = sorted({r.region for _, rows in builds for r in rows if r.target})
    completions = [
        (row.region, row.completed_at, build)
        for build, rows in builds
        for row in rows
        if row.state == ReplicationState.COMPLETED and row.completed_at is not None
    ]
    exposing = [s for s in seen if not floor or version_key(s.version) > version_key(floor)]
    windows = []
    for region in regions:
        for version in sorted(exposing, key=lambda s: version_key(s.version)):
            closing = [
                (at, build)
                for where, at, build in completions
                if where == region
                and version_key(build.source.resolved_version) >= version_key(version.version)
            ]
            at, closer = min(closing, key=lambda c: c[0]) if closing else (None, None)
            windows.append(
                ExposureWindow(
                    region,
                    version.version,
                    version.first_seen_at,
                    at,
                    closer.id if closer else None,
                    closer.source.resolved_version if closer else "",
                )
            )
    return windows


def _oldest_baseline(builds: Sequence[tuple[Build, Sequence[RegionStatus]]]) -> str:
    baselines = [b.previous_baseline for b, _ in builds if b.previous_baseline]
    return min(baselines, key=version_key, default="")
