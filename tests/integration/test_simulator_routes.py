"""The ARM simulator, driven through the real azure-mgmt-* clients over HTTPS, checked against the
official examples in tests/reference (same keys and value types wherever the example has them).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError
from azure.core.exceptions import ResourceNotFoundError as AzureNotFound

from devstack.armsim import ArmSimulator, SimControl
from devstack.armsim.routes import ROUTES
from rebuilder.adapters.access import SdkAccess
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.settings import Settings
from tests.azure_examples import example, shape_differences
from tests.conftest import SUBSCRIPTION, local_env

RG = "rg-images"
GALLERY = "gallery1"
UBUNTU = ("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2")
WINDOWS = ("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-azure-edition")
IDENTITY = (
    f"/subscriptions/{SUBSCRIPTION}/resourcegroups/rg1/providers/Microsoft.ManagedIdentity/"
    "userAssignedIdentities/identity_1"
)


@pytest.fixture
def clients(armsim: ArmSimulator, sim: SimControl) -> Iterator[AzureClients]:
    built = AzureClients(Settings.from_env(local_env(armsim)))
    yield built
    built.close()


def gallery_image_id(image: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Compute/galleries/"
        f"{GALLERY}/images/{image}"
    )


def make_gallery(clients: AzureClients, *images: str) -> None:
    compute = clients.compute(SUBSCRIPTION)
    compute.galleries.begin_create_or_update(RG, GALLERY, {"location": "westeurope"}).result()
    for image in images:
        compute.gallery_images.begin_create_or_update(
            RG,
            GALLERY,
            image,
            {
                "location": "westeurope",
                "properties": {
                    "osType": "Linux",
                    "osState": "Generalized",
                    "hyperVGeneration": "V2",
                    "identifier": {"publisher": "contoso", "offer": "golden", "sku": image},
                },
            },
        ).result()


def platform_template(
    image: tuple[str, str, str],
    version: str = "latest",
    *,
    gallery_image: str = "ubuntu",
    regions: tuple[str, ...] = ("westeurope", "eastus2", "northeurope"),
) -> dict[str, Any]:
    publisher, offer, sku = image
    return {
        "location": "westeurope",
        "tags": {"golden-image-rebuild": "auto"},
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {IDENTITY: {}}},
        "properties": {
            "source": {
                "type": "PlatformImage",
                "publisher": publisher,
                "offer": offer,
                "sku": sku,
                "version": version,
            },
            "customize": [{"type": "Shell", "name": "patch", "inline": ["apt-get -y upgrade"]}],
            "distribute": [
                {
                    "type": "SharedImage",
                    "galleryImageId": gallery_image_id(gallery_image),
                    "runOutputName": "golden",
                    "targetRegions": [{"name": r} for r in regions],
                    "versioning": {"scheme": "Latest", "major": 1},
                }
            ],
            "vmProfile": {"vmSize": "Standard_D2s_v3"},
        },
    }


def test_marketplace_list_is_a_bare_array_in_text_order_shaped_like_the_example(
    sim: SimControl, clients: AzureClients
) -> None:
    for version in ("20348.2849.241106", "20348.587.220303", "20348.2762.241009"):
        sim.publish(*WINDOWS, version, ["westeurope"])
    listed = clients.compute(SUBSCRIPTION).virtual_machine_images.list("westeurope", *WINDOWS)
    names = [item.name for item in listed]
    assert names == ["20348.2762.241009", "20348.2849.241106", "20348.587.220303"]  # text order, as Azure
    reference = example("compute/2024-11-01_VirtualMachineImage_List_MaximumSet_Gen.json")["responses"]["200"]
    assert (
        shape_differences(
            [i.as_dict() for i in listed],
            reference["body"],
            optional=frozenset({"[].tags", "[].extendedLocation"}),
        )
        == []
    )


def test_marketplace_get_version_reports_deprecation_shaped_like_the_example(
    sim: SimControl, clients: AzureClients
) -> None:
    sim.publish(*UBUNTU, "22.04.202411190", ["westeurope", "eastus"])
    sim.set_image_state(
        *UBUNTU, "22.04.202411190", ["westeurope"], "ScheduledForDeprecation", "2027-01-13T00:00:00+00:00"
    )
    images = clients.compute(SUBSCRIPTION).virtual_machine_images
    found = images.get("westeurope", *UBUNTU, "22.04.202411190").as_dict()
    assert found["properties"]["imageDeprecationStatus"]["imageState"] == "ScheduledForDeprecation"
    assert images.get("eastus", *UBUNTU, "22.04.202411190").as_dict()["properties"][
        "imageDeprecationStatus"
    ] == {"imageState": "Active"}
    reference = example("compute/2024-11-01_VirtualMachineImage_Get_MaximumSet_Gen.json")["responses"]["200"]
    optional = frozenset(
        {"properties.plan", "tags", "extendedLocation", "properties.imageDeprecationStatus.alternativeOption"}
    )
    assert shape_differences(found, reference["body"], optional=optional) == []
    with pytest.raises(AzureNotFound):
        images.get("westeurope", *UBUNTU, "22.04.000000000")
    with pytest.raises(AzureNotFound):
        images.list("westeurope", "Canonical", "no-such-offer", "none")


def test_gallery_and_image_definitions_round_trip_with_display_name_locations(clients: AzureClients) -> None:
    make_gallery(clients, "ubuntu", "windows")
    compute = clients.compute(SUBSCRIPTION)
    assert compute.galleries.get(RG, GALLERY).location == "West Europe"
    assert [g.name for g in compute.galleries.list_by_resource_group(RG)] == [GALLERY]
    assert [g.name for g in compute.galleries.list()] == [GALLERY]
    assert [i.name for i in compute.gallery_images.list_by_gallery(RG, GALLERY)] == ["ubuntu", "windows"]
    image = compute.gallery_images.get(RG.upper(), GALLERY, "UBUNTU").as_dict()  # ARM names ignore case
    reference = example("compute/2024-03-03_GalleryImage_Get.json")["responses"]["200"]["body"]
    assert shape_differences(image, reference) == []
    with pytest.raises(AzureNotFound):
        compute.gallery_images.get(RG, GALLERY, "nope")


def test_gallery_version_replicates_region_by_region_shaped_like_the_examples(
    sim: SimControl, clients: AzureClients
) -> None:
    make_gallery(clients, "ubuntu")
    versions = clients.compute(SUBSCRIPTION).gallery_image_versions
    create = example("compute/2024-03-03_GalleryImageVersion_Create.json")
    body = create["parameters"]["galleryImageVersion"]
    body["location"] = "westeurope"
    for target, name in zip(
        body["properties"]["publishingProfile"]["targetRegions"], ["westeurope", "eastus2"], strict=True
    ):
        target["name"] = name
    created: list[Any] = []
    poller = versions.begin_create_or_update(
        RG, GALLERY, "ubuntu", "1.0.0", body, raw_response_hook=lambda r: created.append(r.http_response)
    )
    assert created[0].status_code == 201 and created[0].headers["Azure-AsyncOperation"]
    optional = frozenset(
        {"properties.storageProfile.dataDiskImages", "properties.safetyProfile.policyViolations"}
    )
    assert shape_differences(created[0].json(), create["responses"]["201"]["body"], optional=optional) == []

    first = versions.get(RG, GALLERY, "ubuntu", "1.0.0", expand="ReplicationStatus").as_dict()
    assert first["properties"]["replicationStatus"]["aggregatedState"] == "InProgress"
    assert "replicationStatus" not in versions.get(RG, GALLERY, "ubuntu", "1.0.0").as_dict()["properties"]
    sim.advance(610)  # the home region is done first, the other later: region by region
    middle = versions.get(RG, GALLERY, "ubuntu", "1.0.0", expand="ReplicationStatus").as_dict()
    assert [(s["region"], s["state"]) for s in middle["properties"]["replicationStatus"]["summary"]] == [
        ("West Europe", "Completed"),
        ("East US 2", "Replicating"),
    ]
    sim.advance(600)
    poller.result(timeout=10)
    done = versions.get(RG, GALLERY, "ubuntu", "1.0.0", expand="ReplicationStatus").as_dict()
    assert done["properties"]["provisioningState"] == "Succeeded"
    assert done["location"] == "West Europe"  # a display name, as in the examples ("West US")
    reference = example("compute/2024-03-03_GalleryImageVersion_Get_WithReplicationStatus.json")
    assert shape_differences(done, reference["responses"]["200"]["body"], optional=optional) == []
    newer = example("compute/2025-03-03-folder_GalleryImageVersion_Get_WithReplicationStatus.json")
    assert shape_differences(done, newer["responses"]["200"]["body"], optional=optional) == []


def test_a_failed_region_is_repaired_by_reapplying_the_target_regions(
    armsim: ArmSimulator, sim: SimControl, clients: AzureClients
) -> None:
    make_gallery(clients, "ubuntu")
    sim.fail_region("eastus2")
    versions = clients.compute(SUBSCRIPTION).gallery_image_versions
    targets = [{"name": "westeurope"}, {"name": "eastus2"}]
    body = {
        "location": "westeurope",
        "properties": {"publishingProfile": {"targetRegions": targets}, "storageProfile": {}},
    }
    versions.begin_create_or_update(RG, GALLERY, "ubuntu", "1.0.0", body, polling=False)
    sim.advance(3600)
    failed = versions.get(RG, GALLERY, "ubuntu", "1.0.0", expand="ReplicationStatus").as_dict()["properties"]
    assert failed["replicationStatus"]["aggregatedState"] == "Failed"
    assert failed["provisioningState"] == "Failed"
    east = failed["replicationStatus"]["summary"][1]
    assert (east["region"], east["state"]) == ("East US 2", "Failed") and "failed" in east["details"]

    sparse = {"properties": {"publishingProfile": {"targetRegions": targets}}}
    with pytest.raises(HttpResponseError) as refused:  # GalleryImageVersionUpdate requires storageProfile
        versions.begin_update(RG, GALLERY, "ubuntu", "1.0.0", sparse, polling=False)
    assert refused.value.status_code == 400 and "storageProfile" in str(refused.value)
    assert [v.problems for v in armsim.violations.take()] == [
        ("body.properties: 'storageProfile' is a required property",)
    ]
    versions.begin_update(
        RG,
        GALLERY,
        "ubuntu",
        "1.0.0",
        {"properties": {"publishingProfile": {"targetRegions": targets}, "storageProfile": {}}},
        polling=False,
    )
    retrying = versions.get(RG, GALLERY, "ubuntu", "1.0.0", expand="ReplicationStatus").as_dict()[
        "properties"
    ]
    assert retrying["replicationStatus"]["summary"][1]["state"] in ("Unknown", "Replicating")
    assert retrying["replicationStatus"]["summary"][0]["state"] == "Completed"  # untouched
    sim.advance(3600)
    repaired = versions.get(RG, GALLERY, "ubuntu", "1.0.0", expand="ReplicationStatus").as_dict()[
        "properties"
    ]
    assert repaired["replicationStatus"]["aggregatedState"] == "Completed"
    assert [v.name for v in versions.list_by_gallery_image(RG, GALLERY, "ubuntu")] == ["1.0.0"]
    versions.begin_delete(RG, GALLERY, "ubuntu", "1.0.0").result(timeout=10)
    with pytest.raises(AzureNotFound):
        versions.get(RG, GALLERY, "ubuntu", "1.0.0")


def test_image_template_create_get_match_the_examples_and_templates_are_immutable(
    armsim: ArmSimulator, clients: AzureClients
) -> None:
    templates = clients.imagebuilder(SUBSCRIPTION).virtual_machine_image_templates
    create = example("imagebuilder/2024-02-01_CreateImageTemplateLinux.json")
    body = create["parameters"]["parameters"]
    body["location"] = "westus"
    created: list[Any] = []
    poller = templates.begin_create_or_update(
        "myResourceGroup",
        "myImageTemplate",
        body,
        raw_response_hook=lambda r: created.append(r.http_response),
    )
    poller.result(timeout=10)
    assert created[0].status_code == 201 and "Azure-AsyncOperation" in created[0].headers
    assert shape_differences(created[0].json(), create["responses"]["201"]["body"]) == []
    got = templates.get("myResourceGroup", "myImageTemplate").as_dict()
    get_example = example("imagebuilder/2024-02-01_GetImageTemplate.json")["responses"]["200"]["body"]
    assert shape_differences(got, get_example) == []
    assert "lastRunStatus" not in got["properties"]  # a template that never ran has none
    assert got["properties"]["provisioningState"] == "Succeeded"

    templates.begin_create_or_update("myResourceGroup", "myImageTemplate", body).result(
        timeout=10
    )  # same: OK
    changed = {**body, "properties": {**body["properties"], "vmProfile": {"vmSize": "Standard_D8s_v3"}}}
    with pytest.raises(ResourceExistsError, match="not supported"):
        templates.begin_create_or_update("myResourceGroup", "myImageTemplate", changed)
    updated = templates.begin_update("myResourceGroup", "myImageTemplate", {"tags": {"owner": "me"}}).result()
    assert updated.tags == {"owner": "me"}
    with pytest.raises(HttpResponseError) as refused:
        templates.begin_create_or_update("myResourceGroup", "bad", {**body, "identity": None})
    assert refused.value.status_code == 400
    assert [v.problems for v in armsim.violations.take()] == [
        ("body.identity: None is not of type 'object'",)
    ]


def test_template_lists_page_with_next_links(sim: SimControl, clients: AzureClients) -> None:
    make_gallery(clients, "ubuntu")
    sim.configure(page_size=2)
    templates = clients.imagebuilder(SUBSCRIPTION).virtual_machine_image_templates
    for index in range(5):
        templates.begin_create_or_update(
            RG if index < 3 else "rg-other", f"t{index}", platform_template(UBUNTU)
        ).result()
    assert sorted(t.name for t in templates.list()) == ["t0", "t1", "t2", "t3", "t4"]
    assert sorted(t.name for t in templates.list_by_resource_group(RG)) == ["t0", "t1", "t2"]
    calls = sim.counters()
    assert calls["image_templates.list"] == 3  # 2 + 2 + 1
    assert calls["image_templates.list_by_resource_group"] == 2


def test_a_run_walks_its_sub_states_and_publishes_a_versioned_gallery_image(
    sim: SimControl, clients: AzureClients
) -> None:
    make_gallery(clients, "windows")
    for version in ("20348.587.220303", "20348.2849.241106"):
        sim.publish(*WINDOWS, version, ["westeurope"])
    templates = clients.imagebuilder(SUBSCRIPTION).virtual_machine_image_templates
    templates.begin_create_or_update(RG, "win", platform_template(WINDOWS, gallery_image="windows")).result()
    accepted: list[Any] = []
    templates.begin_run(
        RG, "win", polling=False, raw_response_hook=lambda r: accepted.append(r.http_response)
    )
    run_example = example("imagebuilder/2025-10-01_RunImageTemplate.json")["responses"]["202"]
    assert accepted[0].status_code == 202
    assert set(run_example["headers"]) <= set(accepted[0].headers)
    with pytest.raises(ResourceExistsError):  # 409: one run at a time
        templates.begin_run(RG, "win", polling=False)

    seen = []
    for _ in range(40):
        status = templates.get(RG, "win").as_dict()["properties"]["lastRunStatus"]
        seen.append(status.get("runSubState", status["runState"]))
        if status["runState"] != "Running":
            break
        assert status["endTime"] == "0001-01-01T00:00:00Z"  # AIB's zero end time while running
        sim.advance(120)
    assert seen[0] == "Queued" and seen[-1] == "Succeeded"
    assert {"Building", "Customizing", "Distributing"} <= set(seen)
    final = templates.get(RG, "win").as_dict()["properties"]
    assert "runSubState" not in final["lastRunStatus"]
    assert final["source"]["exactVersion"] == "20348.2849.241106"  # numeric newest, not text-last

    outputs = [o.as_dict() for o in templates.list_run_outputs(RG, "win")]
    listed_example = example("imagebuilder/2025-10-01_ListRunOutputs.json")["responses"]["200"]["body"]
    assert shape_differences({"value": outputs}, listed_example, optional=frozenset({"nextLink"})) == []
    assert outputs[0]["properties"]["artifactId"].endswith("/images/windows/imageversions/1.0.1")
    one = templates.get_run_output(RG, "win", "golden").as_dict()
    got_example = example("imagebuilder/2024-02-01_GetRunOutput.json")["responses"]["200"]["body"]
    assert shape_differences(one, got_example) == []
    version = clients.compute(SUBSCRIPTION).gallery_image_versions.get(
        RG, GALLERY, "windows", "1.0.1", expand="ReplicationStatus"
    )
    assert version.as_dict()["properties"]["replicationStatus"]["aggregatedState"] == "Completed"


def test_run_poller_cancel_and_delete_go_through_async_operations(
    sim: SimControl, clients: AzureClients
) -> None:
    make_gallery(clients, "ubuntu")
    sim.publish(*UBUNTU, "22.04.202411190", ["westeurope"])
    templates = clients.imagebuilder(SUBSCRIPTION).virtual_machine_image_templates
    templates.begin_create_or_update(RG, "ubuntu", platform_template(UBUNTU)).result()

    poller = templates.begin_run(RG, "ubuntu")  # the SDK polls Azure-AsyncOperation in its own thread
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.02):
            sim.advance(300)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        poller.result(timeout=30)
    finally:
        stop.set()
        ticker.join()
    assert templates.get(RG, "ubuntu").properties.last_run_status.run_state == "Succeeded"

    templates.begin_run(RG, "ubuntu", polling=False)
    with pytest.raises(ResourceExistsError):
        templates.begin_delete(RG, "ubuntu")  # not while a build runs
    cancel = templates.begin_cancel(RG, "ubuntu")
    assert templates.get(RG, "ubuntu").properties.last_run_status.run_state == "Canceling"
    sim.advance(60)
    cancel.result(timeout=10)
    assert templates.get(RG, "ubuntu").properties.last_run_status.run_state == "Canceled"
    with pytest.raises(ResourceExistsError):
        templates.begin_cancel(RG, "ubuntu")  # nothing to cancel
    deleting = templates.begin_delete(RG, "ubuntu")  # a long-running operation, as in Azure
    assert templates.get(RG, "ubuntu").properties.provisioning_state == "Deleting"
    assert not deleting.done()
    sim.advance(120)
    deleting.result(timeout=10)
    assert deleting.status() == "Succeeded"
    with pytest.raises(AzureNotFound):
        templates.get(RG, "ubuntu")


def test_injected_build_and_region_failures_end_runs_as_azure_reports_them(
    sim: SimControl, clients: AzureClients
) -> None:
    make_gallery(clients, "ubuntu")
    sim.publish(*UBUNTU, "22.04.202411190", ["westeurope"])
    templates = clients.imagebuilder(SUBSCRIPTION).virtual_machine_image_templates
    templates.begin_create_or_update(RG, "ubuntu", platform_template(UBUNTU)).result()
    sim.fail_build("ubuntu", sub_state="Customizing", message="Script 'patch' exited with 100")
    templates.begin_run(RG, "ubuntu", polling=False)
    sim.advance(3 * 3600)
    failed = templates.get(RG, "ubuntu").as_dict()["properties"]["lastRunStatus"]
    assert (failed["runState"], failed["message"]) == ("Failed", "Script 'patch' exited with 100")
    assert failed["endTime"] > failed["startTime"]

    sim.fail_region("northeurope")
    templates.begin_run(RG, "ubuntu", polling=False)
    sim.advance(3 * 3600)
    partial = templates.get(RG, "ubuntu").as_dict()["properties"]["lastRunStatus"]
    assert partial["runState"] == "PartiallySucceeded" and "North Europe" in partial["message"]

    templates.begin_create_or_update(RG, "nowhere", platform_template(("Canonical", "none", "none"))).result()
    templates.begin_run(RG, "nowhere", polling=False)
    sim.advance(3 * 3600)
    unavailable = templates.get(RG, "nowhere").as_dict()["properties"]["lastRunStatus"]
    assert unavailable["runState"] == "Failed" and "not available in westeurope" in unavailable["message"]


def test_gallery_sources_resolve_latest_among_versions_replicated_to_the_template_location(
    sim: SimControl, clients: AzureClients
) -> None:
    make_gallery(clients, "ubuntu", "app")
    versions = clients.compute(SUBSCRIPTION).gallery_image_versions
    for name, regions, excluded in (
        ("1.0.9", ["westeurope"], False),
        ("1.0.10", ["westeurope"], False),
        ("1.0.11", ["westeurope"], True),
        ("1.0.12", ["eastus2"], False),
    ):
        body = {
            "location": "westeurope",
            "properties": {
                "publishingProfile": {
                    "targetRegions": [{"name": r} for r in regions],
                    "excludeFromLatest": excluded,
                },
                "storageProfile": {},
            },
        }
        versions.begin_create_or_update(RG, GALLERY, "ubuntu", name, body, polling=False)
    sim.advance(3600)
    child = platform_template(UBUNTU, gallery_image="app")
    child["properties"]["source"] = {
        "type": "SharedImageVersion",
        "imageVersionId": gallery_image_id("ubuntu").upper() + "/versions/latest",
    }
    templates = clients.imagebuilder(SUBSCRIPTION).virtual_machine_image_templates
    templates.begin_create_or_update(RG, "child", child).result()
    templates.begin_run(RG, "child", polling=False)
    sim.advance(3 * 3600)
    got = templates.get(RG, "child").as_dict()["properties"]
    assert got["lastRunStatus"]["runState"] == "Succeeded"
    assert got["source"]["exactVersion"].endswith("/versions/1.0.10")


def test_errors_and_api_versions_are_answered_as_arm_does(armsim: ArmSimulator, sim: SimControl) -> None:
    wrong = AzureClients(Settings.from_env(local_env(armsim, REBUILDER_ARM_TOKEN="not-the-token")))
    with pytest.raises(ClientAuthenticationError) as denied:
        wrong.imagebuilder(SUBSCRIPTION).virtual_machine_image_templates.get(RG, "x")
    assert denied.value.error is not None and denied.value.error.code == "InvalidAuthenticationToken"
    wrong.close()
    from azure.mgmt.imagebuilder import ImageBuilderClient

    from rebuilder.adapters.azure_clients import StaticTokenCredential

    old = ImageBuilderClient(
        StaticTokenCredential(armsim.token),
        SUBSCRIPTION,
        base_url=armsim.endpoint,
        api_version="2019-05-01-preview",
    )
    with pytest.raises(HttpResponseError) as refused:
        old.virtual_machine_image_templates.get(RG, "x")
    assert refused.value.status_code == 400 and "supported api-versions" in str(refused.value)
    old.close()


def test_every_simulator_route_is_served_through_the_sdk_clients(
    sim: SimControl, clients: AzureClients
) -> None:
    """A tour of every route; the call counters prove each one was reached through an SDK client."""
    make_gallery(clients, "ubuntu")
    sim.publish(*UBUNTU, "22.04.202411190", ["westeurope"])
    compute = clients.compute(SUBSCRIPTION)
    templates = clients.imagebuilder(SUBSCRIPTION).virtual_machine_image_templates
    list(compute.virtual_machine_images.list("westeurope", *UBUNTU))
    compute.virtual_machine_images.get("westeurope", *UBUNTU, "22.04.202411190")
    compute.galleries.get(RG, GALLERY)
    list(compute.galleries.list_by_resource_group(RG))
    list(compute.galleries.list())
    compute.gallery_images.get(RG, GALLERY, "ubuntu")
    list(compute.gallery_images.list_by_gallery(RG, GALLERY))
    body = {
        "location": "westeurope",
        "properties": {
            "publishingProfile": {"targetRegions": [{"name": "westeurope"}]},
            "storageProfile": {},
        },
    }
    compute.gallery_image_versions.begin_create_or_update(RG, GALLERY, "ubuntu", "1.0.0", body, polling=False)
    update = {"properties": body["properties"]}
    compute.gallery_image_versions.begin_update(RG, GALLERY, "ubuntu", "1.0.0", update, polling=False)
    compute.gallery_image_versions.get(RG, GALLERY, "ubuntu", "1.0.0", expand="ReplicationStatus")
    list(compute.gallery_image_versions.list_by_gallery_image(RG, GALLERY, "ubuntu"))
    compute.gallery_image_versions.begin_delete(RG, GALLERY, "ubuntu", "1.0.0").result(timeout=10)
    templates.begin_create_or_update(RG, "t", platform_template(UBUNTU)).result(timeout=10)
    templates.begin_update(RG, "t", {"tags": {"a": "b"}}).result(timeout=10)
    templates.get(RG, "t")
    list(templates.list())
    list(templates.list_by_resource_group(RG))
    templates.begin_run(RG, "t", polling=False)
    sim.advance(3 * 3600)
    list(templates.list_run_outputs(RG, "t"))
    templates.get_run_output(RG, "t", "golden")
    templates.begin_run(RG, "t", polling=False)
    templates.begin_cancel(RG, "t", polling=False)
    sim.advance(60)
    templates.begin_delete(RG, "t").result(timeout=10)
    # No pinned SDK covers these two: the doctor sends them through the compute client's pipeline.
    access = SdkAccess(clients)
    access.list_permissions(f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}")
    sim.create_identity(IDENTITY)
    access.get_identity(IDENTITY)
    assert set(sim.counters()) == {route.name for route in ROUTES}


def test_a_template_reads_back_as_azure_answers_it(sim: SimControl, clients: AzureClients) -> None:
    """Defaults the PUT left out, the source resolved once provisioned (the PUT's answer says
    `latest`), timestamps with the fraction digits and zone suffixes Azure uses, and an operation body
    with its start and end."""
    make_gallery(clients, "ubuntu")
    sim.publish(*UBUNTU, "22.04.202411190", ["westeurope"])
    templates = clients.imagebuilder(SUBSCRIPTION).virtual_machine_image_templates
    body = platform_template(UBUNTU)
    body["properties"].pop("vmProfile")
    for distributor in body["properties"]["distribute"]:
        distributor.pop("versioning")
    answers: list[Any] = []
    poller = templates.begin_create_or_update(
        RG, "defaults", body, raw_response_hook=lambda r: answers.append(r.http_response)
    )
    poller.result(timeout=10)
    assert answers[0].json()["properties"]["source"]["exactVersion"] == "latest"
    polls = [a.json() for a in answers if "operations/" in a.request.url]
    assert polls[0]["status"] == "InProgress" and "endTime" not in polls[0]
    status = polls[-1]
    assert status["status"] == "Succeeded" and status["startTime"] and status["endTime"]
    assert len(status["endTime"].split(".")[1].rstrip("Z")) == 9  # nine fraction digits

    got = templates.get(RG, "defaults")
    props = got.properties
    assert (props.build_timeout_in_minutes, props.staging_resource_group) == (0, "")
    assert (props.vm_profile.vm_size, props.vm_profile.os_disk_size_gb) == ("", 0)
    raw = got.as_dict()["properties"]
    assert "versioning" not in raw["distribute"][0]  # absent, not null: DistributeVersioner is not x-nullable
    assert props.source.exact_version == "22.04.202411190"  # resolved when it was provisioned
    created_at = got.system_data.created_at
    assert created_at is not None and created_at.tzinfo is not None

    versions = clients.compute(SUBSCRIPTION).gallery_image_versions
    versions.begin_create_or_update(
        RG,
        GALLERY,
        "ubuntu",
        "1.0.0",
        {
            "location": "westeurope",
            "properties": {
                "publishingProfile": {"targetRegions": [{"name": "westeurope"}]},
                "storageProfile": {},
            },
        },
        polling=False,
    )
    published = versions.get(
        RG, GALLERY, "ubuntu", "1.0.0", raw_response_hook=lambda r: answers.append(r.http_response)
    )
    assert answers[-1].json()["properties"]["publishingProfile"]["publishedDate"].endswith("+00:00")
    assert published.publishing_profile.published_date is not None
    assert published.publishing_profile.published_date.utcoffset() is not None


def test_a_gated_distributor_publishes_a_candidate_that_a_patch_promotes(
    sim: SimControl, clients: AzureClients
) -> None:
    """excludeFromLatest on the AIB distributor: the version is published but not `latest` (a child's
    `latest` source ignores it) until PATCH sets publishingProfile.excludeFromLatest false; tags PATCH too."""
    make_gallery(clients, "ubuntu", "app")
    sim.publish(*UBUNTU, "22.04.202411190", ["westeurope"])
    templates = clients.imagebuilder(SUBSCRIPTION).virtual_machine_image_templates
    versions = clients.compute(SUBSCRIPTION).gallery_image_versions
    body = platform_template(UBUNTU, regions=("westeurope",))
    templates.begin_create_or_update(RG, "plain", body).result()
    templates.begin_run(RG, "plain", polling=False)
    sim.advance(3 * 3600)
    body["properties"]["distribute"][0]["excludeFromLatest"] = True
    templates.begin_create_or_update(RG, "gated", body).result()
    templates.begin_run(RG, "gated", polling=False)
    sim.advance(3 * 3600)
    candidate = versions.get(RG, GALLERY, "ubuntu", "1.0.2")
    assert candidate.publishing_profile.exclude_from_latest is True
    child = platform_template(UBUNTU, gallery_image="app", regions=("westeurope",))
    child["properties"]["source"] = {
        "type": "SharedImageVersion",
        "imageVersionId": gallery_image_id("ubuntu") + "/versions/latest",
    }
    templates.begin_create_or_update(RG, "child", child).result()
    templates.begin_run(RG, "child", polling=False)
    sim.advance(3 * 3600)
    assert templates.get(RG, "child").source.exact_version.endswith("/versions/1.0.1")  # not the candidate

    update = {
        "properties": {"publishingProfile": {"excludeFromLatest": False}, "storageProfile": {}},
        "tags": {"rebuilder-build": "b-1"},
    }
    promoted = versions.begin_update(RG, GALLERY, "ubuntu", "1.0.2", update).result()
    assert promoted.publishing_profile.exclude_from_latest is False
    assert promoted.tags == {"rebuilder-build": "b-1"}
    assert versions.get(RG, GALLERY, "ubuntu", "1.0.2").publishing_profile.target_regions  # kept
    templates.begin_run(RG, "child", polling=False)
    sim.advance(3 * 3600)
    assert templates.get(RG, "child").source.exact_version.endswith("/versions/1.0.2")


@pytest.mark.parametrize("distribute_anyway", [False, True])
def test_a_failed_validation_fails_the_run_with_or_without_distribution(
    sim: SimControl, clients: AzureClients, distribute_anyway: bool
) -> None:
    make_gallery(clients, "ubuntu")
    sim.publish(*UBUNTU, "22.04.202411190", ["westeurope"])
    templates = clients.imagebuilder(SUBSCRIPTION).virtual_machine_image_templates
    body = platform_template(UBUNTU, regions=("westeurope",))
    body["properties"]["validate"] = {
        "continueDistributeOnFailure": distribute_anyway,
        "inVMValidations": [{"type": "Shell", "name": "smoke", "inline": ["systemctl is-system-running"]}],
    }
    templates.begin_create_or_update(RG, "validated", body).result()
    sim.fail_build("validated", sub_state="Validating", message="Validation script 'smoke' exited with 1")
    templates.begin_run(RG, "validated", polling=False)
    sim.advance(3 * 3600)
    status = templates.get(RG, "validated").as_dict()["properties"]["lastRunStatus"]
    assert status["runState"] == "Failed" and "smoke' exited with 1" in status["message"]
    outputs = list(templates.list_run_outputs(RG, "validated"))
    published = list(
        clients.compute(SUBSCRIPTION).gallery_image_versions.list_by_gallery_image(RG, GALLERY, "ubuntu")
    )
    assert bool(outputs) is distribute_anyway and bool(published) is distribute_anyway
