"""Region names compared normalised: Azure answers "East US 2" where the request said `eastus2`."""

from __future__ import annotations

from typing import NewType

from .casing import fold

Region = NewType("Region", str)


def region(name: str) -> Region:
    return Region(fold("".join(name.split())))
