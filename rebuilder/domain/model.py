"""What the service knows about Azure, as plain frozen records in our words.

Pure: adapters translate SDK models into these (tolerating missing fields, display-name regions and
odd letter case); the domain decides over them. Identifiers are typed so a gallery version cannot be
passed where a Marketplace version is meant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NewType

from .casing import fold
from .definition import TemplateDefinition
from .regions import Region

TemplateId = NewType("TemplateId", str)  # ARM resource id of an image template, as Azure spells it
MarketplaceVersion = NewType("MarketplaceVersion", str)  # e.g. 22.04.202411190
GalleryVersionName = NewType("GalleryVersionName", str)  # e.g. 1.0.3
GalleryImageId = NewType("GalleryImageId", str)  # .../galleries/G/images/I
GalleryVersionId = NewType("GalleryVersionId", str)  # .../galleries/G/images/I/versions/V


@dataclass(frozen=True)
class Scope:
    """A subscription, or one resource group in it, where managed templates live."""

    subscription_id: str
    resource_group: str | None = None

    @property
    def id(self) -> str:
        base = f"/subscriptions/{self.subscription_id}"
        return f"{base}/resourceGroups/{self.resource_group}" if self.resource_group else base


# -- Marketplace ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlatformImage:
    """A Marketplace image: publisher/offer/sku (compared case-insensitively, as Azure does)."""

    publisher: str
    offer: str
    sku: str

    @property
    def key(self) -> tuple[str, str, str]:
        return fold(self.publisher), fold(self.offer), fold(self.sku)

    def __str__(self) -> str:
        return f"{self.publisher}:{self.offer}:{self.sku}"


class ImageState(StrEnum):
    ACTIVE = "Active"
    SCHEDULED_FOR_DEPRECATION = "ScheduledForDeprecation"
    DEPRECATED = "Deprecated"


@dataclass(frozen=True)
class MarketplaceImageVersion:
    image: PlatformImage
    location: Region
    version: MarketplaceVersion
    state: ImageState = ImageState.ACTIVE
    scheduled_deprecation_at: datetime | None = None


# -- Image Builder -------------------------------------------------------------------------------------
class SourceKind(StrEnum):
    PLATFORM_IMAGE = "PlatformImage"
    SHARED_IMAGE_VERSION = "SharedImageVersion"
    MANAGED_IMAGE = "ManagedImage"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    image: PlatformImage | None = None  # PlatformImage
    version: str | None = None  # PlatformImage: 'latest' or pinned
    image_version_id: str | None = None  # SharedImageVersion: a version id or .../versions/latest
    exact_version: str | None = None  # what the last run resolved (read-only in AIB)
    raw_type: str | None = None  # what Azure said, when the kind is not one we know


class RunState(StrEnum):
    RUNNING = "Running"
    CANCELING = "Canceling"
    SUCCEEDED = "Succeeded"
    PARTIALLY_SUCCEEDED = "PartiallySucceeded"
    FAILED = "Failed"
    CANCELED = "Canceled"


class RunSubState(StrEnum):
    QUEUED = "Queued"
    BUILDING = "Building"
    CUSTOMIZING = "Customizing"
    OPTIMIZING = "Optimizing"
    VALIDATING = "Validating"
    DISTRIBUTING = "Distributing"


@dataclass(frozen=True)
class LastRun:
    state: RunState
    sub_state: RunSubState | None
    started_at: datetime | None
    ended_at: datetime | None  # None while running, even when Azure reports a zero or early end time
    message: str = ""


@dataclass(frozen=True)
class Distribution:
    kind: str  # SharedImage | ManagedImage | VHD | something newer
    run_output_name: str
    gallery_image_id: GalleryImageId | None = None
    target_regions: tuple[Region, ...] = ()
    excluded_from_latest: bool = False  # a gallery distributor publishing candidates (gated)


@dataclass(frozen=True)
class ProvisioningError:
    """Why AIB could not provision a template (properties.provisioningError)."""

    code: str  # provisioningErrorCode, e.g. BadPIRSource (permanent), ServerError (transient)
    message: str


@dataclass(frozen=True)
class ImageTemplate:
    id: TemplateId
    subscription_id: str
    resource_group: str
    name: str
    location: Region
    source: Source
    tags: Mapping[str, str] = field(default_factory=dict)
    distributions: tuple[Distribution, ...] = ()
    provisioning_state: str | None = None
    last_run: LastRun | None = None
    definition: TemplateDefinition | None = field(default=None, compare=False, repr=False)
    provisioning_error: ProvisioningError | None = None  # when provisioning_state is Failed


@dataclass(frozen=True)
class RunOutput:
    name: str
    artifact_id: str | None = None
    artifact_uri: str | None = None


# -- Compute Gallery -----------------------------------------------------------------------------------
class ReplicationState(StrEnum):
    UNKNOWN = "Unknown"
    REPLICATING = "Replicating"
    COMPLETED = "Completed"
    FAILED = "Failed"


@dataclass(frozen=True)
class RegionReplication:
    region: Region
    state: ReplicationState
    progress: int = 0
    details: str = ""


@dataclass(frozen=True)
class GalleryImageVersion:
    id: GalleryVersionId
    name: GalleryVersionName
    provisioning_state: str | None
    target_regions: tuple[Region, ...] = ()
    excluded_from_latest: bool = False  # the publishing profile's flag
    published_at: datetime | None = None
    replication: tuple[RegionReplication, ...] = ()  # empty unless asked for
    tags: tuple[tuple[str, str], ...] = ()  # sorted by name
    # publishingProfile.targetRegions[].excludeFromLatest where a region sets it (API 2022-03-03 on):
    # it overrides the profile's flag in that region
    regional_exclusions: tuple[tuple[Region, bool], ...] = ()

    def excluded_in(self, region: Region) -> bool:
        """Whether `latest` ignores this version in `region`: the region's own flag when set, else the
        profile's."""
        return dict(self.regional_exclusions).get(region, self.excluded_from_latest)

    @property
    def regions(self) -> tuple[Region, ...]:
        """Where the version is published (its target regions, else those it reports)."""
        return self.target_regions or tuple(r.region for r in self.replication)

    def excluded_everywhere(self, excluded: bool) -> bool:
        """Every region's effective flag (and the profile's) is `excluded`."""
        return self.excluded_from_latest is excluded and all(
            self.excluded_in(r) is excluded for r in self.regions
        )

    def with_exclusion(self, excluded: bool) -> GalleryImageVersion:
        """This version with the profile's flag and every region's set to `excluded` (a promotion or
        demotion as it is sent)."""
        return dataclasses.replace(
            self,
            excluded_from_latest=excluded,
            regional_exclusions=tuple((r, excluded) for r in self.regions),
        )

    @property
    def updating(self) -> bool:
        """An update of the version is in flight: its change is not in effect yet."""
        return fold(self.provisioning_state or "") == "updating"


@dataclass(frozen=True)
class GalleryImageDefinition:
    """A gallery image (definition): what its versions must be."""

    id: GalleryImageId
    os_type: str | None
    hyper_v_generation: str | None


# -- Managed Identity ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ManagedIdentity:
    """A user-assigned managed identity, e.g. the one Azure VM Image Builder runs a template as."""

    id: str
    principal_id: str | None  # the service principal roles are assigned to


# -- what the ledger keys sources by ---------------------------------------------------------------------
@dataclass(frozen=True)
class SourceRef:
    """What a template builds from, as the ledger keys it: Marketplace images per location (a version
    becomes available region by region), gallery images globally (replication is checked per build)."""

    kind: SourceKind
    location: str = ""
    publisher: str = ""
    offer: str = ""
    sku: str = ""
    gallery_image_id: str = ""

    @property
    def key(self) -> str:
        parts: tuple[str, ...] = (self.kind, self.gallery_image_id)
        if self.kind is SourceKind.PLATFORM_IMAGE:
            parts = (self.kind, self.location, self.publisher, self.offer, self.sku)
        return "\n".join(fold(p.strip()) for p in parts)

    @property
    def image(self) -> str:
        """The image, wherever it is listed: publisher:offer:sku, or the gallery image's path."""
        if self.kind is SourceKind.PLATFORM_IMAGE:
            return f"{self.publisher}:{self.offer}:{self.sku}"
        return "/".join(self.gallery_image_id.split("/")[-3::2]) or self.gallery_image_id

    def __str__(self) -> str:
        if self.kind is SourceKind.PLATFORM_IMAGE:
            return f"{self.publisher}:{self.offer}:{self.sku} in {self.location}"
        return self.gallery_image_id
