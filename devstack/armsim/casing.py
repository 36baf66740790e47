"""How ARM compares names and ids: case-insensitively in ASCII only (a resource group `rg-\u212a`,
with the Kelvin sign, is not `rg-k`, though `str.lower()` makes it so). Kept apart from rebuilder's own
`rebuilder/domain/casing.py` on purpose: the simulator stands for Azure, not for the service.

Source: Microsoft Learn, "Naming rules and restrictions for Azure resources" (names are case-insensitive
unless noted). That the fold is ASCII-only is the security review's finding, not a published statement:
no Microsoft document says how letters outside ASCII compare."""

from __future__ import annotations

import string

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def fold(text: str) -> str:
    return text.translate(_ASCII_LOWER)
