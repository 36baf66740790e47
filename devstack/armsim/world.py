"""The simulated Azure estate behind the ARM simulator: one lock, one clock, lazily advanced.

Nothing runs in the background: every request first brings the world up to the simulated `now`
(`tick`), so what a client sees depends only on the simulated clock, never on thread timing.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .authorization import Authorization
from .clock import SimClock, iso
from .faults import FaultBook
from .gallery import Gallery
from .identities import Identities
from .imagebuilder import ImageBuilder
from .marketplace import Marketplace

OperationCheck = Callable[[], tuple[str, dict[str, Any] | None]]


@dataclass
class Operation:
    """An Azure-AsyncOperation: polled until `check` says Succeeded, Failed or Canceled."""

    id: str
    started: str
    check: OperationCheck
    now: Callable[[], str]
    min_polls: int = 1
    polls: int = 0
    ended: str | None = None

    def body(self) -> dict[str, Any]:
        self.polls += 1
        status, error = ("InProgress", None) if self.polls <= self.min_polls else self.check()
        body: dict[str, Any] = {"id": self.id, "name": self.id, "status": status, "startTime": self.started}
        if status != "InProgress":
            self.ended = self.ended or self.now()
            body["endTime"] = self.ended
        if error is not None:
            body["error"] = error
        return body


@dataclass
class Config:
    page_size: int = 50


@dataclass
class World:
    clock: SimClock = field(default_factory=SimClock)
    faults: FaultBook = field(default_factory=FaultBook)
    config: Config = field(default_factory=Config)
    marketplace: Marketplace = field(default_factory=Marketplace)
    gallery: Gallery = field(default_factory=Gallery)
    operations: dict[str, Operation] = field(default_factory=dict)
    topics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # Event Grid topic -> events
    authorization: Authorization = field(default_factory=Authorization)
    identities: Identities = field(default_factory=Identities)
    lock: threading.RLock = field(default_factory=threading.RLock)
    imagebuilder: ImageBuilder = field(init=False)

    def __post_init__(self) -> None:
        self.imagebuilder = ImageBuilder(self.marketplace, self.gallery)

    def tick(self) -> None:
        now = self.clock.now()
        self.gallery.tick(now)
        self.imagebuilder.tick(now)

    def new_operation(self, check: OperationCheck, *, min_polls: int = 1) -> Operation:
        operation = Operation(
            id=str(uuid.uuid4()),
            started=iso(self.clock.now(), digits=9),  # operation statuses carry nine digits
            check=check,
            now=lambda: iso(self.clock.now(), digits=9),
            min_polls=min_polls,
        )
        self.operations[operation.id] = operation
        return operation
