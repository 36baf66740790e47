"""One contract suite, two backends: the in-memory fakes and the SDK adapters on the ARM simulator.

Each backend is an `Estate`: the ports under test plus a way to arrange the world behind them.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import pytest

from devstack.armsim import ArmSimulator, SimControl
from devstack.azurite import Azurite
from devstack.fakes import FixedClock, InMemoryGallery, InMemoryImageBuilder, InMemoryMarketplace
from devstack.fakes.ledger import InMemoryLedger
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.adapters.ledger_tables import TableLedger
from rebuilder.bootstrap import bootstrap
from rebuilder.domain import resource_ids, versions
from rebuilder.domain.definition import TemplateDefinition
from rebuilder.domain.model import (
    GalleryImageId,
    GalleryImageVersion,
    GalleryVersionId,
    GalleryVersionName,
    ImageState,
    ImageTemplate,
    PlatformImage,
    RegionReplication,
    ReplicationState,
    RunState,
    Source,
    SourceKind,
    TemplateId,
)
from rebuilder.domain.ports import Gallery, ImageBuilder, Ledger, MarketplaceCatalog
from rebuilder.domain.regions import Region, region
from rebuilder.settings import Settings
from tests.conftest import SUBSCRIPTION, local_env

IMAGES_RG = "rg-images"
GALLERY = "gallery1"


def image_id(name: str) -> GalleryImageId:
    return GalleryImageId(
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{IMAGES_RG}/providers/Microsoft.Compute/"
        f"galleries/{GALLERY}/images/{name}"
    )


def template_body(name: str, image: PlatformImage) -> dict[str, Any]:
    """An image template as a platform team writes it (both estates hold the same definition)."""
    return {
        "location": "westeurope",
        "tags": {"golden-image-rebuild": "auto"},
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {"/subscriptions/x/id": {}}},
        "properties": {
            "source": {
                "type": "PlatformImage",
                "publisher": image.publisher,
                "offer": image.offer,
                "sku": image.sku,
                "version": "latest",
            },
            "distribute": [
                {
                    "type": "SharedImage",
                    "galleryImageId": image_id("golden"),
                    "runOutputName": name,
                    "targetRegions": [{"name": "westeurope"}],
                }
            ],
        },
    }


class Estate(Protocol):
    marketplace: MarketplaceCatalog
    imagebuilder: ImageBuilder
    gallery: Gallery

    def publish(
        self, location: str, image: PlatformImage, version: str, state: ImageState = ImageState.ACTIVE
    ) -> None: ...

    def add_template(self, resource_group: str, name: str, image: PlatformImage) -> TemplateId: ...

    def finish_runs(self) -> None: ...

    def add_gallery_image(self, name: str) -> GalleryImageId: ...

    def add_gallery_version(
        self,
        image: str,
        version: str,
        regions: Iterable[str],
        failing: Iterable[str] = (),
        regional: bool | None = None,
    ) -> GalleryVersionId:
        """`regional`: each target region's own excludeFromLatest, as sent (None: not sent)."""
        ...

    def replicate(self) -> None: ...

    def hold_updates(self, looks: int) -> None:
        """Gallery updates stay Updating for `looks` reads of the version before they are in effect."""
        ...

    def advance(self, seconds: float) -> None: ...

    def fail_provisioning(self, name: str, code: str, message: str) -> None: ...


class MemoryEstate:
    def __init__(self) -> None:
        self.clock = FixedClock()
        self.marketplace = InMemoryMarketplace()
        self.imagebuilder = InMemoryImageBuilder(self.clock)
        self.gallery = InMemoryGallery()
        self._failing: set[Region] = set()

    def publish(
        self, location: str, image: PlatformImage, version: str, state: ImageState = ImageState.ACTIVE
    ) -> None:
        self.marketplace.publish(region(location), image, version, state)

    def add_template(self, resource_group: str, name: str, image: PlatformImage) -> TemplateId:
        template_id = resource_ids.template_id(SUBSCRIPTION, resource_group, name)
        body = template_body(name, image)
        self.imagebuilder.add_template(
            ImageTemplate(
                id=template_id,
                subscription_id=SUBSCRIPTION,
                resource_group=resource_group,
                name=name,
                location=region("westeurope"),
                source=Source(SourceKind.PLATFORM_IMAGE, image, "latest"),
                tags={"golden-image-rebuild": "auto"},
                definition=TemplateDefinition.from_body(body),
            )
        )
        return template_id

    def finish_runs(self) -> None:
        self.clock.advance(hours=4)
        for template in list(self.imagebuilder.templates.values()):
            if template.last_run and template.last_run.state is RunState.RUNNING:
                assert template.source.image is not None
                found = self.marketplace.versions.get((template.location, template.source.image.key), {})
                usable = [v for v, i in found.items() if i.state is not ImageState.DEPRECATED]
                self.imagebuilder.finish_run(template.id, exact_version=versions.newest(usable))

    def add_gallery_image(self, name: str) -> GalleryImageId:
        self.gallery.add_image(image_id(name))
        return image_id(name)

    def add_gallery_version(
        self,
        image: str,
        version: str,
        regions: Iterable[str],
        failing: Iterable[str] = (),
        regional: bool | None = None,
    ) -> GalleryVersionId:
        version_id = GalleryVersionId(f"{image_id(image)}/versions/{version}")
        targets = tuple(region(r) for r in regions)
        self._failing |= {region(r) for r in failing}
        self.gallery.add_version(
            GalleryImageVersion(
                id=version_id,
                name=GalleryVersionName(version),
                provisioning_state="Creating",
                target_regions=targets,
                replication=tuple(RegionReplication(r, ReplicationState.REPLICATING) for r in targets),
                regional_exclusions=() if regional is None else tuple((r, regional) for r in targets),
            )
        )
        return version_id

    def hold_updates(self, looks: int) -> None:
        self.gallery.update_looks = looks

    def replicate(self) -> None:
        for image in self.gallery.images.values():
            for name, version in list(image.items()):
                replication = tuple(
                    RegionReplication(r.region, ReplicationState.FAILED, 40, "replication failed")
                    if r.region in self._failing and r.state is ReplicationState.REPLICATING
                    else RegionReplication(r.region, ReplicationState.COMPLETED, 100)
                    for r in version.replication
                )
                self._failing -= {r.region for r in replication if r.state is ReplicationState.FAILED}
                image[name] = dataclasses.replace(  # what else the version says is kept
                    version,
                    provisioning_state="Failed"
                    if any(r.state is ReplicationState.FAILED for r in replication)
                    else "Succeeded",
                    replication=replication,
                )

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds=seconds)

    def fail_provisioning(self, name: str, code: str, message: str) -> None:
        self.imagebuilder.fail_provisioning(name, code, message)


class SimEstate:
    def __init__(self, armsim: ArmSimulator, sim: SimControl) -> None:
        self.sim = sim
        services = bootstrap(local_env(armsim))
        self.marketplace, self.imagebuilder, self.gallery = (
            services.marketplace,
            services.imagebuilder,
            services.gallery,
        )
        self.services = services
        self.clients = AzureClients(Settings.from_env(local_env(armsim)))
        compute = self.clients.compute(SUBSCRIPTION)
        compute.galleries.begin_create_or_update(IMAGES_RG, GALLERY, {"location": "westeurope"}).result()
        self.add_gallery_image("golden")

    def close(self) -> None:
        self.services.close()
        self.clients.close()

    def publish(
        self, location: str, image: PlatformImage, version: str, state: ImageState = ImageState.ACTIVE
    ) -> None:
        self.sim.publish(
            image.publisher, image.offer, image.sku, version, [location], image_state=state.value
        )

    def add_template(self, resource_group: str, name: str, image: PlatformImage) -> TemplateId:
        body = template_body(name, image)
        templates = self.clients.imagebuilder(SUBSCRIPTION).virtual_machine_image_templates
        templates.begin_create_or_update(resource_group, name, body).result()
        return resource_ids.template_id(SUBSCRIPTION, resource_group, name)

    def finish_runs(self) -> None:
        self.sim.advance(4 * 3600)

    def add_gallery_image(self, name: str) -> GalleryImageId:
        self.clients.compute(SUBSCRIPTION).gallery_images.begin_create_or_update(
            IMAGES_RG,
            GALLERY,
            name,
            {
                "location": "westeurope",
                "properties": {
                    "osType": "Linux",
                    "osState": "Generalized",
                    "identifier": {"publisher": "p", "offer": "o", "sku": name},
                },
            },
        ).result()
        return image_id(name)

    def add_gallery_version(
        self,
        image: str,
        version: str,
        regions: Iterable[str],
        failing: Iterable[str] = (),
        regional: bool | None = None,
    ) -> GalleryVersionId:
        for name in failing:
            self.sim.fail_region(name)
        flag = {} if regional is None else {"excludeFromLatest": regional}
        body = {
            "location": "westeurope",
            "properties": {
                "publishingProfile": {"targetRegions": [{"name": r, **flag} for r in regions]},
                "storageProfile": {"source": {"virtualMachineId": "/subscriptions/x/vm"}},
            },
        }
        self.clients.compute(SUBSCRIPTION).gallery_image_versions.begin_create_or_update(
            IMAGES_RG, GALLERY, image, version, body, polling=False
        )
        return GalleryVersionId(f"{image_id(image)}/versions/{version}")

    def replicate(self) -> None:
        self.sim.advance(4 * 3600)

    def hold_updates(self, looks: int) -> None:
        self.sim.configure(update_looks=looks)

    def advance(self, seconds: float) -> None:
        self.sim.advance(seconds)

    def fail_provisioning(self, name: str, code: str, message: str) -> None:
        self.sim.fail_provisioning(name, code=code, message=message)


@pytest.fixture(params=["memory", "simulator"])
def estate(request: pytest.FixtureRequest) -> Iterator[Estate]:
    if request.param == "memory":
        yield MemoryEstate()
        return
    armsim: ArmSimulator = request.getfixturevalue("armsim")
    sim: SimControl = request.getfixturevalue("sim")
    built = SimEstate(armsim, sim)
    yield built
    built.close()


# -- the ledger ----------------------------------------------------------------------------------------
@pytest.fixture(params=["memory", "tables"])
def ledger(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    """An empty ledger: in memory, or on Table storage in Azurite under a fresh table prefix."""
    if request.param == "memory":
        yield InMemoryLedger()
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    tables = TableLedger.from_connection(
        prefix=f"t{uuid.uuid4().hex[:12]}", connection_string=azurite.connection_string
    )
    yield tables
    tables.close()
