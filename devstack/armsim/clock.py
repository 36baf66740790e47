"""Simulated time for the ARM simulator: frozen by default, advanced or accelerated on request."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

DEFAULT_START = datetime(2026, 11, 10, 6, 0, tzinfo=UTC)  # a Patch Tuesday morning


class SimClock:
    """now() = start + manual advances + speed x real seconds elapsed since the speed was set."""

    def __init__(self, start: datetime = DEFAULT_START, speed: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._base = start
        self._speed = speed
        self._real_anchor = time.monotonic()

    def now(self) -> datetime:
        with self._lock:
            return self._now_locked()

    def _now_locked(self) -> datetime:
        elapsed = (time.monotonic() - self._real_anchor) * self._speed
        return self._base + timedelta(seconds=elapsed)

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the simulated clock never goes back")
        with self._lock:
            self._base = self._now_locked() + timedelta(seconds=seconds)
            self._real_anchor = time.monotonic()
            return self._base

    def set_speed(self, speed: float) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        with self._lock:
            self._base = self._now_locked()
            self._real_anchor = time.monotonic()
            self._speed = speed

    @property
    def speed(self) -> float:
        return self._speed


def iso(moment: datetime, *, digits: int = 7, zulu: bool = True) -> str:
    """ARM's timestamp shapes, which differ per resource provider: UTC with 1 to 9 fractional digits
    (seven by default), ending in `Z` or `+00:00`."""
    utc = moment.astimezone(UTC)
    fraction = f"{utc.microsecond:06d}000"[:digits]
    return f"{utc:%Y-%m-%dT%H:%M:%S}" + (f".{fraction}" if digits else "") + ("Z" if zulu else "+00:00")
