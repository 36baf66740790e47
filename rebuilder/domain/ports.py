"""Ports: what the service needs from the outside world, in its own words.

Adapters implement them against Azure (`rebuilder.adapters`); `rebuilder.fakes` implements them in
memory for unit tests. One contract suite (tests/contract) runs against both.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from .model import (
    GalleryImageId,
    GalleryImageVersion,
    GalleryVersionId,
    ImageTemplate,
    MarketplaceImageVersion,
    MarketplaceVersion,
    PlatformImage,
    RunOutput,
    Scope,
    TemplateId,
)
from .regions import Region


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC."""
        ...


class MarketplaceCatalog(Protocol):
    def list_versions(
        self, subscription_id: str, location: Region, image: PlatformImage
    ) -> list[MarketplaceVersion]:
        """Every version listed in `location`, in no particular order (Azure sorts them as text)."""
        ...

    def get_version(
        self, subscription_id: str, location: Region, image: PlatformImage, version: MarketplaceVersion
    ) -> MarketplaceImageVersion:
        """One version with its deprecation status; raises NotFound."""
        ...


class ImageBuilder(Protocol):
    def list_templates(self, scope: Scope) -> Iterable[ImageTemplate]: ...

    def get_template(self, template_id: TemplateId) -> ImageTemplate:
        """Raises NotFound."""
        ...

    def start_run(self, template_id: TemplateId) -> None:
        """Ask AIB to run the template and return at once (runs take hours). Conflict if one is running."""
        ...

    def cancel_run(self, template_id: TemplateId) -> None:
        """Conflict if no run is going."""
        ...

    def list_run_outputs(self, template_id: TemplateId) -> list[RunOutput]: ...


class Gallery(Protocol):
    def get_version(
        self, version_id: GalleryVersionId, *, with_replication: bool = True
    ) -> GalleryImageVersion:
        """Raises NotFound."""
        ...

    def list_versions(self, image_id: GalleryImageId) -> list[GalleryImageVersion]: ...

    def set_target_regions(self, version_id: GalleryVersionId, regions: Iterable[Region]) -> None:
        """Re-apply a version's target regions: restarts failed replications without a rebuild."""
        ...
