"""The service's Clock on the simulator's time: the demo and tests run the real service code on
accelerated simulated time, so ledger timestamps and backoffs agree with what the simulator reports."""

from __future__ import annotations

from datetime import datetime

from devstack.armsim import SimControl


class SimulatorClock:
    def __init__(self, control: SimControl) -> None:
        self._control = control

    def now(self) -> datetime:
        return self._control.now()
