"""Gallery over azure-mgmt-compute's gallery_image_versions."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rebuilder.adapters import shapes
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.adapters.errors import translated
from rebuilder.domain import resource_ids
from rebuilder.domain.casing import fold
from rebuilder.domain.errors import Conflict
from rebuilder.domain.model import GalleryImageId, GalleryImageVersion, GalleryVersionId
from rebuilder.domain.regions import Region, region


class SdkGallery:
    def __init__(self, clients: AzureClients) -> None:
        self._clients = clients

    def _versions(self, subscription_id: str):  # type: ignore[no-untyped-def]
        return self._clients.compute(subscription_id).gallery_image_versions

    def _raw(self, version_id: GalleryVersionId, *, with_replication: bool) -> dict[str, Any]:
        parsed = resource_ids.parse(resource_ids.gallery_version_id(version_id))
        (_, gallery), (_, image), (_, version) = parsed.segments
        expand = "ReplicationStatus" if with_replication else None
        with translated(f"get gallery image version {gallery}/{image}/{version}"):
            found = self._versions(parsed.subscription_id).get(
                parsed.resource_group, gallery, image, version, expand=expand
            )
            body: dict[str, Any] = found.as_dict()
            return body

    def get_version(
        self, version_id: GalleryVersionId, *, with_replication: bool = True
    ) -> GalleryImageVersion:
        return shapes.gallery_version(self._raw(version_id, with_replication=with_replication))

    def list_versions(self, image_id: GalleryImageId) -> list[GalleryImageVersion]:
        parsed = resource_ids.parse(resource_ids.gallery_image_id(image_id))
        (_, gallery), (_, image) = parsed.segments
        with translated(f"list versions of gallery image {gallery}/{image}"):
            found = self._versions(parsed.subscription_id).list_by_gallery_image(
                parsed.resource_group, gallery, image
            )
            return [shapes.gallery_version(v.as_dict()) for v in found]

    def set_tags(self, version_id: GalleryVersionId, tags: Mapping[str, str]) -> None:
        self._update(version_id, "tag", lambda body: {**body, "tags": dict(tags)})

    def set_excluded_from_latest(self, version_id: GalleryVersionId, excluded: bool) -> None:
        def change(body: dict[str, Any]) -> dict[str, Any]:
            publishing = body["properties"]["publishingProfile"]
            publishing["excludeFromLatest"] = excluded
            for target in publishing["targetRegions"]:  # a region's own flag overrides the profile's
                target["excludeFromLatest"] = excluded
            return body

        self._update(version_id, "demote" if excluded else "promote", change)

    def set_target_regions(self, version_id: GalleryVersionId, regions: Iterable[Region]) -> None:
        def change(body: dict[str, Any]) -> dict[str, Any]:
            publishing = body["properties"]["publishingProfile"]
            current = {region(str(t.get("name", ""))): t for t in publishing["targetRegions"]}
            publishing["targetRegions"] = [current.get(r, {"name": r}) for r in regions]
            return body

        self._update(version_id, "update target regions of", change)

    def _update(
        self,
        version_id: GalleryVersionId,
        verb: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        """Read the version, send the update the schema asks for (GalleryImageVersionUpdate requires
        `properties.storageProfile`; targetRegions carried so no region is dropped), and return: Azure
        answers 200 `Updating` with an Azure-AsyncOperation, and the change is in effect once a later
        read shows it (callers read back on their next pass; nothing here waits). A version already
        `Updating` is refused (Conflict) rather than updated again meanwhile."""
        parsed = resource_ids.parse(resource_ids.gallery_version_id(version_id))
        (_, gallery), (_, image), (_, version) = parsed.segments
        read = self._raw(version_id, with_replication=False)
        state = str((read.get("properties") or {}).get("provisioningState") or "")
        if fold(state) == "updating":
            raise Conflict(
                f"{verb} {gallery}/{image}/{version}: an update of the version is in flight "
                "(provisioningState Updating); it is sent again once that one has ended"
            )
        body = change(shapes.version_update(read))
        with translated(f"{verb} {gallery}/{image}/{version}"):
            self._versions(parsed.subscription_id).begin_update(
                parsed.resource_group, gallery, image, version, body, polling=False
            )
