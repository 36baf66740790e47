"""What the service tells the world as it works (DESIGN §3.6): published as CloudEvents to an Event
Grid topic when one is configured. Notices are announcements; the ledger remains the record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .builds import SUCCEEDED, Build, BuildState
from .releases import Fallback
from .resource_ids import maybe_gallery_version_id
from .standing import SeenVersion

NOTICE_TYPES = (
    "BuildStarted",
    "BuildSucceeded",
    "BuildFailed",
    "RegionReplicated",
    "ImagePublished",
    "TemplateDisabled",
    "SourceVersionDetected",
    "SourceDeprecationScheduled",
    "ImagePromoted",
    "ImageRevoked",
    "ImageRejected",
)
TYPE_PREFIX = "Rebuilder."  # CloudEvent types are namespaced: Rebuilder.BuildStarted, ...


@dataclass(frozen=True)
class Notice:
    type: str  # one of NOTICE_TYPES
    subject: str  # the template (or source) it is about
    data: dict[str, Any]
    id: str = ""  # stable per fact (e.g. build + what happened), so a consumer can drop repeats

    @property
    def cloud_type(self) -> str:
        return TYPE_PREFIX + self.type


def about(build: Build, kind: str, **data: Any) -> Notice:
    """A notice about one build; its id names the fact, so repeats of it can be dropped."""
    fact = ":".join(str(v) for v in (build.id, kind, data.get("region", ""), data.get("attempt", "")))
    return Notice(
        kind,
        build.template_id,
        {
            "buildId": build.id,
            "template": build.template_name,
            "reason": build.reason.value,
            "sourceVersion": build.source.resolved_version,
            **data,
        },
        fact.rstrip(":"),
    )


def ended(build: Build, image_version_id: str = "") -> list[Notice]:
    """What a finished build announces: the image (when published), and success or failure."""
    notices: list[Notice] = []
    if build.state is BuildState.PROMOTED:  # a gated build's image reached latest only now
        notices.append(
            about(build, "ImagePromoted", resourceUri=image_version_id, approvedBy=build.approved_by)
        )
    if build.state in (BuildState.PUBLISHED, BuildState.PROMOTED):
        notices.append(
            about(build, "ImagePublished", outputs=list(build.outputs), resourceUri=image_version_id)
        )
    if build.state in SUCCEEDED:
        notices.append(about(build, "BuildSucceeded", state=build.state.value))
    elif build.state is BuildState.REJECTED:
        demoted = [v for v in map(maybe_gallery_version_id, build.outputs) if v]  # out of latest everywhere
        notices.append(
            about(
                build, "ImageRejected", resourceUri=image_version_id, message=build.message, demoted=demoted
            )
        )
        notices.append(about(build, "BuildFailed", message=build.message))
    elif build.state is BuildState.FAILED:
        notices.append(about(build, "BuildFailed", message=build.message))
    return notices


def revoked(build: Build, fallbacks: Sequence[Fallback]) -> Notice:
    """A rollback: the build's image left latest for good; what the gallery serves in each region is
    latest again. Consumers (VM scale sets pinned to the version, other teams' pipelines) learn it was
    revoked, and why."""
    versions = [v for v in map(maybe_gallery_version_id, build.outputs) if v]
    first = next((f for f in fallbacks if f.version), None)
    return about(
        build,
        "ImageRevoked",
        resourceUri=versions[0] if versions else "",
        message=build.message,
        fallbackBuildId=first.build_id if first is not None else "",
        fallbackResourceUri=first.version if first is not None else "",
        fallbacks=[
            {"region": f.region, "resourceUri": f.version, "buildId": f.build_id, "expected": f.expected}
            for f in fallbacks
        ],
    )


def disabled(build: Build, reason: str) -> Notice:
    return Notice(
        "TemplateDisabled",
        build.template_id,
        {"template": build.template_name, "reason": reason},
        f"{build.id}:TemplateDisabled",
    )


def detected(seen: SeenVersion) -> Notice:
    return Notice(
        "SourceVersionDetected",
        str(seen.source),
        {"source": str(seen.source), "version": seen.version, "firstSeenAt": seen.first_seen_at.isoformat()},
        f"{seen.source.key}:{seen.version}",
    )


def deprecation_scheduled(seen: SeenVersion, scheduled_at: datetime | None, templates: list[str]) -> Notice:
    """A version that pinned templates build from is scheduled for deprecation: once per version."""
    return Notice(
        "SourceDeprecationScheduled",
        str(seen.source),
        {
            "source": str(seen.source),
            "version": seen.version,
            "scheduledDeprecationTime": scheduled_at.isoformat() if scheduled_at else None,
            "templates": templates,
        },
        f"{seen.source.key}:{seen.version}:deprecation-scheduled",
    )
