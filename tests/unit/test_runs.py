"""The reconciler's decisions over literal `lastRunStatus` shapes, as AIB returns them, for every run
state and sub-state; replication rows and repairs; the template's row when a build is over."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from rebuilder.adapters.shapes import last_run
from rebuilder.domain.builds import BuildReason, BuildState, RegionStatus
from rebuilder.domain.model import (
    GalleryImageVersion,
    GalleryVersionId,
    GalleryVersionName,
    RegionReplication,
    ReplicationState,
    RunSubState,
)
from rebuilder.domain.regions import Region
from rebuilder.domain.replication import replication
from rebuilder.domain.runs import Policy, Seen, decide, observe, settled, unaccounted
from rebuilder.domain.standing import TemplateState
from tests.records import T0, build

POLICY = Policy(max_attempts=3, retry_backoff=timedelta(minutes=5), repair_limit=2, disable_after=3)
ASKED = T0  # when the build asked for its run
NOW = T0 + timedelta(minutes=30)
ZERO = "0001-01-01T00:00:00Z"


def status(state: str, sub: str | None = None, *, end: str = ZERO, message: str = "", **extra: Any) -> Any:
    body: dict[str, Any] = {"startTime": "2026-11-10T06:00:05.1234567Z", "endTime": end, "runState": state}
    if sub is not None:
        body["runSubState"] = sub
    if message:
        body["message"] = message
    return {**body, **extra}


def running(**changes: Any) -> Any:
    return build(**{"state": BuildState.RUNNING, "attempts": 1, "run_started_at": ASKED, **changes})


@pytest.mark.parametrize(
    "sub", ["Queued", "Building", "Customizing", "Optimizing", "Validating", "Distributing"]
)
def test_every_sub_state_of_a_running_run_is_recorded_once(sub: str) -> None:
    seen = observe(last_run(status("Running", sub)), requested_at=ASKED)
    assert (seen.seen, seen.sub_state, seen.ended_at) == (Seen.IN_PROGRESS, RunSubState(sub), None)
    step = decide(running(), seen, now=NOW, policy=POLICY)
    assert step.after == dataclasses.replace(running(), sub_state=RunSubState(sub), updated_at=NOW)
    assert step.follow_outputs is (sub == "Distributing")
    again = decide(running(sub_state=RunSubState(sub)), seen, now=NOW, policy=POLICY)
    assert again.to is None  # nothing new to record
    assert again.follow_outputs is (sub == "Distributing")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (status("Running"), "not ended: zero endTime, no sub-state"),
        (status("Running", "Building", end="2026-11-10T06:00:05.1234567Z"), "end equal to start"),
        (status("Running", "Building", end="2026-11-10T05:00:00Z"), "end before start"),
        (status("running", "customizing"), "letter case"),
    ],
)
def test_odd_end_times_and_letter_case_still_read_as_running(body: Any, expected: str) -> None:
    seen = observe(last_run(body), requested_at=ASKED)
    assert seen.seen is Seen.IN_PROGRESS and seen.ended_at is None, expected


def test_an_unknown_sub_state_is_still_running_without_a_sub_state() -> None:
    seen = observe(last_run(status("Running", "Snapshotting")), requested_at=ASKED)
    assert (seen.seen, seen.sub_state) == (Seen.IN_PROGRESS, None)


def test_canceling_waits_for_the_outcome() -> None:
    seen = observe(last_run(status("Canceling")), requested_at=ASKED)
    assert seen.seen is Seen.CANCELING
    assert decide(running(), seen, now=NOW, policy=POLICY).to is None


def test_succeeded_follows_the_outputs_to_replication() -> None:
    seen = observe(last_run(status("Succeeded", end="2026-11-10T06:40:00Z")), requested_at=ASKED)
    step = decide(running(), seen, now=NOW, policy=POLICY)
    assert (step.to, step.follow_outputs) == (BuildState.REPLICATING, True)
    assert step.after is not None and step.after.run_ended_at == T0 + timedelta(minutes=40)


def test_partially_succeeded_keeps_the_message_and_follows_replication() -> None:
    message = "Distribution to Azure Compute Gallery partially failed: replication to East US 2 failed."
    seen = observe(
        last_run(status("PartiallySucceeded", end="2026-11-10T07:00:00Z", message=message)),
        requested_at=ASKED,
    )
    step = decide(running(), seen, now=NOW, policy=POLICY)
    assert step.after is not None
    assert (step.to, step.follow_outputs, step.after.message) == (BuildState.REPLICATING, True, message)


def test_a_failed_run_is_retried_with_backoff_until_the_attempts_are_spent() -> None:
    seen = observe(
        last_run(status("Failed", end="2026-11-10T06:20:00Z", message="exit 1")), requested_at=ASKED
    )
    first = decide(running(attempts=1), seen, now=NOW, policy=POLICY).after
    assert first is not None and first.state is BuildState.QUEUED
    assert first.next_attempt_at == NOW + timedelta(minutes=5) and first.message == "exit 1"
    second = decide(running(attempts=2), seen, now=NOW, policy=POLICY).after
    assert second is not None and second.next_attempt_at == NOW + timedelta(minutes=10)  # doubled
    last = decide(running(attempts=3), seen, now=NOW, policy=POLICY)
    assert last.to is BuildState.FAILED and "exit 1" in last.why and "3 attempt" in last.why


def test_a_failed_external_run_is_recorded_not_retried() -> None:
    seen = observe(last_run(status("Failed", end="2026-11-10T06:20:00Z")), requested_at=ASKED)
    step = decide(running(reason=BuildReason.EXTERNAL), seen, now=NOW, policy=POLICY)
    assert step.to is BuildState.FAILED


def test_canceled_by_somebody_else_ends_the_build_canceled() -> None:
    seen = observe(last_run(status("Canceled", end="2026-11-10T06:20:00Z")), requested_at=ASKED)
    assert decide(running(), seen, now=NOW, policy=POLICY).to is BuildState.CANCELED


def test_an_overrun_is_canceled_then_counted_as_a_failed_attempt() -> None:
    seen = observe(last_run(status("Running", "Customizing")), requested_at=ASKED)
    late = ASKED + POLICY.run_timeout + timedelta(minutes=1)
    step = decide(running(sub_state=RunSubState.CUSTOMIZING), seen, now=late, policy=POLICY)
    assert step.cancel and step.to is None
    canceled = observe(last_run(status("Canceled", end="2026-11-10T15:00:00Z")), requested_at=ASKED)
    after = decide(running(cancel_requested_at=late), canceled, now=late, policy=POLICY)
    assert after.to is BuildState.QUEUED and "timed out" in after.why


def test_a_run_older_than_the_request_is_not_this_builds() -> None:
    old = status("Succeeded", end="2026-11-09T08:00:00Z") | {"startTime": "2026-11-09T06:00:00Z"}
    seen = observe(last_run(old), requested_at=ASKED)
    assert seen.seen is Seen.NOT_VISIBLE
    assert decide(running(), seen, now=ASKED + timedelta(minutes=5), policy=POLICY).to is None  # grace
    lost = decide(running(), seen, now=ASKED + timedelta(minutes=11), policy=POLICY)
    assert lost.to is BuildState.QUEUED and "no run" in lost.why


def test_no_last_run_status_at_all_is_not_visible() -> None:
    assert observe(last_run(None), requested_at=ASKED).seen is Seen.NOT_VISIBLE
    assert observe(last_run({"runState": "Exploded"}), requested_at=ASKED).seen is Seen.NOT_VISIBLE


def test_a_run_newer_than_the_ledger_knows_is_unaccounted() -> None:
    run = last_run(status("Running", "Building"))
    state = TemplateState(build().template_id, "t", Region("westeurope"), T0)
    assert unaccounted(run, state)
    known = dataclasses.replace(state, known_run_started_at=run.started_at if run else None)
    assert not unaccounted(run, known)


def _version(*regions: tuple[str, ReplicationState]) -> GalleryImageVersion:
    return GalleryImageVersion(
        GalleryVersionId(
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/galleries/g/images/i/versions/1.0.1"
        ),
        GalleryVersionName("1.0.1"),
        "Updating",
        target_regions=tuple(Region(r) for r, _ in regions),
        replication=tuple(
            RegionReplication(Region(r), s, 100 if s is ReplicationState.COMPLETED else 40)
            for r, s in regions
        ),
    )


def test_replication_rows_repairs_and_giving_up() -> None:
    b = running()
    version = _version(("westeurope", ReplicationState.COMPLETED), ("eastus2", ReplicationState.FAILED))
    first = replication(b, [version], [], now=NOW, policy=POLICY, may_repair=True)
    assert first.repair == (Region("eastus2"),) and not first.completed and not first.given_up
    rows = {r.region: r for r in first.rows}
    assert rows[Region("eastus2")].repairs == 1 and rows[Region("westeurope")].completed_at == NOW
    while_running = replication(b, [version], [], now=NOW, policy=POLICY, may_repair=False)
    assert while_running.repair == () and while_running.pending == (Region("eastus2"),)
    spent = [dataclasses.replace(r, repairs=2) for r in first.rows]
    last = replication(b, [version], spent, now=NOW, policy=POLICY, may_repair=True)
    assert last.given_up == (Region("eastus2"),) and last.repair == ()
    done = _version(("westeurope", ReplicationState.COMPLETED), ("eastus2", ReplicationState.COMPLETED))
    later = replication(b, [done], first.rows, now=NOW + timedelta(hours=1), policy=POLICY, may_repair=True)
    assert later.completed
    kept = {r.region: r for r in later.rows}
    assert kept[Region("westeurope")].completed_at == NOW  # the first time it was seen completed
    assert kept[Region("eastus2")].completed_at == NOW + timedelta(hours=1)


def test_the_templates_row_after_builds_end() -> None:
    b = build(state=BuildState.PUBLISHED)
    state = TemplateState(
        b.template_id, "t", Region("westeurope"), T0, baseline_version="22.04.1", open_builds=(b.id,)
    )
    rows = [RegionStatus(b.id, Region("westeurope"), True, "Completed", 100, completed_at=NOW)]
    after = settled(state, b, rows, now=NOW, policy=POLICY)
    assert (after.baseline_version, after.open_builds, after.last_build_state) == (
        b.source.resolved_version,
        (),
        BuildState.PUBLISHED,
    )
    assert settled(after, b, rows, now=NOW, policy=POLICY) == after  # idempotent
    failures = state
    for n in range(1, 4):
        failed = build(key=f"k{n}", state=BuildState.FAILED, message="exit 1")
        failures = settled(
            dataclasses.replace(failures, open_builds=(failed.id,)), failed, [], now=NOW, policy=POLICY
        )
        assert failures.consecutive_failures == n and failures.disabled is (n == 3)
    assert "3 consecutive failed builds" in failures.disabled_reason
