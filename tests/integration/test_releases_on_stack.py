"""Gated templates on the local stack (ARM simulator + Azurite, real SDK clients): a build whose
distributor excludes new versions from latest is a candidate, baked, then promoted — automatically, or
when a person approves it — and only then does its child build on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devstack import estate
from devstack.armsim import ArmSimulator, SimControl
from devstack.azurite import Azurite
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.domain.builds import Build, BuildReason, BuildState
from rebuilder.domain.model import GalleryVersionId
from rebuilder.domain.releases import versions_of
from rebuilder.services.records import Caller
from rebuilder.services.requests import roll_back
from tests.crashes import Crash, CrashPlan
from tests.integration.orchestration import (
    Driver,
    cli,
    cli_refused,
    make_driver,
    states_by_name,
    template_id,
)

PARENT, CHILD = estate.GATED, estate.GATED_CHILD


@pytest.fixture
def driver(armsim: ArmSimulator, sim: SimControl, azurite: Azurite) -> Iterator[Driver]:
    made = make_driver(armsim, sim, azurite)
    yield made
    made.services.close()


def add_gated(driver: Driver, validate: dict[str, Any] | None = None, **tags: str) -> None:
    """A gated parent (its distributor publishes with excludeFromLatest) and a child built on it."""
    clients = AzureClients(driver.services.settings)
    try:
        estate.create_gated(clients, tags, validate=validate)
    finally:
        clients.close()


def excluded(driver: Driver, version_id: GalleryVersionId) -> bool:
    return driver.services.gallery.get_version(version_id, with_replication=False).excluded_from_latest


def test_a_gated_build_is_baked_promoted_and_only_then_built_on(driver: Driver, sim: SimControl) -> None:
    add_gated(driver, **{"rebuild-bake-hours": "6"})
    driver.watch()
    driver.until(lambda: driver.last(PARENT).state is BuildState.CANDIDATE, step=600)
    parent = driver.last(PARENT)
    [version] = versions_of(parent)
    assert excluded(driver, version) and parent.candidate_at is not None
    assert parent.run_outcome == "Succeeded"
    for _ in range(6):  # an hour at a time through most of the bake: the child sees nothing yet
        sim.advance(3000)
        driver.watch()
        driver.reconcile()
    assert driver.last(PARENT).state is BuildState.CANDIDATE
    assert driver.builds(CHILD) == []  # its `latest` source ignores the candidate
    plan = {t["name"]: t for t in cli(driver, "plan", "--output", "json")["templates"]}
    name = version.rsplit("/", 1)[-1]
    assert f"candidate {name} (build {parent.id}) awaits promotion" in plan[PARENT]["reason"]
    assert f"waiting for parent promotion: {PARENT} {name} is a candidate" in plan[CHILD]["reason"]
    driver.until(lambda: driver.last(PARENT).state is BuildState.PROMOTED, step=600)
    promoted = driver.last(PARENT)
    assert not excluded(driver, version)
    assert promoted.promoted_at is not None
    assert (promoted.promoted_at - parent.candidate_at).total_seconds() >= 6 * 3600
    transitions = [t.to_state for t in driver.services.ledger.list_transitions(promoted.id)]
    assert transitions[-2:] == [BuildState.CANDIDATE, BuildState.PROMOTED]
    driver.until(lambda: bool(driver.builds(CHILD)) and driver.idle(), step=600)
    child = driver.last(CHILD)
    assert child.reason is BuildReason.PARENT_PUBLISHED and child.state is BuildState.PUBLISHED
    assert child.lineage is not None and child.lineage.parent_build_id == promoted.id
    assert child.source.resolved_version == version.rsplit("/", 1)[-1]
    assert child.created_at >= promoted.promoted_at  # requested once it was read back in latest


def test_a_failed_validation_is_rejected_and_never_promoted(driver: Driver, sim: SimControl) -> None:
    smoke = {"type": "Shell", "name": "smoke", "inline": ["systemctl is-system-running"]}
    add_gated(driver, {"continueDistributeOnFailure": True, "inVMValidations": [smoke]})
    sim.fail_build(PARENT, sub_state="Validating", message="Validation script 'smoke' exited with 1")
    driver.watch()
    driver.until(lambda: driver.last(PARENT).state.finished, step=600)
    rejected = driver.last(PARENT)
    assert rejected.state is BuildState.REJECTED and rejected.run_outcome == "Failed"
    assert "its validation failed; it is never promoted" in rejected.message
    [version] = versions_of(rejected)
    assert excluded(driver, version)  # distributed anyway, still out of latest
    assert driver.runs()[PARENT] == 1  # not retried: the same inputs would fail the same tests
    for _ in range(3):
        sim.advance(12 * 3600)
        driver.watch()
        driver.reconcile()
    assert excluded(driver, version) and driver.last(PARENT).state is BuildState.REJECTED
    assert driver.builds(CHILD) == []
    assert f"no candidate of {PARENT} awaits promotion" in cli_refused(driver, "promote", PARENT)
    kinds = [e.type for acted in driver.acted for e in acted.events]
    assert "ImageRejected" in kinds and "ImagePromoted" not in kinds


def test_a_manual_gate_waits_for_a_person_to_promote(driver: Driver, sim: SimControl) -> None:
    add_gated(driver, **{"rebuild-promote": "manual"})
    driver.watch()
    driver.until(lambda: driver.last(PARENT).state is BuildState.CANDIDATE, step=600)
    for _ in range(4):  # two days: nobody approved it
        sim.advance(12 * 3600)
        driver.reconcile()
    waiting = driver.last(PARENT)
    assert waiting.state is BuildState.CANDIDATE and waiting.approved_by == ""
    assert any("waits for approval" in w for w in driver.acted[-1].waiting)
    shown = cli(driver, "promote", PARENT, "--reason", "smoke tests passed", "--output", "json")
    assert shown["state"] == "Candidate" and shown["approved_by"]  # promotion sent, not read back yet
    driver.reconcile()  # the next pass reads it back
    promoted = driver.last(PARENT)
    assert promoted.state is BuildState.PROMOTED and promoted.approved_by
    [version] = versions_of(promoted)
    assert not excluded(driver, version)
    whys = [t.why for t in driver.services.ledger.list_transitions(promoted.id)]
    assert any("promotion approved by" in w and "smoke tests passed" in w for w in whys)
    assert f"no candidate of {PARENT} awaits promotion" in cli_refused(driver, "promote", PARENT)


def two_promoted(driver: Driver, sim: SimControl) -> tuple[Build, Build]:
    """The gated parent built and promoted twice (the second from the patch-day source); a rollback
    before the second is refused: there is nothing to fall back to."""
    add_gated(driver)
    driver.watch()
    driver.until(lambda: driver.last(PARENT).state is BuildState.PROMOTED, step=600)
    first = driver.last(PARENT)
    assert "no earlier version to fall back to" in cli_refused(driver, "rollback", PARENT, "--reason", "x")
    sim.publish(*estate.UBUNTU, estate.PATCH_DAY[estate.UBUNTU], list(estate.REGIONS))
    driver.until(lambda: driver.last(PARENT).id != first.id and driver.idle(), step=600)
    second = driver.last(PARENT)
    return first, second


def test_a_rollback_makes_the_previous_version_latest_and_revokes_the_build(
    driver: Driver, sim: SimControl
) -> None:
    first, second = two_promoted(driver, sim)
    assert second.state is BuildState.PROMOTED
    [old], [new] = versions_of(first), versions_of(second)
    for made, version in ((first, old), (second, new)):  # provenance on the image itself
        tags = dict(driver.services.gallery.get_version(version, with_replication=False).tags)
        assert tags["rebuilder-build"] == made.id and tags["rebuilder-reason"] == made.reason.value
        assert tags["rebuilder-source-version"] == made.source.resolved_version
        assert tags["rebuilder-root-version"] == made.root_version and tags["rebuilder-definition-hash"]
    shown = cli(driver, "rollback", PARENT, "--reason", "boot loop on v5 kernels", "--output", "json")
    assert (shown["revoked"]["id"], shown["revoked"]["state"], shown["latest"]["id"]) == (
        second.id,
        "Revoked",
        first.id,
    )
    assert excluded(driver, new) and not excluded(driver, old)
    revoked = driver.services.ledger.get_build(second.id).record
    assert revoked.state is BuildState.REVOKED and "boot loop on v5 kernels" in revoked.message
    trail = driver.services.ledger.list_transitions(second.id)
    assert trail[-1].to_state is BuildState.REVOKED and "is latest again" in trail[-1].why
    row = states_by_name(driver.services)[PARENT]  # the row: its regions stand on the previous image again
    assert {r.build_id for r in row.regions} == {first.id} and row.revoked[-1] == (
        second.id,
        new.rsplit("/")[-1],
    )
    assert row.baseline_version == second.source.resolved_version  # not rebuilt from it again by itself
    # revocation flows down: the child built on the revoked version is rebuilt from latest, the older one
    built_on = driver.last(CHILD)
    assert built_on.lineage is not None and built_on.lineage.parent_build_id == second.id
    plan = {t["name"]: t for t in cli(driver, "plan", "--output", "json")["templates"]}
    old_name, new_name = old.rsplit("/", 1)[-1], new.rsplit("/", 1)[-1]
    assert (plan[CHILD]["action"], plan[CHILD]["due"]) == ("rebuild", "parent-revoked")
    assert f"built on revoked {PARENT} {new_name}: rebuilt from {old_name}" in plan[CHILD]["reason"]
    assert "built-on-revoked" in plan[CHILD]["flags"]
    driver.watch()
    driver.until(driver.idle, step=600)
    rebuilt = driver.last(CHILD)
    assert (rebuilt.reason, rebuilt.state, rebuilt.source.resolved_version) == (
        BuildReason.PARENT_REVOKED,
        BuildState.PUBLISHED,
        old_name,
    )
    assert rebuilt.lineage is not None and rebuilt.lineage.parent_build_id == first.id
    after = {t["name"]: t for t in cli(driver, "plan", "--output", "json")["templates"]}
    assert after[CHILD]["action"] == "none"  # rebuilt once: not due again
    assert "no earlier version to fall back to" in cli_refused(
        driver, "rollback", PARENT, "--reason", "again"
    )


def test_a_rollback_whose_caller_died_after_demoting_is_finished_by_the_next_timer_pass(
    driver: Driver, sim: SimControl
) -> None:
    first, second = two_promoted(driver, sim)
    [old], [new] = versions_of(first), versions_of(second)
    died = CrashPlan(2)  # the caller dies after demoting: the intent, the demotion (the audit row goes
    # with the revocation, in its transaction: issue 22, API 5)
    with pytest.raises(Crash, match="set_excluded_from_latest"):
        roll_back(
            died.wrap(driver.services.detection()),
            PARENT,
            now=driver.services.clock.now(),
            caller=Caller("cli", "ana@contoso.com", "0000-ana"),
            reason="boot loop on v5 kernels",
        )
    assert excluded(driver, new) and driver.last(PARENT).state is BuildState.PROMOTED  # half done
    assert died.steps == ["save_template_state", "set_excluded_from_latest"]
    assert driver.services.ledger.list_actions(template_id(PARENT)).items == []  # nothing took effect yet
    under_way = cli_refused(driver, "rollback", PARENT, "--reason", "again")  # its caller's lease runs
    assert f"a rollback of {PARENT} is under way, asked by ana@contoso.com" in under_way
    dry = cli(driver, "reconcile", "--dry-run", "--output", "json")
    assert not any("finish the rollback" in p for p in dry["planned"])  # not before the lease runs out
    sim.advance(301)
    dry = cli(driver, "reconcile", "--dry-run", "--output", "json")
    assert any(f"finish the rollback of {second.id}" in p for p in dry["planned"])
    acted = driver.reconcile()  # the next timer pass
    assert (second.id, BuildState.REVOKED) in [(b, s) for b, s, _ in acted.moved]
    assert [e.type for e in acted.events] == ["ImageRevoked"]
    revoked = driver.services.ledger.get_build(second.id).record
    assert revoked.state is BuildState.REVOKED
    assert revoked.message == "revoked by ana@contoso.com: boot loop on v5 kernels"
    trail = driver.services.ledger.list_transitions(second.id)
    assert "finished after its caller stopped" in trail[-1].why and trail[-1].by == "reconciler"
    assert excluded(driver, new) and not excluded(driver, old)
    row = states_by_name(driver.services)[PARENT]
    assert row.rollback is None and row.revoked[-1][0] == second.id
    assert {r.build_id for r in row.regions} == {first.id}
    actions = driver.services.ledger.list_actions(template_id(PARENT)).items
    assert [a.action for a in actions].count("rolled-back") == 1
    [rolled] = [a for a in actions if a.action == "rolled-back"]
    assert (rolled.by, rolled.by_id) == ("ana@contoso.com", "0000-ana")  # the pass finished it for her
