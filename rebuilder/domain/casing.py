"""How Azure compares names and ids: case-insensitively in ASCII only.

ARM matches resource group names, resource ids and tag names without regard to ASCII case; it does
not fold other scripts. `str.lower()` folds far more — the Kelvin sign (U+212A) becomes `k`, the
dotted capital I (U+0130) becomes `i̇` — so `rg-\u212a` would pass a scope check for `rg-k`, a group it
is not. Every comparison and map key of names and ids goes through `fold`.

Sources: Microsoft Learn, "Naming rules and restrictions for Azure resources" (resource names are
case-insensitive unless noted); the ASCII-only fold is the finding of the security review that asked for
it (issue tracker). No Microsoft statement was found on how other scripts compare; folding less than
Azure may call two spellings different, never two different groups the same.
"""

from __future__ import annotations

import string

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def fold(text: str) -> str:
    """`text` with A-Z lowered and every other character as it is."""
    return text.translate(_ASCII_LOWER)
