"""ARM JSON (as the SDK models' `as_dict()` gives it) into domain records.

Pure and defensive: real bodies omit fields, send `null`, name regions for display and spell ids in
any letter case. Nothing here may raise on such a body; unknown values map to UNKNOWN or None.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rebuilder.domain import resource_ids
from rebuilder.domain.casing import fold
from rebuilder.domain.definition import TemplateDefinition
from rebuilder.domain.model import (
    Distribution,
    GalleryImageDefinition,
    GalleryImageId,
    GalleryImageVersion,
    GalleryVersionName,
    ImageTemplate,
    LastRun,
    ManagedIdentity,
    PlatformImage,
    ProvisioningError,
    RegionReplication,
    ReplicationState,
    RunOutput,
    RunState,
    RunSubState,
    Source,
    SourceKind,
)
from rebuilder.domain.permissions import Permission
from rebuilder.domain.regions import region


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def timestamp(value: Any) -> datetime | None:
    """Aware UTC, whatever Azure sent; None for anything unreadable."""
    moment = value if isinstance(value, datetime) else None
    text = _str(value)
    if text is not None:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def source(body: Any) -> Source:
    raw = _dict(body)
    kind_text = _str(raw.get("type")) or ""
    kinds = {fold(k.value): k for k in SourceKind}
    kind = kinds.get(fold(kind_text), SourceKind.UNKNOWN)
    image = None
    if kind is SourceKind.PLATFORM_IMAGE:
        parts = [_str(raw.get(k)) for k in ("publisher", "offer", "sku")]
        if all(parts):
            image = PlatformImage(*(p for p in parts if p))
    return Source(
        kind=kind,
        image=image,
        version=_str(raw.get("version")),
        image_version_id=_str(raw.get("imageVersionId")),
        exact_version=_str(raw.get("exactVersion")),
        raw_type=kind_text or None,
    )


def last_run(body: Any) -> LastRun | None:
    raw = _dict(body)
    state_text = _str(raw.get("runState"))
    states = {fold(s.value): s for s in RunState}
    if state_text is None or fold(state_text) not in states:
        return None
    sub_states = {fold(s.value): s for s in RunSubState}
    started, ended = timestamp(raw.get("startTime")), timestamp(raw.get("endTime"))
    if ended is not None and (started is None or ended <= started):
        ended = None  # AIB reports a zero or early end time while a run is in progress
    return LastRun(
        state=states[fold(state_text)],
        sub_state=sub_states.get(fold(_str(raw.get("runSubState")) or "")),
        started_at=started,
        ended_at=ended,
        message=_str(raw.get("message")) or "",
    )


def distribution(body: Any) -> Distribution:
    raw = _dict(body)
    gallery_image = _str(raw.get("galleryImageId"))
    image_id: GalleryImageId | None = None
    if gallery_image:
        try:
            image_id = resource_ids.gallery_image_id(gallery_image)
        except ValueError:
            image_id = None
    targets = [_str(_dict(t).get("name")) for t in _list(raw.get("targetRegions"))]
    targets += [_str(r) for r in _list(raw.get("replicationRegions"))]
    return Distribution(
        kind=_str(raw.get("type")) or "Unknown",
        run_output_name=_str(raw.get("runOutputName")) or "",
        gallery_image_id=image_id,
        target_regions=tuple(dict.fromkeys(region(t) for t in targets if t)),
        excluded_from_latest=raw.get("excludeFromLatest") is True,
    )


def template(body: Mapping[str, Any]) -> ImageTemplate:
    parsed = resource_ids.parse(str(body.get("id", "")))
    props = _dict(body.get("properties"))
    return ImageTemplate(
        id=resource_ids.template_id(parsed.subscription_id, parsed.resource_group, parsed.name),
        subscription_id=parsed.subscription_id,
        resource_group=parsed.resource_group,
        name=_str(body.get("name")) or parsed.name,
        location=region(_str(body.get("location")) or ""),
        source=source(props.get("source")),
        tags={str(k): str(v) for k, v in _dict(body.get("tags")).items()},
        distributions=tuple(distribution(d) for d in _list(props.get("distribute"))),
        provisioning_state=_str(props.get("provisioningState")),
        last_run=last_run(props.get("lastRunStatus")),
        definition=TemplateDefinition.from_body(body),
        provisioning_error=provisioning_error(props.get("provisioningError")),
    )


def provisioning_error(body: Any) -> ProvisioningError | None:
    raw = _dict(body)
    code, message = _str(raw.get("provisioningErrorCode")), _str(raw.get("message"))
    if code is None and message is None:
        return None
    return ProvisioningError(code or "Unknown", message or "")


def run_output(body: Mapping[str, Any]) -> RunOutput:
    props = _dict(body.get("properties"))
    return RunOutput(
        name=_str(body.get("name")) or "",
        artifact_id=_str(props.get("artifactId")),
        artifact_uri=_str(props.get("artifactUri")),
    )


def gallery_version(body: Mapping[str, Any]) -> GalleryImageVersion:
    props = _dict(body.get("properties"))
    publishing = _dict(props.get("publishingProfile"))
    states = {fold(s.value): s for s in ReplicationState}
    replication = tuple(
        RegionReplication(
            region=region(_str(item.get("region")) or ""),
            state=states.get(fold(_str(item.get("state")) or ""), ReplicationState.UNKNOWN),
            progress=int(item.get("progress") or 0),
            details=_str(item.get("details")) or "",
        )
        for item in map(_dict, _list(_dict(props.get("replicationStatus")).get("summary")))
    )
    named = [(_str(t.get("name")), t) for t in map(_dict, _list(publishing.get("targetRegions")))]
    targets = tuple(region(n) for n, _ in named if n)
    regional = tuple(
        (region(n), t["excludeFromLatest"])
        for n, t in named
        if n and isinstance(t.get("excludeFromLatest"), bool)
    )
    return GalleryImageVersion(
        id=resource_ids.gallery_version_id(str(body.get("id", ""))),
        name=GalleryVersionName(_str(body.get("name")) or ""),
        provisioning_state=_str(props.get("provisioningState")),
        target_regions=targets,
        excluded_from_latest=publishing.get("excludeFromLatest") is True,
        published_at=timestamp(publishing.get("publishedDate")),
        replication=replication,
        tags=tuple(sorted((str(k), str(v)) for k, v in _dict(body.get("tags")).items())),
        regional_exclusions=regional,
    )


def version_update(read: Mapping[str, Any]) -> dict[str, Any]:
    """A GalleryImageVersionUpdate body carrying what a read of the version says, writable parts only
    (REST definitions GalleryRP 2026-03-03; azure-mgmt-compute 39.0.0 marks the same fields
    visibility=["read"]): `properties.storageProfile` is required by the update schema (and sent by
    every official Update example), and `publishingProfile.targetRegions` is carried whole so an
    update never drops a region or a region's own settings. Callers change the copy and send it."""
    props = _dict(read.get("properties"))
    publishing = {k: v for k, v in _dict(props.get("publishingProfile")).items() if k != "publishedDate"}
    publishing["targetRegions"] = [dict(_dict(t)) for t in _list(publishing.get("targetRegions"))]
    storage = dict(_dict(props.get("storageProfile")))
    if "osDiskImage" in storage:
        storage["osDiskImage"] = _without_size(storage["osDiskImage"])
    if "dataDiskImages" in storage:
        storage["dataDiskImages"] = [_without_size(d) for d in _list(storage["dataDiskImages"])]
    body: dict[str, Any] = {"properties": {"publishingProfile": publishing, "storageProfile": storage}}
    if _dict(read.get("tags")):
        body["tags"] = dict(_dict(read.get("tags")))
    return body


def _without_size(disk: Any) -> dict[str, Any]:
    return {k: v for k, v in _dict(disk).items() if k != "sizeInGB"}  # readOnly: Azure reports it


def permission(body: Any) -> Permission:
    """One entry of the Permissions API's `value` (Microsoft.Authorization 2022-04-01 `Permission`)."""
    raw = _dict(body)
    return Permission(
        actions=tuple(a for a in map(_str, _list(raw.get("actions"))) if a),
        not_actions=tuple(a for a in map(_str, _list(raw.get("notActions"))) if a),
    )


def permissions_page(body: Any) -> tuple[list[Permission], str | None]:
    """A page of the Permissions API's answer (`PermissionGetResult`): its entries and `nextLink`."""
    raw = _dict(body)
    return [permission(p) for p in _list(raw.get("value"))], _str(raw.get("nextLink"))


def gallery_image(body: Mapping[str, Any]) -> GalleryImageDefinition:
    props = _dict(body.get("properties"))
    return GalleryImageDefinition(
        id=resource_ids.gallery_image_id(str(body.get("id", ""))),
        os_type=_str(props.get("osType")),
        hyper_v_generation=_str(props.get("hyperVGeneration")),
    )


def managed_identity(body: Mapping[str, Any]) -> ManagedIdentity:
    return ManagedIdentity(
        id=_str(body.get("id")) or "", principal_id=_str(_dict(body.get("properties")).get("principalId"))
    )
