"""In-memory fakes of the ports, for fast unit tests. Kept honest by tests/contract, which runs the
same suite against these and against the SDK adapters on the ARM simulator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from rebuilder.domain import resource_ids
from rebuilder.domain.casing import fold
from rebuilder.domain.definition import TemplateDefinition
from rebuilder.domain.errors import Conflict, NotFound, PermanentError
from rebuilder.domain.model import (
    GalleryImageId,
    GalleryImageVersion,
    GalleryVersionId,
    ImageState,
    ImageTemplate,
    LastRun,
    MarketplaceImageVersion,
    MarketplaceVersion,
    PlatformImage,
    ProvisioningError,
    RegionReplication,
    ReplicationState,
    RunOutput,
    RunState,
    RunSubState,
    Scope,
    TemplateId,
)
from rebuilder.domain.notices import Notice
from rebuilder.domain.regions import Region


class FixedClock:
    """A clock that moves only when told to."""

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime(2026, 11, 10, 6, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now


class InMemoryMarketplace:
    def __init__(self) -> None:
        self.versions: dict[tuple[Region, tuple[str, str, str]], dict[str, MarketplaceImageVersion]] = {}
        self.calls: list[tuple[str, Region, PlatformImage]] = []

    def publish(
        self,
        location: Region,
        image: PlatformImage,
        version: str,
        state: ImageState = ImageState.ACTIVE,
        scheduled_deprecation_at: datetime | None = None,
    ) -> None:
        self.versions.setdefault((location, image.key), {})[version] = MarketplaceImageVersion(
            image, location, MarketplaceVersion(version), state, scheduled_deprecation_at
        )

    def list_versions(
        self, subscription_id: str, location: Region, image: PlatformImage
    ) -> list[MarketplaceVersion]:
        self.calls.append(("list", location, image))
        found = self.versions.get((location, image.key))
        if not found:
            raise NotFound(f"list versions of {image} in {location}: no such image")
        return [MarketplaceVersion(v) for v in found]

    def get_version(
        self, subscription_id: str, location: Region, image: PlatformImage, version: MarketplaceVersion
    ) -> MarketplaceImageVersion:
        self.calls.append(("get", location, image))
        found = self.versions.get((location, image.key), {}).get(version)
        if found is None:
            raise NotFound(f"get {image}:{version} in {location}: no such version")
        return found


DELETE_SECONDS = 120  # Azure takes about two minutes to delete an image template


class InMemoryImageBuilder:
    """AIB in memory, as unforgiving as Azure where rebuilder is fragile: a delete takes a while
    (`Deleting`, a create meanwhile is refused), a template may fail to provision (`provisioningError`),
    and a Failed template must be deleted before its name is created again."""

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.templates: dict[str, ImageTemplate] = {}
        self.outputs: dict[str, list[RunOutput]] = {}
        self.runs_started: dict[str, int] = {}
        self.deleted: dict[str, ImageTemplate] = {}
        self.created: dict[str, int] = {}
        self.deleting: dict[str, datetime] = {}  # key -> when the delete completes
        self.provisioning_failures: dict[str, list[ProvisioningError]] = {}  # name (lower) -> next fates
        self.puts = 0  # create requests, refused ones included: no storm against a template being deleted

    def fail_provisioning(self, name: str, code: str, message: str, *, times: int = 1) -> None:
        self.provisioning_failures.setdefault(fold(name), []).extend(
            ProvisioningError(code, message) for _ in range(times)
        )

    def _settle(self, key: str) -> None:
        until = self.deleting.get(key)
        if until is not None and self.clock.now() >= until:
            del self.deleting[key]
            self.deleted[key] = self.templates.pop(key)

    @staticmethod
    def _key(template_id: str) -> str:
        return resource_ids.parse(template_id).key()

    def add_template(self, template: ImageTemplate) -> None:
        self.templates[self._key(template.id)] = template

    def list_templates(self, scope: Scope) -> Iterator[ImageTemplate]:
        for key in list(self.templates):
            self._settle(key)
        for template in list(self.templates.values()):
            if template.subscription_id == scope.subscription_id and (
                scope.resource_group is None or fold(template.resource_group) == fold(scope.resource_group)
            ):
                yield template

    def get_template(self, template_id: TemplateId) -> ImageTemplate:
        self._settle(self._key(template_id))
        try:
            return self.templates[self._key(template_id)]
        except KeyError:
            raise NotFound(f"get image template {template_id}: not found") from None

    def start_run(self, template_id: TemplateId) -> None:
        template = self.get_template(template_id)
        if (template.provisioning_state or "Succeeded") != "Succeeded":
            raise PermanentError(
                f"run image template {template.name}: it is {template.provisioning_state} and cannot be run"
            )
        if template.last_run and template.last_run.state in (RunState.RUNNING, RunState.CANCELING):
            raise Conflict(f"run image template {template.name}: a run is already going")
        self._set_run(template, LastRun(RunState.RUNNING, RunSubState.QUEUED, self.clock.now(), None))
        self.outputs[self._key(template_id)] = []
        key = self._key(template_id)
        self.runs_started[key] = self.runs_started.get(key, 0) + 1

    def cancel_run(self, template_id: TemplateId) -> None:
        template = self.get_template(template_id)
        if not template.last_run or template.last_run.state is not RunState.RUNNING:
            raise Conflict(f"cancel the run of image template {template.name}: no run is going")
        self._set_run(template, dataclasses.replace(template.last_run, state=RunState.CANCELING))

    def delete_template(self, template_id: TemplateId) -> None:
        key = self._key(template_id)
        self._settle(key)
        template = self.templates.get(key)
        if template is None:
            return
        if template.last_run and template.last_run.state in (RunState.RUNNING, RunState.CANCELING):
            raise Conflict(f"delete image template {template.name}: a run is going")
        if key not in self.deleting:
            self.deleting[key] = self.clock.now() + timedelta(seconds=DELETE_SECONDS)
            self.templates[key] = dataclasses.replace(template, provisioning_state="Deleting")

    def create_template(self, template_id: TemplateId, definition: TemplateDefinition) -> None:
        """Recreate a deleted template from `definition` (the fake keeps what the definition does not say)."""
        key = self._key(template_id)
        self._settle(key)
        self.puts += 1
        if key in self.deleting:
            raise Conflict(f"create image template {template_id}: it is being deleted")
        if key in self.templates and self.templates[key].provisioning_state == "Failed":
            raise Conflict(f"create image template {template_id}: it is Failed; delete it first")
        if key in self.templates:
            raise Conflict(f"create image template {template_id}: it exists (templates are immutable)")
        previous = self.deleted.pop(key, None)
        if previous is None:
            raise NotFound(f"create image template {template_id}: the fake recreates deleted templates only")
        body = definition.body
        raw = body["properties"]["source"]
        source = dataclasses.replace(
            previous.source,
            version=raw.get("version"),
            image_version_id=raw.get("imageVersionId"),
            exact_version=None,
        )
        self.templates[key] = dataclasses.replace(
            previous,
            source=source,
            tags=dict(body.get("tags") or {}),
            last_run=None,
            provisioning_state="Succeeded",
            definition=definition,
            provisioning_error=None,
        )
        fates = self.provisioning_failures.get(fold(previous.name)) or []
        if fates:
            self.templates[key] = dataclasses.replace(
                self.templates[key], provisioning_state="Failed", provisioning_error=fates.pop(0)
            )
        self.created[key] = self.created.get(key, 0) + 1

    def finish_run(
        self,
        template_id: TemplateId,
        state: RunState = RunState.SUCCEEDED,
        *,
        exact_version: str | None = None,
        outputs: Iterable[RunOutput] = (),
        message: str = "",
    ) -> None:
        """Test helper: end the current run as AIB would."""
        template = self.get_template(template_id)
        if template.last_run is None:
            raise Conflict(f"finish the run of {template.name}: no run was started")
        ended = dataclasses.replace(
            template.last_run, state=state, sub_state=None, ended_at=self.clock.now(), message=message
        )
        source = dataclasses.replace(
            template.source, exact_version=exact_version or template.source.exact_version
        )
        self.templates[self._key(template_id)] = dataclasses.replace(template, last_run=ended, source=source)
        self.outputs[self._key(template_id)] = list(outputs)

    def _set_run(self, template: ImageTemplate, run: LastRun) -> None:
        self.templates[self._key(template.id)] = dataclasses.replace(template, last_run=run)

    def list_run_outputs(self, template_id: TemplateId) -> list[RunOutput]:
        self.get_template(template_id)
        return list(self.outputs.get(self._key(template_id), []))


class InMemoryGallery:
    """Gallery versions in memory. An update is in flight (`Updating`) for `update_looks` reads of the
    version before its change is in effect (0: at once, the default), as Azure answers `Updating` and
    applies the change later; a second update meanwhile is refused (Conflict), as the SDK adapter does."""

    def __init__(self, *, update_looks: int = 0) -> None:
        self.images: dict[str, dict[str, GalleryImageVersion]] = {}
        self.update_looks = update_looks
        self._pending: dict[str, tuple[int, GalleryImageVersion]] = {}  # id -> (looks left, the change)

    @staticmethod
    def _image_key(resource_id: str) -> str:
        return fold(resource_ids.gallery_image_id(resource_id))

    def add_image(self, image_id: GalleryImageId) -> None:
        self.images.setdefault(self._image_key(image_id), {})

    def add_version(self, version: GalleryImageVersion) -> None:
        self.images.setdefault(self._image_key(version.id), {})[version.name] = version

    def _stored(self, version_id: GalleryVersionId) -> GalleryImageVersion:
        name = resource_ids.parse(version_id).name
        found = self.images.get(self._image_key(version_id), {}).get(name)
        if found is None:
            raise NotFound(f"get gallery image version {version_id}: not found")
        return found

    def _look(self, version: GalleryImageVersion) -> GalleryImageVersion:
        key = fold(version.id)
        if key not in self._pending:
            return version
        left, change = self._pending[key]
        if left > 0:
            self._pending[key] = (left - 1, change)
            return version
        del self._pending[key]
        self.add_version(change)
        return change

    def get_version(
        self, version_id: GalleryVersionId, *, with_replication: bool = True
    ) -> GalleryImageVersion:
        found = self._look(self._stored(version_id))
        return found if with_replication else dataclasses.replace(found, replication=())

    def list_versions(self, image_id: GalleryImageId) -> list[GalleryImageVersion]:
        if self._image_key(image_id) not in self.images:
            raise NotFound(f"list versions of gallery image {image_id}: no such image")
        return [
            dataclasses.replace(self._look(v), replication=())
            for v in list(self.images[self._image_key(image_id)].values())
        ]

    def _update(self, version_id: GalleryVersionId, change: GalleryImageVersion) -> None:
        version = self._look(self._stored(version_id))  # the adapter reads the version first
        if version.updating or fold(version.id) in self._pending:
            raise Conflict(f"update {version_id}: an update of the version is in flight")
        if self.update_looks <= 0:
            self.add_version(change)
            return
        self.add_version(dataclasses.replace(version, provisioning_state="Updating"))
        self._pending[fold(version.id)] = (self.update_looks, change)

    def set_tags(self, version_id: GalleryVersionId, tags: Mapping[str, str]) -> None:
        version = self._stored(version_id)
        self._update(version_id, dataclasses.replace(version, tags=tuple(sorted(tags.items()))))

    def set_excluded_from_latest(self, version_id: GalleryVersionId, excluded: bool) -> None:
        self._update(version_id, self._stored(version_id).with_exclusion(excluded))

    def set_target_regions(self, version_id: GalleryVersionId, regions: Iterable[Region]) -> None:
        version = self._stored(version_id)
        current = {r.region: r for r in version.replication}
        wanted = tuple(dict.fromkeys(regions))
        replication = tuple(
            current[r]
            if r in current and current[r].state is not ReplicationState.FAILED
            else RegionReplication(r, ReplicationState.REPLICATING, 0, "")
            for r in wanted
        )
        self._update(
            version_id,
            dataclasses.replace(
                version, target_regions=wanted, replication=replication, provisioning_state="Updating"
            ),
        )


class InMemoryNotifier:
    """Keeps what would have been published to the Event Grid topic, in order."""

    def __init__(self) -> None:
        self.published: list[Notice] = []

    def publish(self, notices: Sequence[Notice]) -> None:
        self.published.extend(notices)
