"""Simulated Azure Compute Gallery: galleries, image definitions, image versions with replication.

Replication progresses region by region over simulated time. Azure answers target and replication
region names as display names ("East US 2"), and so the `location` of galleries, image definitions and
versions, as in the REST definitions' examples (GalleryImageVersion_Get: "West US"). Versions keep the
canonical name inside, for ordering their regions.

Updates (PATCH) follow GalleryImageVersions_Update (GalleryRP 2026-03-03): the body must carry
`properties.storageProfile` (required by GalleryImageVersionUpdate; every official Update example sends
it), Azure answers 200 `Updating` with an Azure-AsyncOperation, and the change is in effect later: here
after `update_looks` reads of the version. A second update while one is in flight is refused 409
(code `OperationNotAllowed`: the code is our assumption, Microsoft documents none for this case).

Per-region `latest`: `targetRegions[].excludeFromLatest` (API 2022-03-03 and later) overrides the
profile's flag in that region. A region's value is stored and echoed as it was sent, omitted where it
was never set (an assumption: Azure may echo `false`; rebuilder therefore always writes both the profile's
flag and every region's), and `latest` is resolved per region from the effective flags.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import regions
from .casing import fold
from .clock import iso
from .errors import ArmError, not_found, parent_not_found

GALLERY_TYPE = "Microsoft.Compute/galleries"
IMAGE_TYPE = "Microsoft.Compute/galleries/images"
VERSION_TYPE = "Microsoft.Compute/galleries/images/versions"


@dataclass
class Timing:
    replication_seconds: float = 600.0  # the first (home) region
    region_stagger_seconds: float = 300.0  # each further region takes this much longer


@dataclass
class Replica:
    region: str  # normalised
    replica_count: int
    storage_account_type: str
    starts_at: datetime
    duration: float
    fail_at_progress: int | None = None
    state: str = "Unknown"
    progress: int = 0
    details: str = ""
    ended_at: datetime | None = None
    encryption: dict[str, Any] | None = None

    def tick(self, now: datetime) -> None:
        if self.state in ("Completed", "Failed") or now < self.starts_at:
            return
        elapsed = (now - self.starts_at).total_seconds()
        progress = 100 if self.duration <= 0 else min(100, int(elapsed * 100 / self.duration))
        if self.fail_at_progress is not None and progress >= self.fail_at_progress:
            self.state, self.progress = "Failed", self.fail_at_progress
            self.ended_at = self.starts_at + timedelta(seconds=self.duration * self.fail_at_progress / 100)
            self.details = (
                f"Replication to region '{regions.display(self.region)}' failed: the copy of the OS disk "
                "did not complete (InternalOperationError). Retry the replication by updating the version."
            )
            return
        self.state = "Completed" if progress >= 100 else "Replicating"
        self.progress = progress
        if self.state == "Completed":
            self.ended_at = self.starts_at + timedelta(seconds=self.duration)


@dataclass
class PendingUpdate:
    body: dict[str, Any]
    looks_left: int


@dataclass
class ImageVersion:
    sub: str
    rg: str
    gallery: str
    image: str
    name: str
    location: str
    tags: dict[str, str]
    publishing: dict[str, Any]
    storage_profile: dict[str, Any]
    replicas: dict[str, Replica]
    provisioning_state: str = "Creating"
    created_at: datetime | None = None
    regional: dict[str, bool] = field(default_factory=dict)  # region (normalised) -> its own flag
    pending: PendingUpdate | None = None  # an accepted update, not in effect yet

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.sub}/resourceGroups/{self.rg}/providers/Microsoft.Compute/galleries/"
            f"{self.gallery}/images/{self.image}/versions/{self.name}"
        )

    def tick(self, now: datetime) -> None:
        for replica in self.replicas.values():
            replica.tick(now)
        if self.pending is not None:
            return  # Updating until the update is in effect
        states = {r.state for r in self.replicas.values()}
        if states <= {"Completed"}:
            self.provisioning_state = "Succeeded"
        elif states <= {"Completed", "Failed"}:
            self.provisioning_state = "Failed"

    @property
    def aggregated_state(self) -> str:
        states = {r.state for r in self.replicas.values()}
        if states <= {"Completed"}:
            return "Completed"
        if "Failed" in states:
            return "Failed"
        return "InProgress"

    @property
    def excluded_from_latest(self) -> bool:
        return bool(self.publishing.get("excludeFromLatest", False))

    def excluded_in(self, region: str) -> bool:
        """The effective flag in `region`: the region's own when set, else the profile's."""
        return self.regional.get(regions.normalise(region), self.excluded_from_latest)

    def body(self, *, expand_replication: bool) -> dict[str, Any]:
        publishing = copy.deepcopy(self.publishing)
        publishing["targetRegions"] = [
            {
                "name": regions.display(r.region),
                "regionalReplicaCount": r.replica_count,
                "storageAccountType": r.storage_account_type,
                **({"encryption": r.encryption} if r.encryption else {}),
                **({"excludeFromLatest": self.regional[r.region]} if r.region in self.regional else {}),
            }
            for r in self.replicas.values()
        ]
        publishing.setdefault("replicaCount", 1)
        publishing.setdefault("excludeFromLatest", False)
        publishing.setdefault("storageAccountType", "Standard_LRS")
        if self.created_at:
            publishing["publishedDate"] = iso(self.created_at, digits=7, zulu=False)  # Compute says +00:00
        properties: dict[str, Any] = {
            "publishingProfile": publishing,
            "storageProfile": self.storage_profile,
            "safetyProfile": {
                "allowDeletionOfReplicatedLocations": False,
                "reportedForPolicyViolation": False,
                "blockDeletionBeforeEndOfLife": False,
            },
            "provisioningState": self.provisioning_state,
        }
        if expand_replication:
            properties["replicationStatus"] = {
                "aggregatedState": self.aggregated_state,
                "summary": [
                    {
                        "region": regions.display(r.region),
                        "state": r.state,
                        "details": r.details,
                        "progress": r.progress,
                    }
                    for r in self.replicas.values()
                ],
            }
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "type": VERSION_TYPE,
            "location": regions.display(self.location),
            "properties": properties,
        }
        if self.tags:
            body["tags"] = self.tags
        return body


@dataclass
class Gallery:
    timing: Timing = field(default_factory=Timing)
    galleries: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    images: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    versions: dict[tuple[str, str, str, str, str], ImageVersion] = field(default_factory=dict)
    # region (normalised) -> how many upcoming replications to that region fail
    region_failures: dict[str, int] = field(default_factory=dict)
    update_looks: int = 0  # reads of a version that still show an accepted update as Updating

    # -- galleries ---------------------------------------------------------------------------------
    def put_gallery(self, sub: str, rg: str, name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        key = (sub, fold(rg), fold(name))
        created = key not in self.galleries
        resource = {
            "id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/galleries/{name}",
            "name": name,
            "type": GALLERY_TYPE,
            "location": regions.display(_require_location(body)),
            "tags": body.get("tags") or {},
            "properties": {
                "description": (body.get("properties") or {}).get("description", ""),
                "identifier": {"uniqueName": f"{sub[:8]}-{name.upper()}"},
                "provisioningState": "Succeeded",
            },
        }
        self.galleries[key] = resource
        return (201 if created else 200), resource

    def get_gallery(self, sub: str, rg: str, name: str) -> dict[str, Any]:
        try:
            return self.galleries[(sub, fold(rg), fold(name))]
        except KeyError:
            raise not_found(GALLERY_TYPE, name, rg) from None

    def list_galleries(self, sub: str, rg: str | None) -> list[dict[str, Any]]:
        return [
            g for (s, r, _), g in sorted(self.galleries.items()) if s == sub and (rg is None or r == fold(rg))
        ]

    # -- image definitions -------------------------------------------------------------------------
    def put_image(
        self, sub: str, rg: str, gallery: str, name: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        self.get_gallery_or_parent_error(sub, rg, gallery)
        props = body.get("properties") or {}
        for required in ("osType", "osState", "identifier"):
            if not props.get(required):
                raise ArmError(400, "InvalidParameter", f"Required parameter '{required}' is missing (null).")
        key = (sub, fold(rg), fold(gallery), fold(name))
        created = key not in self.images
        resource = {
            "id": f"{self.get_gallery(sub, rg, gallery)['id']}/images/{name}",
            "name": name,
            "type": IMAGE_TYPE,
            "location": regions.display(_require_location(body)),
            "tags": body.get("tags") or {},
            "properties": {
                "osType": props["osType"],
                "osState": props["osState"],
                "hyperVGeneration": props.get("hyperVGeneration", "V1"),
                "architecture": props.get("architecture", "x64"),
                "identifier": props["identifier"],
                "provisioningState": "Succeeded",
            },
        }
        self.images[key] = resource
        return (201 if created else 200), resource

    def get_gallery_or_parent_error(self, sub: str, rg: str, gallery: str) -> dict[str, Any]:
        try:
            return self.galleries[(sub, fold(rg), fold(gallery))]
        except KeyError:
            raise parent_not_found(GALLERY_TYPE, gallery) from None

    def get_image(self, sub: str, rg: str, gallery: str, name: str) -> dict[str, Any]:
        try:
            return self.images[(sub, fold(rg), fold(gallery), fold(name))]
        except KeyError:
            raise not_found(IMAGE_TYPE, f"{gallery}/{name}", rg) from None

    def list_images(self, sub: str, rg: str, gallery: str) -> list[dict[str, Any]]:
        self.get_gallery_or_parent_error(sub, rg, gallery)
        return [
            i
            for (s, r, g, _), i in sorted(self.images.items())
            if (s, r, g) == (sub, fold(rg), fold(gallery))
        ]

    # -- image versions ----------------------------------------------------------------------------
    def put_version(
        self, sub: str, rg: str, gallery: str, image: str, name: str, body: dict[str, Any], now: datetime
    ) -> tuple[int, ImageVersion]:
        if (sub, fold(rg), fold(gallery), fold(image)) not in self.images:
            raise parent_not_found(IMAGE_TYPE, f"{gallery}/{image}")
        _check_version_name(name)
        key = (sub, fold(rg), fold(gallery), fold(image), name)
        existing = self.versions.get(key)
        props = body.get("properties") or {}
        publishing = copy.deepcopy(props.get("publishingProfile") or {})
        location = _require_location(body)
        targets = publishing.pop("targetRegions", None) or [{"name": location}]
        if existing is not None:
            self._apply_targets(existing, targets, now)
            existing.tags = body.get("tags") or existing.tags
            return 200, existing
        version = ImageVersion(
            sub=sub,
            rg=self.images[key[:4]]["id"].split("/")[4],
            gallery=gallery,
            image=image,
            name=name,
            location=regions.normalise(location),
            tags=body.get("tags") or {},
            publishing=publishing,
            storage_profile=_storage_profile(props.get("storageProfile")),
            replicas={},
            created_at=now,
        )
        self._apply_targets(version, targets, now)
        self.versions[key] = version
        return 201, version

    def update_version(
        self, sub: str, rg: str, gallery: str, image: str, name: str, body: dict[str, Any], now: datetime
    ) -> ImageVersion:
        """Accept an update: `Updating` now and for the next `update_looks` reads; in effect at the
        read after those (`look`)."""
        version = self.get_version(sub, rg, gallery, image, name)
        props = body.get("properties")
        if not isinstance(props, dict) or not isinstance(props.get("storageProfile"), dict):
            # Compute's wording for a missing required property, as put_image answers it too
            raise ArmError(400, "InvalidParameter", "Required parameter 'storageProfile' is missing (null).")
        if version.pending is not None:
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"Operation 'Update' is not allowed on gallery image version '{name}' while another "
                "update of it is in progress. Retry after it has completed.",
            )
        publishing = props.get("publishingProfile") or {}
        for target in publishing.get("targetRegions") or []:  # refused now, as Azure validates up front
            self._target_region(target)
        version.pending = PendingUpdate(copy.deepcopy(body), self.update_looks)
        version.provisioning_state = "Updating"
        return version

    def look(self, version: ImageVersion, now: datetime) -> None:
        """A read of the version: an accepted update is in effect once it has been looked at enough."""
        pending = version.pending
        if pending is None:
            return
        if pending.looks_left > 0:
            pending.looks_left -= 1
            return
        version.pending = None
        version.provisioning_state = "Succeeded"
        publishing = (pending.body.get("properties") or {}).get("publishingProfile") or {}
        if "targetRegions" in publishing:
            self._apply_targets(version, publishing["targetRegions"], now)
        if "excludeFromLatest" in publishing:
            version.publishing["excludeFromLatest"] = bool(publishing["excludeFromLatest"])
        if "tags" in pending.body:
            version.tags = pending.body["tags"] or {}
        version.tick(now)

    def _target_region(self, target: Any) -> str:
        if not isinstance(target, dict) or not target.get("name"):
            raise ArmError(400, "InvalidParameter", "Each target region needs a 'name'.")
        region = regions.normalise(str(target["name"]))
        if not regions.is_known(region):
            raise ArmError(
                400,
                "InvalidParameter",
                f"The region '{target['name']}' is not a valid Azure region for this gallery.",
            )
        return region

    def latest(self, sub: str, rg: str, gallery: str, image: str, region: str) -> ImageVersion | None:
        """What `latest` resolves to in `region`: the highest version replicated there (Succeeded, or
        Updating with its previous settings still in effect) whose effective flag there is false."""
        wanted = regions.normalise(region)
        candidates = [
            v
            for v in self.list_versions(sub, rg, gallery, image)
            if v.provisioning_state in ("Succeeded", "Updating")
            and wanted in v.replicas
            and v.replicas[wanted].state == "Completed"
            and not v.excluded_in(wanted)
        ]
        return max(candidates, key=lambda v: tuple(int(p) for p in v.name.split(".")), default=None)

    def _apply_targets(self, version: ImageVersion, targets: list[dict[str, Any]], now: datetime) -> None:
        """Add new regions, drop removed ones, restart failed ones: the repair without a rebuild."""
        wanted: dict[str, dict[str, Any]] = {}
        for target in targets:
            wanted[self._target_region(target)] = target
        version.regional = {
            r: t["excludeFromLatest"]
            for r, t in wanted.items()
            if isinstance(t.get("excludeFromLatest"), bool)
        }
        home = version.location
        ordered = sorted(wanted, key=lambda r: (r != home, list(wanted).index(r)))
        replicas: dict[str, Replica] = {}
        restarted = False
        for index, region in enumerate(ordered):
            current = version.replicas.get(region)
            if current is not None and current.state != "Failed":
                replicas[region] = current
                continue
            restarted = True
            replicas[region] = Replica(
                region=region,
                replica_count=int(wanted[region].get("regionalReplicaCount") or 1),
                storage_account_type=str(wanted[region].get("storageAccountType") or "Standard_LRS"),
                starts_at=now,
                duration=self.timing.replication_seconds + index * self.timing.region_stagger_seconds,
                fail_at_progress=self._take_failure(region),
                encryption=wanted[region].get("encryption"),
            )
        version.replicas = replicas
        if restarted:
            version.provisioning_state = (
                "Updating" if version.created_at and version.created_at < now else "Creating"
            )

    def _take_failure(self, region: str) -> int | None:
        remaining = self.region_failures.get(region, 0)
        if remaining <= 0:
            return None
        self.region_failures[region] = remaining - 1
        return 40

    def get_version(self, sub: str, rg: str, gallery: str, image: str, name: str) -> ImageVersion:
        version = self.versions.get((sub, fold(rg), fold(gallery), fold(image), name))
        if version is None:
            raise not_found(VERSION_TYPE, f"{gallery}/{image}/{name}", rg)
        return version

    def list_versions(self, sub: str, rg: str, gallery: str, image: str) -> list[ImageVersion]:
        if (sub, fold(rg), fold(gallery), fold(image)) not in self.images:
            raise parent_not_found(IMAGE_TYPE, f"{gallery}/{image}")
        prefix = (sub, fold(rg), fold(gallery), fold(image))
        return [v for k, v in sorted(self.versions.items()) if k[:4] == prefix]

    def delete_version(self, sub: str, rg: str, gallery: str, image: str, name: str) -> bool:
        return self.versions.pop((sub, fold(rg), fold(gallery), fold(image), name), None) is not None

    def find_image_by_id(self, image_id: str) -> tuple[str, str, str, str] | None:
        """(sub, rg, gallery, image) for a gallery image id in any letter case, if it exists."""
        parts = image_id.strip("/").split("/")
        if len(parts) != 10 or fold(parts[0]) != "subscriptions" or fold(parts[8]) != "images":
            return None
        sub, rg, gallery, image = fold(parts[1]), parts[3], parts[7], parts[9]
        key = (sub, fold(rg), fold(gallery), fold(image))
        if key not in self.images:
            return None
        stored = self.images[key]["id"].split("/")
        return sub, stored[4], stored[8], stored[10]

    def tick(self, now: datetime) -> None:
        for version in self.versions.values():
            version.tick(now)


def _require_location(body: dict[str, Any]) -> str:
    location = body.get("location")
    if not isinstance(location, str) or not location:
        raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
    if not regions.is_known(location):
        raise ArmError(
            400,
            "LocationNotAvailableForResourceType",
            f"The provided location '{location}' is not available for this resource type.",
        )
    return location


def _check_version_name(name: str) -> None:
    parts = name.split(".")
    if len(parts) != 3 or not all(p.isdigit() and int(p) < 2**31 for p in parts):
        raise ArmError(
            400,
            "InvalidParameter",
            f"The gallery image version name '{name}' is invalid. It must follow the "
            "Major(int32).Minor(int32).Patch(int32) format.",
        )


def _storage_profile(given: Any) -> dict[str, Any]:
    profile = copy.deepcopy(given) if isinstance(given, dict) else {}
    profile.setdefault("osDiskImage", {"sizeInGB": 64, "hostCaching": "ReadWrite"})
    return profile
