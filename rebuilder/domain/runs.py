"""Following a build from what Azure reports (DESIGN §3.5). Pure: no I/O, `now` passed in.

`observe` reads AIB's `lastRunStatus` for the run a build asked for; `decide` maps every run state and
sub-state to the build's next move (or none); `replication` turns gallery image versions into region
rows and says which failed regions to repair; `settled` is the template's row once a build is over.
The reconciler (services/reconciler.py) only gathers the inputs and writes the results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from .builds import SUCCEEDED, Build, BuildReason, BuildState, RegionStatus
from .model import LastRun, ReplicationState, RunState, RunSubState
from .policies import NO_RULES, Rules
from .standing import RegionStanding, TemplateState
from .versions import version_key

# AIB's clock and ours differ a little: a run that AIB says started this long before we asked is ours.
CLOCK_SKEW = timedelta(seconds=60)


@dataclass(frozen=True)
class Policy:
    """Limits and backoff from settings (see rebuilder/settings.py for the names and defaults)."""

    max_attempts: int = 3  # runs per build before it fails
    retry_backoff: timedelta = timedelta(minutes=5)  # after the first failure; doubles each time
    max_backoff: timedelta = timedelta(hours=6)
    run_timeout: timedelta = timedelta(hours=8)  # a run still going after this is canceled and retried
    lost_run_grace: timedelta = timedelta(minutes=10)  # a requested run AIB never shows: asked again
    repair_limit: int = 2  # re-applications of target regions per region before giving up on it
    disable_after: int = 3  # consecutive failed builds before the template is disabled
    max_concurrent_runs: int = 10
    temporary_refusals: int = 10  # run requests refused with 429/5xx in a row before the build fails
    defaults: Rules = NO_RULES  # the service-wide rebuild policies (REBUILDER_DEFAULT_*) tags override

    def backoff(self, attempts: int) -> timedelta:
        """Wait before attempt `attempts + 1`: retry_backoff, doubling, capped at max_backoff."""
        factor: int = 2 ** max(0, min(attempts - 1, 20))
        longer: timedelta = self.retry_backoff * factor
        return min(self.max_backoff, longer)


# -- the run --------------------------------------------------------------------------------------------
class Seen(StrEnum):
    NOT_VISIBLE = "not-visible"  # AIB shows no run since the build asked for one
    IN_PROGRESS = "in-progress"
    CANCELING = "canceling"
    SUCCEEDED = "succeeded"
    PARTIALLY_SUCCEEDED = "partially-succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


_SEEN: Mapping[RunState, Seen] = {
    RunState.RUNNING: Seen.IN_PROGRESS,
    RunState.CANCELING: Seen.CANCELING,
    RunState.SUCCEEDED: Seen.SUCCEEDED,
    RunState.PARTIALLY_SUCCEEDED: Seen.PARTIALLY_SUCCEEDED,
    RunState.FAILED: Seen.FAILED,
    RunState.CANCELED: Seen.CANCELED,
}


@dataclass(frozen=True)
class Observation:
    seen: Seen
    sub_state: RunSubState | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None  # None unless AIB gave an end time after the start
    message: str = ""

    @property
    def over(self) -> bool:
        return self.seen in (Seen.SUCCEEDED, Seen.PARTIALLY_SUCCEEDED, Seen.FAILED, Seen.CANCELED)


def observe(run: LastRun | None, *, requested_at: datetime | None) -> Observation:
    """What `lastRunStatus` says about the run requested at `requested_at`. An older run (or none) is
    not this build's: AIB shows only the last run of a template."""
    if run is None or run.started_at is None or requested_at is None:
        return Observation(Seen.NOT_VISIBLE)
    if run.started_at < requested_at - CLOCK_SKEW:
        return Observation(Seen.NOT_VISIBLE)
    seen = _SEEN[run.state]
    sub_state = run.sub_state if seen in (Seen.IN_PROGRESS, Seen.FAILED) else None  # Failed: where
    return Observation(seen, sub_state, run.started_at, run.ended_at, run.message)


def unaccounted(run: LastRun | None, state: TemplateState | None) -> bool:
    """A run newer than every run the ledger accounts for: somebody else started it."""
    if run is None or run.started_at is None:
        return False
    known = state.known_run_started_at if state is not None else None
    return known is None or run.started_at > known + timedelta(seconds=1)


@dataclass(frozen=True)
class Step:
    """A build's next move: `after`, the record to write (None: nothing to record yet), and `why`, the
    reason a person reads in the trail."""

    after: Build | None
    why: str = ""
    follow_outputs: bool = False  # read run outputs and the gallery versions they name
    cancel: bool = False  # ask AIB to cancel the run (it overran the timeout)

    @property
    def to(self) -> BuildState | None:
        return self.after.state if self.after is not None else None


def decide(build: Build, seen: Observation, *, now: datetime, policy: Policy) -> Step:
    """The move of a Running build for every state and sub-state AIB reports."""
    if seen.seen is Seen.NOT_VISIBLE:
        asked = build.run_started_at or build.updated_at
        if now - asked < policy.lost_run_grace:
            return Step(None)
        return failed_attempt(build, f"AIB shows no run since {asked:%Y-%m-%d %H:%M:%S} UTC", now, policy)
    if seen.seen is Seen.IN_PROGRESS:
        return _in_progress(build, seen, now, policy)
    if seen.seen is Seen.CANCELING:
        return Step(None, "AIB is canceling the run: the outcome decides")
    return _over(build, seen, now, policy)


def _in_progress(build: Build, seen: Observation, now: datetime, policy: Policy) -> Step:
    started = seen.started_at or build.run_started_at or now
    if build.cancel_requested_at is None and now - started > policy.run_timeout:
        hours = policy.run_timeout.total_seconds() / 3600
        return Step(None, f"the run overran {hours:g} h: canceling it", cancel=True)
    distributing = seen.sub_state is RunSubState.DISTRIBUTING
    if seen.sub_state is not build.sub_state:
        step = seen.sub_state.value if seen.sub_state else "running"
        after = dataclasses.replace(build, sub_state=seen.sub_state, updated_at=now)
        return Step(after, f"AIB: {step}", follow_outputs=distributing)
    return Step(None, follow_outputs=distributing)


def _over(build: Build, seen: Observation, now: datetime, policy: Policy) -> Step:
    ended = seen.ended_at or now
    if seen.seen in (Seen.SUCCEEDED, Seen.PARTIALLY_SUCCEEDED):
        partial = seen.seen is Seen.PARTIALLY_SUCCEEDED
        after = dataclasses.replace(
            build,
            state=BuildState.REPLICATING,
            sub_state=None,
            run_ended_at=ended,
            message=seen.message if partial else build.message,
            run_outcome=RunState.PARTIALLY_SUCCEEDED.value if partial else RunState.SUCCEEDED.value,
            updated_at=now,
        )
        why = (
            "AIB: run partially succeeded" + (f": {seen.message}" if seen.message else "") if partial else ""
        )
        return Step(after, why or "AIB: run succeeded", follow_outputs=True)
    if seen.seen is Seen.CANCELED and build.cancel_requested_at is None:
        after = dataclasses.replace(
            build, state=BuildState.CANCELED, sub_state=None, run_ended_at=ended, updated_at=now
        )
        return Step(after, "the run was canceled outside rebuilder")
    message = seen.message or "no message from AIB"
    if seen.seen is Seen.CANCELED:
        message = f"timed out and canceled: {message}"
    return failed_attempt(build, message, now, policy, ended_at=ended)


def failed_validation(build: Build, seen: Observation, now: datetime) -> Step | None:
    """A run that failed its `validate` step, known by its structure: `runState: Failed` with
    `runSubState: Validating` (or a run last seen Validating that then failed). Microsoft's AIB docs
    (validate.continueDistributeOnFailure): "In either case (true or false), the end to end image run
    will be reported as having failed in case of a validation failure" — with the flag on, the images
    were distributed anyway. Its distributed versions are read and the build is rejected, gated or not
    (never retried: the same inputs would fail the same tests; never promoted; demoted everywhere)."""
    validating = RunSubState.VALIDATING in (seen.sub_state, build.sub_state)
    if seen.seen is not Seen.FAILED or not validating:
        return None
    after = dataclasses.replace(
        build,
        state=BuildState.REPLICATING,
        sub_state=None,
        run_ended_at=seen.ended_at or now,
        message=seen.message,
        run_outcome=RunState.FAILED.value,
        updated_at=now,
    )
    return Step(after, f"AIB: {seen.message}", follow_outputs=True)


def failed_attempt(
    build: Build, message: str, now: datetime, policy: Policy, *, ended_at: datetime | None = None
) -> Step:
    """Retry later with backoff, or fail the build once its attempts are spent. Runs that somebody
    else started are recorded, never retried."""
    base = dataclasses.replace(
        build,
        sub_state=None,
        message=message,
        cancel_requested_at=None,
        run_ended_at=ended_at or build.run_ended_at,
        updated_at=now,
    )
    if build.reason is not BuildReason.EXTERNAL and build.attempts < policy.max_attempts:
        at = now + policy.backoff(build.attempts)
        after = dataclasses.replace(base, state=BuildState.QUEUED, next_attempt_at=at)
        return Step(
            after,
            f"attempt {build.attempts} of {policy.max_attempts} failed: {message}; "
            f"retry at {at:%Y-%m-%d %H:%M} UTC",
        )
    failed = dataclasses.replace(base, state=BuildState.FAILED)
    return Step(failed, f"failed after {build.attempts} attempt(s): {message}")


# -- following a template through temporary errors ----------------------------------------------------
def backed_off(state: TemplateState, delay: float | None, *, now: datetime, policy: Policy) -> TemplateState:
    """Look at the template again only after the server's Retry-After, or the backoff from the policy
    (growing with each error in a row): a throttled API is not hammered by every pass."""
    errors = state.follow_errors + 1
    wait = max(policy.backoff(errors), timedelta(seconds=delay or 0))
    return dataclasses.replace(state, follow_after=now + wait, follow_errors=errors, updated_at=now)


def recovered(state: TemplateState, *, now: datetime) -> TemplateState:
    return dataclasses.replace(state, follow_after=None, follow_errors=0, updated_at=now)


def waiting_after_errors(state: TemplateState) -> str:
    return (
        f"Azure answered with temporary errors; looking again at {state.follow_after:%Y-%m-%d %H:%M:%S} UTC"
    )


# -- the template's row when a build is over -------------------------------------------------------------
def settled(
    state: TemplateState, build: Build, regions: Sequence[RegionStatus], *, now: datetime, policy: Policy
) -> TemplateState:
    """The template's row after `build` finished: idempotent (a row that already records it is kept)."""
    if build.id not in state.open_builds and state.last_build_id == build.id:
        return state
    after = dataclasses.replace(
        state.without_open(build.id, at=now), last_build_id=build.id, last_build_state=build.state
    )
    if state.candidate_build == build.id:  # promoted or rejected: no longer awaiting promotion
        after = dataclasses.replace(after, candidate_build="", candidate_version="")
    if build.state in SUCCEEDED:
        version = build.source.resolved_version
        rebuilt = build.reason is BuildReason.PARENT_REVOKED  # onto an older parent image, on purpose
        if version and (
            rebuilt
            or not state.baseline_version
            or version_key(version) >= version_key(state.baseline_version)
        ):
            after = dataclasses.replace(
                after,
                baseline_version=version,
                baseline_build_id=build.id,
                baseline_parent_build=build.lineage.parent_build_id if build.lineage else "",
            )
        began = build.run_started_at or build.created_at
        if state.baseline_at is None or began > state.baseline_at:
            after = dataclasses.replace(after, baseline_at=began)
        image = build.outputs[0] if build.outputs else ""
        after = dataclasses.replace(after, consecutive_failures=0)
        for row in regions:
            if row.state == ReplicationState.COMPLETED:
                after = after.with_region(
                    RegionStanding(row.region, build.id, version, image, row.state, row.completed_at), at=now
                )
    elif build.state in (BuildState.FAILED, BuildState.REJECTED) and build.reason is not BuildReason.EXTERNAL:
        failures = state.consecutive_failures + 1
        after = dataclasses.replace(after, consecutive_failures=failures)
        if failures >= policy.disable_after and not state.disabled:
            after = dataclasses.replace(
                after,
                disabled=True,
                disabled_at=now,
                disabled_reason=f"{failures} consecutive failed builds; the last: {build.message}",
            )
    return after
