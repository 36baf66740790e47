"""What the service tells the world as it works (DESIGN §3.6): published as CloudEvents to an Event
Grid topic when one is configured. Notices are announcements; the ledger remains the record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NOTICE_TYPES = (
    "BuildStarted",
    "BuildSucceeded",
    "BuildFailed",
    "RegionReplicated",
    "ImagePublished",
    "TemplateDisabled",
    "SourceVersionDetected",
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
