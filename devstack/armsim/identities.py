"""User-assigned managed identities (Microsoft.ManagedIdentity 2023-01-31, UserAssignedIdentities_Get):
the ones a control call created, as a platform team's deployment would have (the simulator serves no
PUT: rebuilder never creates identities). Their principal and client ids are the ones an image
template's identity block shows for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .casing import fold
from .errors import ArmError
from .imagebuilder import _fake_guid  # the ids a template's identity block shows for the identity

TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@dataclass
class Identities:
    known: dict[str, tuple[str, str]] = field(default_factory=dict)  # lower-cased id -> (id, location)

    def create(self, identity_id: str, location: str = "westeurope") -> None:
        parts = [p for p in identity_id.split("/") if p]
        if len(parts) != 8 or [fold(p) for p in parts[::2]] != [
            "subscriptions",
            "resourcegroups",
            "providers",
            "userassignedidentities",
        ]:
            raise ArmError(400, "BadControlRequest", f"{identity_id!r} is not a user-assigned identity id.")
        if fold(parts[5]) != "microsoft.managedidentity":
            raise ArmError(400, "BadControlRequest", f"{identity_id!r} is not a user-assigned identity id.")
        self.known[fold(identity_id)] = (identity_id, location)

    def delete(self, identity_id: str) -> bool:
        return self.known.pop(fold(identity_id), None) is not None

    def get(self, sub: str, rg: str, name: str) -> dict[str, Any]:
        wanted = fold(f"/subscriptions/{sub}/resourcegroups/{rg}/providers/{TYPE}/{name}")
        found = self.known.get(wanted)
        if found is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource '{TYPE}/{name}' under resource group '{rg}' was not found.",
            )
        identity_id, location = found
        return {
            "id": identity_id,
            "name": name,
            "type": TYPE,
            "location": location,
            "tags": {},
            "properties": {
                "tenantId": TENANT,
                "principalId": _fake_guid("principal", identity_id),
                "clientId": _fake_guid("client", identity_id),
            },
        }
