"""Requests and responses as the handlers see them: plain values, no Functions types."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rebuilder.domain.casing import fold

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
HTML = "text/html"
CSV = "text/csv"
JSONL = "application/x-ndjson"

_ALWAYS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # Answers are data, never a page: nothing in one may load or run (the report sets its own policy).
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
}


@dataclass(frozen=True)
class ApiRequest:
    method: str
    url: str  # as the host saw it: where links in answers point
    route_params: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased
    body: bytes = b""
    correlation_id: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(fold(name))

    @property
    def base(self) -> str:
        """scheme://host[:port] of the request, for Location and next links."""
        scheme, _, rest = self.url.partition("://")
        host = rest.split("/", 1)[0]
        return f"{scheme}://{host}" if scheme and host else ""


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: bytes
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)

    def all_headers(self) -> dict[str, str]:
        return {**_ALWAYS, **self.headers, "Content-Type": f"{self.content_type}; charset=utf-8"}

    def json(self) -> Any:
        return json.loads(self.body)


def json_result(status: int, document: Any, *, headers: Mapping[str, str] | None = None) -> HttpResult:
    body = json.dumps(document, sort_keys=True, default=_iso).encode()
    return HttpResult(status, body, JSON, dict(headers or {}))


def _iso(value: Any) -> str:
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)
