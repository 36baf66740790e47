"""Who may do what in the simulated estate: Microsoft.Authorization's Permissions API
(Permissions_ListForResourceGroup, 2022-04-01) answers with the caller's permissions at a scope, one
`Permission` ({actions, notActions, dataActions, notDataActions}) per role it holds there.

The simulator has one caller (whoever holds its token). By default it holds every custom role of
infra/modules/roles.bicep, at every scope: a deployment that assigned them all. A control call sets
what it holds at a scope instead; that scope and every scope below it (by path) then answer that, a
stand-in for role assignments and their inheritance, which the simulator does not model one by one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .casing import fold

ROLES_BICEP = Path(__file__).resolve().parents[2] / "infra" / "modules" / "roles.bicep"


@cache
def deployed() -> tuple[dict[str, Any], ...]:
    """One Permission per role definition in roles.bicep, as Azure lists a role's permissions."""
    from pycep import BicepParser

    tree = BicepParser().parse(file_path=ROLES_BICEP)
    found: list[dict[str, Any]] = []
    for resource in tree["resources"].values():
        if resource["type"] != "Microsoft.Authorization/roleDefinitions":
            continue
        for permission in resource["config"]["properties"]["permissions"]:
            found.append(
                {
                    "actions": list(permission["actions"]),
                    "notActions": list(permission["notActions"]),
                    "dataActions": list(permission["dataActions"]),
                    "notDataActions": list(permission["notDataActions"]),
                }
            )
    return tuple(found)


def _key(scope: str) -> str:
    return "/" + "/".join(p for p in fold(scope).split("/") if p)


@dataclass
class Authorization:
    held: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # scope key -> permissions

    def set(self, scope: str, permissions: list[dict[str, Any]]) -> None:
        self.held[_key(scope)] = [
            {
                "actions": [str(a) for a in p.get("actions") or []],
                "notActions": [str(a) for a in p.get("notActions") or []],
                "dataActions": [str(a) for a in p.get("dataActions") or []],
                "notDataActions": [str(a) for a in p.get("notDataActions") or []],
            }
            for p in permissions
        ]

    def permissions(self, scope: str) -> list[dict[str, Any]]:
        """What the caller holds at `scope`: set there or at the nearest scope above, else deployed."""
        parts = _key(scope).split("/")
        while len(parts) > 1:
            found = self.held.get("/".join(parts))
            if found is not None:
                return copy.deepcopy(found)
            parts.pop()
        return copy.deepcopy(list(deployed()))
