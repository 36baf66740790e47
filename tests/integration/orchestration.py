"""The local stack set up for orchestration tests: the demo estate with its baselines built, and the
service's passes (watch, reconcile) driven on simulated time, as the timers would drive them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import estate
from devstack.armsim import ArmSimulator, SimControl
from devstack.azurite import Azurite
from devstack.simclock import SimulatorClock
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.bootstrap import Services, bootstrap
from rebuilder.domain.builds import Build, BuildState
from rebuilder.domain.model import TemplateId
from rebuilder.services.history import every, where_we_stand
from rebuilder.services.ports import Ports
from rebuilder.services.reconciler import Reconciler, ReconcileReport
from rebuilder.services.watch_and_act import watch_and_act
from tests.conftest import local_env

NEW_UBUNTU = estate.PATCH_DAY[estate.UBUNTU]
NEW_WINDOWS = estate.PATCH_DAY[estate.WINDOWS]
NEW_RHEL = estate.PATCH_DAY[estate.RHEL]
NEWER_RHEL = "8.10.2025021812"
ROOT = Path(__file__).resolve().parents[2]


def template_id(name: str) -> TemplateId:
    return TemplateId(
        f"/subscriptions/{estate.SUBSCRIPTION}/resourceGroups/{estate.TEMPLATES_RG}/providers/"
        f"Microsoft.VirtualMachineImages/imageTemplates/{name}"
    )


def stack_env(armsim: ArmSimulator, azurite: Azurite, **extra: str) -> dict[str, str]:
    return local_env(
        armsim,
        azurite.connection_string,
        REBUILDER_SCOPES=f"/subscriptions/{estate.SUBSCRIPTION}/resourceGroups/{estate.TEMPLATES_RG}",
        REBUILDER_TABLE_PREFIX=f"t{uuid.uuid4().hex[:12]}",
        REBUILDER_RETRY_BACKOFF_SECONDS="600",
        **extra,
    )


def seed_estate(services: Services, sim: SimControl) -> None:
    clients = AzureClients(services.settings)
    try:
        estate.publish_marketplace(sim)
        estate.create_identity(sim)
        estate.create(clients)
        estate.build_baselines(clients, sim)
    finally:
        clients.close()


@dataclass
class Driver:
    """Runs the service's passes the way its timers do, advancing simulated time in between."""

    services: Services
    sim: SimControl
    env: dict[str, str] = field(default_factory=dict)
    acted: list[ReconcileReport] = field(default_factory=list)
    wrap: Callable[[Ports], Ports] | None = None  # e.g. crashes injected at the ports

    def ports(self) -> Ports:
        ports = self.services.detection()
        return self.wrap(ports) if self.wrap else ports

    def watch(self) -> ReconcileReport:
        s = self.services
        _, acted = watch_and_act(
            self.ports(), s.settings.scopes, s.policy(), now=s.clock.now(), trigger="timer"
        )
        self.acted.append(acted)
        return acted

    def reconcile(self) -> ReconcileReport:
        s = self.services
        acted = Reconciler(self.ports(), s.policy(), now=s.clock.now()).run()
        self.acted.append(acted)
        return acted

    def until(self, done: Callable[[], bool], *, step: float = 300, limit: int = 200) -> int:
        """Tick (advance, watch, reconcile) until `done()`; the number of ticks taken."""
        for tick in range(1, limit + 1):
            self.sim.advance(step)
            self.watch()
            self.reconcile()
            if done():
                return tick
        raise AssertionError(f"not done after {limit} ticks: {self.open_builds()}")

    def open_builds(self) -> list[Build]:
        ledger = self.services.ledger
        return [ledger.get_build(b).record for s in where_we_stand(ledger) for b in s.open_builds]

    def idle(self) -> bool:
        return not self.open_builds()

    def builds(self, name: str) -> list[Build]:
        ledger = self.services.ledger
        return list(every(lambda token: ledger.list_builds(template_id(name), continuation=token)))

    def last(self, name: str) -> Build:
        return self.builds(name)[0]

    def runs(self) -> dict[str, int]:
        return {k.rsplit("/", 1)[-1]: v for k, v in self.sim.runs_started().items()}


def make_driver(armsim: ArmSimulator, sim: SimControl, azurite: Azurite, **extra: str) -> Driver:
    env = stack_env(armsim, azurite, **extra)
    services = bootstrap(env, clock=SimulatorClock(sim))
    seed_estate(services, sim)
    return Driver(services, sim, env)


def states_by_name(services: Services) -> dict[str, Any]:
    return {s.name: s for s in where_we_stand(services.ledger)}


FINISHED = {BuildState.PUBLISHED, BuildState.PARTIALLY_PUBLISHED, BuildState.FAILED, BuildState.CANCELED}


def cli(driver: Driver, *args: str) -> Any:
    """The CLI on the stack's simulated time, against the same ledger, its JSON output parsed."""
    return run_cli({**os.environ, **driver.env}, *args, module="devstack.simcli")


def run_cli(env: dict[str, str], *args: str, module: str = "rebuilder") -> Any:
    """`python -m MODULE ARGS` with `env` as the whole environment; exit 0 and JSON on stdout."""
    done = _run(env, args, module)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def cli_refused(driver: Driver, *args: str) -> str:
    """The CLI on the stack's simulated time, refusing the request (exit 1): what it said on stderr."""
    done = _run({**os.environ, **driver.env}, args, "devstack.simcli")
    assert done.returncode == 1, done.stdout
    return done.stderr


def _run(env: dict[str, str], args: tuple[str, ...], module: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
