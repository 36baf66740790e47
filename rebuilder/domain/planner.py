"""The plan (DESIGN §3.3): for every managed template, what to do and why. Pure: no I/O, no clock.

Inputs are what the watch gathered: the managed templates, the newest usable source version per
template (`Candidate`), and the ledger's current row per template. The same function drives the
timer and answers the dry-run `plan`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from . import policies, resource_ids
from .builds import BuildReason
from .casing import fold
from .model import ImageState, ImageTemplate, RunState, SourceKind, TemplateId
from .policies import NO_RULES, Rules
from .releases import gate_for
from .standing import TemplateState
from .versions import version_key

REBUILD_TAG = "golden-image-rebuild"


class Mode(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"


class Action(StrEnum):
    REBUILD = "rebuild"
    NONE = "none"
    SKIP = "skip"  # not something the service can build (unsupported source)
    BLOCKED = "blocked"  # should build, cannot now (disabled, source unreadable, nothing usable)


@dataclass(frozen=True)
class Managed:
    template: ImageTemplate
    mode: Mode


@dataclass(frozen=True)
class Candidate:
    """The newest usable version of a template's source in the template's location, or why none."""

    version: str = ""
    first_seen_at: datetime | None = None
    available: tuple[str, ...] = ()  # every usable version listed, to count what a rebuild coalesces
    scheduled_for_deprecation: bool = False
    problem: str = ""
    pinned: PinnedSource | None = None  # a pinned template's own version, as the Marketplace reports it


@dataclass(frozen=True)
class PinnedSource:
    """The deprecation status of the version a pinned template names."""

    version: str
    state: ImageState
    scheduled_deprecation_at: datetime | None = None


@dataclass(frozen=True)
class PlanItem:
    template: ImageTemplate
    mode: Mode
    source: str
    baseline_version: str
    baseline_adopted: bool  # taken from the template's own last successful run, not from the ledger
    candidate_version: str
    action: Action
    reason: str
    flags: tuple[str, ...] = ()
    parents: tuple[str, ...] = ()  # names of the managed templates whose image this one builds on
    due: BuildReason | None = None  # the rule that makes it due (when the action is rebuild)
    key: str = ""  # the build's idempotency key: the rule and what it is due for
    build_version: str = ""  # the source version the build resolves to
    rules: Rules = NO_RULES
    next_due_at: datetime | None = None  # when it is next due (now, when it is due), and why
    next_due_why: str = ""
    problems: tuple[str, ...] = ()  # invalid policy tags: the default is used instead


def describe_source(template: ImageTemplate) -> str:
    src = template.source
    if src.kind is SourceKind.PLATFORM_IMAGE and src.image is not None:
        return f"{src.image}:{src.version or 'latest'}"
    if src.kind is SourceKind.SHARED_IMAGE_VERSION:
        return src.image_version_id or "SharedImageVersion (no id)"
    return src.raw_type or src.kind.value


def is_pinned(template: ImageTemplate) -> bool:
    src = template.source
    if src.kind is SourceKind.PLATFORM_IMAGE:
        return fold(src.version or "latest") != "latest"
    if src.kind is SourceKind.SHARED_IMAGE_VERSION:
        return not fold((src.image_version_id or "").rstrip("/")).endswith("/versions/latest")
    return False


def baseline(template: ImageTemplate, state: TemplateState | None) -> tuple[str, bool]:
    """(version, adopted): the ledger's last successful build, else on first sight the template's own
    last successful run, else nothing (the template is due)."""
    if state is not None and state.baseline_version:
        return state.baseline_version, False
    run, exact = template.last_run, template.source.exact_version or ""
    if state is None and run is not None and run.state is RunState.SUCCEEDED and exact:
        # For a gallery source AIB reports the exact version as a resource id: the version is its name.
        return exact.rstrip("/").rsplit("/", 1)[-1], True
    return "", False


def plan(
    templates: Sequence[Managed],
    candidates: Mapping[TemplateId, Candidate],
    states: Mapping[TemplateId, TemplateState],
    *,
    now: datetime,
    defaults: Rules = NO_RULES,
) -> list[PlanItem]:
    """One item per template, in the order given. Keys of the mappings are lower-cased template ids.

    Children follow their parents: a child whose parent is due waits for the parent's new image; a child due
    because its parent published is marked so; templates in a dependency cycle are refused. `defaults`
    are the service-wide rebuild policies a template's tags override."""
    items = [
        _decide(
            m,
            candidates.get(_key(m.template.id), Candidate(problem="not watched")),
            states.get(_key(m.template.id)),
            now,
            defaults,
        )
        for m in templates
    ]
    graph = dependencies(templates, states)
    names = {_key(s.template_id): s.name for s in states.values()}
    names.update({_key(m.template.id): m.template.name for m in templates})
    cycles = cycles_in(graph, names)
    items = [_revoked_parent(_awaiting_parent(item, graph, states), graph, states, now) for item in items]
    by_id = {_key(i.template.id): i for i in items}
    return [_ordered(item, graph, cycles, by_id, names) for item in items]  # a cycle is refused whatever


def dependencies(
    templates: Sequence[Managed], states: Mapping[TemplateId, TemplateState] | None = None
) -> dict[TemplateId, tuple[TemplateId, ...]]:
    """Child → parents (lower-cased ids): a parent distributes to the gallery image a child builds from.
    Parents come from the templates planned and from the ledger's rows (a pass planning only a child,
    after an event, still knows who its parents are)."""
    producers: dict[str, dict[TemplateId, None]] = {}
    for state in (states or {}).values():
        for image in state.distributes_to:
            producers.setdefault(fold(image), {})[_key(state.template_id)] = None
    for m in templates:
        for distribution in m.template.distributions:
            if distribution.gallery_image_id:
                producers.setdefault(fold(distribution.gallery_image_id), {})[_key(m.template.id)] = None
    graph: dict[TemplateId, tuple[TemplateId, ...]] = {}
    for m in templates:
        image = _source_image(m.template)
        if image and image in producers:
            graph[_key(m.template.id)] = tuple(producers[image])
    return graph


def cycles_in(
    graph: Mapping[TemplateId, tuple[TemplateId, ...]], names: Mapping[TemplateId, str]
) -> dict[TemplateId, str]:
    """Every template on a dependency cycle, with the cycle spelt out by name (a → b → a)."""
    found: dict[TemplateId, str] = {}
    for start in graph:
        path = _path_back(graph, start, start, [start], set())
        if path is not None:
            found[start] = " → ".join(names.get(t, t) for t in path)
    return found


def _path_back(
    graph: Mapping[TemplateId, tuple[TemplateId, ...]],
    node: TemplateId,
    goal: TemplateId,
    path: list[TemplateId],
    visited: set[TemplateId],
) -> list[TemplateId] | None:
    for parent in graph.get(node, ()):
        if parent == goal:
            return [*path, goal]
        if parent not in visited:
            visited.add(parent)
            found = _path_back(graph, parent, goal, [*path, parent], visited)
            if found is not None:
                return found
    return None


def _source_image(template: ImageTemplate) -> str:
    src = template.source
    if src.kind is not SourceKind.SHARED_IMAGE_VERSION or not src.image_version_id:
        return ""
    try:
        return fold(resource_ids.gallery_image_id(src.image_version_id))
    except ValueError:
        return ""


def _ordered(
    item: PlanItem,
    graph: Mapping[TemplateId, tuple[TemplateId, ...]],
    cycles: Mapping[TemplateId, str],
    by_id: Mapping[TemplateId, PlanItem],
    names: Mapping[TemplateId, str],
) -> PlanItem:
    key = _key(item.template.id)
    if key in cycles:
        return dataclasses.replace(
            item,
            action=Action.BLOCKED,
            reason=f"dependency cycle {cycles[key]}: refused until one of these builds from elsewhere",
        )
    parent_ids = [p for p in graph.get(key, ()) if p != key]
    if not parent_ids:
        return item
    parents = [by_id[p] for p in parent_ids if p in by_id]  # planned in this pass too
    named = tuple(names.get(p, p) for p in parent_ids)
    if item.action is not Action.REBUILD:
        return dataclasses.replace(item, parents=named)
    for parent in parents:  # a parent about to build makes a newer image: build on that one
        if parent.action is Action.REBUILD:
            return dataclasses.replace(
                item,
                action=Action.NONE,
                reason=f"waiting for parent {parent.template.name}, which is due; then {item.reason}",
                parents=named,
                due=None,
                key="",
            )
    if item.due is not BuildReason.SOURCE_UPDATE:  # due by its own policy, whatever the parent did
        return dataclasses.replace(item, parents=named)
    return dataclasses.replace(
        item,
        reason=f"parent {', '.join(named)} published: {item.reason}",
        parents=named,
        due=BuildReason.PARENT_PUBLISHED,
        key=item.key.replace(BuildReason.SOURCE_UPDATE, BuildReason.PARENT_PUBLISHED, 1),
    )


def _awaiting_parent(
    item: PlanItem,
    graph: Mapping[TemplateId, tuple[TemplateId, ...]],
    states: Mapping[TemplateId, TemplateState],
) -> PlanItem:
    """A child that is not due (or finds no usable parent image yet) says that its gated parent's
    candidate, once promoted, will make it so."""
    own = states.get(_key(item.template.id))
    if item.action not in (Action.NONE, Action.BLOCKED) or (own is not None and own.disabled):
        return item
    for parent in graph.get(_key(item.template.id), ()):
        state = states.get(parent)
        if state is not None and state.candidate_build:
            why = f"waiting for parent promotion: {state.name} {state.candidate_version} is a candidate"
            return dataclasses.replace(item, action=Action.NONE, reason=f"{why}; {item.reason}")
    return item


def _revoked_parent(
    item: PlanItem,
    graph: Mapping[TemplateId, tuple[TemplateId, ...]],
    states: Mapping[TemplateId, TemplateState],
    now: datetime,
) -> PlanItem:
    """A child whose image was built on a parent version since revoked is due (`parent-revoked`),
    rebuilt from the parent's `latest` now, even though that is older than what it was built from."""
    own = states.get(_key(item.template.id))
    if own is None or not own.baseline_parent_build or item.action is not Action.NONE or own.open_builds:
        return item
    for parent in graph.get(_key(item.template.id), ()):
        state = states.get(parent)
        version = dict(state.revoked).get(own.baseline_parent_build) if state is not None else None
        if state is None or version is None or not item.candidate_version:
            continue
        why = f"built on revoked {state.name} {version}: rebuilt from {item.candidate_version}"
        flags = (*item.flags, "built-on-revoked")
        if item.mode is Mode.MANUAL:
            return dataclasses.replace(
                item, reason=f"manual template: {why}; rebuilt only on request", flags=flags
            )
        due = Due(
            BuildReason.PARENT_REVOKED, f"parent-revoked:{own.baseline_parent_build}", item.candidate_version
        )
        found, reason = _windowed(due, why, item.rules, now)
        return dataclasses.replace(
            item,
            action=Action.REBUILD if found else Action.NONE,
            reason=reason,
            flags=flags,
            due=found.reason if found else None,
            key=found.key if found else "",
            build_version=found.version if found else "",
            next_due_at=now if found else item.next_due_at,
        )
    return item


def _busy(state: TemplateState) -> str:
    if state.candidate_build in state.open_builds:
        return f"candidate {state.candidate_version} (build {state.candidate_build}) awaits promotion"
    return f"build {state.open_builds[-1]} is in progress"


def _key(template_id: str) -> TemplateId:
    return TemplateId(fold(template_id))


def _decide(
    managed: Managed, candidate: Candidate, state: TemplateState | None, now: datetime, defaults: Rules
) -> PlanItem:
    template = managed.template
    rules = policies.rules_of(template.tags, defaults)
    base, adopted = baseline(template, state)
    built, started = built_at(template, state), last_started(template, state)
    pinned_flags, pinned_note = _pinned_status(template, candidate)
    scheduled = ("scheduled-for-deprecation",) if candidate.scheduled_for_deprecation else ()
    flags: tuple[str, ...] = (*scheduled, *pinned_flags)
    due: Due | None = None
    obstacle = _obstacle(template, candidate, state)
    if obstacle is not None:
        action, reason = obstacle
    else:
        found, why = _by_rule(template, candidate, base, adopted, rules, built, started, now)
        due, reason = _windowed(found, why, rules, now)
        action = Action.REBUILD if due is not None else Action.NONE
    if pinned_note:
        reason += f"; {pinned_note}"
    stuck = candidate.pinned is not None and candidate.pinned.state is ImageState.DEPRECATED
    if stuck and action is not Action.SKIP and (due is None or due.version == base):
        # Azure refuses new builds from a deprecated version: only a move to another version helps.
        action, due = Action.BLOCKED, None
        reason = f"blocked: {pinned_note} (Azure refuses new builds from it; pin a newer version)"
    if action is Action.REBUILD and managed.mode is Mode.MANUAL:
        action, reason, flags = (
            Action.NONE,
            f"manual template: {reason}; rebuilt only on request",
            ("manual", *flags),
        )
        due = None
    upcoming = (now, reason) if due is not None else policies.next_due(rules, built, started, now)
    return PlanItem(
        template,
        managed.mode,
        describe_source(template),
        base,
        adopted,
        candidate.version,
        action,
        reason,
        flags,
        due=due.reason if due else None,
        key=due.key if due else "",
        build_version=due.version if due else "",
        rules=rules,
        next_due_at=upcoming[0] if upcoming and action in _PLANNED else None,
        next_due_why=upcoming[1] if upcoming and action in _PLANNED else "",
        problems=(*rules.problems, *gate_for(template).problems),
    )


_PLANNED = (Action.REBUILD, Action.NONE)  # a blocked or skipped template is due at no known time


def built_at(template: ImageTemplate, state: TemplateState | None) -> datetime | None:
    """When the image the template last built successfully was begun (its age counts from then)."""
    if state is not None and state.baseline_at is not None:
        return state.baseline_at
    run = template.last_run
    if run is not None and run.state is RunState.SUCCEEDED and (state is None or state.baseline_version):
        return run.started_at
    return None


def last_started(template: ImageTemplate, state: TemplateState | None) -> datetime | None:
    """When the template's newest build began: what a cooldown counts from."""
    if state is not None and state.known_run_started_at is not None:
        return state.known_run_started_at
    return template.last_run.started_at if template.last_run else None


def _pinned_status(template: ImageTemplate, candidate: Candidate) -> tuple[tuple[str, ...], str]:
    pinned = candidate.pinned
    if pinned is None or pinned.state is ImageState.ACTIVE:
        return (), ""
    newest = (
        f"the newest usable version is {candidate.version}" if candidate.version else "no version is usable"
    )
    if pinned.state is ImageState.DEPRECATED:
        return ("pinned-source-deprecated",), f"the pinned version {pinned.version} is deprecated; {newest}"
    when = f" on {pinned.scheduled_deprecation_at:%Y-%m-%d}" if pinned.scheduled_deprecation_at else ""
    return (
        ("pinned-source-scheduled-for-deprecation",),
        f"the pinned version {pinned.version} is scheduled for deprecation{when}; {newest}",
    )


@dataclass(frozen=True)
class Due:
    reason: BuildReason
    key: str
    version: str


def _windowed(found: Due | None, reason: str, rules: Rules, now: datetime) -> tuple[Due | None, str]:
    """Automatic builds of every reason wait for the template's window."""
    if found is not None and rules.window is not None and not rules.window.contains(now):
        opens = rules.window.next_opening(now)
        return (
            None,
            f"waiting for window {rules.window.text} (opens {opens:%Y-%m-%d %H:%M} UTC); then {reason}",
        )
    return found, reason


def _by_rule(
    template: ImageTemplate,
    candidate: Candidate,
    base: str,
    adopted: bool,
    rules: Rules,
    built: datetime | None,
    started: datetime | None,
    now: datetime,
) -> tuple[Due | None, str]:
    """The rule that makes the template due now, with the reason a person reads, or why none does:
    patch day first, then a new source version, then maximum age. A new eligible version is due
    whatever the cooldown; a version younger than the minimum release age is never built, so a
    template that builds from `latest` (it would take that version) waits for it."""
    newer = not base or version_key(candidate.version) > version_key(base)
    ripe = policies.eligible_at(rules, candidate.first_seen_at, now) if newer else None
    fresh = newer and ripe is None
    waiting = (
        f"waiting: {candidate.version} becomes eligible at {ripe:%Y-%m-%d %H:%M} UTC"
        f" (minimum release age {rules.min_release_age_hours} h)"
        if ripe
        else ""
    )
    _, update = _compare(template, candidate, base, adopted)
    as_is = base if is_pinned(template) and base else ""  # a pinned template rebuilt as it is
    usable = candidate.version if fresh else as_is or ("" if ripe else candidate.version)
    cooling = policies.cooling_until(rules, started, now)
    occurrence = policies.patch_day_due(rules, built, now)
    aged = policies.max_age_due(rules, built, now) if base else None
    if occurrence is not None:
        rule = Due(BuildReason.PATCH_DAY, f"patch-day:{occurrence.key}", usable)
        why = (
            f"patch day {occurrence.key} (Patch Tuesday +{rules.patch_day}: {occurrence.starts_at:%Y-%m-%d})"
        )
        held = cooling is not None and not fresh
    elif fresh:
        return Due(
            BuildReason.SOURCE_UPDATE, f"{BuildReason.SOURCE_UPDATE}:{candidate.version}", usable
        ), update
    elif aged is not None and built is not None:
        rule = Due(BuildReason.MAX_AGE, f"max-age:{aged:%Y%m%dT%H%M%SZ}", usable)
        why = f"the last successful build ({built:%Y-%m-%d %H:%M} UTC) is over {rules.max_age_days} days old"
        held = cooling is not None
    else:
        return None, waiting or f"up to date: {base} is the newest version in {template.location}"
    if not usable:
        return None, f"{waiting}; then {why}"
    if held:
        return None, f"{why}: in cooldown until {cooling:%Y-%m-%d %H:%M} UTC ({rules.cooldown_hours} h)"
    return rule, f"{why}; {update}" if fresh else why


def _obstacle(
    template: ImageTemplate, candidate: Candidate, state: TemplateState | None
) -> tuple[Action, str] | None:
    """Why the template cannot be compared at all: unsupported, disabled, unreadable, or busy."""
    src = template.source
    if src.kind not in (SourceKind.PLATFORM_IMAGE, SourceKind.SHARED_IMAGE_VERSION):
        kind = src.raw_type or src.kind.value
        return Action.SKIP, f"source type {kind} is not supported (PlatformImage or SharedImageVersion only)"
    if src.kind is SourceKind.PLATFORM_IMAGE and src.image is None:
        return Action.SKIP, "PlatformImage source without publisher, offer and sku"
    if state is not None and state.disabled:
        return Action.BLOCKED, (
            f"disabled after {state.consecutive_failures} consecutive failed builds: {state.disabled_reason}"
            f" (python -m rebuilder enable {template.name})"
        )
    if candidate.problem:
        return Action.BLOCKED, candidate.problem
    if state is not None and state.open_builds:
        return Action.NONE, _busy(state)
    return None


def _compare(template: ImageTemplate, candidate: Candidate, base: str, adopted: bool) -> tuple[Action, str]:
    if base and version_key(candidate.version) <= version_key(base):
        return Action.NONE, f"up to date: {base} is the newest version in {template.location}"
    since = f" since {candidate.first_seen_at:%Y-%m-%d %H:%M} UTC" if candidate.first_seen_at else ""
    if not base:
        reason = f"no successful build known; {candidate.version} is available in {template.location}{since}"
    else:
        reason = f"{base} → {candidate.version} available in {template.location}{since}"
        newer = [
            v
            for v in candidate.available
            if version_key(base) < version_key(v) < version_key(candidate.version)
        ]
        if newer:
            reason += f" ({len(newer) + 1} new versions, one rebuild to the newest)"
    if is_pinned(template):
        reason += "; the template is pinned and will be recreated with the new version"
    if adopted:
        reason += " (baseline adopted from the template's last successful run)"
    if candidate.scheduled_for_deprecation:
        reason += f"; {candidate.version} is scheduled for deprecation"
    return Action.REBUILD, reason


def mode_of(tags: Mapping[str, str]) -> tuple[Mode | None, str]:
    """The template's mode from its tags (name and value compared case-insensitively), or why none."""
    for name, value in tags.items():
        if fold(name) == REBUILD_TAG:
            text = fold((value or "").strip())
            if text in (Mode.AUTO, Mode.MANUAL):
                return Mode(text), ""
            return None, f"tag {REBUILD_TAG}={value!r} is neither 'auto' nor 'manual'"
    return None, f"no {REBUILD_TAG} tag"
