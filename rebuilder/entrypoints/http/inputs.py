"""What a request may carry, checked before anything is read or written: bounded bodies of strict JSON
(an object, known fields only, no duplicates), names and ids by ARM's grammar, known query parameters
with values of the right shape. Every refusal says what was wrong, naming the field."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from rebuilder.domain.builds import NOTE_LIMIT
from rebuilder.domain.casing import fold

from .messages import ApiRequest
from .problems import BadRequest, TooLarge, UnsupportedMediaType

MAX_BODY = 16 * 1024
MAX_KEY = 200
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# Every pattern here is matched whole (fullmatch): `$` would let a trailing newline through.
# Image template names: 1-64 of letters, digits, '_', '-' and '.', starting with a letter or digit.
TEMPLATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Resource groups: 1-90 of letters (any script), digits, '_', '-', '.', '(' and ')'; not ending in '.'.
_GROUP = r"[\w\-.()]{0,89}[\w\-()]"
TEMPLATE_ID = re.compile(
    rf"/subscriptions/{_GUID}/resourceGroups/{_GROUP}/providers/Microsoft\.VirtualMachineImages/"
    r"imageTemplates/[A-Za-z0-9][A-Za-z0-9_.-]{0,63}",
    re.IGNORECASE,
)
_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY}}}")  # visible ASCII, as HTTP header values go
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # nothing in the ledger is older
_T = TypeVar("_T")


def json_body(
    request: ApiRequest, fields: Mapping[str, type], *, required: Collection[str] = ()
) -> dict[str, Any]:
    """The body as a JSON object with only `fields` (name → type) and every `required` one. An empty
    body is an empty object when nothing is required. Always sent as application/json, empty or not: a
    browser's cross-site form post (text/plain, no preflight) never reaches a handler."""
    body = request.body
    declared = request.header("content-length")
    if len(body) > MAX_BODY or _declared_size(declared) > MAX_BODY:
        raise TooLarge(f"the body is larger than {MAX_BODY} bytes")
    kind = fold((request.header("content-type") or "").split(";", 1)[0].strip())
    if kind != "application/json":
        raise UnsupportedMediaType("the body must be sent as application/json, even when empty")
    if not body.strip():
        document: Any = {}
    else:
        try:
            document = json.loads(
                body.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_refuse
            )
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise BadRequest(f"the body is not valid JSON: {_short(error)}") from None
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(document) - set(fields))
    if unknown:
        raise BadRequest(
            f"unknown field(s): {', '.join(_quote(u) for u in unknown[:10])}", fields=sorted(fields)
        )
    missing = sorted(set(required) - set(document))
    if missing:
        raise BadRequest(f"missing field(s): {', '.join(missing)}")
    for name, value in document.items():
        if not isinstance(value, fields[name]) or isinstance(value, bool) is not (fields[name] is bool):
            raise BadRequest(f"{name} must be a {fields[name].__name__}")
    return document


def _declared_size(header: str | None) -> int:
    """Content-Length as sent (0 when absent or not a number: the body's own length decides)."""
    if not header or not (header.isascii() and header.isdigit()):
        return 0
    return MAX_BODY + 1 if len(header) > 9 else int(header)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name in found:
            raise ValueError(f"field {name[:50]!r} appears twice")
        found[name] = value
    return found


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def template_ref(value: str, *, field: str = "template") -> str:
    """A template's name, or its resource id."""
    text = value.strip()
    if TEMPLATE_NAME.fullmatch(text) or TEMPLATE_ID.fullmatch(text):
        return text
    raise BadRequest(
        f"{field} must be an image template name (1-64 letters, digits, '_', '-', '.') or an image "
        "template resource id (/subscriptions/<id>/resourceGroups/<group>/providers/"
        "Microsoft.VirtualMachineImages/imageTemplates/<name>)"
    )


RESOURCE_GROUP = re.compile(_GROUP)


def resource_group(value: str) -> str:
    if not RESOURCE_GROUP.fullmatch(value):
        raise BadRequest(
            "resource_group must be 1-90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'"
        )
    return value


SUBSCRIPTION = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


def subscription(value: str) -> str:
    if not SUBSCRIPTION.fullmatch(value):
        raise BadRequest("subscription must be a subscription id (a GUID)")
    return value


def template_name(value: str) -> str:
    if not TEMPLATE_NAME.fullmatch(value):
        raise BadRequest("the template name must be 1-64 letters, digits, '_', '-' or '.'")
    return value


GALLERY_VERSION = re.compile(r"[0-9]{1,10}\.[0-9]{1,10}\.[0-9]{1,10}")


def version_name(value: str) -> str:
    """A gallery image version name (Major.Minor.Patch), or "" for whichever candidate awaits."""
    if value and not GALLERY_VERSION.fullmatch(value):
        raise BadRequest("version must be a gallery image version name: Major.Minor.Patch (e.g. 1.0.2)")
    return value


def note(value: str, *, field: str = "reason") -> str:
    """Free text a person wrote: printable (no control characters that would forge log lines or rows)."""
    if len(value) > NOTE_LIMIT:
        raise BadRequest(f"{field} has {len(value)} characters; at most {NOTE_LIMIT}")
    if not value.isprintable():
        raise BadRequest(f"{field} must be printable text (no control characters or line breaks)")
    return value.strip()


def idempotency_key(request: ApiRequest) -> str:
    raw = request.header("idempotency-key")
    if raw is None:
        return ""
    if not _KEY.fullmatch(raw):
        raise BadRequest(f"Idempotency-Key must be 1-{MAX_KEY} visible ASCII characters")
    return raw


def only(params: Mapping[str, str], allowed: Collection[str]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise BadRequest(
            f"unknown query parameter(s): {', '.join(_quote(u) for u in unknown[:10])}",
            allowed=sorted(allowed),
        )


def moment(params: Mapping[str, str], name: str) -> datetime | None:
    """An ISO-8601 time with its offset (e.g. 2026-12-01T00:00:00Z), as aware UTC."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        if len(raw) > 40:
            raise ValueError
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        if parsed.utcoffset() is None:
            raise BadRequest(f"{name} must say its offset (Z for UTC)")
        moment_utc = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadRequest(
            f"{name} must be an ISO-8601 time with an offset, e.g. 2026-12-01T00:00:00Z"
        ) from None
    if moment_utc < EARLIEST:
        raise BadRequest(f"{name} must be 1970 or later")
    return moment_utc


def whole(params: Mapping[str, str], name: str, *, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def choices(params: Mapping[str, str], name: str, allowed: Mapping[str, _T]) -> frozenset[_T]:
    """A comma-separated list of allowed values (compared case-insensitively)."""
    raw = params.get(name)
    if raw is None:
        return frozenset()
    lowered = {fold(k): v for k, v in allowed.items()}
    picked = [fold(part.strip()) for part in raw.split(",")]
    bad = [p for p in picked if p not in lowered]
    if bad or not picked:
        raise BadRequest(f"{name} must be one or more of {', '.join(allowed)}, comma-separated")
    return frozenset(lowered[p] for p in picked)


def one_of(params: Mapping[str, str], name: str, allowed: Collection[str], *, default: str) -> str:
    raw = params.get(name, default)
    if raw not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(allowed)}")
    return raw


def _quote(text: str) -> str:
    return json.dumps(text[:50])


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__
