"""What the ledger can store, checked before any write so both ledgers refuse the same values with a
message naming the field, instead of Table storage answering a bare 400 halfway through.

Pure. Table storage allows 64 KiB per string property (32K UTF-16 units) and 1 KiB keys; source
versions become keys, so they are kept short.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from .errors import InvalidRecord, PermanentError

MAX_TEXT = 32_000  # UTF-16 code units
MAX_VERSION = 128
MAX_IDEMPOTENCY_KEY = 1_000
MAX_PAGE = 1_000  # Table storage returns at most 1,000 entities per page: so do both ledgers


def check_storable(record: Any, *, what: str = "") -> None:
    """Raise InvalidRecord for a string too long to store, a naive timestamp, or a bad version."""
    label = what or type(record).__name__
    for item in dataclasses.fields(record):
        value = getattr(record, item.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_storable(value, what=f"{label}.{item.name}")
        elif isinstance(value, str) and len(value.encode("utf-16-le")) > 2 * MAX_TEXT:
            raise InvalidRecord(f"{label}.{item.name} is too long to record ({len(value)} characters)")
        elif isinstance(value, datetime) and value.utcoffset() is None:
            raise InvalidRecord(f"{label}.{item.name} must be an aware UTC timestamp, not naive")
        elif isinstance(value, tuple):
            for element in value:
                if dataclasses.is_dataclass(element) and not isinstance(element, type):
                    check_storable(element, what=f"{label}.{item.name}")


def check_version(version: str) -> None:
    if not version or len(version) > MAX_VERSION or not version.isprintable():
        raise InvalidRecord(
            f"source version {version[:60]!r} cannot be recorded: 1 to {MAX_VERSION} printable characters"
        )


def check_page_size(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise PermanentError(f"a page holds 1 to {MAX_PAGE} items, not {limit}")


def check_idempotency_key(key: str) -> None:
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidRecord(f"an idempotency key has 1 to {MAX_IDEMPOTENCY_KEY} characters, not {len(key)}")
