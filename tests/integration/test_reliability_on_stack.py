"""Reliability on the local stack: concurrent and repeated triggers start one run; a crash between
any two steps is healed by the next passes, with nothing lost and no run started twice."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from devstack import estate
from devstack.armsim import ArmSimulator, SimControl
from devstack.azurite import Azurite
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.domain.builds import BuildState
from rebuilder.services.events import ResourceEvent, on_resource_event
from rebuilder.services.records import Caller
from rebuilder.services.requests import request_rebuild
from tests.crashes import Crash, CrashPlan
from tests.integration.orchestration import NEW_WINDOWS, Driver, make_driver, states_by_name, template_id


def _parent_published_outside(driver: Driver, sim: SimControl) -> str:
    """Rebuild the Ubuntu golden image outside rebuilder, so its child is due."""
    clients = AzureClients(driver.services.settings)
    templates = clients.imagebuilder(estate.SUBSCRIPTION).virtual_machine_image_templates
    templates.begin_run(estate.TEMPLATES_RG, "ubuntu2204-golden", polling=False)
    sim.advance(3 * 3600)
    versions = clients.compute(estate.SUBSCRIPTION).gallery_image_versions.list_by_gallery_image(
        estate.IMAGES_RG, estate.GALLERY, "ubuntu-22.04-gen2"
    )
    clients.close()
    newest = max((v.name for v in versions), key=lambda n: tuple(int(p) for p in n.split(".")))
    return estate.gallery_image_id("ubuntu-22.04-gen2") + f"/versions/{newest}"


def test_fifty_concurrent_triggers_for_one_template_and_version_start_one_run(
    armsim: ArmSimulator, sim: SimControl, azurite: Azurite
) -> None:
    driver = make_driver(armsim, sim, azurite)
    try:
        driver.watch()  # first sight of the estate
        assert driver.idle()
        version_id = _parent_published_outside(driver, sim)  # now the child is due: the triggers race
        child = template_id("app-ubuntu2204")
        runs_before = driver.runs()["app-ubuntu2204"]
        services = driver.services
        template = services.imagebuilder.get_template(child)
        event = ResourceEvent(
            "evt-1",
            "Microsoft.Resources.ResourceWriteSuccess",
            version_id,
            "Microsoft.Compute/galleries/images/versions/write",
            version_id,
        )
        start = threading.Barrier(50)

        def trigger(kind: str) -> Any:
            start.wait()
            now = services.clock.now()
            if kind == "timer":
                return driver.watch()
            if kind == "event":  # Event Grid redelivers the same event
                return on_resource_event(
                    services.detection(), services.settings.scopes, event, services.policy(), now=now
                )
            return request_rebuild(
                services.detection(),
                template,
                services.policy(),
                now=now,
                caller=Caller("http", "oncall@contoso.com"),
                idempotency_key="req-1",
            )

        kinds = ["timer"] * 17 + ["event"] * 17 + ["rebuild"] * 16
        with ThreadPoolExecutor(max_workers=50) as pool:
            list(pool.map(trigger, kinds))

        builds = driver.builds("app-ubuntu2204")
        live = [b for b in builds if b.state is not BuildState.SUPERSEDED]
        assert len(live) == 1, [(b.id, b.state, b.provenance.idempotency_key) for b in builds]
        assert live[0].state is BuildState.RUNNING and live[0].attempts == 1
        assert driver.runs()["app-ubuntu2204"] == runs_before + 1
        driver.until(driver.idle)
        assert driver.runs()["app-ubuntu2204"] == runs_before + 1
        assert driver.last("app-ubuntu2204").state is BuildState.PUBLISHED or any(
            b.state is BuildState.PUBLISHED for b in driver.builds("app-ubuntu2204")
        )
    finally:
        driver.services.close()


def _patch_day(driver: Driver, sim: SimControl, plan: CrashPlan) -> dict[str, Any]:
    """A pinned template's new version, whose recreated template fails to provision once (deleted and
    submitted again), with a failed region; every pass may crash; the outcome."""
    driver.watch()  # first sight, before any crash is armed
    sim.fail_region("eastus2")
    sim.fail_provisioning("winserver2022-golden", code="ServerError", times=1)
    sim.publish(*estate.WINDOWS, NEW_WINDOWS, list(estate.REGIONS), os="Windows")
    driver.wrap = plan.wrap
    for _ in range(200):
        for run_pass in (driver.watch, driver.reconcile):
            with contextlib.suppress(Crash):  # the host starts a new worker; the next tick runs again
                run_pass()
        builds = driver.builds("winserver2022-golden")
        if builds and builds[0].state.finished and driver.idle():
            break
        sim.advance(900)
    builds = driver.builds("winserver2022-golden")
    [build] = [b for b in builds if b.state is not BuildState.SUPERSEDED]
    regions = driver.services.ledger.list_regions(build.id)
    state = states_by_name(driver.services)["winserver2022-golden"]
    return {
        "state": build.state,
        "version": build.source.resolved_version,
        "hashes": (build.definition_hash_before, build.definition_hash_after),
        "regions": {r.region: r.state for r in regions},
        "repaired": sorted(r.region for r in regions if r.repairs),
        "runs": driver.runs(),
        "baseline": state.baseline_version,
        "open": state.open_builds,
        "builds": len(builds),
    }


@pytest.mark.timeout(600)  # one patch day per step boundary (about 20), each on a fresh stack
def test_a_crash_between_any_two_steps_is_healed_by_the_next_passes(
    armsim: ArmSimulator, sim: SimControl, azurite: Azurite
) -> None:
    clean_plan = CrashPlan(None)
    driver = make_driver(armsim, sim, azurite)
    try:
        clean = _patch_day(driver, sim, clean_plan)
    finally:
        driver.services.close()
    assert clean["state"] is BuildState.PUBLISHED and clean["repaired"] == ["eastus2"]
    steps = len(clean_plan.steps)
    assert {"claim_build", "delete_template", "create_template", "start_run", "set_target_regions"} <= set(
        clean_plan.steps
    )
    # the recreate and the resubmission: two deletes, two creates
    assert (clean_plan.steps.count("delete_template"), clean_plan.steps.count("create_template")) == (2, 2)
    for at in range(1, steps + 1):
        sim.reset()
        plan = CrashPlan(at)
        driver = make_driver(armsim, sim, azurite)
        try:
            outcome = _patch_day(driver, sim, plan)
        finally:
            driver.services.close()
        assert plan.crashed, at
        where = f"crash after step {at} ({plan.steps[at - 1]})"
        assert outcome["runs"] == clean["runs"], where  # no run started twice, none lost
        for key in ("state", "version", "hashes", "regions", "baseline", "open", "builds"):
            assert outcome[key] == clean[key], f"{where}: {key} {outcome[key]!r} != {clean[key]!r}"
