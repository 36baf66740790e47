"""Who is calling: the App Service Authentication principal, on top of the function key.

App Service Authentication (Easy Auth) validates the caller's token and hands the app the principal
as `X-MS-CLIENT-PRINCIPAL`: base64 of JSON `{auth_typ, claims: [{typ, val}], name_typ, role_typ}`,
roles as `roles` claims (or claims of type `role_typ`). It strips that header from what clients send,
so the app trusts it only behind Easy Auth — which infra/ turns on for every route but health.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .problems import Forbidden, Unauthorized

PRINCIPAL_HEADER = "x-ms-client-principal"
MAX_PRINCIPAL = 16_384  # encoded bytes: far above any real principal, far below what hurts
_OBJECT_ID = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
_NAMES = ("preferred_username", "name", "upn", "appid", "azp")


@dataclass(frozen=True)
class Principal:
    name: str  # how people know the caller ('' when the token named nobody)
    object_id: str
    roles: frozenset[str]

    @property
    def who(self) -> str:
        return self.name or self.object_id


def principal(headers: Mapping[str, str]) -> Principal:
    """The caller, or Unauthorized (no principal, or one that cannot be read)."""
    raw = headers.get(PRINCIPAL_HEADER, "").strip()
    if not raw:
        raise Unauthorized("this route needs a signed-in caller (App Service Authentication principal)")
    if len(raw) > MAX_PRINCIPAL:
        raise Unauthorized("the client principal is too large to be one")
    try:
        document = json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise Unauthorized("the client principal is not base64-encoded JSON") from None
    claims = _claims(document)
    provider = _text(document.get("auth_typ"))
    if provider != "aad":  # Easy Auth may front other providers too: roles are Entra ID's alone
        raise Unauthorized(
            f"the principal comes from the identity provider {provider[:40]!r}; only Microsoft Entra ID "
            "('aad') callers are accepted"
        )
    role_type = _text(document.get("role_typ")) if isinstance(document, dict) else ""
    name_type = _text(document.get("name_typ")) if isinstance(document, dict) else ""
    roles = frozenset(v for t, v in claims if t == "roles" or (role_type and t == role_type))
    object_id = next((v for t, v in claims if t in _OBJECT_ID), "")
    named = [v for t, v in claims if name_type and t == name_type]
    name = named[0] if named else next((v for n in _NAMES for t, v in claims if t == n), "")
    if not (name or object_id or roles):
        raise Unauthorized("the client principal names nobody")
    return Principal(name[:200], object_id[:100], roles)


def _claims(document: Any) -> list[tuple[str, str]]:
    if not isinstance(document, dict) or not isinstance(document.get("claims"), list):
        raise Unauthorized("the client principal has no claims")
    found = []
    for claim in document["claims"]:
        if not isinstance(claim, dict):
            raise Unauthorized("the client principal's claims are not {typ, val} objects")
        typ, val = claim.get("typ"), claim.get("val")
        if not isinstance(typ, str) or not isinstance(val, str):
            raise Unauthorized("the client principal's claims are not {typ, val} strings")
        if val.isprintable():
            found.append((typ, val))
    return found


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def require(caller: Principal, role: str) -> None:
    if role not in caller.roles:
        raise Forbidden(f"this route needs the app role {role!r}, which the caller does not have")
