"""Crashes between steps: a port wrapper that lets the k-th state-changing call (counted across every
port) succeed and then kills the "process", so a test can crash a flow after each step in turn and
check that the next passes heal it."""

from __future__ import annotations

import threading
from typing import Any

from rebuilder.services.ports import Ports


class Crash(BaseException):
    """The process dies: not an Exception, so no handler in the service can swallow it."""


class CrashAfter:
    """Wraps a port: the k-th state-changing call (counted across ports) succeeds, then the process dies."""

    MUTATING = frozenset(
        {
            "claim_build",
            "save_build",
            "save_template_state",
            "start_run",
            "cancel_run",
            "delete_template",
            "create_template",
            "set_target_regions",
            "set_tags",
            "set_excluded_from_latest",
            "record_action",
        }
    )

    def __init__(self, inner: Any, plan: CrashPlan) -> None:
        self._inner = inner
        self._plan = plan

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in self.MUTATING:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            self._plan.step(name)
            return result

        return call


class CrashPlan:
    def __init__(self, at: int | None) -> None:
        self.at = at
        self.steps: list[str] = []
        self.crashed = False
        self._lock = threading.Lock()

    def step(self, name: str) -> None:
        with self._lock:
            self.steps.append(name)
            if self.at is not None and len(self.steps) == self.at and not self.crashed:
                self.crashed = True
                raise Crash(f"crash after step {self.at}: {name}")

    def wrap(self, ports: Ports) -> Ports:
        return Ports(
            CrashAfter(ports.imagebuilder, self),
            ports.marketplace,
            CrashAfter(ports.gallery, self),
            CrashAfter(ports.ledger, self),
        )
