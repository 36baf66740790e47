"""Shared fixtures: the local Azure stack (Azurite, ARM simulator) and services wired to it.

Both servers start once per session on free loopback ports and stop afterwards; each test gets a
fresh simulated world. Nothing here patches Azure code: fakes live at our ports and at the wire.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import settings

from devstack.armsim import ArmSimulator, SimControl
from devstack.armsim.contract import Violation
from devstack.azurite import Azurite, running_azurite
from rebuilder.bootstrap import Services, bootstrap

SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"

# Property tests check behaviour, not speed: on a loaded 2-core CI machine hypothesis's default 200 ms
# deadline per example fails pure tests at random (benchmarks under bench/ measure speed instead).
settings.register_profile("rebuilder", deadline=None)
settings.load_profile("rebuilder")


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with running_azurite() as instance:
        yield instance


_ARMSIM = pytest.StashKey[ArmSimulator]()


@pytest.fixture(scope="session")
def armsim(request: pytest.FixtureRequest) -> Iterator[ArmSimulator]:
    with ArmSimulator() as sim:
        request.config.stash[_ARMSIM] = sim
        previous = os.environ.get("REQUESTS_CA_BUNDLE")
        # TLS trust for the SDK clients follows REQUESTS_CA_BUNDLE, as it would in production.
        os.environ["REQUESTS_CA_BUNDLE"] = str(sim.ca_path)
        yield sim
        if previous is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = previous
        del request.config.stash[_ARMSIM]
        _fail_on_violations(sim.violations.take(), "after the last test")


@pytest.fixture(autouse=True)
def _rest_contract(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test in which the ARM simulator was sent a request, or gave an answer, outside the
    REST definitions it is held to (devstack/armsim/contract.py). Always on."""
    running = request.config.stash.get(_ARMSIM, None)
    earlier = running.violations.take() if running is not None else []
    _fail_on_violations(earlier, "before this test (between tests, or in a module or session fixture)")
    yield
    running = request.config.stash.get(_ARMSIM, None)
    if running is not None:
        _fail_on_violations(running.violations.take(), "during this test")


def _fail_on_violations(violations: list[Violation], when: str) -> None:
    if violations:
        listed = "\n".join(f"- {violation}" for violation in violations)
        pytest.fail(
            f"The ARM simulator saw {len(violations)} violation(s) of the REST contract {when}:\n{listed}"
        )


@pytest.fixture
def sim(armsim: ArmSimulator) -> SimControl:
    """Control of a fresh simulated world for this test."""
    control = SimControl(armsim.endpoint, str(armsim.ca_path))
    control.reset()
    return control


def local_env(
    armsim: ArmSimulator, ledger: str = "UseDevelopmentStorage=true", **extra: str
) -> dict[str, str]:
    env = {
        "REBUILDER_SCOPES": f"/subscriptions/{SUBSCRIPTION}",
        "REBUILDER_LEDGER": ledger,
        "REBUILDER_ARM_ENDPOINT": armsim.endpoint,
        "REBUILDER_ARM_TOKEN": armsim.token,
        "REBUILDER_ARM_POLLING_INTERVAL_SECONDS": "0",
        "REBUILDER_ARM_RETRY_BACKOFF_SECONDS": "0.01",
    }
    env.update(extra)
    return env


@pytest.fixture
def services(armsim: ArmSimulator, sim: SimControl, azurite: Azurite) -> Iterator[Services]:
    """The real adapters (azure-mgmt-* over HTTPS, azure-data-tables) pointed at a fresh simulated
    world and a ledger under a fresh table prefix in Azurite."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    built = bootstrap(local_env(armsim, azurite.connection_string, REBUILDER_TABLE_PREFIX=prefix))
    yield built
    built.close()
