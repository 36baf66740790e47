"""The Functions as the host invokes them, on simulated time: the two timers drive a build to the end
and announce it as CloudEvents on an Event Grid topic; the announcement, routed back to the Event Grid
function, builds the child."""

from __future__ import annotations

from collections.abc import Iterator

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from devstack import estate
from devstack.armsim import ArmSimulator, SimControl
from devstack.azurite import Azurite
from devstack.simclock import SimulatorClock
from rebuilder import bootstrap
from rebuilder.domain.builds import BuildReason, BuildState
from rebuilder.domain.notices import NOTICE_TYPES
from tests.integration.orchestration import NEW_UBUNTU, seed_estate, stack_env, template_id
from tests.integration.test_detection_on_stack import HostContext
from tests.unit.test_function_app import registered


@pytest.fixture
def app(
    armsim: ArmSimulator, sim: SimControl, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> Iterator[bootstrap.Services]:
    env = stack_env(armsim, azurite, REBUILDER_EVENTS_TOPIC=sim.topic_endpoint("rebuilder-events"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    services = bootstrap.bootstrap(env, clock=SimulatorClock(sim))  # the host's clock, on simulated time
    seed_estate(services, sim)
    monkeypatch.setattr(bootstrap, "_services", services)
    yield services
    services.close()


def test_the_timers_build_and_announce_and_the_announcement_builds_the_child(
    app: bootstrap.Services, sim: SimControl
) -> None:
    watch = registered()["watch_sources"].get_user_function()
    reconcile = registered()["reconcile_builds"].get_user_function()
    on_event = registered()["on_resource_event"].get_user_function()
    watch(TimerRequest(), HostContext())  # first sight
    sim.publish(*estate.UBUNTU, NEW_UBUNTU, list(estate.REGIONS))
    watch(TimerRequest(), HostContext())  # the parent's build is requested; the child waits for the event
    delivered: set[str] = set()
    for _ in range(60):
        sim.advance(300)
        reconcile(TimerRequest(), HostContext())
        for event in sim.topic_events("rebuilder-events"):
            if event["type"] == "Rebuilder.ImagePublished" and event["id"] not in delivered:
                delivered.add(event["id"])  # the topic's subscription delivers it to on_resource_event
                on_event(_as_delivered(event), HostContext())
        builds = app.ledger.list_builds(template_id("app-ubuntu2204")).items
        if builds and builds[0].state.finished:
            break
    [child] = app.ledger.list_builds(template_id("app-ubuntu2204")).items
    assert (child.state, child.reason, child.provenance.trigger) == (
        BuildState.PUBLISHED,
        BuildReason.PARENT_PUBLISHED,
        "eventgrid",
    )
    events = sim.topic_events("rebuilder-events")
    assert all(e["specversion"] == "1.0" and e["source"] == "/rebuilder" for e in events)
    kinds = [e["type"].removeprefix("Rebuilder.") for e in events]
    assert set(kinds) <= set(NOTICE_TYPES)
    assert {
        "SourceVersionDetected",
        "BuildStarted",
        "RegionReplicated",
        "ImagePublished",
        "BuildSucceeded",
    } <= set(kinds)
    assert kinds.count("RegionReplicated") == 2 * len(estate.REGIONS)  # parent and child, each region once
    assert len({e["id"] for e in events}) == len(events)
    [parent_published] = [
        e
        for e in events
        if e["type"] == "Rebuilder.ImagePublished" and e["data"]["template"] == "ubuntu2204-golden"
    ]
    assert parent_published["data"]["sourceVersion"] == NEW_UBUNTU
    assert "/versions/" in parent_published["data"]["resourceUri"]


def _as_delivered(event: dict[str, object]) -> func.EventGridEvent:
    """A CloudEvent as the Functions worker hands it over (the binding's EventGridEvent)."""
    return func.EventGridEvent(
        id=str(event["id"]),
        data=event["data"],
        topic=str(event["source"]),
        subject=str(event.get("subject", "")),
        event_type=str(event["type"]),
        event_time=None,
        data_version="1.0",
    )
