"""Throttling and server errors: the SDK pipeline's own retries (configured once, in AzureClients)
honour Retry-After; what still fails reaches the service as a TemporaryError with the server's delay.
"""

from __future__ import annotations

import itertools

import pytest

from devstack.armsim import ArmSimulator, SimControl
from rebuilder.bootstrap import Services, bootstrap
from rebuilder.domain.errors import NotFound, PermanentError, TemporaryError
from rebuilder.domain.model import PlatformImage, Scope
from rebuilder.domain.regions import region
from tests.conftest import SUBSCRIPTION, local_env

UBUNTU = PlatformImage("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2")


def test_the_sdk_retry_honours_a_simulated_429_retry_after(sim: SimControl, services: Services) -> None:
    sim.publish(*UBUNTU.key, "22.04.202411190", ["westeurope"])
    sim.inject("marketplace.list_versions", status=429, times=2, retry_after=1)
    listed = services.marketplace.list_versions(SUBSCRIPTION, region("westeurope"), UBUNTU)
    assert listed == ["22.04.202411190"]
    calls = sim.requests("marketplace.list_versions")
    assert [c["status"] for c in calls] == [429, 429, 200]
    gaps = [later["at"] - earlier["at"] for earlier, later in itertools.pairwise(calls)]
    assert all(gap >= 1.0 for gap in gaps), gaps  # waited as long as the server asked, each time
    assert sim.counters()["marketplace.list_versions"] == 3


def test_a_5xx_storm_ends_in_success_within_the_retry_budget(sim: SimControl, services: Services) -> None:
    sim.inject("image_templates.list", status=503, times=3)
    assert list(services.imagebuilder.list_templates(Scope(SUBSCRIPTION))) == []
    assert sim.counters()["image_templates.list"] == 4


def test_throttling_beyond_the_budget_is_a_temporary_error_carrying_the_server_delay(
    armsim: ArmSimulator, sim: SimControl
) -> None:
    services = bootstrap(local_env(armsim, REBUILDER_ARM_RETRY_TOTAL="1"))
    sim.inject("image_templates.list", status=429, times=5, retry_after=0.1)
    with pytest.raises(TemporaryError) as raised:
        list(services.imagebuilder.list_templates(Scope(SUBSCRIPTION)))
    assert raised.value.delay == pytest.approx(0.1)
    assert sim.counters()["image_templates.list"] == 2  # one try plus the one retry allowed
    services.close()


def test_not_found_and_bad_requests_are_permanent(sim: SimControl, services: Services) -> None:
    with pytest.raises(NotFound):
        services.marketplace.list_versions(SUBSCRIPTION, region("westeurope"), UBUNTU)
    sim.inject("image_templates.list", status=400, times=1)
    with pytest.raises(PermanentError) as raised:
        list(services.imagebuilder.list_templates(Scope(SUBSCRIPTION)))
    assert not isinstance(raised.value, TemporaryError)
    assert sim.counters()["image_templates.list"] == 1  # a 4xx is never retried
