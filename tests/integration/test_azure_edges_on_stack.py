"""Where Azure is least forgiving, on the simulator and Azurite through the real SDK clients: a slow
template delete, templates that fail to provision (once, or for good), and a run request that stays
throttled. Each ends where Azure would let it, within its budget, with Azure's words in the trail."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack import estate
from devstack.armsim import ArmSimulator, SimControl
from devstack.azurite import Azurite
from rebuilder.domain.builds import BuildState
from tests.integration.orchestration import NEW_RHEL, NEW_WINDOWS, Driver, cli, make_driver, template_id

WINDOWS = "winserver2022-golden"
CREATE = "image_templates.create_or_update"


@pytest.fixture
def driver(armsim: ArmSimulator, sim: SimControl, azurite: Azurite) -> Iterator[Driver]:
    made = make_driver(armsim, sim, azurite)
    yield made
    made.services.close()


def trail(driver: Driver, build_id: str) -> list[str]:
    return [t.why for t in driver.services.ledger.list_transitions(build_id)]


def test_a_pinned_recreate_waits_out_a_slow_delete_without_a_put_storm(
    driver: Driver, sim: SimControl
) -> None:
    runs = driver.runs()[WINDOWS]
    sim.publish(*estate.WINDOWS, NEW_WINDOWS, list(estate.REGIONS), os="Windows")
    acted = driver.watch()
    assert acted.recreated == [template_id(WINDOWS)]  # definition written, delete asked
    template = driver.services.imagebuilder.get_template(template_id(WINDOWS))
    assert template.provisioning_state == "Deleting"
    creates = sim.counters().get(CREATE, 0)
    for _ in range(3):  # passes a minute apart while Azure deletes: no PUT is sent against it
        sim.advance(30)
        waiting = driver.reconcile().waiting
        assert any("is Deleting" in w for w in waiting)
    assert sim.counters().get(CREATE, 0) == creates
    driver.until(lambda: driver.last(WINDOWS).state is BuildState.PUBLISHED, step=60)
    assert sim.counters().get(CREATE, 0) == creates + 1  # one create, once the name was free
    assert driver.runs()[WINDOWS] == runs + 1
    assert driver.last(WINDOWS).source.resolved_version == NEW_WINDOWS


def test_a_recreated_template_that_fails_provisioning_once_is_resubmitted_and_published(
    driver: Driver, sim: SimControl
) -> None:
    runs = driver.runs()[WINDOWS]
    sim.fail_provisioning(WINDOWS, code="ServerError", message="An internal error occurred.", times=1)
    sim.publish(*estate.WINDOWS, NEW_WINDOWS, list(estate.REGIONS), os="Windows")
    driver.watch()
    driver.until(lambda: driver.last(WINDOWS).state.finished, step=120)
    build = driver.last(WINDOWS)
    assert build.state is BuildState.PUBLISHED and build.attempts == 2  # one spent on provisioning
    assert driver.runs()[WINDOWS] == runs + 1  # and exactly one run
    assert any("ServerError: An internal error occurred." in why for why in trail(driver, build.id))
    shown = cli(driver, "show", build.id, "--output", "json")
    assert any("ServerError" in t["why"] for t in shown["transitions"])


def test_a_permanent_provisioning_error_fails_the_build_at_once_without_a_retry_storm(
    driver: Driver, sim: SimControl
) -> None:
    runs = driver.runs()[WINDOWS]
    sim.fail_provisioning(
        WINDOWS, code="BadPIRSource", message="The platform image was not found.", times="always"
    )
    sim.publish(*estate.WINDOWS, NEW_WINDOWS, list(estate.REGIONS), os="Windows")
    driver.watch()
    creates = sim.counters().get(CREATE, 0)
    driver.until(lambda: driver.last(WINDOWS).state.finished, step=120)
    build = driver.last(WINDOWS)
    assert build.state is BuildState.FAILED and build.attempts == 1
    assert "BadPIRSource: The platform image was not found." in build.message
    for _ in range(5):  # later passes leave it alone: the next build waits for a new version
        sim.advance(600)
        driver.reconcile()
    assert sim.counters().get(CREATE, 0) == creates + 1  # created once, never resubmitted
    assert driver.runs()[WINDOWS] == runs
    shown = cli(driver, "show", build.id, "--output", "json")
    assert "BadPIRSource" in shown["message"]


def test_a_run_request_that_stays_throttled_ends_within_its_budget(driver: Driver, sim: SimControl) -> None:
    runs = driver.runs()["rhel8-golden"]
    sim.inject("image_templates.run", status=429, times=None, retry_after=0.05)  # real seconds, per SDK retry
    sim.publish(*estate.RHEL, NEW_RHEL, list(estate.REGIONS))
    driver.watch()
    ticks = driver.until(lambda: driver.last("rhel8-golden").state.finished, step=60)
    sim.clear_faults()
    build = driver.last("rhel8-golden")
    policy = driver.services.policy()
    assert build.state is BuildState.FAILED and build.attempts == 0  # no run ever started
    assert build.temporary_refusals == policy.temporary_refusals + 1
    assert "refused the run" in build.message and "429" in build.message
    assert driver.runs()["rhel8-golden"] == runs
    assert ticks <= 2 * (policy.temporary_refusals + 1)  # Retry-After honoured, no pass wasted much


def test_a_reconcile_dry_run_prints_what_the_next_pass_would_do_and_changes_nothing(
    driver: Driver, sim: SimControl
) -> None:
    sim.publish(*estate.RHEL, NEW_RHEL, list(estate.REGIONS))
    driver.watch()  # the build runs
    sim.advance(3600)  # the run has moved on since the ledger last looked
    before = driver.last("rhel8-golden")
    trail = len(driver.services.ledger.list_transitions(before.id))
    writes = {
        k: v for k, v in sim.counters().items() if not k.endswith((".get", ".list", "list_run_outputs"))
    }
    planned = cli(driver, "reconcile", "--dry-run", "--output", "json")["planned"]
    assert planned and all(line.startswith("rhel8-golden: ") for line in planned)
    assert any(line.startswith("rhel8-golden: move ") for line in planned)
    after = driver.last("rhel8-golden")
    assert after == before and len(driver.services.ledger.list_transitions(before.id)) == trail
    assert {k: v for k, v in sim.counters().items() if k in writes} == writes  # no write reached Azure
    acted = driver.reconcile()  # the real pass does what the dry run said
    assert acted.moved
