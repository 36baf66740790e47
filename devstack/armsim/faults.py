"""Fault injection and per-route call records for the ARM simulator."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from .errors import ArmError

_CODES = {
    429: (
        "TooManyRequests",
        "The request is being throttled as the limit has been reached for operation type.",
    ),
    500: ("InternalServerError", "Encountered internal server error. Diagnostic information: timestamp ''."),
    502: (
        "BadGateway",
        "The gateway did not receive a response from 'Microsoft.Compute' within the timeout.",
    ),
    503: ("ServiceUnavailable", "The service is unavailable. Please retry the request later."),
    504: ("GatewayTimeout", "The gateway did not receive a response within the specified time period."),
}


@dataclass
class FaultRule:
    """Matches requests by route name ('*' = any ARM route); answers with `status`, or only delays."""

    route: str = "*"
    status: int | None = None
    times: int | None = 1  # None = until cleared
    retry_after: float | None = None
    latency_ms: int = 0
    code: str | None = None
    message: str | None = None

    def matches(self, route: str) -> bool:
        return (self.route in ("*", route)) and (self.times is None or self.times > 0)

    def error(self) -> ArmError:
        assert self.status is not None
        default_code, default_message = _CODES.get(self.status, ("Error", "Injected fault."))
        headers = {}
        if self.retry_after is not None:
            retry = self.retry_after
            headers["Retry-After"] = str(int(retry)) if float(retry).is_integer() else str(retry)
        return ArmError(
            self.status, self.code or default_code, self.message or default_message, headers=headers
        )


@dataclass
class RequestRecord:
    route: str
    method: str
    path: str
    status: int
    at: float  # time.monotonic() when the request arrived


@dataclass
class FaultBook:
    rules: list[FaultRule] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    log: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=20_000))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self.rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def reset_counters(self) -> None:
        with self._lock:
            self.counters.clear()
            self.log.clear()

    def before(self, route: str) -> tuple[float, ArmError | None]:
        """Count the call; return the latency to apply and the injected error, if any."""
        latency = 0.0
        with self._lock:
            self.counters[route] += 1
            for rule in self.rules:
                if not rule.matches(route):
                    continue
                latency = max(latency, rule.latency_ms / 1000)
                if rule.status is not None:
                    if rule.times is not None:
                        rule.times -= 1
                    return latency, rule.error()
        return latency, None

    def record(self, route: str, method: str, path: str, status: int, at: float) -> None:
        with self._lock:
            self.log.append(RequestRecord(route, method, path, status, at))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "counters": dict(self.counters),
                "requests": [vars(r).copy() for r in self.log],
            }


def now_monotonic() -> float:
    return time.monotonic()
