"""The ARM simulator is held to the kept REST definitions (devstack/armsim/contract.py): the checks
catch what they must, every route is covered, the definitions are the api-versions the pinned SDKs
send, and over HTTPS a request or an answer outside the contract is refused and recorded.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import re
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlsplit

import pytest
from azure.mgmt.compute.operations import _operations as compute_builders
from azure.mgmt.imagebuilder.operations import _operations as imagebuilder_builders

from devstack.armsim import ArmSimulator, SimControl
from devstack.armsim.contract import DELIBERATE, Contract, kept
from devstack.armsim.routes import ROUTES
from tests.azure_examples import example
from tests.conftest import SUBSCRIPTION

RG = "rg-images"
GALLERY = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Compute/galleries/gallery1"
VERSION = f"{GALLERY}/images/ubuntu/versions/1.0.0"
AIB = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.VirtualMachineImages"
TEMPLATE = f"{AIB}/imageTemplates/t"
README = Path(__file__).resolve().parents[1] / "reference" / "README.md"


@pytest.fixture(scope="module")
def contract() -> Contract:
    return kept()


def request_problems(contract: Contract, method: str, path: str, body: Any, **query: str) -> list[str]:
    operation = contract.operation_of(method, path)
    assert operation is not None
    _, problems = contract.check_request(method, path, {"api-version": operation.api_version, **query}, body)
    return problems


def answer_problems(contract: Contract, method: str, path: str, status: int, body: Any) -> list[str]:
    operation = contract.operation_of(method, path)
    assert operation is not None
    return contract.check_response(operation, status, body, operation.api_version)


def version_body() -> dict[str, Any]:
    return {
        "location": "westeurope",
        "properties": {
            "publishingProfile": {"targetRegions": [{"name": "westeurope", "regionalReplicaCount": 1}]},
            "storageProfile": {"source": {"virtualMachineId": "/subscriptions/x/vm"}},
        },
    }


def template_body() -> dict[str, Any]:
    body: dict[str, Any] = example("imagebuilder/2024-02-01_CreateImageTemplateLinux.json")["parameters"][
        "parameters"
    ]
    return body


# -- the checks --------------------------------------------------------------------------------------
def test_a_valid_request_and_the_official_examples_pass(contract: Contract) -> None:
    assert request_problems(contract, "PUT", VERSION, version_body()) == []
    assert request_problems(contract, "PUT", TEMPLATE, template_body()) == []
    cases = {
        "imagebuilder/2024-02-01_CreateImageTemplateLinux.json": ("PUT", TEMPLATE),
        "imagebuilder/2024-02-01_GetImageTemplate.json": ("GET", TEMPLATE),
        "imagebuilder/2024-02-01_GetRunOutput.json": ("GET", f"{TEMPLATE}/runOutputs/o"),
        "imagebuilder/2025-10-01_ListRunOutputs.json": ("GET", f"{TEMPLATE}/runOutputs"),
        "compute/2024-03-03_GalleryImageVersion_Create.json": ("PUT", VERSION),
        "compute/2024-03-03_GalleryImageVersion_Get_WithReplicationStatus.json": ("GET", VERSION),
        "compute/2024-03-03_GalleryImage_Get.json": ("GET", f"{GALLERY}/images/ubuntu"),
    }
    for name, (method, path) in cases.items():
        for status, answer in example(name)["responses"].items():
            assert answer_problems(contract, method, path, int(status), answer.get("body")) == [], name


def test_a_missing_required_property_is_refused(contract: Contract) -> None:
    body = template_body()
    del body["identity"]  # ImageTemplate.required
    assert request_problems(contract, "PUT", TEMPLATE, body) == ["body: 'identity' is a required property"]
    body = version_body()
    del body["properties"]["storageProfile"]  # GalleryImageVersionProperties.required
    assert request_problems(contract, "PUT", VERSION, body) == [
        "body.properties: 'storageProfile' is a required property"
    ]
    body = version_body()
    body["properties"]["publishingProfile"]["targetRegions"] = [{"regionalReplicaCount": 2}]  # TargetRegion
    assert request_problems(contract, "PUT", VERSION, body) == [
        "body.properties.publishingProfile.targetRegions[0]: 'name' is a required property"
    ]


def test_a_wrong_enum_value_or_type_is_refused(contract: Contract) -> None:
    body = version_body()
    body["properties"]["publishingProfile"]["targetRegions"][0]["storageAccountType"] = "Ultra_LRS"
    body["properties"]["publishingProfile"]["targetRegions"][0]["regionalReplicaCount"] = "2"
    assert request_problems(contract, "PUT", VERSION, body) == [
        "body.properties.publishingProfile.targetRegions[0].regionalReplicaCount: "
        "'2' is not of type 'integer'",
        "body.properties.publishingProfile.targetRegions[0].storageAccountType: 'Ultra_LRS' is not one of "
        "['Standard_LRS', 'Standard_ZRS', 'Premium_LRS', 'PremiumV2_LRS']",
    ]
    body = template_body()
    body["identity"]["type"] = "SystemAssigned"
    assert request_problems(contract, "PUT", TEMPLATE, body) == [
        "body.identity.type: 'SystemAssigned' is not one of ['UserAssigned', 'None']"
    ]


def test_a_read_only_property_sent_is_refused(contract: Contract) -> None:
    body = version_body()
    body["id"] = VERSION  # Resource.id
    body["properties"]["provisioningState"] = "Succeeded"
    body["properties"]["publishingProfile"]["publishedDate"] = "2026-11-10T06:00:00Z"
    assert request_problems(contract, "PUT", VERSION, body) == [
        "body.id: is read-only: a request must not send it",
        "body.properties.provisioningState: is read-only: a request must not send it",
        "body.properties.publishingProfile.publishedDate: is read-only: a request must not send it",
    ]
    body = template_body()
    body["properties"]["source"] = {"type": "PlatformImage", "publisher": "p", "offer": "o", "sku": "s"}
    body["properties"]["source"]["exactVersion"] = "1.0.0"
    assert request_problems(contract, "PUT", TEMPLATE, body) == [
        "body.properties.source.exactVersion: is read-only: a request must not send it"
    ]


def test_subtypes_are_chosen_by_their_discriminator_and_undeclared_properties_are_refused(
    contract: Contract,
) -> None:
    body = template_body()
    body["properties"]["source"] = {"type": "PlatformImages", "publisher": "p"}
    assert request_problems(contract, "PUT", TEMPLATE, body) == [
        "body.properties.source.type: 'PlatformImages' is not one of the known values "
        "['ManagedImage', 'PlatformImage', 'SharedImageVersion']"
    ]
    body["properties"]["source"] = {"type": "PlatformImage", "publisher": 1, "imageId": "/x"}
    assert request_problems(contract, "PUT", TEMPLATE, body) == [
        "body.properties.source: Additional properties are not allowed ('imageId' is not in the definition)",
        "body.properties.source.publisher: 1 is not of type 'string'",
    ]
    body = template_body()
    del body["properties"]["distribute"][0]["runOutputName"]  # required by the base distributor
    body["properties"]["distribute"][0]["exludeFromLatest"] = True
    assert request_problems(contract, "PUT", TEMPLATE, body) == [
        "body.properties.distribute[0]: 'runOutputName' is a required property",
        "body.properties.distribute[0]: Additional properties are not allowed "
        "('exludeFromLatest' is not in the definition)",
    ]


def test_parameters_and_bodies_where_none_is_declared(contract: Contract) -> None:
    bad_name = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Compute/galleries/-g-"
    assert request_problems(contract, "GET", bad_name, None) == [
        "path parameter 'galleryName': '-g-' does not match '(?a)^[^_\\\\W][\\\\w\\\\-._]{0,79}(?<![-.])$'"
    ]
    assert request_problems(contract, "GET", VERSION, None, **{"$expand": "Everything"}) == [
        "query parameter '$expand': 'Everything' is not one of ['ReplicationStatus', 'UefiSettings']"
    ]
    assert request_problems(contract, "POST", f"{TEMPLATE}/run", {"now": True}) == [
        "VirtualMachineImageTemplates_Run takes no request body"
    ]
    assert request_problems(contract, "PATCH", VERSION, None) == [
        "GalleryImageVersions_Update requires a request body"
    ]


def test_an_answer_outside_its_schema_is_a_violation(contract: Contract) -> None:
    answer = example("compute/2024-03-03_GalleryImageVersion_Get_WithReplicationStatus.json")["responses"][
        "200"
    ]["body"]
    wrong = copy.deepcopy(answer)
    wrong["properties"]["replicationStatus"]["aggregatedState"] = "Done"
    del wrong["properties"]["storageProfile"]
    assert answer_problems(contract, "GET", VERSION, 200, wrong) == [
        "body.properties: 'storageProfile' is a required property",
        "body.properties.replicationStatus.aggregatedState: 'Done' is not one of "
        "['Unknown', 'InProgress', 'Completed', 'Failed']",
    ]
    nulled = copy.deepcopy(answer)
    nulled["properties"]["publishingProfile"]["replicaCount"] = None  # nothing here is x-nullable
    assert answer_problems(contract, "GET", VERSION, 200, nulled) == [
        "body.properties.publishingProfile.replicaCount: None is not of type 'integer'"
    ]
    assert (
        answer_problems(contract, "GET", VERSION, 404, {"error": {"code": "NotFound", "message": "m"}}) == []
    )
    assert answer_problems(contract, "GET", VERSION, 404, {"error": "NotFound"}) == [
        "body.error: 'NotFound' is not of type 'object'"
    ]
    assert answer_problems(contract, "POST", f"{TEMPLATE}/run", 202, {"status": "Accepted"}) == [
        "VirtualMachineImageTemplates_Run declares no body for 202, one was sent"
    ]
    assert answer_problems(contract, "GET", VERSION, 200, None) == [
        "GalleryImageVersions_Get declares a body for 200, none was sent"
    ]


def test_a_status_code_the_operation_does_not_declare_is_a_violation(contract: Contract) -> None:
    answer = example("compute/2024-03-03_GalleryImageVersion_Create.json")["responses"]["200"]["body"]
    assert answer_problems(contract, "PATCH", VERSION, 202, answer) == [
        "status 202 is not a response of GalleryImageVersions_Update (it declares 200, default)"
    ]
    assert answer_problems(contract, "DELETE", TEMPLATE, 200, None) == [
        "status 200 is not a response of VirtualMachineImageTemplates_Delete (it declares 202, 204, default)"
    ]
    operation = contract.operation_of("GET", VERSION)
    assert operation is not None
    assert contract.check_response(operation, 200, answer, "2024-03-03") == [
        "answered api-version '2024-03-03', which has no kept definition "
        "(GalleryImageVersions_Get is kept for 2026-03-03)"
    ]


# -- coverage ----------------------------------------------------------------------------------------
def test_every_arm_route_serves_a_kept_operation_or_is_deliberately_unchecked(contract: Contract) -> None:
    served = contract.served(ROUTES)
    names = {route.name for route in ROUTES}
    assert set(DELIBERATE) <= names, "a deliberate exception names no route"
    assert not set(DELIBERATE) & set(served), "a deliberate exception has a kept definition after all"
    assert names - set(served) - set(DELIBERATE) == set(), "routes with no kept definition"
    for route in ROUTES:
        if route.name in served:  # the route accepts exactly the kept definition's api-version
            assert route.api_versions == {served[route.name].api_version}, route.name


_SDK_BUILDERS: dict[str, tuple[Any, Callable[[str], str]]] = {
    "marketplace": (compute_builders, {"list_versions": "list", "get_version": "get"}.__getitem__),
    "galleries": (compute_builders, lambda op: op),
    "gallery_images": (compute_builders, lambda op: op),
    "gallery_image_versions": (compute_builders, lambda op: op),
    "image_templates": (imagebuilder_builders, lambda op: op),
}
_SDK_GROUPS = {"marketplace": "virtual_machine_images", "image_templates": "virtual_machine_image_templates"}


def test_the_kept_definitions_are_the_api_versions_the_pinned_sdk_clients_send(contract: Contract) -> None:
    """Each request builder of the installed azure-mgmt-compute / azure-mgmt-imagebuilder, called with
    its defaults, asks for the api-version and path of the kept operation its route serves."""
    served = contract.served(ROUTES)
    checked = 0
    for name, operation in served.items():
        group, _, op = name.partition(".")
        if group not in _SDK_BUILDERS:
            continue
        module, rename = _SDK_BUILDERS[group]
        builder = getattr(module, f"build_{_SDK_GROUPS.get(group, group)}_{rename(op)}_request")
        parameters = inspect.signature(builder).parameters.items()
        request = builder(
            **{n: "x1" for n, p in parameters if p.default is inspect.Parameter.empty and n != "kwargs"}
        )
        url = urlsplit(request.url)
        assert (request.method, url.query) == (operation.method, f"api-version={operation.api_version}"), name
        assert contract.operation_of(request.method, url.path) == operation, name
        checked += 1
    assert checked == len([n for n in served if n.partition(".")[0] in _SDK_BUILDERS]) >= 24


def test_the_reference_readme_states_what_is_checked(contract: Contract) -> None:
    figures = contract.summary(ROUTES)
    stated = (
        f"{figures['operations']} operations, {figures['request_shapes']} request body shapes, "
        f"{figures['parameter_sets']} path and query parameter sets, {figures['response_shapes']} response "
        f"shapes ({figures['response_bodies']} with a body schema), {figures['definitions']} definitions"
    )
    text = re.sub(r"\s+", " ", README.read_text(encoding="utf-8"))
    assert stated in text, f"tests/reference/README.md should say: {stated}"
    for name in DELIBERATE:
        assert f"`{name}`" in text, name
    versions = {operation.api_version for operation in contract.served(ROUTES).values()}
    for version in versions:
        assert version in text, version


# -- over HTTPS --------------------------------------------------------------------------------------
def arm(armsim: ArmSimulator, method: str, path: str, body: Any, api_version: str) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - the simulator's https endpoint
        f"{armsim.endpoint}{path}?api-version={api_version}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {armsim.token}", "Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(armsim.ca_path))
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_over_https_a_request_outside_the_contract_is_refused_and_recorded(
    armsim: ArmSimulator, sim: SimControl
) -> None:
    assert arm(armsim, "PUT", GALLERY, {"location": "westeurope"}, "2026-03-03")[0] == 201
    image = {
        "location": "westeurope",
        "properties": {
            "osType": "Linux",
            "osState": "Generalized",
            "identifier": {"publisher": "contoso", "offer": "golden", "sku": "ubuntu"},
        },
    }
    assert arm(armsim, "PUT", f"{GALLERY}/images/ubuntu", image, "2026-03-03")[0] == 201
    body = version_body()
    body["properties"]["provisioningState"] = "Succeeded"
    status, answer = arm(armsim, "PUT", VERSION, body, "2026-03-03")
    assert status == 400 and answer["error"]["code"] == "InvalidRequestContent"
    assert "body.properties.provisioningState: is read-only" in answer["error"]["message"]
    [seen] = armsim.violations.take()
    assert (seen.kind, seen.route, seen.operation, seen.status) == (
        "request",
        "gallery_image_versions.create_or_update",
        "GalleryImageVersions_CreateOrUpdate",
        None,
    )
    assert seen.problems == ("body.properties.provisioningState: is read-only: a request must not send it",)
    status, answer = arm(armsim, "GET", VERSION, None, "2026-03-03")
    assert status == 404 and answer["error"]["code"] == "ResourceNotFound"  # refused: nothing was made
    status, answer = arm(armsim, "PUT", VERSION, version_body(), "2024-03-03")  # no kept definition
    assert status == 400 and answer["error"]["code"] == "NoRegisteredProviderFound"
    assert armsim.violations.take() == []  # refused as Azure refuses an unknown api-version


def test_over_https_an_answer_outside_the_contract_is_replaced_and_recorded(
    armsim: ArmSimulator, sim: SimControl
) -> None:
    sim.inject("gallery_images.get", status=299)  # a status GalleryImages_Get does not declare
    status, answer = arm(armsim, "GET", f"{GALLERY}/images/ubuntu", None, "2026-03-03")
    assert status == 500 and answer["error"]["code"] == "SimulatorContractViolation"
    [seen] = armsim.violations.take()
    assert (seen.kind, seen.operation, seen.status) == ("response", "GalleryImages_Get", 299)
    assert seen.problems == ("status 299 is not a response of GalleryImages_Get (it declares 200, default)",)
    status, answer = arm(armsim, "GET", f"{GALLERY}/images/ubuntu", None, "2026-03-03")
    assert status == 404 and answer["error"]["code"] == "ResourceNotFound"  # an error inside the contract
    assert armsim.violations.take() == []


INNER_TEST = """
import json, ssl, urllib.request
from urllib.error import HTTPError

VERSION = "{version}"


def test_sends_a_read_only_property(armsim):
    properties = {{"storageProfile": {{}}, "provisioningState": "Succeeded"}}
    body = {{"location": "westeurope", "properties": properties}}
    request = urllib.request.Request(
        f"{{armsim.endpoint}}{{VERSION}}?api-version=2026-03-03",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={{"Authorization": f"Bearer {{armsim.token}}", "Content-Type": "application/json"}},
    )
    try:
        urllib.request.urlopen(request, context=ssl.create_default_context(cafile=str(armsim.ca_path)))
    except HTTPError as error:
        assert error.code == 400  # the test itself passes: only the recorded violation fails it


def test_stays_inside_the_contract(armsim):
    pass
"""


def test_a_violation_fails_the_test_that_caused_it(tmp_path: Path) -> None:
    """A pytest session of its own, with this repository's conftest: the test that sent a read-only
    property fails at teardown, the next one is untouched."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.conftest"]\n')
    (tmp_path / "test_inner.py").write_text(INNER_TEST.format(version=VERSION))
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 passed, 1 error" in done.stdout, done.stdout  # pytest counts a teardown error apart
    assert "ERROR test_inner.py::test_sends_a_read_only_property" in done.stdout, done.stdout
    assert "ERROR at teardown of test_sends_a_read_only_property" in done.stdout, done.stdout
    assert "1 violation(s) of the REST contract during this test" in done.stdout, done.stdout
    assert "body.properties.provisioningState: is read-only" in done.stdout, done.stdout
