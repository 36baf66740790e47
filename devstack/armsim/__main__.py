"""`python -m devstack.armsim [--port N] [--speed X]`: run the simulator until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import threading

from .server import ArmSimulator


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the rebuilder ARM simulator on loopback.")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--token", default="sim-token", help="bearer token the simulator accepts")
    parser.add_argument("--speed", type=float, default=0.0, help="simulated seconds per real second")
    args = parser.parse_args()
    with ArmSimulator(token=args.token, port=args.port) as sim:
        sim.world.clock.set_speed(args.speed)
        print(f"REBUILDER_ARM_ENDPOINT={sim.endpoint}")
        print(f"REBUILDER_ARM_TOKEN={sim.token}")
        print(f"REQUESTS_CA_BUNDLE={sim.ca_path}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
