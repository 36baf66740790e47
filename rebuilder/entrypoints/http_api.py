"""HTTP handlers, independent of the Functions types: requests in, `HttpResult` out.

Errors become `application/problem+json` (RFC 9457) here and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from rebuilder.bootstrap import Services
from rebuilder.settings import SettingsError

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})

    def json(self) -> str:
        return json.dumps(self.body, sort_keys=True)


def problem(status: int, title: str, detail: str, **extra: Any) -> HttpResult:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return HttpResult(status, body, {"Content-Type": PROBLEM_JSON, "Cache-Control": "no-store"})


def health(get_services: Callable[[], Services]) -> HttpResult:
    """Liveness plus configuration: names invalid settings (never their values)."""
    try:
        services = get_services()
    except SettingsError as error:
        names = sorted({p.split(":", 1)[0] for p in error.problems})
        return problem(
            503, "Invalid settings", f"{len(names)} setting(s) need attention.", invalid_settings=names
        )
    return HttpResult(
        200,
        {
            "status": "ok",
            "version": _version(),
            "scopes": len(services.settings.scopes),
        },
        {"Content-Type": "application/json", "Cache-Control": "no-store"},
    )


def _version() -> str:
    try:
        return version("rebuilder")
    except PackageNotFoundError:
        return "0.1.0"
