"""Simulated Marketplace (Microsoft.Compute/locations/.../publishers/.../versions).

Messy like Azure: the list is a bare JSON array ordered as text, ids use ARM's odd casing, and
names compare case-insensitively.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import regions
from .casing import fold
from .errors import ArmError


@dataclass
class MarketplaceVersion:
    location: str
    publisher: str
    offer: str
    sku: str
    version: str
    published_at: datetime
    image_state: str = "Active"  # Active | ScheduledForDeprecation | Deprecated
    scheduled_deprecation_time: str | None = None
    hyper_v_generation: str = "V2"
    operating_system: str = "Linux"
    architecture: str = "x64"


def _key(location: str, publisher: str, offer: str, sku: str) -> tuple[str, str, str, str]:
    return regions.normalise(location), fold(publisher), fold(offer), fold(sku)


@dataclass
class Marketplace:
    images: dict[tuple[str, str, str, str], dict[str, MarketplaceVersion]] = field(default_factory=dict)

    def publish(self, image: MarketplaceVersion) -> None:
        key = _key(image.location, image.publisher, image.offer, image.sku)
        image.location = regions.normalise(image.location)
        self.images.setdefault(key, {})[image.version] = image

    def set_state(
        self,
        location: str,
        publisher: str,
        offer: str,
        sku: str,
        version: str,
        state: str,
        scheduled: str | None,
    ) -> None:
        image = self._versions(location, publisher, offer, sku).get(version)
        if image is None:
            raise ArmError(404, "NotFound", f"Artifact: VMImage was not found: {version}")
        image.image_state = state
        image.scheduled_deprecation_time = scheduled

    def _versions(self, location: str, publisher: str, offer: str, sku: str) -> dict[str, MarketplaceVersion]:
        return self.images.get(_key(location, publisher, offer, sku), {})

    def list_versions(
        self,
        sub: str,
        location: str,
        publisher: str,
        offer: str,
        sku: str,
        *,
        top: int | None,
        orderby: str | None,
    ) -> list[dict[str, Any]]:
        versions = self._versions(location, publisher, offer, sku)
        if not versions:
            raise ArmError(404, "NotFound", "Artifact: VMImage was not found.")
        names = sorted(versions)  # text order, as Azure does it
        if orderby and fold(orderby.strip()).endswith("desc"):
            names.reverse()
        if top is not None:
            names = names[:top]
        return [
            {"location": regions.normalise(location), "name": name, "id": _id(sub, versions[name])}
            for name in names
        ]

    def get_version(
        self, sub: str, location: str, publisher: str, offer: str, sku: str, version: str
    ) -> dict[str, Any]:
        image = self._versions(location, publisher, offer, sku).get(version)
        if image is None:
            raise ArmError(404, "NotFound", "Artifact: VMImage was not found.")
        deprecation: dict[str, Any] = {"imageState": image.image_state}
        if image.scheduled_deprecation_time:
            deprecation["scheduledDeprecationTime"] = image.scheduled_deprecation_time
        return {
            "properties": {
                "hyperVGeneration": image.hyper_v_generation,
                "architecture": image.architecture,
                "osDiskImage": {"operatingSystem": image.operating_system},
                "dataDiskImages": [],
                "automaticOSUpgradeProperties": {"automaticOSUpgradeSupported": False},
                "disallowed": {"vmDiskType": "Unmanaged"},
                "features": [{"name": "SecurityType", "value": "TrustedLaunchSupported"}],
                "imageDeprecationStatus": deprecation,
            },
            "location": regions.normalise(location),
            "name": image.version,
            "id": _id(sub, image),
        }

    def resolve(self, location: str, publisher: str, offer: str, sku: str, version: str) -> str | None:
        """What AIB resolves a PlatformImage source to at build time (None: not available there)."""
        versions = self._versions(location, publisher, offer, sku)
        if fold(version) != "latest":
            return version if version in versions else None
        usable = [v for v, image in versions.items() if image.image_state != "Deprecated"]
        return max(usable, key=version_key) if usable else None


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))


def _id(sub: str, image: MarketplaceVersion) -> str:
    return (
        f"/Subscriptions/{sub}/Providers/Microsoft.Compute/Locations/{image.location}/Publishers/"
        f"{image.publisher}/ArtifactTypes/VMImage/Offers/{image.offer}/Skus/{image.sku}/Versions/{image.version}"
    )
