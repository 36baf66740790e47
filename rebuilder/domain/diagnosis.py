"""The doctor's findings: one `Check` per thing looked at, passing or failing, each failure with its
fix in words. Pure: rebuilder/services/doctor.py gathers the facts, these functions judge them and
say what was found — and only what was checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from .model import GalleryImageDefinition, ManagedIdentity
from .permissions import (
    ROLES,
    ROLES_BICEP,
    Holder,
    MissingAction,
    Permission,
    Role,
    Where,
    app_roles,
    missing,
)


class CheckKind(StrEnum):
    SETTINGS = "settings"
    ARM_AUTH = "ARM token"
    TEMPLATES = "templates"
    PERMISSIONS = "permissions"
    GALLERY_IMAGE = "gallery image"
    AIB_IDENTITY = "AIB identity"
    LEDGER = "ledger"
    EVENTS_TOPIC = "events topic"


@dataclass(frozen=True)
class Check:
    kind: CheckKind
    subject: str  # what was looked at: a scope, a resource id, a setting
    ok: bool
    detail: str  # what was found
    fix: str = ""  # what to do about it, when it failed
    missing: tuple[MissingAction, ...] = ()  # PERMISSIONS: each action not allowed, with its role


@dataclass(frozen=True)
class Diagnosis:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)


def _role_words(roles: Iterable[Role]) -> str:
    names = [f"'{r.name}' (deployed as '{r.deployed_name}')" for r in dict.fromkeys(roles)]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"the custom role{'s' if len(names) > 1 else ''} {listed} of {ROLES_BICEP}"


# -- settings and tokens -------------------------------------------------------------------------------
def settings_valid(summary: str) -> Check:
    return Check(CheckKind.SETTINGS, "environment", True, summary)


def settings_invalid(problems: Iterable[str]) -> Diagnosis:
    """Nothing else can be checked without valid settings."""
    listed = list(problems)
    return Diagnosis(
        (
            Check(
                CheckKind.SETTINGS,
                "environment",
                False,
                f"{len(listed)} invalid: " + "; ".join(listed),
                "set each setting named as README.md (Configuration) says, then run the doctor again; "
                "no other check was run",
            ),
        )
    )


def arm_token(audience: str, expires_at: datetime | None, error: str = "") -> Check:
    if expires_at is not None:
        return Check(
            CheckKind.ARM_AUTH, audience, True, f"acquired, valid until {expires_at:%Y-%m-%d %H:%M} UTC"
        )
    return Check(
        CheckKind.ARM_AUTH,
        audience,
        False,
        f"none could be had: {error}; no Azure check was run",
        "run as the identity that runs the service: its managed identity in Azure (AZURE_CLIENT_ID for a "
        "user-assigned one), `az login` on a workstation; check REBUILDER_CLOUD or REBUILDER_ARM_ENDPOINT",
    )


# -- templates and permissions -------------------------------------------------------------------------
def templates_listed(scope: str, listed: int, managed: int) -> Check:
    return Check(
        CheckKind.TEMPLATES,
        scope,
        True,
        f"{listed} listed, {managed} managed (tagged golden-image-rebuild)",
    )


def templates_unlisted(scope: str, error: str, *, not_found: bool) -> Check:
    fix = (
        "the scope does not exist: correct REBUILDER_SCOPES"
        if not_found
        else f"assign {_role_words(app_roles(Where.TEMPLATES))} at this scope"
    )
    return Check(CheckKind.TEMPLATES, scope, False, f"could not be listed: {error}", fix)


# Where a role is assigned, said from the scope whose permissions were read.
_ASSIGNED_AT = {
    Where.TEMPLATES: "this scope",
    Where.SUBSCRIPTION: "the subscription (inherited here)",
    Where.GALLERY: "this resource group",
    Where.IDENTITY: "the identity itself",
}


def permissions(scope: str, where: Iterable[Where], held: Iterable[Permission]) -> Check:
    """The caller's permissions at a scope that is each of `where` to the service."""
    kinds = set(where)
    roles = [r for w in Where if w in kinds for r in app_roles(w)]
    gaps = missing(held, kinds)
    if not gaps:
        actions = len({a for r in roles for a in r.actions})
        names = " and ".join(f"'{r.name}'" for r in roles)
        return Check(CheckKind.PERMISSIONS, scope, True, f"allow the {actions} actions of {names}")
    lacking = dict.fromkeys(g.role for g in gaps)
    return Check(
        CheckKind.PERMISSIONS,
        scope,
        False,
        "missing " + ", ".join(g.action for g in gaps),
        "; ".join(f"assign {_role_words([r])} at {_ASSIGNED_AT[r.where]}" for r in lacking),
        gaps,
    )


def permissions_unread(scope: str, error: str) -> Check:
    return Check(
        CheckKind.PERMISSIONS,
        scope,
        False,
        f"the caller's permissions could not be read: {error}",
        "the Permissions API answers for the caller's own assignments at a scope that exists: check "
        f"the scope, and that the service's identity has its roles here ({ROLES_BICEP})",
    )


# -- what the managed templates use --------------------------------------------------------------------
def gallery_image(image_id: str, found: GalleryImageDefinition | None, error: str = "") -> Check:
    """`found`: the definition as read, or None when it could not be read (`error` says why)."""
    if found is not None:
        os_type = found.os_type or "OS type not given"
        generation = found.hyper_v_generation or "no generation given"
        return Check(CheckKind.GALLERY_IMAGE, image_id, True, f"readable ({os_type}, {generation})")
    return Check(
        CheckKind.GALLERY_IMAGE,
        image_id,
        False,
        f"could not be read: {error}",
        f"create the image definition, or assign {_role_words(app_roles(Where.GALLERY))} on its gallery's "
        "resource group",
    )


def aib_identity(identity_id: str, users: int, found: ManagedIdentity | None, error: str = "") -> Check:
    """`found`: the identity as read, or None when it could not be read (`error` says why). The roles
    that concern the identity are named, and said to be unchecked: the AIB identity's own (the doctor
    reads only its caller's permissions) and the app's on the identity itself (read at resource scope,
    which the doctor does not do)."""
    if found is not None:
        held_by_aib = [r for r in ROLES if r.holder is Holder.AIB]
        return Check(
            CheckKind.AIB_IDENTITY,
            identity_id,
            True,
            f"exists (principal {found.principal_id or 'not given'}), used by {users} managed template(s). "
            f"Not checked: that Image Builder, running as it, holds {_role_words(held_by_aib)} on the "
            "gallery resource group; and that the service holds "
            f"{_role_words(app_roles(Where.IDENTITY))} on it, which recreating a pinned template needs",
        )
    return Check(
        CheckKind.AIB_IDENTITY,
        identity_id,
        False,
        f"could not be read: {error} (used by {users} managed template(s))",
        "create the identity (infra/modules/identities.bicep) or point the templates at the one that exists "
        "(the deployment's output AIB_IDENTITY_ID)",
    )


# -- the ledger and the events topic -------------------------------------------------------------------
def ledger(where: str, tables: Mapping[str, bool] | None, error: str = "") -> Check:
    """`tables`: every table the ledger uses and whether it exists, or None when unreachable."""
    if tables is None:
        return Check(
            CheckKind.LEDGER,
            where,
            False,
            f"unreachable: {error}",
            "check REBUILDER_LEDGER, the network path to the account, and that the service's identity has "
            "Storage Table Data Contributor on it",
        )
    absent = [name for name, exists in tables.items() if not exists]
    if not absent:
        return Check(CheckKind.LEDGER, where, True, f"reachable, its {len(tables)} tables exist")
    return Check(
        CheckKind.LEDGER,
        where,
        False,
        f"reachable; {len(absent)} of its {len(tables)} tables missing: {', '.join(absent)}",
        "deploy infra/modules/storage.bicep (it creates them) with tablePrefix the same as "
        "REBUILDER_TABLE_PREFIX, or correct REBUILDER_TABLE_PREFIX",
    )


def events_not_set() -> Check:
    return Check(CheckKind.EVENTS_TOPIC, "REBUILDER_EVENTS_TOPIC", True, "not set: no notices are published")


def events_token(topic: str, audience: str, expires_at: datetime | None, error: str = "") -> Check:
    if expires_at is not None:
        return Check(
            CheckKind.EVENTS_TOPIC,
            topic,
            True,
            f"a token for {audience} was acquired; nothing was sent (the doctor publishes nothing), so "
            "the topic's EventGrid Data Sender assignment is not proven",
        )
    return Check(
        CheckKind.EVENTS_TOPIC,
        topic,
        False,
        f"no token for {audience}: {error}",
        "the service's identity must be able to get Entra ID tokens for Event Grid; grant it EventGrid "
        "Data Sender on the topic (infra/modules/outbound-topic.bicep)",
    )
