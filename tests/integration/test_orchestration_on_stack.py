"""Orchestration on the local stack: the real service passes, the SDK adapters against the ARM
simulator, the ledger on Azurite, simulated time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rebuilder.devstack import estate
from rebuilder.devstack.armsim import ArmSimulator, SimControl
from rebuilder.devstack.azurite import Azurite
from rebuilder.domain.builds import BuildReason, BuildState
from tests.integration.orchestration import NEW_UBUNTU, Driver, make_driver, states_by_name


@pytest.fixture
def driver(armsim: ArmSimulator, sim: SimControl, azurite: Azurite) -> Iterator[Driver]:
    made = make_driver(armsim, sim, azurite)
    yield made
    made.services.close()


def test_a_new_version_is_built_and_published_in_every_region(driver: Driver, sim: SimControl) -> None:
    baseline_runs = driver.runs()
    sim.publish(*estate.UBUNTU, NEW_UBUNTU, list(estate.REGIONS))
    acted = driver.watch()
    assert len(acted.started) == 1
    build = driver.last("ubuntu2204-golden")
    assert (build.state, build.reason, build.source.resolved_version) == (
        BuildState.RUNNING,
        BuildReason.SOURCE_UPDATE,
        NEW_UBUNTU,
    )
    driver.until(lambda: driver.last("ubuntu2204-golden").state is BuildState.PUBLISHED)
    build = driver.last("ubuntu2204-golden")
    regions = driver.services.ledger.list_regions(build.id)
    assert {r.region: r.state for r in regions} == dict.fromkeys(estate.REGIONS, "Completed")
    assert all(r.completed_at is not None and r.completed_at >= build.created_at for r in regions)
    transitions = [t.to_state for t in driver.services.ledger.list_transitions(build.id)]
    assert transitions[0] is BuildState.QUEUED and transitions[-1] is BuildState.PUBLISHED
    assert BuildState.REPLICATING in transitions or BuildState.RUNNING in transitions
    state = states_by_name(driver.services)["ubuntu2204-golden"]
    assert (state.baseline_version, state.open_builds, state.last_build_state) == (
        NEW_UBUNTU,
        (),
        BuildState.PUBLISHED,
    )
    assert {r.region for r in state.regions} == set(estate.REGIONS)
    runs = driver.runs()
    assert runs["ubuntu2204-golden"] == baseline_runs["ubuntu2204-golden"] + 1
