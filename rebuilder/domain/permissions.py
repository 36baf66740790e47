"""Azure RBAC as the service needs it: every action it must be allowed, the custom role that grants
each and where that role is assigned (stated once, here; tests/unit/test_required_actions.py holds it
to infra/modules/roles.bicep and infra/main.bicep), and whether a caller's permissions allow an action.

Pure: no I/O. What the caller holds comes from ARM's Permissions API (the adapter reads it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

ROLES_BICEP = "infra/modules/roles.bicep"


class Holder(StrEnum):
    """Who a role is assigned to (infra/main.bicep)."""

    APP = "the app's identity"
    AIB = "the AIB identity"


class Where(StrEnum):
    """Where a role is assigned, in the terms of what the service is configured with."""

    TEMPLATES = "template scope"  # each REBUILDER_SCOPES entry
    GALLERY = "gallery resource group"  # of each gallery the managed templates use
    SUBSCRIPTION = "subscription"  # of each scope: Marketplace versions are a subscription resource
    IDENTITY = "AIB identity"  # the identity resource itself


@dataclass(frozen=True)
class Role:
    key: str  # the roleDefinitions resource's symbolic name in roles.bicep
    name: str  # its roleName, after the deployment's prefix
    holder: Holder
    where: Where
    actions: tuple[str, ...]

    @property
    def deployed_name(self) -> str:
        return f"<prefix> {self.name}"


ROLES: tuple[Role, ...] = (
    Role(
        "templateOperator",
        "rebuilder template operator",
        Holder.APP,
        Where.TEMPLATES,
        (
            "Microsoft.VirtualMachineImages/imageTemplates/read",
            "Microsoft.VirtualMachineImages/imageTemplates/runOutputs/read",
            "Microsoft.VirtualMachineImages/imageTemplates/run/action",
            "Microsoft.VirtualMachineImages/imageTemplates/cancel/action",
            "Microsoft.VirtualMachineImages/imageTemplates/write",
            "Microsoft.VirtualMachineImages/imageTemplates/delete",
        ),
    ),
    Role(
        "galleryReplicator",
        "rebuilder gallery replicator",
        Holder.APP,
        Where.GALLERY,
        (
            "Microsoft.Compute/galleries/read",
            "Microsoft.Compute/galleries/images/read",
            "Microsoft.Compute/galleries/images/versions/read",
            "Microsoft.Compute/galleries/images/versions/write",
        ),
    ),
    Role(
        "marketplaceReader",
        "rebuilder marketplace reader",
        Holder.APP,
        Where.SUBSCRIPTION,
        ("Microsoft.Compute/locations/publishers/artifacttypes/offers/skus/versions/read",),
    ),
    Role(
        "identityAssigner",
        "rebuilder AIB identity assigner",
        Holder.APP,
        Where.IDENTITY,
        ("Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",),
    ),
    # Held by the AIB identity, not by the service: the doctor, which sees only its own caller's
    # permissions, names it and cannot check it.
    Role(
        "imageBuilder",
        "rebuilder image builder",
        Holder.AIB,
        Where.GALLERY,
        (
            "Microsoft.Compute/galleries/read",
            "Microsoft.Compute/galleries/images/read",
            "Microsoft.Compute/galleries/images/versions/read",
            "Microsoft.Compute/galleries/images/versions/write",
            "Microsoft.Compute/images/read",
            "Microsoft.Compute/images/write",
            "Microsoft.Compute/images/delete",
        ),
    ),
)


def app_roles(where: Where) -> tuple[Role, ...]:
    """The roles the service's own identity needs at a place of this kind."""
    return tuple(r for r in ROLES if r.holder is Holder.APP and r.where is where)


def required_actions() -> tuple[str, ...]:
    """Every action the service's own identity needs, somewhere."""
    return tuple(dict.fromkeys(a for r in ROLES if r.holder is Holder.APP for a in r.actions))


@dataclass(frozen=True)
class Permission:
    """One entry of ARM's Permissions API answer (one per role the caller holds at the scope)."""

    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()


@cache
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(p) for p in text.split("*")) + "$", re.IGNORECASE)


def matches(pattern: str, action: str) -> bool:
    """Whether an action pattern (`*` matches any run of characters, '/' included) covers `action`,
    compared case-insensitively, as Azure RBAC compares operations."""
    return _pattern(pattern.strip()).match(action.strip()) is not None


def allows(permissions: Iterable[Permission], action: str) -> bool:
    """Effective permission, as Azure RBAC computes it: an action is allowed when some entry's
    `actions` match it and that same entry's `notActions` do not. NotActions are not deny rules: they
    only subtract from their own entry, so another role granting the action still allows it
    (Microsoft Learn, "Understand Azure role definitions": Actions, NotActions;
    https://learn.microsoft.com/azure/role-based-access-control/role-definitions#notactions). Deny
    assignments are not in the Permissions API's answer and so not considered."""
    return any(
        any(matches(p, action) for p in entry.actions)
        and not any(matches(p, action) for p in entry.not_actions)
        for entry in permissions
    )


@dataclass(frozen=True)
class MissingAction:
    action: str
    role: Role  # the custom role that grants it at this kind of place


def missing(permissions: Iterable[Permission], where: Iterable[Where]) -> tuple[MissingAction, ...]:
    """Each action the service needs at a scope that is all of `where` and that `permissions` do not
    allow, with the role that grants it there (in the roles' order)."""
    held, wanted = tuple(permissions), set(where)
    found: dict[str, MissingAction] = {}
    for kind in Where:
        if kind not in wanted:
            continue
        for role in app_roles(kind):
            for action in role.actions:
                if action not in found and not allows(held, action):
                    found[action] = MissingAction(action, role)
    return tuple(found.values())
