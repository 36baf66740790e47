"""One template's reconcile pass as one pure decision (DESIGN §3, steps 4–5). No I/O, `now` passed in.

`decide` takes what the shell gathered for a template — its row, its open builds, what Azure reports for
it, and the run outputs and replication of a build being distributed (domain/actions.py) — and returns
typed actions, each with the reason a person reads, and the queued build that may start. How it then
starts, and what a refused run request means, is domain/starts.py.

The shell (services/reconciler.py) only gathers, applies the actions in order, and records; every
action is safe to repeat, so a crash between any two is healed by the next pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from . import resource_ids
from .actions import (
    Account,
    Action,
    Adopt,
    Cancel,
    Create,
    Decision,
    Demote,
    Gathered,
    Promote,
    Repair,
    Save,
    Settle,
    Tag,
    Wait,
    move,
)
from .builds import Build, BuildReason, BuildState
from .definition import TemplateDefinition
from .model import GalleryImageVersion, ImageTemplate, LastRun, RunState
from .policies import rules_of
from .releases import (
    PROMOTE,
    Hold,
    claimed,
    gate_for,
    is_gated,
    promotion,
    provenance_tags,
    unclaimed,
    version_name,
)
from .replication import after_distribution, changed_rows, replication
from .runs import Policy, Seen, Step, failed_validation, observe, unaccounted
from .runs import decide as decide_run
from .standing import TemplateState
from .starts import unprovisioned

_BUSY = (RunState.RUNNING, RunState.CANCELING)
_EMERGENCY = (BuildReason.ON_DEMAND, BuildReason.EXTERNAL)  # not held back by a maintenance window


# -- the decision ---------------------------------------------------------------------------------------
def decide(gathered: Gathered, *, now: datetime, policy: Policy, by: str) -> Decision:
    """Every action one pass takes for one template."""
    finished = [b for b in gathered.builds if b.state.finished]
    live = [b for b in gathered.builds if not b.state.finished]
    actions: list[Action] = [Settle(b) for b in finished]  # a crash came between a build's end and its row
    template = gathered.template
    if not live:
        return Decision(tuple(actions))
    if template is None:
        return Decision((*actions, *_missing(live, now, by)))
    run = template.last_run
    adopting = run is not None and started_elsewhere(run, gathered.state, live)
    if run is not None and adopting:
        actions.append(Adopt(run, f"a run started outside rebuilder at {run.started_at} UTC", template))
    followed = [_follow(b, gathered, now, policy, by) for b in live]
    needed = tuple(b for d in followed for b in d.read_distributions)
    if needed:
        return Decision(tuple(actions), read_distributions=needed)
    for d in followed:
        actions.extend(d.actions)
    if adopting:  # the adopted run is followed from the next pass: nothing else starts meanwhile
        return Decision((*actions, Wait(f"{template.name}: following the run started elsewhere first")))
    still = [_after(b, followed[i]) for i, b in enumerate(live)]
    still = [b for b in still if not b.state.finished]
    more, runnable = _next(template, still, now, policy, by)
    return Decision((*actions, *more), runnable=runnable)


def _after(build: Build, decision: Decision) -> Build:
    saved = [a.after for a in decision.actions if isinstance(a, Save)]
    return saved[-1] if saved else build


def _missing(live: Sequence[Build], now: datetime, by: str) -> list[Action]:
    pending = next((b for b in live if b.definition_after and b.state is BuildState.QUEUED), None)
    if pending is not None:  # deleted to be recreated, not created again yet: create it now
        return [Create(TemplateDefinition(pending.definition_after), f"recreating for build {pending.id}")]
    why = "the image template no longer exists"
    return [move(b, dataclasses.replace(b, state=BuildState.FAILED, message=why), why, now, by) for b in live]


# -- one build ------------------------------------------------------------------------------------------
def _follow(build: Build, gathered: Gathered, now: datetime, policy: Policy, by: str) -> Decision:
    if build.state is BuildState.CANDIDATE:
        return _candidate(build, gathered, now, by)
    if build.state is BuildState.RUNNING:
        return _running(build, gathered, now, policy, by)
    if build.state is BuildState.REPLICATING:
        return _distributing(build, build, None, gathered, now, policy, by)
    return Decision(())


def _running(build: Build, gathered: Gathered, now: datetime, policy: Policy, by: str) -> Decision:
    template = gathered.template
    assert template is not None  # noqa: S101 - decide() handles a missing template first
    seen = observe(template.last_run, requested_at=build.run_started_at)
    actions: list[Action] = []
    matched = build
    if seen.seen is not Seen.NOT_VISIBLE and seen.started_at is not None:
        known = gathered.state.known_run_started_at
        if known is None or known < seen.started_at:
            actions.append(Account(seen.started_at))
        matched = _matched(build, template, seen.started_at)
    rejected = failed_validation(matched, seen, now)
    step = rejected or decide_run(matched, seen, now=now, policy=policy)
    retraced = _retraced(build, matched)
    if step.cancel:
        asked = dataclasses.replace(matched, cancel_requested_at=now, message=step.why, updated_at=now)
        return Decision((*actions, Cancel(asked, step.why), Save(build, asked, trace_lineage=retraced)))
    if step.follow_outputs:
        return _distributing(build, matched, step, gathered, now, policy, by, actions)
    if step.after is not None:
        actions.append(
            dataclasses.replace(move(build, step.after, step.why, now, by), trace_lineage=retraced)
        )
    elif matched != build:
        actions.append(Save(build, matched, trace_lineage=_retraced(build, matched)))
    return Decision(tuple(actions))


def _candidate(build: Build, gathered: Gathered, now: datetime, by: str) -> Decision:
    """A gated build's image, replicated everywhere: promoted once baked (and approved, if manual).
    The gallery update is sent, and the build written Promoted on a later pass, once a read shows
    every version in `latest` in every region (Azure answers an update `Updating` and applies it later)."""
    assert gathered.template is not None  # noqa: S101 - decide() handles a missing template first
    verdict = promotion(build, gate_for(gathered.template), now=now)
    if isinstance(verdict, Hold):
        return Decision((Wait(f"{build.id}: {verdict.why}"),))
    seen = gathered.distributions.get(build.id)
    if seen is None:
        return Decision((), read_distributions=(build.id,))
    if not seen.versions:
        return Decision((Wait(f"{build.id}: none of its gallery versions could be read"),))
    if all(v.excluded_everywhere(False) and not v.updating for v in seen.versions):
        promoted = dataclasses.replace(unclaimed(build), state=BuildState.PROMOTED, promoted_at=now)
        why = f"{verdict.why}; {_names(seen.versions)} in latest in every region (read back)"
        return Decision((move(build, promoted, why, now, by),))
    busy = [v for v in seen.versions if v.updating]
    if busy:
        return Decision((Wait(f"{build.id}: promoting {_names(busy)}: the gallery is Updating it"),))
    claim = claimed(build, PROMOTE, by, now)  # of two passes racing, one changes the gallery
    todo = tuple(v.id for v in seen.versions if not v.excluded_everywhere(False))
    return Decision(
        (
            Save(build, claim),
            Promote(build.id, todo, verdict.why),
            Wait(f"{build.id}: promotion of {_names(seen.versions)} sent; Promoted once a read shows it"),
        )
    )


def _names(versions: Sequence[GalleryImageVersion]) -> str:
    return ", ".join(v.name for v in versions)


_DISTRIBUTED = (
    BuildState.PUBLISHED,
    BuildState.PARTIALLY_PUBLISHED,
    BuildState.CANDIDATE,
    BuildState.REJECTED,
)


def _provenance(build: Build, versions: Sequence[GalleryImageVersion], gathered: Gathered) -> list[Action]:
    """Tag each version the build published with its provenance, merged into the tags it has (read
    in this pass: no extra call); a version that carries them already is left alone."""
    template = gathered.template
    known = template.definition.hash if template is not None and template.definition is not None else ""
    wanted = provenance_tags(build, build.definition_hash_after or known)
    tags = [(v, {**dict(v.tags), **wanted}) for v in versions]
    return [Tag(build.id, v.id, merged) for v, merged in tags if merged != dict(v.tags)]


def _release_pending(
    stored: Build, end: Build, versions: Sequence[GalleryImageVersion], gathered: Gathered
) -> list[Action]:
    """What the gallery still needs before the build may end as `end` (nothing: it may end now). A
    rejected build's versions leave `latest` in every region first (a bad image never stays there),
    then every version carries the build's provenance tags; each is read back on the next pass."""
    busy = [v for v in versions if v.updating]
    if busy:
        return [Wait(f"{stored.id}: the gallery is Updating {_names(busy)}; read again next pass")]
    if end.state is BuildState.REJECTED:
        served = tuple(v.id for v in versions if not v.excluded_everywhere(True))
        if served:
            why = f"{version_name(end)} failed: it leaves latest in every region before it is rejected"
            return [Demote(stored.id, served, why), Wait(f"{stored.id}: demotion sent; read back next pass")]
    tags = _provenance(end, versions, gathered)
    if tags:
        return [*tags, Wait(f"{stored.id}: provenance tags sent; read back next pass")]
    return []


def _matched(build: Build, template: ImageTemplate, started: datetime) -> Build:
    """First sight of the build's run in AIB: its real start and the source version it resolved."""
    exact = resource_ids.version_name(template.source.exact_version)
    if build.run_started_at == started and (not exact or exact == build.source.resolved_version):
        return build
    source = dataclasses.replace(build.source, resolved_version=exact or build.source.resolved_version)
    return dataclasses.replace(build, run_started_at=started, source=source)


def _retraced(before: Build, after: Build) -> bool:
    child = after.source.gallery_image_id != ""
    return child and after.source.resolved_version != before.source.resolved_version


def _distributing(
    stored: Build,
    build: Build,
    step: Step | None,
    gathered: Gathered,
    now: datetime,
    policy: Policy,
    by: str,
    actions: Sequence[Action] = (),
) -> Decision:
    """Run outputs → gallery versions → one row per target region; repair failed regions once the
    run is over; Published when every region is Completed."""
    seen_here = gathered.distributions.get(stored.id)
    if seen_here is None:
        return Decision(tuple(actions), read_distributions=(stored.id,))
    over = step is None or step.to is BuildState.REPLICATING
    read = dataclasses.replace(build, outputs=build.outputs or seen_here.outputs)
    seen = replication(read, seen_here.versions, seen_here.rows, now=now, policy=policy, may_repair=over)
    repairs: list[Action] = [
        Repair(
            stored.id,
            v.id,
            v.target_regions,
            tuple(r.region for r in v.replication if r.region in seen.repair),
        )
        for v in seen_here.versions
        if any(r.region in seen.repair for r in v.replication)
    ]
    rows = tuple(changed_rows(seen.rows, seen_here.rows))
    gated = gathered.template is not None and is_gated(gathered.template)
    outcome = after_distribution(
        read, step, seen, over=over, gallery=bool(seen_here.versions), now=now, policy=policy, gated=gated
    )
    pending = (
        _release_pending(stored, outcome.after, seen_here.versions, gathered)
        if outcome.after is not None and outcome.after.state in _DISTRIBUTED
        else []
    )
    if pending:  # the gallery is not yet as the end needs it: what it needs is sent, the end waits
        repairs.extend(pending)
        ran = step.after if step is not None and step.after is not None else None
        if ran is not None and ran.state is not stored.state:
            ran = dataclasses.replace(ran, outputs=read.outputs)
            save = dataclasses.replace(move(stored, ran, step.why if step else "", now, by), rows=rows)
            return Decision((*actions, *repairs, save))
        if rows or read != stored:
            kept = dataclasses.replace(read, updated_at=now)
            return Decision((*actions, *repairs, Save(stored, kept, rows=rows)))
        return Decision((*actions, *repairs))
    if outcome.after is not None:
        save = move(stored, outcome.after, outcome.why, now, by)
        save = dataclasses.replace(save, rows=rows, trace_lineage=_retraced(stored, outcome.after))
    elif rows or read != stored:
        save = Save(
            stored,
            dataclasses.replace(read, updated_at=now),
            rows=rows,
            trace_lineage=_retraced(stored, read),
        )
    else:
        return Decision((*actions, *repairs))
    return Decision((*actions, *repairs, save))


# -- what runs next --------------------------------------------------------------------------------------
def _next(
    template: ImageTemplate, live: Sequence[Build], now: datetime, policy: Policy, by: str
) -> tuple[list[Action], Build | None]:
    """The template's oldest due queued build, if the template can run now (else why not)."""
    if any(b.state is BuildState.RUNNING for b in live):
        return [], None
    queued = [
        b
        for b in live
        if b.state is BuildState.QUEUED and (b.next_attempt_at is None or b.next_attempt_at <= now)
    ]
    if not queued:
        return [], None
    first = queued[0]
    held = _held(first, template, now, policy)
    if held:
        return [Wait(f"{first.id}: {held}")], None
    if template.provisioning_state == "Failed":
        return unprovisioned(first, template, now, policy, by), None
    return [], first


def _held(build: Build, template: ImageTemplate, now: datetime, policy: Policy) -> str:
    """Why the template's next build cannot start now ('' when it can)."""
    run = template.last_run
    if run is not None and run.state in _BUSY:  # AIB refuses a second run; the one going is followed
        return f"{template.name} is running a build"
    rules = rules_of(template.tags, policy.defaults)
    window = rules.window
    if build.reason not in _EMERGENCY and window is not None and not window.contains(now):
        return f"waiting for window {window.text} (opens {window.next_opening(now):%Y-%m-%d %H:%M} UTC)"
    provisioning = template.provisioning_state or "Succeeded"
    if provisioning not in ("Succeeded", "Failed"):
        return f"{template.name} is {provisioning}"
    return ""


# -- shared with the watch pass ------------------------------------------------------------------------
def started_elsewhere(run: LastRun | None, state: TemplateState | None, builds: Sequence[Build]) -> bool:
    """The one place that decides "this run was started elsewhere": a run newer than every run the
    ledger accounts for, while no build of the template is running it."""
    return (
        run is not None and not any(b.state is BuildState.RUNNING for b in builds) and unaccounted(run, state)
    )
