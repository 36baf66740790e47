"""Simulated Azure VM Image Builder (Microsoft.VirtualMachineImages/imageTemplates).

Templates are immutable once created (as in AIB); a run walks Queued -> Building -> Customizing ->
[Optimizing] -> [Validating] -> Distributing over simulated time, resolves its source when it starts,
and creates the gallery image versions its SharedImage distributors name, versioned as AIB does.
The run ends when every such version has finished replicating: Succeeded, or PartiallySucceeded when a
region failed. As unforgiving as Azure: a template provisions over time and may fail to (an injected
failure, or a pinned source that does not exist: `provisioningError`), a Failed template must be
deleted before its name is submitted again, and a delete takes minutes (`Deleting`; a PUT meanwhile is
refused). Messy like Azure: GET fills defaults the PUT left out, `source.exactVersion` is resolved when
the template is provisioned (the PUT's answer still says `latest`), `lastRunStatus` is absent until
the first run, `runSubState` while Running and on a Failed run (the phase it failed in: a failed
validation is `runState: Failed` with `runSubState: Validating`, the structure rebuilder goes by, as
Microsoft's docs for validate.continueDistributeOnFailure describe the run as failed either way),
`endTime` is the zero date while a run is in
progress, ids come back with `resourcegroups` in lower case, and run output artifact ids say `imageversions`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import regions
from .casing import fold
from .clock import iso
from .errors import ArmError, conflict, not_found
from .gallery import Gallery, ImageVersion
from .marketplace import Marketplace, version_key

TEMPLATE_TYPE = "Microsoft.VirtualMachineImages/imageTemplates"
ZERO_TIME = "0001-01-01T00:00:00Z"
_SOURCE_TYPES = {"PlatformImage", "ManagedImage", "SharedImageVersion"}
_READ_ONLY = {"provisioningState", "provisioningError", "lastRunStatus", "exactStagingResourceGroup"}


@dataclass
class RunTiming:
    queued: float = 60.0
    building: float = 240.0
    customizing: float = 900.0
    optimizing: float = 120.0  # only when the template has `optimize`
    validating: float = 180.0  # only when the template has `validate`
    canceling: float = 30.0
    provisioning: float = 0.0  # a new template is Creating until the next request after this long
    deleting: float = 120.0  # a deleted template is Deleting this long, then gone


@dataclass
class ProvisioningFailure:
    """What AIB reports when a template cannot be provisioned (properties.provisioningError)."""

    # provisioningErrorCode: ServerError or Other (transient), BadPIRSource, BadSourceType, ... (permanent)
    code: str
    message: str


@dataclass
class BuildFailure:
    sub_state: str
    message: str


@dataclass
class Run:
    started_at: datetime
    phases: list[tuple[str, datetime]]  # (sub-state, its end), Distributing excluded
    failure: BuildFailure | None = None
    state: str = "Running"
    sub_state: str | None = "Queued"
    message: str = ""
    ended_at: datetime | None = None
    distributing: bool = False
    versions: list[ImageVersion] = field(default_factory=list)
    cancel_requested_at: datetime | None = None
    validation_failed: str = ""  # validation failed, distribution went on (continueDistributeOnFailure)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "startTime": iso(self.started_at),
            "endTime": iso(self.ended_at) if self.ended_at else ZERO_TIME,
            "runState": self.state,
            "message": self.message,
        }
        if self.state in ("Running", "Failed") and self.sub_state:  # Failed: the phase it failed in
            status["runSubState"] = self.sub_state
        return status


@dataclass
class Template:
    sub: str
    rg: str
    name: str
    location: str
    tags: dict[str, str]
    identity: dict[str, Any]
    properties: dict[str, Any]
    created_at: datetime
    provisioning_state: str = "Succeeded"
    run: Run | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    exact_version: str | None = None
    provisioning_error: ProvisioningFailure | None = None
    settles_at: datetime | None = None  # Creating or Deleting until then

    @property
    def id(self) -> str:
        return f"/subscriptions/{self.sub}/resourcegroups/{self.rg}/providers/{TEMPLATE_TYPE}/{self.name}"

    @property
    def running(self) -> bool:
        return self.run is not None and self.run.state in ("Running", "Canceling")

    def definition(self) -> str:
        return json.dumps(
            {
                "location": self.location,
                "identity": _identity_ids(self.identity),
                "properties": _writable(self.properties),
            },
            sort_keys=True,
        )

    def body(self) -> dict[str, Any]:
        properties = _with_defaults(copy.deepcopy(self.properties))
        if self.exact_version is not None:
            properties.setdefault("source", {})["exactVersion"] = self.exact_version
        properties["provisioningState"] = self.provisioning_state
        if self.provisioning_error is not None:
            properties["provisioningError"] = {
                "provisioningErrorCode": self.provisioning_error.code,
                "message": self.provisioning_error.message,
            }
        properties["exactStagingResourceGroup"] = (
            f"/subscriptions/{self.sub}/resourceGroups/IT_{self.rg}_{self.name}_"
            f"{hashlib.sha1(fold(self.id).encode()).hexdigest()[:8]}"  # noqa: S324 - a name, not security
        )
        if self.run is not None:
            properties["lastRunStatus"] = self.run.status()
        return {
            "id": self.id,
            "name": self.name,
            "type": TEMPLATE_TYPE,
            "location": self.location,
            "tags": self.tags,
            "identity": _identity_with_ids(self.identity),
            "properties": properties,
            "systemData": {"createdAt": iso(self.created_at, digits=9), "createdByType": "User"},
        }


class ImageBuilder:
    def __init__(self, marketplace: Marketplace, gallery: Gallery) -> None:
        self.marketplace = marketplace
        self.gallery = gallery
        self.timing = RunTiming()
        self.templates: dict[tuple[str, str, str], Template] = {}
        self.build_failures: dict[str, list[BuildFailure]] = {}  # template name (lower) -> next runs' fate
        # template name (lower) -> the next provisionings' fate; `always` fails every one
        self.provisioning_failures: dict[str, list[ProvisioningFailure]] = {}
        self.always_failing: dict[str, ProvisioningFailure] = {}
        self.runs_started: dict[str, int] = {}  # template id (lower) -> runs accepted

    # -- templates ---------------------------------------------------------------------------------
    def put(self, sub: str, rg: str, name: str, body: dict[str, Any], now: datetime) -> tuple[int, Template]:
        key = (sub, fold(rg), fold(name))
        candidate = _validated(sub, rg, name, body, now)
        existing = self.templates.get(key)
        if existing is not None and existing.provisioning_state == "Deleting":
            raise conflict(
                "Conflict",
                f"The image template '{name}' is being deleted. Wait for the deletion to finish before "
                "submitting a template with the same name.",
            )
        if existing is not None and existing.provisioning_state == "Failed":
            raise conflict(
                "Conflict",
                f"The image template '{name}' is in the 'Failed' provisioning state. Delete the existing "
                "template before submitting a template with the same name again.",
            )
        if existing is not None:
            if existing.definition() != candidate.definition():
                raise conflict(
                    "Conflict",
                    "Update/Upgrade of image templates is currently not supported. Please change the name "
                    "of the template you are submitting, or delete the existing template first.",
                )
            existing.tags = candidate.tags
            return 200, existing
        candidate.provisioning_state = "Creating"
        candidate.settles_at = now + timedelta(seconds=self.timing.provisioning)
        if (candidate.properties.get("source") or {}).get("type") in ("PlatformImage", "SharedImageVersion"):
            candidate.exact_version = "latest"  # resolved once provisioned, as AIB answers a PUT
        self.templates[key] = candidate
        return 201, candidate

    def get(self, sub: str, rg: str, name: str) -> Template:
        template = self.templates.get((sub, fold(rg), fold(name)))
        if template is None:
            raise not_found(TEMPLATE_TYPE, name, rg)
        return template

    def list(self, sub: str, rg: str | None) -> list[Template]:
        return [
            t for (s, r, _), t in sorted(self.templates.items()) if s == sub and (rg is None or r == fold(rg))
        ]

    def update_tags(self, sub: str, rg: str, name: str, body: dict[str, Any]) -> Template:
        template = self.get(sub, rg, name)
        unsupported = set(body) - {"tags", "identity", "properties"}
        if unsupported or set(body.get("properties") or {}) - {"vmProfile"}:
            raise ArmError(
                400, "InvalidRequestContent", "Only tags, identity and vmProfile.vmSize can be updated."
            )
        if "tags" in body:
            template.tags = dict(body["tags"] or {})
        return template

    def delete(self, sub: str, rg: str, name: str, now: datetime) -> Template | None:
        """Start deleting: the template is Deleting for a while (a long-running operation), then gone."""
        template = self.templates.get((sub, fold(rg), fold(name)))
        if template is None:
            return None
        if template.running:
            raise conflict(
                "Conflict",
                "Image template cannot be deleted while a build is running. Cancel the build first.",
            )
        if template.provisioning_state != "Deleting":
            template.provisioning_state = "Deleting"
            template.settles_at = now + timedelta(seconds=self.timing.deleting)
        return template

    def gone(self, template: Template) -> bool:
        return self.templates.get((template.sub, fold(template.rg), fold(template.name))) is not template

    # -- runs --------------------------------------------------------------------------------------
    def start_run(self, sub: str, rg: str, name: str, now: datetime) -> Template:
        template = self.get(sub, rg, name)
        if template.provisioning_state != "Succeeded":
            raise ArmError(
                400,
                "BadRequest",
                f"Image template is in provisioning state '{template.provisioning_state}' and cannot be run.",
            )
        if template.running:
            raise conflict(
                "Conflict",
                "A build of this image template is already running. Wait for it to "
                "finish or cancel it before starting another.",
            )
        phases: list[tuple[str, datetime]] = []
        moment = now
        steps = [
            ("Queued", self.timing.queued),
            ("Building", self.timing.building),
            ("Customizing", self.timing.customizing),
        ]
        if template.properties.get("optimize"):
            steps.append(("Optimizing", self.timing.optimizing))
        if template.properties.get("validate"):
            steps.append(("Validating", self.timing.validating))
        for sub_state, seconds in steps:
            moment += timedelta(seconds=seconds)
            phases.append((sub_state, moment))
        fates = self.build_failures.get(fold(template.name)) or []
        failure = fates.pop(0) if fates else None
        template.run = Run(started_at=now, phases=phases, failure=failure)
        template.outputs = {}
        template.exact_version, problem = self._resolve_source(template)
        if problem and failure is None:
            template.run.failure = BuildFailure("Building", problem)
        self.runs_started[fold(template.id)] = self.runs_started.get(fold(template.id), 0) + 1
        return template

    def cancel_run(self, sub: str, rg: str, name: str, now: datetime) -> Template:
        template = self.get(sub, rg, name)
        if template.run is None or template.run.state != "Running":
            raise conflict("Conflict", "There is no running build of this image template to cancel.")
        template.run.state = "Canceling"
        template.run.cancel_requested_at = now
        return template

    def _resolve_source(self, template: Template) -> tuple[str | None, str | None]:
        source = template.properties.get("source") or {}
        kind = source.get("type")
        if kind == "PlatformImage":
            resolved = self.marketplace.resolve(
                template.location,
                source.get("publisher", ""),
                source.get("offer", ""),
                source.get("sku", ""),
                str(source.get("version", "")),
            )
            if resolved is None:
                return None, (
                    f"Platform image {source.get('publisher')}:{source.get('offer')}:"
                    f"{source.get('sku')}:{source.get('version')} is not available in "
                    f"{template.location}."
                )
            return resolved, None
        if kind == "SharedImageVersion":
            version = self._resolve_gallery_source(template.location, str(source.get("imageVersionId", "")))
            if version is None:
                return (
                    None,
                    f"Source image version {source.get('imageVersionId')} was not found or is not "
                    f"replicated to {template.location}.",
                )
            return version.id, None
        return None, None

    def _resolve_gallery_source(self, location: str, version_id: str) -> ImageVersion | None:
        image_id, _, version_name = version_id.rpartition("/versions/")
        found = self.gallery.find_image_by_id(image_id)
        if found is None:
            return None
        if fold(version_name) != "latest":
            return next((v for v in self.gallery.list_versions(*found) if v.name == version_name), None)
        return self.gallery.latest(*found, location)

    # -- time --------------------------------------------------------------------------------------
    def tick(self, now: datetime) -> None:
        for key, template in list(self.templates.items()):
            settled = template.settles_at is None or now >= template.settles_at
            if template.provisioning_state == "Deleting" and settled:
                del self.templates[key]
                continue
            if template.provisioning_state == "Creating" and settled:
                self._provision(template)
            if template.run is not None:
                self._advance(template, template.run, now)

    def _provision(self, template: Template) -> None:
        """Creating -> Succeeded (the source resolved), or Failed with AIB's provisioningError."""
        name = fold(template.name)
        fates = self.provisioning_failures.get(name) or []
        failure = fates.pop(0) if fates else self.always_failing.get(name)
        resolved, problem = self._resolve_source(template)
        source = template.properties.get("source") or {}
        pinned = fold(str(source.get("version", "latest"))) != "latest"
        if failure is None and resolved is None and source.get("type") == "PlatformImage" and pinned:
            # A pinned version that does not exist: AIB refuses the template (not worth retrying).
            failure = ProvisioningFailure("BadPIRSource", problem or "The platform image was not found.")
        if failure is not None:
            template.provisioning_state, template.provisioning_error = "Failed", failure
            return
        template.provisioning_state = "Succeeded"
        template.exact_version = resolved

    def _advance(self, template: Template, run: Run, now: datetime) -> None:
        if run.state == "Canceling":
            assert run.cancel_requested_at is not None
            if now >= run.cancel_requested_at + timedelta(seconds=self.timing.canceling):
                self._end(
                    run,
                    "Canceled",
                    "Build was canceled by the user.",
                    run.cancel_requested_at + timedelta(seconds=self.timing.canceling),
                )
            return
        if run.state != "Running":
            return
        for sub_state, ends_at in run.phases:
            if now < ends_at:
                run.sub_state = sub_state
                return
            if run.failure is not None and run.failure.sub_state == sub_state:
                if sub_state == "Validating" and _distributes_anyway(template):
                    run.validation_failed = run.failure.message  # the run fails once it has distributed
                    run.failure = None
                    continue
                self._end(run, "Failed", run.failure.message, ends_at, sub_state=sub_state)
                return
        distribution_start = run.phases[-1][1]
        run.sub_state = "Distributing"
        if not run.distributing:
            run.distributing = True
            try:
                self._distribute(template, run, distribution_start)
            except ArmError as error:
                self._end(run, "Failed", f"Distribution failed: {error.message}", distribution_start)
                return
        for version in run.versions:
            version.tick(now)
        if all(v.provisioning_state in ("Succeeded", "Failed") for v in run.versions):
            ended = max(
                [distribution_start]
                + [r.ended_at for v in run.versions for r in v.replicas.values() if r.ended_at is not None]
            )
            failed = sorted(
                regions.display(r.region)
                for v in run.versions
                for r in v.replicas.values()
                if r.state == "Failed"
            )
            if run.validation_failed:  # the run failed where it was: runSubState stays Validating
                self._end(run, "Failed", run.validation_failed, ended, sub_state="Validating")
            elif failed:
                self._end(
                    run,
                    "PartiallySucceeded",
                    f"Distribution to Azure Compute Gallery partially failed: replication to "
                    f"{', '.join(failed)} failed.",
                    ended,
                )
            else:
                self._end(run, "Succeeded", "", ended)

    @staticmethod
    def _end(run: Run, state: str, message: str, at: datetime, *, sub_state: str | None = None) -> None:
        run.state, run.message, run.ended_at, run.sub_state = state, message, at, sub_state

    def _distribute(self, template: Template, run: Run, at: datetime) -> None:
        for distributor in template.properties.get("distribute") or []:
            kind = distributor.get("type")
            output = distributor.get("runOutputName") or f"{template.name}-{kind}"
            if kind == "SharedImage":
                version = self._publish_version(template, distributor, at)
                run.versions.append(version)
                artifact = version.id.replace("/versions/", "/imageversions/")
                template.outputs[output] = {"artifactId": artifact, "provisioningState": "Succeeded"}
            elif kind == "ManagedImage":
                template.outputs[output] = {
                    "artifactId": distributor.get("imageId"),
                    "provisioningState": "Succeeded",
                }
            elif kind == "VHD":
                template.outputs[output] = {
                    "artifactUri": f"https://aibsim{fold(template.name)[:10]}.blob.core.windows.net/vhds/"
                    f"{template.name}_{int(at.timestamp())}.vhd",
                    "provisioningState": "Succeeded",
                }

    def _publish_version(self, template: Template, distributor: dict[str, Any], at: datetime) -> ImageVersion:
        image_id = str(distributor.get("galleryImageId") or "")
        image_id, _, explicit = image_id.partition("/versions/")
        found = self.gallery.find_image_by_id(image_id)
        if found is None:
            raise ArmError(404, "NotFound", f"Gallery image {image_id} was not found.")
        name = explicit or self._next_version(template, distributor, found, at)
        targets = distributor.get("targetRegions") or [
            {"name": r} for r in (distributor.get("replicationRegions") or [template.location])
        ]
        body = {
            "location": self.gallery.get_gallery(found[0], found[1], found[2])["location"],
            "tags": distributor.get("artifactTags") or {},
            "properties": {
                "publishingProfile": {
                    "targetRegions": [
                        {
                            "name": t.get("name"),
                            "regionalReplicaCount": t.get("replicaCount", 1),
                            "storageAccountType": t.get("storageAccountType", "Standard_LRS"),
                        }
                        for t in targets
                    ],
                    "excludeFromLatest": bool(distributor.get("excludeFromLatest", False)),
                },
                "storageProfile": {
                    "source": {
                        "id": (
                            f"/subscriptions/{template.sub}/resourceGroups/IT_{template.rg}_{template.name}/providers/"
                            f"Microsoft.Compute/images/{template.name}-{int(at.timestamp())}"
                        )
                    }
                },
            },
        }
        _, version = self.gallery.put_version(*found, name, body, at)
        return version

    def _next_version(
        self, template: Template, distributor: dict[str, Any], image: tuple[str, str, str, str], at: datetime
    ) -> str:
        versioning = distributor.get("versioning") or {}
        scheme = str(versioning.get("scheme") or "")
        if scheme == "Source":
            exact = template.exact_version or ""
            parts = exact.rsplit("/", 1)[-1].split(".")
            if len(parts) != 3 or not all(p.isdigit() and int(p) < 2**31 for p in parts):
                raise ArmError(
                    400, "InvalidParameter", f"Cannot derive a gallery version from source version '{exact}'."
                )
            return ".".join(str(int(p)) for p in parts)
        if scheme == "Latest":
            major = int(versioning.get("major", -1))
            existing = [version_key(v.name) for v in self.gallery.list_versions(*image)]
            if major >= 0:
                existing = [v for v in existing if v[0] == major]
            if not existing:
                return f"{max(major, 0)}.0.1"
            top = max(existing)
            return f"{top[0]}.{top[1]}.{top[2] + 1}"
        day = at.timetuple().tm_yday
        seconds = at.hour * 3600 + at.minute * 60 + at.second
        return f"0.{at:%y}{day:03d}.{seconds}"


def _distributes_anyway(template: Template) -> bool:
    """`validate.continueDistributeOnFailure`: artifacts are distributed although validation failed."""
    validate = template.properties.get("validate") or {}
    return isinstance(validate, dict) and bool(validate.get("continueDistributeOnFailure"))


def _validated(sub: str, rg: str, name: str, body: dict[str, Any], now: datetime) -> Template:
    location = body.get("location")
    if not isinstance(location, str) or not regions.is_known(location):
        raise ArmError(
            400,
            "LocationRequired" if not location else "LocationNotAvailableForResourceType",
            f"The provided location '{location}' is not available for resource type '{TEMPLATE_TYPE}'.",
        )
    identity = body.get("identity") or {}
    if identity.get("type") != "UserAssigned" or not identity.get("userAssignedIdentities"):
        raise ArmError(
            400,
            "InvalidParameter",
            "A user-assigned identity is required: identity.type must be 'UserAssigned'.",
        )
    properties = body.get("properties") or {}
    source = properties.get("source") or {}
    if source.get("type") not in _SOURCE_TYPES:
        raise ArmError(
            400,
            "InvalidParameter",
            f"Source type '{source.get('type')}' is not supported; use one of {sorted(_SOURCE_TYPES)}.",
        )
    if source.get("type") == "PlatformImage":
        missing = [k for k in ("publisher", "offer", "sku", "version") if not source.get(k)]
        if missing:
            raise ArmError(400, "InvalidParameter", f"PlatformImage source is missing {', '.join(missing)}.")
    if not properties.get("distribute"):
        raise ArmError(400, "InvalidParameter", "At least one distribution target is required.")
    return Template(
        sub=sub,
        rg=rg,
        name=name,
        location=regions.normalise(location),
        tags=dict(body.get("tags") or {}),
        identity=copy.deepcopy(identity),
        properties=_writable(properties),
        created_at=now,
    )


def _with_defaults(properties: dict[str, Any]) -> dict[str, Any]:
    """What Azure's GET says for what the PUT left out."""
    properties.setdefault("buildTimeoutInMinutes", 0)
    properties.setdefault("stagingResourceGroup", "")
    profile = properties.setdefault("vmProfile", {})
    profile.setdefault("vmSize", "")
    profile.setdefault("osDiskSizeGB", 0)
    return properties  # no `versioning: null` where none was set: DistributeVersioner is not x-nullable


def _writable(properties: dict[str, Any]) -> dict[str, Any]:
    cleaned = {k: copy.deepcopy(v) for k, v in properties.items() if k not in _READ_ONLY}
    if isinstance(cleaned.get("source"), dict):
        cleaned["source"].pop("exactVersion", None)
    return cleaned


def _identity_ids(identity: dict[str, Any]) -> list[str]:
    return sorted(fold(k) for k in (identity.get("userAssignedIdentities") or {}))


def _identity_with_ids(identity: dict[str, Any]) -> dict[str, Any]:
    ids = identity.get("userAssignedIdentities") or {}
    return {
        "type": identity.get("type", "UserAssigned"),
        "userAssignedIdentities": {
            key: {
                "principalId": _fake_guid("principal", key),
                "clientId": _fake_guid("client", key),
            }
            for key in ids
        },
    }


def _fake_guid(kind: str, seed: str) -> str:
    digest = hashlib.sha256(f"{kind}:{fold(seed)}".encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
