"""Replication of a build's gallery image versions (DESIGN §3.5), pure: region rows over every version
the build published, which failed regions to repair, and the build's move once they are read."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .builds import Build, BuildState, RegionStatus
from .model import GalleryImageVersion, ReplicationState
from .regions import Region
from .releases import FAILED_RUN, released
from .runs import Policy, Step


@dataclass(frozen=True)
class Replication:
    rows: list[RegionStatus]
    completed: bool  # every target region Completed
    repair: tuple[Region, ...]  # failed regions to re-apply now
    given_up: tuple[Region, ...]  # failed regions whose repair budget is spent
    pending: tuple[Region, ...]  # still replicating


def replication(
    build: Build,
    versions: Sequence[GalleryImageVersion],
    previous: Sequence[RegionStatus],
    *,
    now: datetime,
    policy: Policy,
    may_repair: bool,
) -> Replication:
    """One row per target region over every gallery version the build produced. A region counts as
    Completed only when every version is; Failed when any failed."""
    before = {r.region: r for r in previous}
    per_region: dict[Region, list[tuple[ReplicationState, int, str]]] = {}
    for version in versions:
        reported = {r.region: r for r in version.replication}
        for region in version.target_regions or tuple(reported):
            r = reported.get(region)
            per_region.setdefault(region, []).append(
                (r.state, r.progress, r.details) if r else (ReplicationState.UNKNOWN, 0, "")
            )
    rows: list[RegionStatus] = []
    repair: list[Region] = []
    given_up: list[Region] = []
    pending: list[Region] = []
    for region, states in sorted(per_region.items()):
        state = _merged({s for s, _, _ in states})
        progress = min(p for _, p, _ in states)
        details = "; ".join(d for _, _, d in states if d)
        old = before.get(region)
        repairs = old.repairs if old else 0
        if state is ReplicationState.FAILED:
            if may_repair and repairs < policy.repair_limit:
                repairs += 1
                repair.append(region)
                details = f"repair {repairs} of {policy.repair_limit} requested; {details}"
            elif may_repair:
                given_up.append(region)
            else:
                pending.append(region)
        elif state is not ReplicationState.COMPLETED:
            pending.append(region)
        started = old.first_seen_replicating_at if old and old.first_seen_replicating_at else None
        if started is None and state is not ReplicationState.UNKNOWN:
            started = now
        completed_at = old.completed_at if old and old.completed_at else None
        if completed_at is None and state is ReplicationState.COMPLETED:
            completed_at = now
        rows.append(
            RegionStatus(
                build.id,
                region,
                True,
                state.value,
                100 if state is ReplicationState.COMPLETED else progress,
                details,
                started,
                completed_at,
                repairs,
                now,
            )
        )
    completed = bool(rows) and all(r.state == ReplicationState.COMPLETED for r in rows)
    return Replication(rows, completed, tuple(repair), tuple(given_up), tuple(pending))


def after_distribution(
    build: Build,
    step: Step | None,
    seen: Replication,
    *,
    over: bool,
    gallery: bool,
    now: datetime,
    policy: Policy,
    gated: bool = False,
) -> Step:
    """The build's move once its gallery versions are read: Published when every region is Completed
    (or nothing went to a gallery), PartiallyPublished when the failed regions' repairs are spent and
    nothing else is pending, else the run's own move (`step`), if any. `over`: the run has ended.
    `build` carries what was read (outputs); the run's move, when there is one, applies on top.
    A gated template's build becomes a candidate (or is rejected) where another would be published; a
    run whose validation failed is rejected, gated or not (its versions are demoted before it ends)."""
    base = step.after if step is not None and step.after is not None else build
    base = dataclasses.replace(base, outputs=build.outputs)
    invalid = base.run_outcome == FAILED_RUN  # its validation failed, and it distributed anyway: rejected
    settled = seen.completed or (seen.given_up and not seen.pending)
    if over and gallery and (invalid or (gated and settled)):
        return Step(*released(base, partial_regions=not seen.completed, now=now))
    if over and not gallery and base.run_outcome == FAILED_RUN:  # validation failed, nothing distributed
        failed = dataclasses.replace(base, state=BuildState.FAILED, sub_state=None, updated_at=now)
        return Step(failed, f"the run failed its validation: {base.message}")
    if over and (not gallery or seen.completed):
        why = f"replicated to every target region ({len(seen.rows)})" if gallery else "run succeeded"
        done = dataclasses.replace(base, state=BuildState.PUBLISHED, sub_state=None, updated_at=now)
        return Step(done, why)
    if over and seen.given_up and not seen.pending:
        why = f"replication failed in {', '.join(seen.given_up)} after {policy.repair_limit} repair(s)"
        partial = dataclasses.replace(
            base, state=BuildState.PARTIALLY_PUBLISHED, sub_state=None, message=why, updated_at=now
        )
        return Step(partial, why)
    if step is not None and step.after is not None:
        return Step(base, step.why)
    return Step(None)


def _merged(kinds: set[ReplicationState]) -> ReplicationState:
    """One region's state over every version: Completed only if all are; Failed if any is."""
    if kinds == {ReplicationState.COMPLETED}:
        return ReplicationState.COMPLETED
    for state in (ReplicationState.FAILED, ReplicationState.REPLICATING):
        if state in kinds:
            return state
    return ReplicationState.UNKNOWN


def changed_rows(new: Sequence[RegionStatus], old: Sequence[RegionStatus]) -> list[RegionStatus]:
    """The rows worth writing: new regions, or a change other than the observation time."""
    before = {r.region: dataclasses.replace(r, updated_at=None) for r in old}
    return [r for r in new if before.get(r.region) != dataclasses.replace(r, updated_at=None)]
