"""Ports: what the service needs from the outside world, in its own words.

Adapters implement them against Azure (`rebuilder.adapters`); `devstack.fakes` implements them in
memory for unit tests. One contract suite (tests/contract) runs against both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from .builds import Build, BuildId, BuildReason, RegionStatus, Transition
from .definition import TemplateDefinition
from .model import (
    GalleryImageDefinition,
    GalleryImageId,
    GalleryImageVersion,
    GalleryVersionId,
    ImageTemplate,
    ManagedIdentity,
    MarketplaceImageVersion,
    MarketplaceVersion,
    PlatformImage,
    RunOutput,
    Scope,
    SourceRef,
    TemplateId,
)
from .notices import Notice
from .permissions import Permission
from .regions import Region
from .standing import SeenVersion, TemplateAction, TemplateState


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC."""
        ...


class MarketplaceCatalog(Protocol):
    def list_versions(
        self, subscription_id: str, location: Region, image: PlatformImage
    ) -> list[MarketplaceVersion]:
        """Every version listed in `location`, in no particular order (Azure sorts them as text)."""
        ...

    def get_version(
        self, subscription_id: str, location: Region, image: PlatformImage, version: MarketplaceVersion
    ) -> MarketplaceImageVersion:
        """One version with its deprecation status; raises NotFound."""
        ...


class ImageBuilder(Protocol):
    def list_templates(self, scope: Scope) -> Iterable[ImageTemplate]: ...

    def get_template(self, template_id: TemplateId) -> ImageTemplate:
        """Raises NotFound."""
        ...

    def start_run(self, template_id: TemplateId) -> None:
        """Ask AIB to run the template and return at once (runs take hours). Conflict if one is running."""
        ...

    def cancel_run(self, template_id: TemplateId) -> None:
        """Conflict if no run is going."""
        ...

    def delete_template(self, template_id: TemplateId) -> None:
        """Start deleting the template (Conflict while a run is going); a missing one is not an error."""
        ...

    def create_template(self, template_id: TemplateId, definition: TemplateDefinition) -> None:
        """Start creating the template from `definition`; it can run once provisioned."""
        ...

    def list_run_outputs(self, template_id: TemplateId) -> list[RunOutput]: ...


class Gallery(Protocol):
    def get_version(
        self, version_id: GalleryVersionId, *, with_replication: bool = True
    ) -> GalleryImageVersion:
        """Raises NotFound."""
        ...

    def list_versions(self, image_id: GalleryImageId) -> list[GalleryImageVersion]: ...

    # Updates: each reads the version and sends the whole writable update, then returns; Azure answers
    # `Updating` and the change is in effect once a later read shows it (callers read back on their
    # next pass and only then record it). Conflict when the version is Updating already.
    def set_target_regions(self, version_id: GalleryVersionId, regions: Iterable[Region]) -> None:
        """Re-apply a version's target regions: restarts failed replications without a rebuild."""
        ...

    def set_tags(self, version_id: GalleryVersionId, tags: Mapping[str, str]) -> None:
        """Replace a version's tags (callers merge with the tags they read: AIB's artifactTags)."""
        ...

    def set_excluded_from_latest(self, version_id: GalleryVersionId, excluded: bool) -> None:
        """Promote (False) or demote (True) a version in every region: the profile's flag and each
        target region's own `excludeFromLatest`, which overrides it there."""
        ...


class Access(Protocol):
    """What the service's own identity can get and read: the doctor's probes. Reads only."""

    def get_token(self, audience: str) -> datetime:
        """When a token for `audience` (e.g. https://management.azure.com/.default) expires;
        PermanentError when the identity cannot get one. The token itself stays in the adapter."""
        ...

    def list_permissions(self, scope: str) -> list[Permission]:
        """The caller's permissions at `scope` (a subscription, resource group or resource id), one
        entry per role it holds there, every page."""
        ...

    def get_identity(self, identity_id: str) -> ManagedIdentity:
        """A user-assigned managed identity; raises NotFound."""
        ...

    def get_gallery_image(self, image_id: GalleryImageId) -> GalleryImageDefinition:
        """A gallery image definition; raises NotFound."""
        ...


class LedgerStorage(Protocol):
    """Where the ledger keeps its records, as deployed."""

    def list_tables(self) -> dict[str, bool]:
        """Every table the ledger uses, and whether it exists (reads only: creates nothing)."""
        ...


class Notifier(Protocol):
    def publish(self, notices: Sequence[Notice]) -> None:
        """Announce `notices` (CloudEvents to an Event Grid topic); TemporaryError when it could not."""
        ...


# -- the ledger ----------------------------------------------------------------------------------------
_T = TypeVar("_T")


@dataclass(frozen=True)
class Versioned(Generic[_T]):
    """A record as stored, with the ETag that a conditional write of it must present."""

    record: _T
    etag: str


@dataclass(frozen=True)
class Page(Generic[_T]):
    items: list[_T]
    continuation: str | None  # opaque; pass it back for the next page; None on the last page


@dataclass(frozen=True)
class Claim:
    build: Versioned[Build]
    created: bool  # False: the key was claimed before, and `build` is the build that claimed it


@dataclass(frozen=True)
class KeyClaim:
    """A caller's idempotency key as the ledger holds it: the build it names, since when, who sent it
    and a digest of what it asked (a key names one request of one caller)."""

    key: str
    build: Versioned[Build]
    claimed_at: datetime
    caller_id: str = ""  # the sender's object id (the CLI: its user name)
    digest: str = ""  # of the request (template, reason)
    joined: bool = False  # the request joined a build already open: the key has no build of its own


@dataclass(frozen=True)
class Join:
    """A request that joins a build already open, under the caller's key (see Ledger.join_build)."""

    template_id: TemplateId
    key: str
    build_id: BuildId
    at: datetime
    caller_id: str = ""
    digest: str = ""


@dataclass(frozen=True)
class IndexedBuild:
    """One entry of the history index: every build across templates, newest first. Written just before
    its build is claimed, so an entry may name a build that never came to be (its claim lost a race,
    or the process died in between): readers skip entries whose build is not found."""

    build_id: BuildId
    template_id: TemplateId
    reason: BuildReason
    created_at: datetime


class Ledger(Protocol):
    """The append-only build ledger. Writes are insert-only or ETag-conditional: a lost race raises
    StaleWrite (re-read and decide again); nothing is overwritten blindly, no transition is rewritten."""

    def claim_build(self, build: Build, *, why: str, by: str, action: TemplateAction | None = None) -> Claim:
        """Record a new build under its idempotency key, with its first transition (and `action`, the
        audit row of the person who asked), atomically: all of it or, when the key is claimed, none."""
        ...

    def get_build(self, build_id: str) -> Versioned[Build]:
        """Raises NotFound, or InvalidBuildId for a string that cannot be a build id."""
        ...

    def list_build_index(
        self,
        *,
        until: datetime | None = None,
        after: BuildId | None = None,
        limit: int = 100,
        continuation: str | None = None,
    ) -> Page[IndexedBuild]:
        """The history index, newest first (then by template key and nonce, as build ids order): entries
        created at or before `until` (to the second), strictly after build `after` in that order."""
        ...

    def find_claim(self, template_id: TemplateId, idempotency_key: str) -> KeyClaim | None:
        """The claim of `idempotency_key` for the template, with its build, if any (a read)."""
        ...

    def join_build(self, join: Join, *, action: TemplateAction) -> KeyClaim:
        """Claim `join.key` for the open build `join.build_id` (no build row of its own) with `action`,
        the audit row of the request, atomically. The key claimed before: that claim, nothing written."""
        ...

    def save_build(
        self,
        build: Build,
        *,
        etag: str,
        transition: Transition | None = None,
        regions: Sequence[RegionStatus] = (),
        action: TemplateAction | None = None,
    ) -> str:
        """Write the build (and its new transition, region rows and `action`, the audit row of the
        person whose call made the change) if `etag` is still current, in one transaction.
        Returns the new ETag; raises StaleWrite otherwise (and nothing is written)."""
        ...

    def list_builds(
        self,
        template_id: TemplateId,
        *,
        limit: int = 50,
        continuation: str | None = None,
        until: datetime | None = None,
    ) -> Page[Build]:
        """One template's builds, newest first; with `until`, only those created at or before it (to
        the second: build ids carry seconds), read from there on rather than from the newest."""
        ...

    def list_transitions(self, build_id: str) -> list[Transition]:
        """Oldest first."""
        ...

    def list_regions(self, build_id: str) -> list[RegionStatus]:
        """One build's region rows, by region."""
        ...

    def list_template_regions(
        self, template_id: TemplateId, *, limit: int = 1000, continuation: str | None = None
    ) -> Page[RegionStatus]:
        """The region rows of every build of one template (newest build first): one range read."""
        ...

    def get_template_state(self, template_id: TemplateId) -> Versioned[TemplateState] | None: ...

    def save_template_state(self, state: TemplateState, *, etag: str | None) -> str:
        """Create (etag None) or replace if `etag` is current; StaleWrite otherwise."""
        ...

    def list_template_states(
        self, *, limit: int = 1000, continuation: str | None = None
    ) -> Page[TemplateState]: ...

    def record_action(self, action: TemplateAction) -> TemplateAction:
        """Append a row to the template's audit trail (insert-only; the same action recorded twice,
        same time and correlation id, is one row). Returns the row as stored."""
        ...

    def list_actions(
        self, template_id: TemplateId, *, limit: int = 50, continuation: str | None = None
    ) -> Page[TemplateAction]:
        """The template's audit trail, newest first."""
        ...

    def record_version(self, seen: SeenVersion) -> SeenVersion:
        """Insert-only on the first sighting; later sightings keep the first-seen time and only record
        a change of deprecation status. Returns the record as stored."""
        ...

    def list_versions(
        self, source: SourceRef, *, limit: int = 1000, continuation: str | None = None
    ) -> Page[SeenVersion]:
        """Every version seen for `source`, oldest (numerically lowest) first."""
        ...
