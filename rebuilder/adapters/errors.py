"""Azure SDK exceptions translated into the service's two kinds of error (plus the specific ones)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rebuilder.domain.errors import Conflict, NotFound, PermanentError, StaleWrite, TemporaryError


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Run an SDK call; re-raise its failure as TemporaryError/PermanentError naming `action`."""
    from azure.core.exceptions import (
        HttpResponseError,
        ResourceModifiedError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except ResourceNotFoundError as error:
        raise NotFound(f"{action}: {_message(error)}") from error
    except ResourceModifiedError as error:
        raise StaleWrite(f"{action}: {_message(error)}") from error
    except HttpResponseError as error:
        status = error.status_code or 0
        if status == 409:
            raise Conflict(f"{action}: {_message(error)}") from error
        if status in (408, 429) or status >= 500:
            raise TemporaryError(
                f"{action}: HTTP {status} {_message(error)}", delay=_retry_after(error)
            ) from error
        raise PermanentError(f"{action}: HTTP {status} {_message(error)}") from error
    except (ServiceRequestError, ServiceResponseError) as error:
        raise TemporaryError(f"{action}: {type(error).__name__}: {error}") from error


def _message(error: Exception) -> str:
    inner = getattr(error, "error", None)
    code, message = getattr(inner, "code", None), getattr(inner, "message", None)
    if code or message:
        return f"{code}: {message}"
    return str(getattr(error, "message", None) or error).splitlines()[0]


def _retry_after(error: Exception) -> float | None:
    response = getattr(error, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
