"""`python -m devstack.simcli COMMAND …`: the service's CLI on the local stack's simulated
time (the simulator at REBUILDER_ARM_ENDPOINT, trusted through REQUESTS_CA_BUNDLE), so what it
records and decides agrees with the runs the simulator reports. Dev-only, like the rest of devstack."""

from __future__ import annotations

import os
import sys

from devstack.armsim import SimControl
from devstack.simclock import SimulatorClock
from rebuilder.entrypoints.cli import main as cli


def main(argv: list[str]) -> int:
    endpoint, ca = os.environ.get("REBUILDER_ARM_ENDPOINT", ""), os.environ.get("REQUESTS_CA_BUNDLE", "")
    if not endpoint or not ca:
        print(
            "simcli needs REBUILDER_ARM_ENDPOINT and REQUESTS_CA_BUNDLE (the local simulator)",
            file=sys.stderr,
        )
        return 2
    return cli(argv, clock=SimulatorClock(SimControl(endpoint, ca)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
