"""Every error the API answers, as `application/problem+json` (RFC 9457), mapped to a status code
here and nowhere else. A refusal names what was wrong with the request; a failure names only the
correlation id to look up in the logs — never a stack trace or an internal value.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from rebuilder.domain.builds import InvalidBuildId
from rebuilder.domain.errors import (
    Conflict,
    InvalidContinuation,
    InvalidRecord,
    NotFound,
    PermanentError,
    StaleWrite,
    TemporaryError,
)
from rebuilder.domain.releases import NoFallback
from rebuilder.services.requests import Ambiguous, BuildInProgress, KeyReused, NotManaged, TemplateDisabled
from rebuilder.settings import SettingsError

from ..views import build_summary
from .messages import PROBLEM_JSON, HttpResult

log = logging.getLogger("rebuilder.http")


class ApiError(Exception):
    """A refusal the API decides itself (input, authentication, authorisation)."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    status, title = 401, "Unauthorized"


class Forbidden(ApiError):
    status, title = 403, "Forbidden"


class Unprotected(ApiError):
    status, title = 503, "App Service Authentication is not enabled"


class TooLarge(ApiError):
    status, title = 413, "Content too large"


class UnsupportedMediaType(ApiError):
    status, title = 415, "Unsupported media type"


# (error type, status, title, whether its message may be shown): the first match wins, so the more
# specific types come first.
_MAPPING: tuple[tuple[type[BaseException], int, str, bool], ...] = (
    (BuildInProgress, 409, "A build is already open for this template", True),
    (InvalidBuildId, 400, "Not a build id", True),
    (InvalidContinuation, 400, "Invalid continuation token", True),
    (Ambiguous, 400, "Ambiguous template name", True),
    (NotManaged, 422, "Template not managed by rebuilder", True),
    (KeyReused, 422, "Idempotency-Key names another request", True),
    (TemplateDisabled, 409, "Template disabled", True),
    (NotFound, 404, "Not found", True),
    (InvalidRecord, 400, "Value cannot be recorded", True),
    (StaleWrite, 409, "Changed meanwhile; try again", False),
    (Conflict, 409, "Conflict", True),
    (NoFallback, 409, "Nothing to fall back to", True),
    (TemporaryError, 503, "Azure is busy or unavailable; try again later", False),
    (SettingsError, 503, "The service is not configured", False),
    (PermanentError, 502, "Azure refused a call this request needed", False),
)


def problem(status: int, title: str, detail: str, correlation_id: str, **extra: Any) -> HttpResult:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "correlation_id": correlation_id,
        **extra,
    }
    headers = {"X-Correlation-Id": correlation_id} if correlation_id else {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="rebuilder"'
    return HttpResult(status, json.dumps(body, sort_keys=True, default=str).encode(), PROBLEM_JSON, headers)


def from_error(error: BaseException, correlation_id: str) -> HttpResult:
    """The one place an error becomes a status code."""
    if isinstance(error, ApiError):
        return problem(error.status, error.title, error.detail, correlation_id, **error.extra)
    for kind, status, title, shown in _MAPPING:
        if isinstance(error, kind):
            if status >= 500 or not shown:
                log.warning("%s (%s): %s", title, correlation_id, loggable(str(error)))
            detail = _bounded(str(error)) if shown else f"see the service's logs for {correlation_id}"
            extra: dict[str, Any] = {}
            if isinstance(error, BuildInProgress):
                extra["build"] = build_summary(error.build)  # the caller may lack the read role
            result = problem(status, title, detail, correlation_id, **extra)
            if isinstance(error, TemporaryError):
                hint = error.delay if error.delay is not None and math.isfinite(error.delay) else 30
                delay = min(max(1, int(hint)), 3600)
                result = HttpResult(
                    result.status,
                    result.body,
                    result.content_type,
                    {**result.headers, "Retry-After": str(delay)},
                )
            return result
    log.error("unexpected failure (%s)", correlation_id, exc_info=error)
    return problem(500, "Internal error", f"see the service's logs for {correlation_id}", correlation_id)


def loggable(text: str, limit: int = 500) -> str:
    """`text` safe for a log line: control characters escaped (no forged lines), bounded."""
    escaped = "".join(
        ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}"
        for ch in text
    )
    return _bounded(escaped, limit)


def _bounded(text: str, limit: int = 1000) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
