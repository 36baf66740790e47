"""A detection pass: discover → watch → plan, then record what the plan decided (DESIGN §3, 1–3).

`compute_plan` only reads Azure and the ledger (the dry-run plan: it records nothing, so a plan never
takes a sighting, and its notice, away from the next pass). `watch_pass` records the sightings and
each new template's baseline on first sight and hands every due template on as a requested
build: claimed in the ledger under the key template + source version, so repeated passes, redelivered
events and racing triggers ask for the same build.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from rebuilder.domain.builds import BuildState, Provenance, requested
from rebuilder.domain.casing import fold
from rebuilder.domain.errors import RebuilderError, StaleWrite
from rebuilder.domain.model import GalleryImageId, GalleryImageVersion, Scope, TemplateId
from rebuilder.domain.planner import Action, Managed, PlanItem, plan
from rebuilder.domain.policies import NO_RULES, Rules, policy_tags
from rebuilder.domain.ports import Ledger
from rebuilder.domain.releases import latest_drift
from rebuilder.domain.standing import SeenVersion, TemplateState

from .history import where_we_stand
from .lineage import trace
from .ports import Ports
from .records import open_build, update_state
from .watch import Discovery, Watcher, discover, distribution_targets, first_sight, source_of

log = logging.getLogger(__name__)


@dataclass
class PassReport:
    items: list[PlanItem]
    discovery: Discovery
    list_calls: int = 0
    new_versions: list[SeenVersion] = field(default_factory=list)
    requested: list[tuple[str, bool]] = field(default_factory=list)  # (build id, newly claimed)
    problems: list[str] = field(default_factory=list)
    states: dict[TemplateId, TemplateState] = field(default_factory=dict)  # by lower-cased id, as planned
    at: datetime | None = None  # the moment planned for, when it is not now (a what-if plan)
    deprecations: list[tuple[SeenVersion, datetime | None, list[str]]] = field(default_factory=list)
    gallery_versions: dict[str, list[GalleryImageVersion]] = field(default_factory=dict)  # listed as sources


def compute_plan(
    ports: Ports,
    scopes: Iterable[Scope],
    *,
    now: datetime,
    concurrency: int = 8,
    only: Sequence[Managed] | None = None,
    defaults: Rules = NO_RULES,
    at: datetime | None = None,
    record: bool = False,
) -> PassReport:
    """The plan at `at` (default: now) from what Azure and the ledger say now: new sightings count from
    `now`, whatever time is planned for, and are recorded only when `record` (a pass that acts)."""
    discovery = Discovery(list(only)) if only is not None else discover(ports.imagebuilder, scopes)
    watched = Watcher(
        ports.marketplace, ports.gallery, ports.ledger, now=now, concurrency=concurrency, record=record
    ).watch(discovery.managed)
    states = {TemplateId(fold(s.template_id)): s for s in where_we_stand(ports.ledger)}
    items = plan(discovery.managed, watched.candidates, states, now=at or now, defaults=defaults)
    return PassReport(
        items,
        discovery,
        watched.list_calls,
        watched.new_versions,
        problems=list(discovery.problems),
        states=states,
        at=at,
        deprecations=watched.deprecations,
        gallery_versions=watched.gallery_versions,
    )


def watch_pass(
    ports: Ports,
    scopes: Iterable[Scope],
    *,
    now: datetime,
    trigger: str,
    correlation_id: str = "",
    concurrency: int = 8,
    only: Sequence[Managed] | None = None,
    defaults: Rules = NO_RULES,
) -> PassReport:
    report = compute_plan(
        ports, scopes, now=now, concurrency=concurrency, only=only, defaults=defaults, record=True
    )
    for item in report.items:
        try:
            known = report.states.get(TemplateId(fold(item.template.id)))
            _remember(ports.ledger, item, now, known)
            if item.action is Action.REBUILD and item.due is not None:
                requested_build = _request(ports.ledger, item, known, report, now, trigger, correlation_id)
                report.requested.append(requested_build)
        except RebuilderError as error:  # one template's trouble never stops the pass
            report.problems.append(f"{item.template.id}: {error}")
            log.warning("recording the plan for %s failed: %s", item.template.id, error)
    _check_latest(ports, report, now)
    return report


def _check_latest(ports: Ports, report: PassReport, now: datetime) -> None:
    """Compare the gallery's effective excludeFromLatest with the ledger, per region, for every
    template that has images out there (one list per gallery image distributed to), and keep what
    disagrees on the template's row: the templates view, the API and the report flag it."""
    rows = [
        s
        for s in report.states.values()
        if s.distributes_to and (s.regions or s.revoked or s.candidate_version or s.latest_drift)
    ]
    listed = dict(report.gallery_versions)  # a parent's image was listed already as its children's source
    for image in sorted({fold(i) for s in rows for i in s.distributes_to} - set(listed)):
        try:
            listed[image] = ports.gallery.list_versions(GalleryImageId(image))
            report.list_calls += 1
        except RebuilderError as error:
            report.problems.append(f"checking latest in {image} failed: {error} (retried next pass)")
    for state in rows:
        if any(fold(i) not in listed for i in state.distributes_to):
            continue
        found = latest_drift(state, [v for i in state.distributes_to for v in listed[fold(i)]])
        if found == state.latest_drift:
            continue
        for drift in found:
            log.warning("%s: latest disagrees with the ledger: %s", state.name, drift.describe())
        with contextlib.suppress(StaleWrite):  # the next pass looks again
            update_state(
                ports.ledger,
                state.template_id,
                lambda s, found=found: dataclasses.replace(s, latest_drift=found, updated_at=now),  # type: ignore[misc]
            )


def _remember(ledger: Ledger, item: PlanItem, now: datetime, known: TemplateState | None) -> None:
    """On first sight, the template's row with the baseline the plan used (adopted or none), and the
    gallery image it builds from (events about that image find the template by it)."""
    t = item.template
    source = source_of(t)
    image = source.gallery_image_id if source else ""
    targets = distribution_targets(t)
    tags = policy_tags(t.tags)
    if known is None:
        state = first_sight(t, item.mode.value, now=now, baseline=item.baseline_version)
        with contextlib.suppress(StaleWrite):  # another pass recorded it first, from the same template
            ledger.save_template_state(state, etag=None)
    elif (known.gallery_image_id, known.mode, known.distributes_to, known.source, known.policy_tags) != (
        image,
        item.mode.value,
        targets,
        source,
        tags,
    ):
        with contextlib.suppress(StaleWrite):  # the next pass tries again
            update_state(
                ledger,
                t.id,
                lambda s: dataclasses.replace(
                    s,
                    gallery_image_id=image,
                    mode=item.mode.value,
                    distributes_to=targets,
                    source=source,
                    policy_tags=tags,
                    updated_at=now,
                ),
            )


def _request(
    ledger: Ledger,
    item: PlanItem,
    known: TemplateState | None,
    report: PassReport,
    now: datetime,
    trigger: str,
    correlation_id: str,
) -> tuple[str, bool]:
    t = item.template
    assert item.due is not None  # noqa: S101 - only due items are requested
    reason, key = item.due, item.key
    if known is not None and known.last_build_state is BuildState.FAILED:
        # The last build failed: this is a new build (every trigger that reads the same row agrees on
        # its key); consecutive failures disable the template, so this never loops for long.
        key += f":after:{known.last_build_id}"
    build = requested(
        t,
        reason=reason,
        key=key,
        resolved_version=item.build_version,
        now=now,
        provenance=Provenance(trigger, "", correlation_id),
        previous_baseline=item.baseline_version,
    )
    if item.parents:  # a child: which parent build made the image, and which root version is in it
        build = dataclasses.replace(build, lineage=trace(ledger, build, states=list(report.states.values())))
    opened = open_build(ledger, build, why=item.reason, by=trigger, now=now)
    return opened.build.id, opened.created and not opened.joined
