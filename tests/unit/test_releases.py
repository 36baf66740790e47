"""Releases as pure decisions over literal inputs: the promotion gates, the release state machine,
rollback and revocation flowing down to children (rebuilder/domain/releases.py)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from rebuilder.domain.builds import BuildId, BuildState, Lineage
from rebuilder.domain.errors import PermanentError
from rebuilder.domain.model import RunState
from rebuilder.domain.releases import (
    Gate,
    Hold,
    IllegalRelease,
    NoFallback,
    Promote,
    Reject,
    Release,
    ReleaseState,
    built_on_revoked,
    gate_of,
    promotion,
    rollback,
)
from tests.records import UBUNTU, build

T0 = datetime(2026, 12, 10, 3, 0, tzinfo=UTC)
IMAGE = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/u/versions/"


def release(version: str = "1.0.2", **changes: object) -> Release:
    made = Release(BuildId(f"b-{version}"), "ubuntu2204", IMAGE + version, ReleaseState.CANDIDATE, T0, T0)
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


PUBLISHED = build(state=BuildState.PUBLISHED)
AUTO, BAKED, MANUAL = Gate(True), Gate(True, bake=timedelta(hours=24)), Gate(True, manual=True)

CASES: dict[str, tuple[object, ...]] = {
    # name: (build, release, gate, run state, validation failed, now, verdict type, words)
    "published, succeeded, no bake: promoted": (
        PUBLISHED,
        release(),
        AUTO,
        RunState.SUCCEEDED,
        False,
        T0,
        Promote,
        "1.0.2 promoted",
    ),
    "still replicating: held": (
        build(state=BuildState.REPLICATING),
        release(published_at=None),
        AUTO,
        RunState.SUCCEEDED,
        False,
        T0,
        Hold,
        "not replicated to every target region",
    ),
    "baking: held until the bake ends": (
        PUBLISHED,
        release(),
        BAKED,
        RunState.SUCCEEDED,
        False,
        T0 + timedelta(hours=23),
        Hold,
        "baking until 2026-12-11 03:00 UTC",
    ),
    "baked: promoted": (
        PUBLISHED,
        release(),
        BAKED,
        RunState.SUCCEEDED,
        False,
        T0 + timedelta(hours=24),
        Promote,
        "after 24 h of bake",
    ),
    "manual, not approved: held": (
        PUBLISHED,
        release(),
        MANUAL,
        RunState.SUCCEEDED,
        False,
        T0,
        Hold,
        "waits for approval (python -m rebuilder promote ubuntu2204)",
    ),
    "manual, approved: promoted naming who": (
        PUBLISHED,
        release(approved_by="ana@example.com"),
        MANUAL,
        RunState.SUCCEEDED,
        False,
        T0,
        Promote,
        "approved by ana@example.com",
    ),
    "partially succeeded run: rejected": (
        PUBLISHED,
        release(),
        AUTO,
        RunState.PARTIALLY_SUCCEEDED,
        False,
        T0,
        Reject,
        "did not fully succeed",
    ),
    "partially published build: rejected": (
        build(state=BuildState.PARTIALLY_PUBLISHED),
        release(),
        AUTO,
        RunState.SUCCEEDED,
        False,
        T0,
        Reject,
        "PartiallyPublished",
    ),
    "validation failed: rejected, even approved": (
        PUBLISHED,
        release(approved_by="ana"),
        MANUAL,
        RunState.SUCCEEDED,
        True,
        T0,
        Reject,
        "validation failed",
    ),
    "already promoted: nothing to do": (
        PUBLISHED,
        release(state=ReleaseState.PROMOTED),
        AUTO,
        RunState.SUCCEEDED,
        False,
        T0,
        Hold,
        "is Promoted",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=CASES)
def test_the_promotion_gates(case: str) -> None:
    made, candidate, gate, run, failed, now, kind, words = CASES[case]
    verdict = promotion(made, candidate, gate, run=run, validation_failed=failed, now=now)  # type: ignore[arg-type]
    assert isinstance(verdict, kind)  # type: ignore[arg-type]
    assert words in verdict.why  # type: ignore[operator]


def test_a_held_bake_says_when_to_look_again() -> None:
    verdict = promotion(PUBLISHED, release(), BAKED, run=RunState.SUCCEEDED, validation_failed=False, now=T0)
    assert isinstance(verdict, Hold) and verdict.until == T0 + timedelta(hours=24)


@pytest.mark.parametrize(
    ("tags", "excluded", "gate"),
    [
        ({}, False, Gate(False)),
        ({}, True, Gate(True)),
        (
            {"Rebuild-Promote": "MANUAL", "rebuild-bake-hours": "48"},
            True,
            Gate(True, True, timedelta(hours=48)),
        ),
        ({"rebuild-bake-hours": "0"}, True, Gate(True)),
    ],
)
def test_the_gate_comes_from_the_distributor_and_the_tags(
    tags: dict[str, str], excluded: bool, gate: Gate
) -> None:
    assert gate_of(tags, excluded_from_latest=excluded) == gate


@pytest.mark.parametrize(
    ("tags", "words"),
    [
        ({"rebuild-promote": "sometimes"}, "neither 'auto' nor 'manual'"),
        ({"rebuild-bake-hours": "-1"}, "0–720"),
    ],
)
def test_an_invalid_gate_tag_is_reported_and_the_default_used(tags: dict[str, str], words: str) -> None:
    gate = gate_of(tags, excluded_from_latest=True)
    assert (gate.manual, gate.bake) == (False, timedelta(0))
    assert words in gate.problems[0]


def test_the_release_machine_refuses_what_could_not_have_happened() -> None:
    promoted = release().moved(ReleaseState.PROMOTED, at=T0, by="rebuilder", why="baked")
    assert promoted.state is ReleaseState.PROMOTED
    revoked = promoted.moved(ReleaseState.REVOKED, at=T0, by="ana", why="bad kernel")
    for done in (revoked, release().moved(ReleaseState.REJECTED, at=T0, by="r", why="partial")):
        for to in ReleaseState:
            with pytest.raises(IllegalRelease):
                done.moved(to, at=T0, by="x", why="x")
    with pytest.raises(IllegalRelease, match="Candidate → Revoked"):
        release().moved(ReleaseState.REVOKED, at=T0, by="x", why="x")


def test_a_rollback_revokes_the_current_version_and_falls_back_to_the_previous() -> None:
    older = release("1.0.1", state=ReleaseState.PROMOTED, at=T0 - timedelta(days=30))
    current = release("1.0.2", state=ReleaseState.PROMOTED, at=T0 - timedelta(days=1))
    candidate = release("1.0.3")
    done = rollback([current, candidate, older], now=T0, by="ana@example.com", why="boot loop")
    assert (done.revoke.version, done.revoke.state, done.revoke.by, done.revoke.why) == (
        "1.0.2",
        ReleaseState.REVOKED,
        "ana@example.com",
        "boot loop",
    )
    assert done.fallback.version == "1.0.1"


@pytest.mark.parametrize(
    ("releases", "words"),
    [
        ([], "no version of this template is promoted"),
        ([release("1.0.2", state=ReleaseState.PROMOTED)], "no earlier promoted version to fall back to"),
        (
            [release("1.0.1", state=ReleaseState.REVOKED), release("1.0.2", state=ReleaseState.PROMOTED)],
            "no earlier promoted version",  # a revoked version is never fallen back to
        ),
    ],
)
def test_a_rollback_without_a_fallback_is_refused(releases: list[Release], words: str) -> None:
    with pytest.raises(NoFallback, match=words):
        rollback(releases, now=T0, by="ana", why="bad")


def test_a_rollback_needs_a_reason() -> None:
    promoted = [release(v, state=ReleaseState.PROMOTED) for v in ("1.0.1", "1.0.2")]
    with pytest.raises(PermanentError, match="needs a reason"):
        rollback(promoted, now=T0, by="ana", why="  ")


def test_children_built_on_a_revoked_parent_version_are_flagged() -> None:
    parent = release("1.0.2", state=ReleaseState.REVOKED)
    lineage = Lineage(parent.build_id, "ubuntu2204", "22.04.202501150", UBUNTU, "")
    child = build("app", lineage=lineage)
    assert built_on_revoked(child, {parent.build_id: parent}) == "built on revoked ubuntu2204 1.0.2"
    other = dataclasses.replace(child, lineage=dataclasses.replace(lineage, parent_build_id="b-other"))
    assert built_on_revoked(other, {parent.build_id: parent}) == ""
    assert built_on_revoked(build("app"), {parent.build_id: parent}) == ""  # a baseline has no parent
    assert built_on_revoked(None, {parent.build_id: parent}) == ""
