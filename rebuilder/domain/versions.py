"""Source versions ordered numerically, dot by dot — never as text.

`20348.2849.241106` is newer than `20348.587.220303` although text order says otherwise. Parts that are
not digits (never seen in Marketplace or gallery versions, but possible in hostile input) sort after
numeric ones; the full text breaks ties ('1.01' vs '1.1') so the order is total.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

_V = TypeVar("_V", bound=str)


def version_key(version: str) -> tuple[tuple[tuple[int, int, str], ...], str]:
    parts = tuple((0, int(p), "") if p.isascii() and p.isdigit() else (1, 0, p) for p in version.split("."))
    return parts, version


def newest(versions: Iterable[_V]) -> _V | None:
    return max(versions, key=version_key, default=None)


def ordered(versions: Iterable[_V]) -> list[_V]:
    return sorted(versions, key=version_key)
