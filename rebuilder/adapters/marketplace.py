"""MarketplaceCatalog over azure-mgmt-compute's virtual_machine_images."""

from __future__ import annotations

from typing import Any

from rebuilder.adapters import shapes
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.adapters.errors import translated
from rebuilder.domain.casing import fold
from rebuilder.domain.model import ImageState, MarketplaceImageVersion, MarketplaceVersion, PlatformImage
from rebuilder.domain.regions import Region


class SdkMarketplaceCatalog:
    def __init__(self, clients: AzureClients) -> None:
        self._clients = clients

    def list_versions(
        self, subscription_id: str, location: Region, image: PlatformImage
    ) -> list[MarketplaceVersion]:
        images = self._clients.compute(subscription_id).virtual_machine_images
        with translated(f"list versions of {image} in {location}"):
            found = images.list(location, image.publisher, image.offer, image.sku)
            return [MarketplaceVersion(item.name) for item in found if item.name]

    def get_version(
        self, subscription_id: str, location: Region, image: PlatformImage, version: MarketplaceVersion
    ) -> MarketplaceImageVersion:
        images = self._clients.compute(subscription_id).virtual_machine_images
        with translated(f"get {image}:{version} in {location}"):
            body: dict[str, Any] = images.get(
                location, image.publisher, image.offer, image.sku, version
            ).as_dict()
        status = (body.get("properties") or {}).get("imageDeprecationStatus") or {}
        states = {fold(s.value): s for s in ImageState}
        return MarketplaceImageVersion(
            image=image,
            location=location,
            version=version,
            state=states.get(fold(str(status.get("imageState") or "Active")), ImageState.ACTIVE),
            scheduled_deprecation_at=shapes.timestamp(status.get("scheduledDeprecationTime")),
        )
