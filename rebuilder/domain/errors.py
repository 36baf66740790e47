"""The two kinds of error that decide retries, and the specific ones callers act on.

Adapters translate Azure SDK exceptions into these (`raise ... from`); the domain never sees azure.*.
"""

from __future__ import annotations


class RebuilderError(Exception):
    """Base of every error the service raises on purpose."""


class TemporaryError(RebuilderError):
    """Worth retrying on a later pass: throttling, 5xx, timeouts. `delay` is the server's hint, if any."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(RebuilderError):
    """Retrying the same request will not help (4xx, validation)."""


class NotFound(PermanentError):
    """The resource does not exist (HTTP 404)."""


class Conflict(PermanentError):
    """The resource is busy or exists in another shape (HTTP 409), e.g. a run while a run is going."""


class StaleWrite(RebuilderError):
    """Someone else changed the record first (ETag mismatch): re-read and decide again."""


class InvalidRecord(PermanentError):
    """A value the ledger cannot store as given (e.g. longer than Table storage allows)."""


class InvalidContinuation(PermanentError):
    """A continuation token that this service did not issue."""
