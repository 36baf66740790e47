"""Detection on the local stack: the real SDK adapters against the ARM simulator, the ledger on
Azurite, and the functions invoked the way the Functions host invokes them."""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from devstack import estate
from devstack.armsim import ArmSimulator, SimControl
from devstack.azurite import Azurite
from rebuilder import bootstrap
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.domain.builds import BuildState
from rebuilder.domain.model import TemplateId
from tests.conftest import local_env
from tests.integration.orchestration import run_cli
from tests.unit.test_function_app import registered

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "reference" / "eventgrid"  # official examples, copied in (see its README)
NEW_UBUNTU = "22.04.202501150"


class HostContext(func.Context):
    """What the host hands a function: here only the invocation id matters."""

    def __init__(self) -> None:
        self._id = str(uuid.uuid4())

    invocation_id = property(lambda self: self._id)
    function_name = property(lambda self: "test")
    function_directory = property(lambda self: str(ROOT))
    trace_context = property(lambda self: None)
    retry_context = property(lambda self: None)
    thread_local_storage = property(lambda self: None)


@pytest.fixture
def stack(
    armsim: ArmSimulator, sim: SimControl, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The demo estate, built through the SDK, with the service configured (as app settings) to manage it."""
    env = local_env(
        armsim,
        azurite.connection_string,
        REBUILDER_SCOPES=f"/subscriptions/{estate.SUBSCRIPTION}",
        REBUILDER_TABLE_PREFIX=f"t{uuid.uuid4().hex[:12]}",
        REBUILDER_WATCH_SCHEDULE="0 */15 * * * *",
        REQUESTS_CA_BUNDLE=str(armsim.ca_path),
    )
    seeding = bootstrap.bootstrap(env)
    clients = AzureClients(seeding.settings)
    estate.publish_marketplace(sim)
    estate.create(clients)
    estate.build_baselines(clients, sim)
    clients.close()
    seeding.close()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(bootstrap, "_services", None)
    yield env
    if bootstrap._services is not None:
        bootstrap._services.close()
    monkeypatch.setattr(bootstrap, "_services", None)


def template_id(name: str) -> TemplateId:
    return TemplateId(
        f"/subscriptions/{estate.SUBSCRIPTION}/resourceGroups/{estate.TEMPLATES_RG}/providers/"
        f"Microsoft.VirtualMachineImages/imageTemplates/{name}"
    )


def cli_plan(env: dict[str, str]) -> dict[str, Any]:
    plan: dict[str, Any] = run_cli({**env, "PATH": os.environ["PATH"]}, "plan", "--output", "json")
    return plan


def test_the_cli_plan_after_a_new_marketplace_version(stack: dict[str, str], sim: SimControl) -> None:
    before = {t["name"]: t for t in cli_plan(stack)["templates"]}
    assert {n: t["action"] for n, t in before.items()} == {
        "ubuntu2204-golden": "none",
        "winserver2022-golden": "none",
        "rhel8-golden": "none",
        "app-ubuntu2204": "none",
        "legacy-managed": "skip",
    }
    assert before["ubuntu2204-golden"]["baseline_adopted"] is True  # installing rebuilds nothing

    sim.publish(*estate.UBUNTU, NEW_UBUNTU, ["westeurope"])
    document = cli_plan(stack)
    after = {t["name"]: t for t in document["templates"]}
    ubuntu = after["ubuntu2204-golden"]
    assert (ubuntu["action"], ubuntu["baseline_version"], ubuntu["candidate_version"]) == (
        "rebuild",
        "22.04.202411190",
        NEW_UBUNTU,
    )
    assert f"22.04.202411190 → {NEW_UBUNTU} available in westeurope" in ubuntu["reason"]
    for item in document["templates"]:
        assert {
            "id",
            "name",
            "location",
            "source",
            "baseline_version",
            "candidate_version",
            "action",
            "reason",
        } <= set(item)
    assert {i["reason"] for i in document["ignored"]} == {"no golden-image-rebuild tag"}
    assert document["list_calls"] == 4  # three Marketplace sources, one gallery image


def test_the_timer_function_starts_each_due_build_once(stack: dict[str, str], sim: SimControl) -> None:
    sim.publish(*estate.UBUNTU, NEW_UBUNTU, ["westeurope"])
    watch = registered()["watch_sources"].get_user_function()

    watch(TimerRequest(past_due=False), HostContext())
    watch(TimerRequest(past_due=True), HostContext())

    ledger = bootstrap.services().ledger
    [build] = ledger.list_builds(template_id("ubuntu2204-golden")).items
    assert (build.state, build.source.resolved_version, build.previous_baseline) == (
        BuildState.RUNNING,
        NEW_UBUNTU,
        "22.04.202411190",
    )
    assert (build.provenance.trigger, build.attempts) == ("timer", 1)
    for other in ("winserver2022-golden", "rhel8-golden", "app-ubuntu2204"):
        assert ledger.list_builds(template_id(other)).items == []
    runs = {k.rsplit("/", 1)[-1]: n for k, n in sim.runs_started().items()}
    assert sum(runs.values()) == 5 and runs["ubuntu2204-golden"] == 2  # the baselines, then one rebuild


def _gallery_write_event(schema: str, version_id: str) -> Any:
    name = {
        "eventgrid": "docs_resourcegroups_EventGridSchema_ResourceWriteSuccess.json",
        "cloudevents": "docs_resourcegroups_CloudEventSchema_ResourceWriteSuccess.json",
    }[schema]
    [shape] = json.loads((REFERENCE / name).read_text())
    data = copy.deepcopy(shape["data"])
    data.update(
        resourceUri=version_id,
        operationName="Microsoft.Compute/galleries/images/versions/write",
        resourceProvider="Microsoft.Compute",
    )
    if schema == "cloudevents":
        return func.EventGridEvent(
            id=shape["id"],
            data=data,
            topic=shape["source"],
            subject=version_id,
            event_type=shape["type"],
            event_time=None,
            data_version="",
        )
    return func.EventGridEvent(
        id=shape["id"],
        data=data,
        topic=shape["topic"],
        subject=version_id,
        event_type=shape["eventType"],
        event_time=None,
        data_version=shape["dataVersion"],
    )


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_a_gallery_write_event_re_plans_only_the_templates_built_on_that_image(
    stack: dict[str, str], sim: SimControl, schema: str
) -> None:
    watch = registered()["watch_sources"].get_user_function()
    watch(TimerRequest(), HostContext())  # the service knows the estate (first sight)
    clients = AzureClients(bootstrap.services().settings)
    clients.imagebuilder(estate.SUBSCRIPTION).virtual_machine_image_templates.begin_run(
        estate.TEMPLATES_RG, "ubuntu2204-golden", polling=False
    )
    sim.advance(3 * 3600)  # the parent's new version is built and replicated
    versions = clients.compute(estate.SUBSCRIPTION).gallery_image_versions.list_by_gallery_image(
        estate.IMAGES_RG, estate.GALLERY, "ubuntu-22.04-gen2"
    )
    newest = max((v.name for v in versions), key=lambda n: tuple(int(p) for p in n.split(".")))
    clients.close()
    sim.reset_counters()

    on_event = registered()["on_resource_event"].get_user_function()
    version_id = estate.gallery_image_id("ubuntu-22.04-gen2") + f"/versions/{newest}"
    on_event(_gallery_write_event(schema, version_id), HostContext())

    ledger = bootstrap.services().ledger
    [child] = ledger.list_builds(template_id("app-ubuntu2204")).items
    assert (child.provenance.trigger, child.source.resolved_version) == ("eventgrid", newest)
    assert child.previous_baseline != newest
    counters = sim.counters()
    listed = [route for route, n in counters.items() if n and "list" in route.lower()]
    assert listed, counters
    assert all("galler" in route.lower() for route in listed), counters  # no Marketplace or template scan


WRITE = "Microsoft.Resources.ResourceWriteSuccess"


def _event(event_id: str, event_type: Any, data: Any) -> func.EventGridEvent:
    return func.EventGridEvent(
        id=event_id, data=data, topic="", subject="", event_type=event_type, event_time=None, data_version=""
    )


@pytest.mark.parametrize(
    "event",
    [
        _event("1", "x", "not an object"),
        _event("2", None, {}),
        _event("3", WRITE, {"operationName": 7}),
        _event(
            "4",
            WRITE,
            {
                "operationName": "Microsoft.Compute/galleries/images/versions/write",
                "resourceUri": "/not/a/gallery' or 1 eq 1",
            },
        ),
        _event("5", WRITE, {"operationName": "Microsoft.Storage/storageAccounts/write"}),
    ],
)
def test_malformed_and_foreign_events_are_acknowledged_and_write_nothing(
    stack: dict[str, str], sim: SimControl, event: func.EventGridEvent
) -> None:
    on_event = registered()["on_resource_event"].get_user_function()
    on_event(event, HostContext())  # returns normally: Event Grid must not redeliver it
    ledger = bootstrap.services().ledger
    assert ledger.list_template_states().items == []
    assert sum(sim.runs_started().values()) == 4
