"""The doctor's ports in memory: what the service's identity can get and read, and the ledger's tables.
Kept honest by tests/contract/test_access_contract.py, which runs the same suite against the SDK
adapter on the ARM simulator (whose permissions behave as these do)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from rebuilder.domain import resource_ids
from rebuilder.domain.casing import fold
from rebuilder.domain.errors import NotFound, PermanentError
from rebuilder.domain.model import GalleryImageDefinition, GalleryImageId, ManagedIdentity
from rebuilder.domain.permissions import ROLES, Holder, Permission

from . import InMemoryGallery

TOKEN_LIFETIME = timedelta(hours=1)


def deployed_permissions() -> list[Permission]:
    """What the caller holds where nothing else was set: one entry per role infra/ gives the app."""
    return [Permission(r.actions) for r in ROLES if r.holder is Holder.APP]


def nearest(scopes: dict[str, list[Permission]], scope: str) -> list[Permission] | None:
    """The entries set at `scope` or the nearest scope above it (by path, case-insensitively)."""
    parts = [p for p in fold(scope).split("/") if p]
    while parts:
        found = scopes.get("/" + "/".join(parts))
        if found is not None:
            return found
        parts.pop()
    return None


class InMemoryAccess:
    def __init__(self, *, gallery: InMemoryGallery | None = None, now: datetime | None = None) -> None:
        self.gallery = gallery or InMemoryGallery()
        self.now = now or datetime(2026, 11, 10, 6, 0, tzinfo=UTC)
        self.refused: set[str] = set()  # audiences no token is had for
        self.permissions: dict[str, list[Permission]] = {}  # by lower-cased scope; unset: deployed
        self.identities: dict[str, ManagedIdentity] = {}

    def set_permissions(self, scope: str, actions: Iterable[str], not_actions: Iterable[str] = ()) -> None:
        """At `scope` and below, the caller holds exactly one role with these actions."""
        self.permissions[fold(scope.rstrip("/"))] = [Permission(tuple(actions), tuple(not_actions))]

    def add_identity(self, identity_id: str, principal_id: str) -> None:
        self.identities[fold(identity_id)] = ManagedIdentity(identity_id, principal_id)

    def get_token(self, audience: str) -> datetime:
        if audience in self.refused:
            raise PermanentError(f"get a token for {audience}: no credential could get one")
        return self.now + TOKEN_LIFETIME

    def list_permissions(self, scope: str) -> list[Permission]:
        found = nearest(self.permissions, scope)
        return list(deployed_permissions() if found is None else found)

    def get_identity(self, identity_id: str) -> ManagedIdentity:
        found = self.identities.get(fold(identity_id))
        if found is None:
            raise NotFound(f"get identity {identity_id}: not found")
        return found

    def get_gallery_image(self, image_id: GalleryImageId) -> GalleryImageDefinition:
        canonical = resource_ids.gallery_image_id(image_id)
        if fold(canonical) not in self.gallery.images:
            raise NotFound(f"get gallery image {image_id}: not found")
        return GalleryImageDefinition(canonical, None, None)


class InMemoryLedgerStorage:
    """The tables of a ledger kept in memory: all there unless named `missing`."""

    def __init__(
        self, names: Iterable[str] = ("templates", "sources", "history"), *, missing: Iterable[str] = ()
    ) -> None:
        self.names = tuple(names)
        self.missing = set(missing)

    def list_tables(self) -> dict[str, bool]:
        return {n: n not in self.missing for n in self.names}
