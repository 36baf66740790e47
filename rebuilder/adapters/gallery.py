"""Gallery over azure-mgmt-compute's gallery_image_versions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rebuilder.adapters import shapes
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.adapters.errors import translated
from rebuilder.domain import resource_ids
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
        parsed = resource_ids.parse(resource_ids.gallery_version_id(version_id))
        (_, gallery), (_, image), (_, version) = parsed.segments
        with translated(f"tag {gallery}/{image}/{version}"):
            self._versions(parsed.subscription_id).begin_update(
                parsed.resource_group, gallery, image, version, {"tags": dict(tags)}, polling=False
            )

    def set_excluded_from_latest(self, version_id: GalleryVersionId, excluded: bool) -> None:
        parsed = resource_ids.parse(resource_ids.gallery_version_id(version_id))
        (_, gallery), (_, image), (_, version) = parsed.segments
        update = {"properties": {"publishingProfile": {"excludeFromLatest": excluded}}}
        verb = "demote" if excluded else "promote"
        with translated(f"{verb} {gallery}/{image}/{version}"):
            self._versions(parsed.subscription_id).begin_update(
                parsed.resource_group, gallery, image, version, update, polling=False
            )

    def set_target_regions(self, version_id: GalleryVersionId, regions: Iterable[Region]) -> None:
        body = self._raw(version_id, with_replication=False)
        current = {
            region(str(t.get("name", ""))): t
            for t in ((body.get("properties") or {}).get("publishingProfile") or {}).get("targetRegions")
            or []
        }
        targets = []
        for wanted in regions:
            existing = current.get(wanted, {})
            target: dict[str, Any] = {"name": wanted}
            for key in ("regionalReplicaCount", "storageAccountType", "encryption", "excludeFromLatest"):
                if key in existing:
                    target[key] = existing[key]
            targets.append(target)
        parsed = resource_ids.parse(resource_ids.gallery_version_id(version_id))
        (_, gallery), (_, image), (_, version) = parsed.segments
        update = {"properties": {"publishingProfile": {"targetRegions": targets}}}
        with translated(f"update target regions of {gallery}/{image}/{version}"):
            self._versions(parsed.subscription_id).begin_update(
                parsed.resource_group, gallery, image, version, update, polling=False
            )
