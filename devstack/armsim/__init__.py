"""ARM simulator (dev-only): the Azure management routes rebuilder calls, over HTTPS, on loopback.

Speaks the wire shapes and API versions of the pinned azure-mgmt-compute and azure-mgmt-imagebuilder,
with simulated time, long-running operations, throttling and faults. Never deployed (`.funcignore`).
"""

from .control import SimControl
from .server import ArmSimulator

__all__ = ["ArmSimulator", "SimControl"]
