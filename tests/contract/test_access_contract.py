"""The doctor's Access port, one contract for the in-memory fake and the SDK adapter on the ARM simulator:
permissions per scope (as deployed by default; set at a scope, that scope and only it changes),
identities and gallery image definitions found or NotFound, tokens with their expiry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Protocol

import pytest

from devstack.armsim import ArmSimulator, SimControl
from devstack.fakes.access import InMemoryAccess
from rebuilder.adapters.access import SdkAccess
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.domain.errors import NotFound
from rebuilder.domain.model import GalleryImageId
from rebuilder.domain.permissions import allows, required_actions
from rebuilder.domain.ports import Access
from rebuilder.settings import Settings
from tests.conftest import SUBSCRIPTION, local_env

RG_A = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-a"
RG_B = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-b"
IDENTITY = f"{RG_A}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-aib"
IMAGE = GalleryImageId(f"{RG_B}/providers/Microsoft.Compute/galleries/g1/images/golden")
RUN = "Microsoft.VirtualMachineImages/imageTemplates/run/action"
AUDIENCE = "https://management.azure.com/.default"


class World(Protocol):
    access: Access

    def set_permissions(self, scope: str, actions: list[str], not_actions: list[str]) -> None: ...

    def add_identity(self, identity_id: str) -> None: ...

    def add_gallery_image(self, image_id: GalleryImageId) -> None: ...


class Memory:
    def __init__(self) -> None:
        self.access = InMemoryAccess()

    def set_permissions(self, scope: str, actions: list[str], not_actions: list[str]) -> None:
        self.access.set_permissions(scope, actions, not_actions)

    def add_identity(self, identity_id: str) -> None:
        self.access.add_identity(identity_id, "00000000-0000-4000-8000-000000000001")

    def add_gallery_image(self, image_id: GalleryImageId) -> None:
        self.access.gallery.add_image(image_id)


class Simulator:
    def __init__(self, armsim: ArmSimulator, sim: SimControl) -> None:
        self.sim = sim
        self.clients = AzureClients(Settings.from_env(local_env(armsim)))
        self.access = SdkAccess(self.clients)

    def set_permissions(self, scope: str, actions: list[str], not_actions: list[str]) -> None:
        self.sim.set_permissions(scope, actions, not_actions)

    def add_identity(self, identity_id: str) -> None:
        self.sim.create_identity(identity_id)

    def add_gallery_image(self, image_id: GalleryImageId) -> None:
        compute = self.clients.compute(SUBSCRIPTION)
        compute.galleries.begin_create_or_update("rg-b", "g1", {"location": "westeurope"}).result()
        compute.gallery_images.begin_create_or_update(
            "rg-b",
            "g1",
            "golden",
            {
                "location": "westeurope",
                "properties": {
                    "osType": "Linux",
                    "osState": "Generalized",
                    "hyperVGeneration": "V2",
                    "identifier": {"publisher": "p", "offer": "o", "sku": "golden"},
                },
            },
        ).result()


@pytest.fixture(params=["memory", "simulator"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    if request.param == "memory":
        yield Memory()
        return
    built = Simulator(request.getfixturevalue("armsim"), request.getfixturevalue("sim"))
    yield built
    built.clients.close()


def test_by_default_the_caller_holds_what_infra_assigns_the_app(world: World) -> None:
    held = world.access.list_permissions(RG_A)
    assert all(allows(held, action) for action in required_actions())
    assert not allows(held, "Microsoft.Compute/virtualMachines/delete")


def test_permissions_set_at_a_scope_are_what_it_answers_and_no_other_scope(world: World) -> None:
    world.set_permissions(RG_A, ["*"], [RUN])
    held = world.access.list_permissions(RG_A)
    assert not allows(held, RUN)
    assert allows(held, "Microsoft.VirtualMachineImages/imageTemplates/write")
    assert allows(world.access.list_permissions(RG_B), RUN)
    assert not allows(world.access.list_permissions(RG_A.replace("rg-a", "RG-A")), RUN)  # names: any case


def test_an_identity_is_found_once_it_exists(world: World) -> None:
    with pytest.raises(NotFound):
        world.access.get_identity(IDENTITY)
    world.add_identity(IDENTITY)
    found = world.access.get_identity(IDENTITY.lower())
    assert found.id.lower() == IDENTITY.lower() and found.principal_id


def test_a_gallery_image_definition_is_found_once_it_exists(world: World) -> None:
    with pytest.raises(NotFound):
        world.access.get_gallery_image(IMAGE)
    world.add_gallery_image(IMAGE)
    assert world.access.get_gallery_image(IMAGE).id.lower() == IMAGE.lower()


def test_a_token_comes_with_when_it_expires(world: World) -> None:
    expires = world.access.get_token(AUDIENCE)
    assert isinstance(expires, datetime) and expires.tzinfo is not None
