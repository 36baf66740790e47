"""One template's reconcile pass as one pure decision (DESIGN §3, steps 4–5). No I/O, `now` passed in.

`decide` takes what the shell gathered for a template — its row, its open builds, what Azure reports for
it, and the run outputs and replication of a build being distributed — and returns typed actions,
each with the reason a person reads. `start` decides how a queued build gets going once the shell has
given it a run slot; `refused` decides the build's move when AIB turns the run request down.

The shell (services/reconciler.py) only gathers, applies the actions in order, and records; every
action is safe to repeat, so a crash between any two is healed by the next pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from . import resource_ids
from .builds import Build, BuildId, BuildReason, BuildState, RegionStatus, Transition
from .definition import TemplateDefinition
from .limits import MAX_TEXT
from .model import GalleryImageVersion, GalleryVersionId, ImageTemplate, LastRun, RunState
from .planner import is_pinned
from .regions import Region
from .runs import (
    Policy,
    Seen,
    Step,
    after_distribution,
    changed_rows,
    failed_attempt,
    observe,
    replication,
    unaccounted,
)
from .runs import decide as decide_run
from .standing import TemplateState

_BUSY = (RunState.RUNNING, RunState.CANCELING)
# Provisioning errors worth another attempt; every other code (BadPIRSource, BadSourceType, …) says the
# definition itself is wrong, so the build fails at once with Azure's words.
TRANSIENT_PROVISIONING = frozenset({"ServerInternalError", "InternalError", "Other", "Unknown"})


# -- what was gathered --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Distribution:
    """What was read for the build being distributed: its run outputs and the gallery versions they
    name (with replication), and the region rows the ledger already has."""

    build_id: BuildId
    outputs: tuple[str, ...]
    versions: tuple[GalleryImageVersion, ...]
    rows: tuple[RegionStatus, ...]


@dataclass(frozen=True)
class Gathered:
    state: TemplateState
    builds: tuple[Build, ...]  # the template's open builds as stored, oldest first
    template: ImageTemplate | None  # None: Azure says there is no such template
    distribution: Distribution | None = None


# -- actions --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Save:
    """Write `after` over the stored `before` (with its transition when the state moves)."""

    before: Build
    after: Build
    transition: Transition | None = None
    rows: tuple[RegionStatus, ...] = ()
    trace_lineage: bool = False  # the resolved source version changed: find the parent build again


@dataclass(frozen=True)
class Settle:
    """Bring the template's row up to date from a finished build."""

    build: Build


@dataclass(frozen=True)
class Account:
    """The template's row accounts for the run AIB started at `started_at` (it is not somebody else's)."""

    started_at: datetime


@dataclass(frozen=True)
class Adopt:
    """Record a run somebody else started as a build (reason `external`)."""

    run: LastRun
    why: str


@dataclass(frozen=True)
class Cancel:
    build: Build  # its record once the cancel is asked for (cancel_requested_at set)
    why: str


@dataclass(frozen=True)
class Repair:
    build: BuildId
    version: GalleryVersionId
    regions: tuple[Region, ...]  # the version's target regions, re-applied
    failed: tuple[Region, ...]  # the regions that failed


@dataclass(frozen=True)
class Delete:
    why: str


@dataclass(frozen=True)
class Create:
    definition: TemplateDefinition
    why: str


@dataclass(frozen=True)
class Wait:
    why: str


Action = Save | Settle | Account | Adopt | Cancel | Repair | Delete | Create | Wait


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    read_distribution: BuildId | None = None  # gather this build's outputs and replication, decide again
    runnable: Build | None = None  # the queued build that may start once it has a run slot


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
    if run is not None and started_elsewhere(run, gathered.state, live):
        actions.append(Adopt(run, f"a run started outside rebuilder at {run.started_at} UTC"))
    followed = [_follow(b, gathered, now, policy, by) for b in live]
    need = next((d for d in followed if d.read_distribution), None)
    if need is not None and gathered.distribution is None:
        return Decision(tuple(actions), read_distribution=need.read_distribution)
    for d in followed:
        actions.extend(d.actions)
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
    return [
        _move(b, dataclasses.replace(b, state=BuildState.FAILED, message=why), why, now, by) for b in live
    ]


def _move(before: Build, after: Build, why: str, now: datetime, by: str) -> Save:
    """A save that the trail records: the transition row says what changed and why."""
    moved = dataclasses.replace(after, updated_at=now)
    return Save(before, moved, before.becomes(moved, why=why, by=by))


# -- one build ------------------------------------------------------------------------------------------
def _follow(build: Build, gathered: Gathered, now: datetime, policy: Policy, by: str) -> Decision:
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
    step = decide_run(matched, seen, now=now, policy=policy)
    if step.cancel:
        asked = dataclasses.replace(matched, cancel_requested_at=now, message=step.why, updated_at=now)
        return Decision((*actions, Cancel(asked, step.why), Save(build, asked)))
    if step.follow_outputs:
        return _distributing(build, matched, step, gathered, now, policy, by, actions)
    if step.after is not None:
        actions.append(_move(build, step.after, step.why, now, by))
    elif matched != build:
        actions.append(Save(build, matched, trace_lineage=_retraced(build, matched)))
    return Decision(tuple(actions))


def _matched(build: Build, template: ImageTemplate, started: datetime) -> Build:
    """First sight of the build's run in AIB: its real start and the source version it resolved."""
    exact = version_name(template.source.exact_version)
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
    seen_here = gathered.distribution
    if seen_here is None or seen_here.build_id != stored.id:
        return Decision(tuple(actions), read_distribution=stored.id)
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
    move = after_distribution(
        read, step, seen, over=over, gallery=bool(seen_here.versions), now=now, policy=policy
    )
    if move.after is not None:
        save = _move(stored, move.after, move.why, now, by)
        save = dataclasses.replace(save, rows=rows, trace_lineage=_retraced(stored, move.after))
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
    run = template.last_run
    if run is not None and run.state in _BUSY:  # AIB refuses a second run; the one going is followed
        return [Wait(f"{first.id}: {template.name} is running a build")], None
    provisioning = template.provisioning_state or "Succeeded"
    if provisioning == "Failed":
        return _unprovisioned(first, template, now, policy, by), None
    if provisioning != "Succeeded":
        return [Wait(f"{first.id}: {template.name} is {provisioning}")], None
    return [], first


def _unprovisioned(
    build: Build, template: ImageTemplate, now: datetime, policy: Policy, by: str
) -> list[Action]:
    """A template AIB could not provision: a transient error spends an attempt and the template is
    deleted to be submitted again (written ahead: the definition goes on the build first); a permanent
    one fails the build at once, in Azure's words."""
    error = template.provisioning_error
    said = f"{error.code}: {error.message}" if error else "no provisioningError given"
    message = f"AIB could not provision {template.name} ({said})"
    spent = dataclasses.replace(build, attempts=build.attempts + 1)
    if error is not None and error.code not in TRANSIENT_PROVISIONING:
        failed = dataclasses.replace(spent, state=BuildState.FAILED, message=message)
        return [_move(build, failed, f"{message}: not worth retrying", now, by)]
    step = failed_attempt(spent, message, now, policy)
    assert step.after is not None  # noqa: S101 - failed_attempt always moves
    if step.after.state is BuildState.FAILED or template.definition is None:
        return [_move(build, step.after, step.why, now, by)]
    resubmit = dataclasses.replace(
        step.after,
        next_attempt_at=None,
        definition_after=build.definition_after or template.definition.text,
        definition_hash_before=build.definition_hash_before or template.definition.hash,
        definition_hash_after=build.definition_hash_after or template.definition.hash,
    )
    save = _move(build, resubmit, f"{step.why}; deleting the template to submit it again", now, by)
    return [save, Delete(f"{template.name} failed to provision: deleted to be submitted again")]


# -- starting a build that has a run slot ----------------------------------------------------------------
@dataclass(frozen=True)
class Lease:
    """Write the build Running before AIB is asked (only the writer that won asks)."""

    save: Save


@dataclass(frozen=True)
class Recreate:
    """A pinned template names another version: its new definition goes on the build, then the old
    template is deleted; a later pass creates it once the delete is done."""

    save: Save


@dataclass(frozen=True)
class Refuse:
    save: Save


Start = Lease | Recreate | Refuse


def start(build: Build, template: ImageTemplate, *, now: datetime, policy: Policy, by: str) -> Start:
    if needs_recreate(template, build):
        assert template.definition is not None  # noqa: S101 - needs_recreate checks it
        after = template.definition.with_source_version(build.source.resolved_version)
        if len(after.text) > MAX_TEXT:
            why = f"the template definition ({len(after.text)} characters) is too large to recreate safely"
            return Refuse(
                _move(build, dataclasses.replace(build, state=BuildState.FAILED, message=why), why, now, by)
            )
        written = dataclasses.replace(
            build,
            definition_hash_before=template.definition.hash,
            definition_hash_after=after.hash,
            definition_after=after.text,
            message=f"recreating {template.name} with {build.source.resolved_version}",
            updated_at=now,
        )
        return Recreate(Save(build, written))
    attempt = build.attempts + 1
    leased = dataclasses.replace(
        build,
        state=BuildState.RUNNING,
        sub_state=None,
        attempts=attempt,
        run_started_at=now,
        run_ended_at=None,
        next_attempt_at=None,
        cancel_requested_at=None,
        updated_at=now,
    )
    return Lease(_move(build, leased, f"run requested (attempt {attempt} of {policy.max_attempts})", now, by))


def needs_recreate(template: ImageTemplate, build: Build) -> bool:
    """A pinned template whose definition names another version than the build's."""
    wanted = build.source.resolved_version
    if build.reason is BuildReason.EXTERNAL or not wanted or not is_pinned(template):
        return False
    return template.definition is not None and template.definition.source_version != wanted


@dataclass(frozen=True)
class Refusal:
    """How AIB answered a run request that did not start a run."""

    kind: str  # busy (a run is going: 409) | temporary (429/5xx/timeout) | permanent (4xx)
    message: str
    delay: float | None = None  # the server's Retry-After, when it gave one


def refused(
    leased: Build, before: Build, refusal: Refusal, *, now: datetime, policy: Policy, by: str
) -> Save:
    """The build's move when AIB turned down the run request the lease was for. A busy template or a
    temporary error does not spend the attempt, but temporary refusals in a row have a budget too."""
    back = dataclasses.replace(
        leased, state=BuildState.QUEUED, attempts=before.attempts, run_started_at=before.run_started_at
    )
    if refusal.kind == "busy":
        return _move(leased, back, f"AIB refused the run: {refusal.message}", now, by)
    if refusal.kind == "temporary":
        refusals = before.temporary_refusals + 1
        if refusals > policy.temporary_refusals:
            why = f"AIB refused the run {refusals} times in a row ({refusal.message}); giving up"
            failed = dataclasses.replace(
                back, state=BuildState.FAILED, message=why, temporary_refusals=refusals
            )
            return _move(leased, failed, why, now, by)
        delay = timedelta(seconds=refusal.delay) if refusal.delay else policy.backoff(refusals)
        later = dataclasses.replace(back, next_attempt_at=now + delay, temporary_refusals=refusals)
        return _move(
            leased, later, f"asking AIB for the run failed ({refusal.message}); retry after {delay}", now, by
        )
    step = failed_attempt(leased, f"AIB refused the run: {refusal.message}", now, policy)
    assert step.after is not None  # noqa: S101 - failed_attempt always moves
    return _move(leased, step.after, step.why, now, by)


# -- shared with the watch pass ------------------------------------------------------------------------
def started_elsewhere(run: LastRun | None, state: TemplateState | None, builds: Sequence[Build]) -> bool:
    """The one place that decides "this run was started elsewhere": a run newer than every run the
    ledger accounts for, while no build of the template is running it."""
    return (
        run is not None and not any(b.state is BuildState.RUNNING for b in builds) and unaccounted(run, state)
    )


def version_name(exact: str | None) -> str:
    """AIB reports a gallery source's exact version as a resource id: the version is its name."""
    return (exact or "").rstrip("/").rsplit("/", 1)[-1]


def gallery_version(artifact: str) -> GalleryVersionId | None:
    try:
        return resource_ids.gallery_version_id(artifact)
    except ValueError:
        return None
