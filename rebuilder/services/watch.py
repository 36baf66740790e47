"""Discover managed templates and watch their sources (DESIGN §3, steps 1–2).

One Marketplace list call per distinct (location, publisher, offer, sku) per pass, whatever the number
of templates, run with bounded concurrency; the candidate's deprecation is checked for it alone; gallery
sources need a version that is in `latest`, provisioned, and replicated in the template's location.
Every version seen is recorded once in the ledger (its first-seen time starts an exposure window) — by
a pass that acts; a read-only watch (`record=False`, the plan) records nothing, so a read never takes a
sighting, and the notice that goes with it, away from the pass that announces it.
A failure reading one source blocks only the templates that use it, with the reason in the plan.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from rebuilder.domain import policies, resource_ids
from rebuilder.domain.casing import fold
from rebuilder.domain.errors import InvalidRecord, RebuilderError
from rebuilder.domain.limits import check_version
from rebuilder.domain.model import (
    GalleryImageId,
    GalleryImageVersion,
    ImageState,
    ImageTemplate,
    MarketplaceImageVersion,
    MarketplaceVersion,
    PlatformImage,
    Scope,
    SourceKind,
    SourceRef,
    TemplateId,
)
from rebuilder.domain.planner import Candidate, Managed, PinnedSource, is_pinned, mode_of
from rebuilder.domain.ports import Gallery, ImageBuilder, Ledger, MarketplaceCatalog
from rebuilder.domain.regions import Region, region
from rebuilder.domain.releases import serves_in
from rebuilder.domain.standing import SeenVersion, TemplateState
from rebuilder.domain.versions import version_key

from .history import every

log = logging.getLogger(__name__)
DEPRECATION_CHECKS = 5  # newest-first candidates checked before giving up on a source


@dataclass(frozen=True)
class Discovery:
    managed: list[Managed]
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (template id, why)
    problems: list[str] = field(default_factory=list)  # scopes that could not be listed


def discover(imagebuilder: ImageBuilder, scopes: Iterable[Scope]) -> Discovery:
    managed: dict[str, Managed] = {}
    ignored: list[tuple[str, str]] = []
    problems: list[str] = []
    for scope in scopes:
        try:
            templates = list(imagebuilder.list_templates(scope))
        except RebuilderError as error:
            problems.append(f"listing templates in {scope.id} failed: {error}")
            continue
        for template in templates:
            mode, why = mode_of(template.tags)
            if mode is None:
                ignored.append((template.id, why))
                log.debug("ignoring %s: %s", template.id, why)
            else:
                managed.setdefault(fold(template.id), Managed(template, mode))
    return Discovery(list(managed.values()), ignored, problems)


@dataclass
class WatchResult:
    candidates: dict[TemplateId, Candidate]  # by lower-cased template id
    list_calls: int = 0
    new_versions: list[SeenVersion] = field(default_factory=list)
    # pinned versions whose deprecation was first recorded as scheduled in this pass, with when and who pins
    deprecations: list[tuple[SeenVersion, datetime | None, list[str]]] = field(default_factory=list)
    # every version of each gallery image listed as a source (lower-cased id), as listed: reused
    gallery_versions: dict[str, list[GalleryImageVersion]] = field(default_factory=dict)


def marketplace_ref(template: ImageTemplate) -> SourceRef | None:
    image = template.source.image
    if template.source.kind is not SourceKind.PLATFORM_IMAGE or image is None:
        return None
    publisher, offer, sku = image.key
    return SourceRef(SourceKind.PLATFORM_IMAGE, region(template.location), publisher, offer, sku)


def gallery_ref(template: ImageTemplate) -> SourceRef | None:
    if template.source.kind is not SourceKind.SHARED_IMAGE_VERSION or not template.source.image_version_id:
        return None
    try:
        image = resource_ids.gallery_image_id(template.source.image_version_id)
    except ValueError:
        return None
    return SourceRef(SourceKind.SHARED_IMAGE_VERSION, gallery_image_id=fold(image))


def source_of(template: ImageTemplate) -> SourceRef | None:
    """Where the ledger keeps the sightings of the template's source versions."""
    return marketplace_ref(template) or gallery_ref(template)


def first_sight(template: ImageTemplate, mode: str, *, now: datetime, baseline: str = "") -> TemplateState:
    """A template's first ledger row: the gallery image it builds from (events find it by that), the
    images it publishes to (its children's), and its last run, which is history, not a build to record."""
    ref = gallery_ref(template)
    return TemplateState(
        template.id,
        template.name,
        region(template.location),
        now,
        mode,
        ref.gallery_image_id if ref else "",
        baseline_version=baseline,
        baseline_at=template.last_run.started_at if baseline and template.last_run else None,
        known_run_started_at=template.last_run.started_at if template.last_run else None,
        distributes_to=distribution_targets(template),
        source=source_of(template),
        policy_tags=policies.policy_tags(template.tags),
    )


def distribution_targets(template: ImageTemplate) -> tuple[str, ...]:
    return tuple(sorted({fold(d.gallery_image_id) for d in template.distributions if d.gallery_image_id}))


class Watcher:
    def __init__(
        self,
        marketplace: MarketplaceCatalog,
        gallery: Gallery,
        ledger: Ledger,
        *,
        now: datetime,
        concurrency: int = 8,
        record: bool = True,
    ) -> None:
        self._marketplace, self._gallery, self._ledger = marketplace, gallery, ledger
        self._now, self._concurrency, self._writes = now, concurrency, record
        self._lock = threading.Lock()

    def watch(self, managed: Sequence[Managed]) -> WatchResult:
        result = WatchResult({})
        groups: dict[SourceRef, list[ImageTemplate]] = defaultdict(list)
        for m in managed:
            ref = source_of(m.template)
            if ref is not None:
                groups[ref].append(m.template)
        with ThreadPoolExecutor(max(1, self._concurrency)) as pool:
            futures = [
                pool.submit(
                    self._watch_marketplace if ref.kind is SourceKind.PLATFORM_IMAGE else self._watch_gallery,
                    ref,
                    templates,
                    result,
                )
                for ref, templates in groups.items()
            ]
            for done in futures:
                done.result()
        return result

    # -- Marketplace -----------------------------------------------------------------------------------
    def _watch_marketplace(self, ref: SourceRef, templates: list[ImageTemplate], result: WatchResult) -> None:
        image = templates[0].source.image
        assert image is not None  # noqa: S101 - grouped by marketplace_ref, which requires it
        location, subscription = Region(ref.location), templates[0].subscription_id
        try:
            with self._lock:
                result.list_calls += 1
            listed = self._marketplace.list_versions(subscription, location, image)
            seen = self._record(ref, listed, result)
            checked: dict[str, MarketplaceImageVersion] = {}
            candidate = self._marketplace_candidate(
                ref, subscription, image, [v for v in listed if v in seen], seen, checked
            )
        except RebuilderError as error:
            candidate = Candidate(
                problem=f"reading {image} in {location} failed: {error} (retried next pass)"
            )
            self._assign(templates, candidate, result)
            return
        self._assign([t for t in templates if not is_pinned(t)], candidate, result)
        pinned: dict[str, list[ImageTemplate]] = defaultdict(list)
        for template in templates:
            if is_pinned(template):
                pinned[template.source.version or ""].append(template)
        for version, users in pinned.items():
            status = self._pinned(ref, subscription, image, version, users, seen, checked, result)
            self._assign(users, dataclasses.replace(candidate, pinned=status), result)

    def _pinned(
        self,
        ref: SourceRef,
        subscription: str,
        image: PlatformImage,
        version: str,
        users: list[ImageTemplate],
        seen: dict[str, SeenVersion],
        checked: dict[str, MarketplaceImageVersion],
        result: WatchResult,
    ) -> PinnedSource | None:
        """The deprecation status of a version pinned templates name; a change of it is recorded once
        (and announced once, when it becomes scheduled)."""
        try:
            found = checked.get(version) or self._marketplace.get_version(
                subscription, Region(ref.location), image, MarketplaceVersion(version)
            )
        except RebuilderError as error:
            log.warning("reading the pinned version %s of %s failed: %s", version, image, error)
            return None
        known = seen.get(version)
        if known is not None and known.deprecation != found.state:
            recorded = self._sighting(SeenVersion(ref, version, self._now, found.state), known)
            if found.state is ImageState.SCHEDULED_FOR_DEPRECATION:
                with self._lock:
                    result.deprecations.append(
                        (recorded, found.scheduled_deprecation_at, sorted(t.name for t in users))
                    )
            seen[version] = recorded
        return PinnedSource(version, found.state, found.scheduled_deprecation_at)

    def _marketplace_candidate(
        self,
        ref: SourceRef,
        subscription: str,
        image: PlatformImage,
        listed: list[MarketplaceVersion],
        seen: dict[str, SeenVersion],
        checked: dict[str, MarketplaceImageVersion],
    ) -> Candidate:
        """The newest version not deprecated (the newest few are read; each read kept in `checked`)."""
        ordered = sorted(set(listed), key=version_key, reverse=True)
        if not ordered:
            return Candidate(problem=f"no version of {image} is listed in {ref.location}")
        usable = tuple(reversed(ordered))
        for version in ordered[:DEPRECATION_CHECKS]:
            found = self._marketplace.get_version(subscription, Region(ref.location), image, version)
            checked[version] = found
            if seen[version].deprecation != found.state:
                # recorded, but `seen` keeps what was known: a pinned version's change is announced there
                self._sighting(SeenVersion(ref, version, self._now, found.state), seen[version])
            if found.state is ImageState.DEPRECATED:
                usable = tuple(v for v in usable if v != version)
                continue
            scheduled = found.state is ImageState.SCHEDULED_FOR_DEPRECATION
            return Candidate(
                version, seen[version].first_seen_at, usable, scheduled_for_deprecation=scheduled
            )
        return Candidate(problem=f"the newest {DEPRECATION_CHECKS} versions of {image} are deprecated")

    # -- Compute Gallery -------------------------------------------------------------------------------
    def _watch_gallery(self, ref: SourceRef, templates: list[ImageTemplate], result: WatchResult) -> None:
        image = GalleryImageId(ref.gallery_image_id)
        try:
            with self._lock:
                result.list_calls += 1
            listed = self._gallery.list_versions(image)
            with self._lock:
                result.gallery_versions[fold(image)] = listed
            versions = [
                v
                for v in listed
                # in latest somewhere: a region's own excludeFromLatest overrides the profile's there
                if not v.excluded_everywhere(True) and fold(v.provisioning_state or "") == "succeeded"
            ]
            seen = self._record(ref, [v.name for v in versions], result)
            versions = [v for v in versions if v.name in seen]
        except RebuilderError as error:
            self._assign(
                templates, Candidate(problem=f"reading {image} failed: {error} (retried next pass)"), result
            )
            return
        replicas: dict[str, GalleryImageVersion] = {}
        for template in templates:
            self._assign([template], self._gallery_candidate(template, versions, seen, replicas), result)

    def _gallery_candidate(
        self,
        template: ImageTemplate,
        versions: list[GalleryImageVersion],
        seen: dict[str, SeenVersion],
        replicas: dict[str, GalleryImageVersion],
    ) -> Candidate:
        where = region(template.location)
        usable = tuple(sorted((v.name for v in versions), key=version_key))
        for version in sorted(versions, key=lambda v: version_key(v.name), reverse=True):
            if version.excluded_in(where):  # `latest` resolves in the build's region: not this one there
                continue
            try:
                if version.name not in replicas:
                    replicas[version.name] = self._gallery.get_version(version.id, with_replication=True)
            except RebuilderError as error:
                return Candidate(problem=f"reading {version.id} failed: {error} (retried next pass)")
            if serves_in(replicas[version.name], where):
                return Candidate(version.name, seen[version.name].first_seen_at, usable)
        return Candidate(
            problem=f"no version of {template.source.image_version_id} is replicated in {where} yet"
        )

    # -- shared ----------------------------------------------------------------------------------------
    def _record(self, ref: SourceRef, versions: Iterable[str], result: WatchResult) -> dict[str, SeenVersion]:
        """Every listed version with its first sighting; new ones are recorded now."""
        known = {
            s.version: s for s in every(lambda token: self._ledger.list_versions(ref, continuation=token))
        }
        for version in set(versions) - set(known):
            try:
                check_version(version)
            except InvalidRecord as error:
                log.warning("ignoring a version of %s that cannot be recorded: %s", ref, error)
                continue
            known[version] = self._sighting(SeenVersion(ref, version, self._now))
            with self._lock:
                result.new_versions.append(known[version])
        return known

    def _sighting(self, seen: SeenVersion, known: SeenVersion | None = None) -> SeenVersion:
        """A first sighting, or a change of deprecation of a `known` one (`seen.first_seen_at` is then
        when it changed, as the ledger takes it): recorded by a pass that acts, kept in memory by a read."""
        if self._writes:
            return self._ledger.record_version(seen)
        if known is None:
            return seen
        return dataclasses.replace(
            known, deprecation=seen.deprecation, deprecation_changed_at=seen.first_seen_at
        )

    def _assign(self, templates: Iterable[ImageTemplate], candidate: Candidate, result: WatchResult) -> None:
        with self._lock:
            for template in templates:
                result.candidates[TemplateId(fold(template.id))] = candidate
