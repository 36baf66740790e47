"""Releases as pure decisions over literal inputs: the promotion gates, the release states in the
build's state machine, rollback and revocation flowing down to children (rebuilder/domain/releases.py,
and the reconcile decision for a gated template)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from rebuilder.domain.actions import Demote, Gathered, Promote, Save, Tag, Wait
from rebuilder.domain.actions import Distribution as Read
from rebuilder.domain.builds import (
    ALLOWED,
    Build,
    BuildId,
    BuildReason,
    BuildState,
    IllegalTransition,
    check_write,
)
from rebuilder.domain.errors import Conflict, PermanentError
from rebuilder.domain.model import (
    Distribution,
    GalleryImageId,
    GalleryImageVersion,
    GalleryVersionId,
    GalleryVersionName,
    ImageTemplate,
    LastRun,
    RegionReplication,
    ReplicationState,
    RunState,
    RunSubState,
    Source,
    SourceKind,
    TemplateId,
)
from rebuilder.domain.planner import Action, Candidate, Managed, Mode, PlanItem, plan
from rebuilder.domain.reconcile import decide
from rebuilder.domain.regions import Region
from rebuilder.domain.releases import (
    CLAIM_LEASE,
    Gate,
    Hold,
    NoFallback,
    Ready,
    abandoned,
    after_rollback,
    asked,
    fallback_in,
    fallen_back,
    forgotten,
    gate_of,
    latest_drift,
    previous_in_latest,
    promotion,
    released,
    rollback,
    rollback_under_way,
    serves_in,
    to_roll_back,
    version_order,
)
from rebuilder.domain.runs import Policy
from rebuilder.domain.standing import LatestDrift, RegionStanding, RollbackIntent, TemplateState
from tests.records import build

T0 = datetime(2026, 12, 10, 3, 0, tzinfo=UTC)
IMAGE = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/u"


def candidate(version: str = "1.0.2", **changes: object) -> Build:
    made = build(
        state=BuildState.CANDIDATE,
        outputs=(f"{IMAGE}/imageversions/{version}",),
        candidate_at=T0,
        run_outcome="Succeeded",
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


AUTO, BAKED, MANUAL = Gate(True), Gate(True, bake=timedelta(hours=24)), Gate(True, manual=True)

CASES: dict[str, tuple[Build, Gate, datetime, type, str]] = {
    "no bake, automatic: promoted": (candidate(), AUTO, T0, Ready, "1.0.2 promoted into latest"),
    "baking: held until the bake ends": (
        candidate(),
        BAKED,
        T0 + timedelta(hours=23),
        Hold,
        "1.0.2 is baking until 2026-12-11 03:00 UTC",
    ),
    "baked: promoted": (candidate(), BAKED, T0 + timedelta(hours=24), Ready, "after 24 h of bake"),
    "manual, not approved: held": (
        candidate(),
        MANUAL,
        T0 + timedelta(days=30),
        Hold,
        "waits for approval (python -m rebuilder promote ubuntu2204)",
    ),
    "manual, approved: promoted naming who": (
        candidate(approved_by="ana@example.com"),
        MANUAL,
        T0,
        Ready,
        "approved by ana@example.com",
    ),
    "not a candidate: nothing to do": (
        candidate(state=BuildState.PROMOTED),
        AUTO,
        T0,
        Hold,
        "is Promoted, not a candidate",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=CASES)
def test_the_promotion_gates(case: str) -> None:
    made, gate, now, kind, words = CASES[case]
    verdict = promotion(made, gate, now=now)
    assert isinstance(verdict, kind)
    assert words in verdict.why


def test_a_held_bake_says_when_to_look_again() -> None:
    verdict = promotion(candidate(), BAKED, now=T0)
    assert isinstance(verdict, Hold) and verdict.until == T0 + timedelta(hours=24)


@pytest.mark.parametrize(
    ("outcome", "partial_regions", "state", "words"),
    [
        ("Succeeded", False, BuildState.CANDIDATE, "replicated everywhere as a candidate"),
        ("PartiallySucceeded", False, BuildState.REJECTED, "rejected: the run partially succeeded"),
        ("Succeeded", True, BuildState.REJECTED, "rejected: a region failed; it is never promoted"),
        ("Failed", False, BuildState.REJECTED, "rejected: its validation failed; it is never promoted"),
    ],
)
def test_a_gated_build_ends_its_distribution_a_candidate_or_rejected(
    outcome: str, partial_regions: bool, state: BuildState, words: str
) -> None:
    replicating = build(
        state=BuildState.REPLICATING, outputs=(f"{IMAGE}/imageversions/1.0.2",), run_outcome=outcome
    )
    after, why = released(replicating, partial_regions=partial_regions, now=T0)
    assert after.state is state and words in why
    assert (after.candidate_at == T0) is (state is BuildState.CANDIDATE)
    check_write(
        BuildState.REPLICATING, after, replicating.becomes(after, why=why, by="r")
    )  # the machine allows it


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


def test_the_machine_allows_release_moves_and_nothing_after_them() -> None:
    assert ALLOWED[BuildState.CANDIDATE] == {BuildState.CANDIDATE, BuildState.PROMOTED, BuildState.REJECTED}
    assert ALLOWED[BuildState.PROMOTED] == ALLOWED[BuildState.PUBLISHED] == {BuildState.REVOKED}
    for final in (BuildState.REJECTED, BuildState.REVOKED, BuildState.FAILED):
        assert ALLOWED[final] == frozenset()
    promoted = candidate(state=BuildState.PROMOTED)
    with pytest.raises(IllegalTransition):  # a finished build is written only by a move the machine allows
        check_write(BuildState.PROMOTED, promoted, None)
    with pytest.raises(IllegalTransition):
        candidate().becomes(dataclasses.replace(candidate(), state=BuildState.REVOKED), why="x", by="x")
    # a claim written on a finished build changes no state, and a build that can no longer move takes none
    check_write(BuildState.PROMOTED, dataclasses.replace(promoted, claim="promote", claimed_by="ana"), None)
    with pytest.raises(IllegalTransition):
        check_write(BuildState.REVOKED, dataclasses.replace(promoted, claim="promote"), None)


def in_latest(version: str, at: datetime, state: BuildState = BuildState.PROMOTED) -> Build:
    return candidate(version, id=BuildId(f"b-{version}"), state=state, promoted_at=at, updated_at=at)


WEU, NEU = Region("westeurope"), Region("northeurope")


def gallery_version(
    name: str,
    *,
    state: str = "Succeeded",
    excluded: bool = False,
    regional: tuple[tuple[Region, bool], ...] = (),
    replicated: tuple[Region, ...] = (WEU, NEU),
    tags: tuple[tuple[str, str], ...] = (),
) -> GalleryImageVersion:
    return GalleryImageVersion(
        GalleryVersionId(f"{IMAGE}/versions/{name}"),
        GalleryVersionName(name),
        state,
        target_regions=(WEU, NEU),
        excluded_from_latest=excluded,
        replication=tuple(RegionReplication(r, ReplicationState.COMPLETED, 100) for r in replicated),
        tags=tags,
        regional_exclusions=regional,
    )


@pytest.mark.parametrize(
    ("version", "region", "serves"),
    [
        (gallery_version("1.0.1"), WEU, True),
        (gallery_version("1.0.1", excluded=True), WEU, False),  # the profile's flag
        (gallery_version("1.0.1", excluded=True, regional=((WEU, False),)), WEU, True),  # the region's wins
        (gallery_version("1.0.1", excluded=True, regional=((WEU, False),)), NEU, False),
        (gallery_version("1.0.1", regional=((NEU, True),)), NEU, False),
        (gallery_version("1.0.1", replicated=(WEU,)), NEU, False),  # not replicated there
        (gallery_version("1.0.1", state="Failed"), WEU, False),
        (gallery_version("latest"), WEU, False),  # not a version name
    ],
)
def test_what_latest_may_serve_in_a_region(
    version: GalleryImageVersion, region: Region, serves: bool
) -> None:
    assert serves_in(version, region) is serves


def test_a_version_name_orders_by_number_not_text() -> None:
    assert version_order("1.0.10") == (1, 0, 10) and version_order("1.0.10") > (version_order("1.0.9") or ())
    assert [version_order(n) for n in ("1.0", "1.0.x", "", "1.0.0.1")] == [None] * 4


def test_a_rollback_revokes_the_current_version_and_says_what_the_gallery_serves_again() -> None:
    older = in_latest("1.0.1", T0 - timedelta(days=30), BuildState.PUBLISHED)  # before the template was gated
    current = in_latest("1.0.2", T0 - timedelta(days=1))
    waiting = candidate("1.0.3")
    builds = [current, waiting, older]
    assert to_roll_back(builds) == current and previous_in_latest(builds, current) == older
    served = gallery_version("1.0.1")
    fallbacks = [fallback_in(r, served, builds, older) for r in (WEU, NEU)]
    assert [(f.build_id, f.name, f.differs) for f in fallbacks] == [(older.id, "1.0.1", False)] * 2
    done = rollback(
        current, fallbacks, now=T0, by="ana@example.com", why="boot loop", previous=older, builds=builds
    )
    assert (done.revoke.id, done.revoke.state) == (current.id, BuildState.REVOKED)
    assert done.revoke.message == "revoked by ana@example.com: boot loop"
    assert done.latest == older and done.fallback_build == older.id
    assert fallen_back(done.fallbacks) == "1.0.1 is latest again in northeurope, westeurope"
    check_write(BuildState.PROMOTED, done.revoke, current.becomes(done.revoke, why="boot loop", by="ana"))


def test_a_fallback_built_before_rebuilder_managed_the_template_is_named_and_the_difference_said() -> None:
    current = in_latest("1.0.2", T0 - timedelta(days=1))  # the ledger knows no earlier build
    outside = gallery_version("0.9.7", tags=(("rebuilder-source-version", "22.04.1"),))
    weu = fallback_in(WEU, outside, [current], None)
    assert (weu.version, weu.build_id, weu.source_version, weu.expected) == (outside.id, "", "22.04.1", "")
    done = rollback(current, [weu], now=T0, by="ana", why="bad", builds=[current])
    assert done.latest is None and done.fallback_build == ""
    older = in_latest("1.0.1", T0 - timedelta(days=9))
    differs = fallback_in(NEU, outside, [current, older], older)  # the ledger expected 1.0.1
    assert differs.differs and fallen_back([weu, differs]) == (
        "0.9.7 is latest again in northeurope, westeurope (the ledger expected no version in westeurope, "
        "1.0.1 in northeurope)"
    )


@pytest.mark.parametrize(
    ("builds", "words"),
    [
        ([], "no image of this template is in latest"),
        ([candidate("1.0.1")], "no image of this template is in latest"),  # a candidate never was
        ([in_latest("1.0.1", T0 - timedelta(days=9), BuildState.REVOKED)], "no image"),
    ],
)
def test_a_rollback_of_nothing_in_latest_is_refused(builds: list[Build], words: str) -> None:
    with pytest.raises(NoFallback, match=words):
        to_roll_back(builds)


def test_a_rollback_with_nothing_to_serve_in_a_region_is_refused_naming_it() -> None:
    current = in_latest("1.0.2", T0)
    fallbacks = [
        fallback_in(WEU, gallery_version("1.0.1"), [current], None),
        fallback_in(NEU, None, [current], None),
    ]
    with pytest.raises(NoFallback, match="no earlier version to fall back to in northeurope"):
        rollback(current, fallbacks, now=T0, by="ana", why="bad")
    with pytest.raises(NoFallback, match="in any region"):
        rollback(current, [], now=T0, by="ana", why="bad")


def test_a_rollback_needs_a_reason() -> None:
    current = in_latest("1.0.2", T0)
    with pytest.raises(PermanentError, match="needs a reason"):
        rollback(
            current, [fallback_in(WEU, gallery_version("1.0.1"), [current], None)], now=T0, by="ana", why="  "
        )


def child_template(name: str = "app") -> ImageTemplate:
    b = build(name)
    source = Source(SourceKind.SHARED_IMAGE_VERSION, image_version_id=f"{IMAGE}/versions/latest")
    return ImageTemplate(
        b.template_id, "s", "rg", name, Region("westeurope"), source, {"golden-image-rebuild": "auto"}
    )


def revocation_plan(revoked: tuple[tuple[str, str], ...], mode: Mode = Mode.AUTO) -> PlanItem:
    parent, child = gated_template(), child_template()
    states = {
        TemplateId(parent.id.lower()): TemplateState(
            parent.id, parent.name, Region("westeurope"), T0, baseline_version="22.04.1", revoked=revoked
        ),
        TemplateId(child.id.lower()): TemplateState(
            child.id,
            child.name,
            Region("westeurope"),
            T0,
            baseline_version="1.0.2",
            baseline_parent_build="b-2",
        ),
    }
    candidates = {
        TemplateId(parent.id.lower()): Candidate("22.04.1", T0, ("22.04.1",)),
        TemplateId(child.id.lower()): Candidate("1.0.1", T0, ("1.0.1",)),  # latest: the older version again
    }
    items = plan([Managed(parent, Mode.AUTO), Managed(child, mode)], candidates, states, now=T0)
    return items[1]


def test_a_child_built_on_a_revoked_parent_version_is_due_from_the_older_latest() -> None:
    item = revocation_plan((("b-1", "1.0.0"), ("b-2", "1.0.2")))
    assert (item.action, item.due, item.build_version, item.key) == (
        Action.REBUILD,
        BuildReason.PARENT_REVOKED,
        "1.0.1",
        "parent-revoked:b-2",
    )
    assert "built on revoked ubuntu2204 1.0.2: rebuilt from 1.0.1" in item.reason
    assert "built-on-revoked" in item.flags


def test_a_child_built_on_a_version_still_in_latest_is_not_flagged() -> None:
    item = revocation_plan((("b-1", "1.0.0"),))
    assert (item.action, item.due) == (Action.NONE, None) and "built-on-revoked" not in item.flags


def test_a_manual_child_built_on_a_revoked_version_is_flagged_not_rebuilt() -> None:
    item = revocation_plan((("b-2", "1.0.2"),), Mode.MANUAL)
    assert (item.action, item.due) == (Action.NONE, None)
    assert "manual template: built on revoked ubuntu2204 1.0.2" in item.reason


def test_an_invalid_gate_tag_is_shown_in_the_plan() -> None:
    parent = dataclasses.replace(
        gated_template(), tags={"golden-image-rebuild": "auto", "rebuild-promote": "x"}
    )
    [item] = plan([Managed(parent, Mode.AUTO)], {}, {}, now=T0)
    assert any("rebuild-promote='x' is neither 'auto' nor 'manual'" in p for p in item.problems)


# -- the reconcile decision for a gated template ----------------------------------------------------------
def gated_template(**tags: str) -> ImageTemplate:
    b = build()
    return ImageTemplate(
        b.template_id,
        "s",
        "rg",
        b.template_name,
        Region("westeurope"),
        Source(SourceKind.PLATFORM_IMAGE, None, "latest"),
        {"golden-image-rebuild": "auto", **tags},
        (Distribution("SharedImage", "golden", GalleryImageId(IMAGE), (Region("westeurope"),), True),),
        "Succeeded",
    )


def read_back(c: Build, *, profile: bool, regional: bool | None = None, state: str = "Succeeded") -> Read:
    """What a read of the candidate's version says: the profile's flag, westeurope's own (if set)."""
    weu = Region("westeurope")
    version = GalleryImageVersion(
        GalleryVersionId(f"{IMAGE}/versions/1.0.2"),
        GalleryVersionName("1.0.2"),
        state,
        target_regions=(weu,),
        excluded_from_latest=profile,
        regional_exclusions=() if regional is None else ((weu, regional),),
    )
    return Read(c.id, c.outputs, (version,), ())


def promoting(c: Build, read: Read | None, now: datetime = T0) -> list[object]:
    state = TemplateState(build().template_id, "ubuntu2204", Region("westeurope"), T0)
    reads = {} if read is None else {c.id: read}
    return list(
        decide(Gathered(state, (c,), gated_template(), reads), now=now, policy=Policy(), by="r").actions
    )


def test_a_candidate_is_claimed_and_its_promotion_sent_then_written_promoted_once_read_back() -> None:
    state = TemplateState(build().template_id, "ubuntu2204", Region("westeurope"), T0)
    first = decide(Gathered(state, (candidate(),), gated_template()), now=T0, policy=Policy(), by="r")
    assert first.read_distributions == (candidate().id,) and not first.actions
    claim, promote, wait = promoting(candidate(), read_back(candidate(), profile=True))
    assert isinstance(claim, Save) and claim.transition is None  # the etag-checked claim: one pass goes on
    claimed = (claim.after.state, claim.after.claim, claim.after.claimed_at)
    assert claimed == (BuildState.CANDIDATE, "promote", T0)
    assert isinstance(promote, Promote) and promote.versions == (f"{IMAGE}/versions/1.0.2",)
    assert isinstance(wait, Wait) and "Promoted once a read shows it" in wait.why
    # a region's own flag overrides the profile's: promoted only once both say it is in latest
    [claim2, promote2, _] = promoting(claim.after, read_back(candidate(), profile=False, regional=True))
    assert isinstance(promote2, Promote) and isinstance(claim2, Save)
    [save] = promoting(
        claim.after, read_back(candidate(), profile=False, regional=False), T0 + timedelta(minutes=1)
    )
    assert isinstance(save, Save) and save.after.state is BuildState.PROMOTED
    assert save.after.promoted_at == T0 + timedelta(minutes=1) and save.transition is not None
    assert save.after.claim == "" and save.after.claimed_at is None
    assert "in latest in every region (read back)" in save.transition.why


def test_a_promotion_is_sent_again_while_the_gallery_does_not_show_it_but_never_while_it_is_updating() -> (
    None
):
    taken = dataclasses.replace(candidate(), claim="promote", claimed_at=T0, claimed_by="timer")
    later = T0 + timedelta(minutes=1)
    [wait] = promoting(taken, read_back(taken, profile=True, state="Updating"), later)
    assert isinstance(wait, Wait) and "the gallery is Updating it" in wait.why
    sent = promoting(taken, read_back(taken, profile=True), later)  # refused, failed or lost: sent again
    assert [type(a) for a in sent] == [Save, Promote, Wait]
    [updating] = promoting(taken, read_back(taken, profile=False, regional=False, state="Updating"), later)
    assert isinstance(updating, Wait)  # in effect only once Azure says the update is over


def test_an_asked_rollback_is_finished_on_its_own_build_even_once_newer_ones_are_in_latest() -> None:
    oldest = in_latest("1.0.1", T0 - timedelta(days=30), BuildState.PUBLISHED)
    middle = in_latest("1.0.2", T0 - timedelta(days=2))
    newest = in_latest("1.0.3", T0 - timedelta(days=1))
    builds = [newest, middle, oldest]
    assert to_roll_back(builds, of=middle.id) == middle and previous_in_latest(builds, middle) == oldest
    revoked = dataclasses.replace(middle, state=BuildState.REVOKED)  # finishing it again: it stays revoked
    assert to_roll_back([newest, revoked, oldest], of=revoked.id) == revoked
    again = rollback(
        revoked, [fallback_in(WEU, gallery_version("1.0.1"), builds, oldest)], now=T0, by="bo", why="x"
    )
    assert again.revoke == revoked
    waiting = candidate("1.0.4", id=BuildId("b-1.0.4"))
    with pytest.raises(NoFallback, match="its image is not in latest"):
        to_roll_back([newest, waiting, oldest], of=waiting.id)


def test_a_rollback_is_asked_on_the_row_and_a_second_is_refused_until_the_first_callers_lease_runs_out() -> (
    None
):
    state = TemplateState(build().template_id, "ubuntu2204", Region("westeurope"), T0)
    intent = RollbackIntent("b-1.0.2", T0, "ana@example.com", "0000-ana", "boot loop", "corr")
    asked_once = asked(state, intent)
    assert asked_once.rollback == intent and rollback_under_way(state, T0) == ""
    second = RollbackIntent("b-1.0.2", T0 + timedelta(minutes=4), "bo@example.com")
    with pytest.raises(Conflict, match=r"rollback of ubuntu2204 is under way, asked by ana@example\.com"):
        asked(asked_once, second)
    assert abandoned(asked_once, T0 + timedelta(minutes=4, seconds=59)) is None
    assert abandoned(asked_once, T0 + CLAIM_LEASE) == intent  # its caller died: the next pass finishes it
    later = RollbackIntent("b-1.0.2", T0 + CLAIM_LEASE, "bo@example.com")
    assert asked(asked_once, later).rollback == later
    assert forgotten(asked_once, intent, now=T0).rollback is None
    assert forgotten(asked_once, later, now=T0) == asked_once  # only its own intent is dropped
    revoked = dataclasses.replace(in_latest("1.0.2", T0), state=BuildState.REVOKED)
    standing = RegionStanding(WEU, revoked.id, "22.04.2", f"{IMAGE}/versions/1.0.2", "Completed", T0)
    on_it = asked_once.with_region(standing, at=T0)
    outside = gallery_version("0.9.7")
    fallbacks = [fallback_in(WEU, outside, [revoked], None), fallback_in(NEU, outside, [revoked], None)]
    after = after_rollback(on_it, revoked, fallbacks, now=T0)
    assert after.rollback is None and after.revoked == (("b-1.0.2", "1.0.2"),)
    [back] = after.regions  # only where it stood: a region it never stood in is left as it was
    assert (back.region, back.build_id, back.image_version) == (WEU, "", outside.id)
    assert after_rollback(after, revoked, fallbacks, now=T0) == after  # idempotent


def test_a_candidate_baking_or_awaiting_approval_waits() -> None:
    state = TemplateState(build().template_id, "ubuntu2204", Region("westeurope"), T0)
    for tags, words in (
        ({"rebuild-bake-hours": "12"}, "baking until"),
        ({"rebuild-promote": "manual"}, "approval"),
    ):
        decision = decide(
            Gathered(state, (candidate(),), gated_template(**tags)), now=T0, policy=Policy(), by="r"
        )
        [wait] = decision.actions
        assert isinstance(wait, Wait) and words in wait.why


@pytest.mark.parametrize(
    ("gated", "message", "seen", "last", "state"),
    [
        # by structure: runState Failed with runSubState Validating, or a run last seen Validating
        (True, "script 'smoke' exited with 1", RunSubState.VALIDATING, None, BuildState.REJECTED),
        (True, "script 'smoke' exited with 1", None, RunSubState.VALIDATING, BuildState.REJECTED),
        (False, "script 'smoke' exited with 1", RunSubState.VALIDATING, None, BuildState.REJECTED),
        (False, "exit 1", None, RunSubState.VALIDATING, BuildState.REJECTED),
        (True, "Customization failed: exit 2", RunSubState.CUSTOMIZING, None, BuildState.QUEUED),
        # never by its text: only our simulator once wrote this prefix
        (True, "Validation failed: script 'smoke' exited with 1", None, None, BuildState.QUEUED),
        (False, "Validation failed: script 'smoke' exited with 1", None, None, BuildState.QUEUED),
    ],
)
def test_a_failed_validation_is_known_by_its_structure_and_rejected_not_retried(
    gated: bool, message: str, seen: RunSubState | None, last: RunSubState | None, state: BuildState
) -> None:
    """Rejected once its distributed versions are read (never retried), gated or not; other failures
    are failed attempts as before."""
    started = T0 - timedelta(hours=2)
    running = build(state=BuildState.RUNNING, sub_state=last, attempts=1, run_started_at=started)
    template = dataclasses.replace(
        gated_template(),
        distributions=tuple(
            dataclasses.replace(d, excluded_from_latest=gated) for d in gated_template().distributions
        ),
        last_run=LastRun(RunState.FAILED, seen, started, T0 - timedelta(minutes=5), message),
    )
    row = TemplateState(running.template_id, "ubuntu2204", Region("westeurope"), T0)
    policy = Policy(max_attempts=3)
    decision = decide(Gathered(row, (running,), template), now=T0, policy=policy, by="r")
    if state is not BuildState.REJECTED:
        [moved] = [a for a in decision.actions if isinstance(a, Save) and a.transition is not None]
        assert moved.after.state is state, moved.transition
        return
    assert decision.read_distributions == (running.id,)
    version = GalleryImageVersion(
        GalleryVersionId(f"{IMAGE}/versions/1.0.2"),
        GalleryVersionName("1.0.2"),
        "Succeeded",
        target_regions=(Region("westeurope"),),
        excluded_from_latest=gated,
        replication=(RegionReplication(Region("westeurope"), ReplicationState.COMPLETED, 100),),
    )
    outputs = (f"{IMAGE}/imageversions/1.0.2",)
    read = {running.id: Read(running.id, outputs, (version,), ())}
    decision = decide(Gathered(row, (running,), template, read), now=T0, policy=policy, by="r")
    [moved] = [a for a in decision.actions if isinstance(a, Save) and a.transition is not None]
    assert moved.after.state is BuildState.REPLICATING  # the run's end recorded; the gallery first
    demotes = [a for a in decision.actions if isinstance(a, Demote)]
    assert [d.versions for d in demotes] == ([] if gated else [(version.id,)])  # out of latest at once
    assert moved.after.run_outcome == "Failed" and moved.after.attempts == 1
    demoted = version.with_exclusion(True)  # the next pass reads it out of latest: provenance, then the end
    row = dataclasses.replace(row, known_run_started_at=started)  # the first pass accounted for the run
    after = decide(
        Gathered(row, (moved.after,), template, {running.id: Read(running.id, outputs, (demoted,), ())}),
        now=T0,
        policy=policy,
        by="r",
    )
    [tag] = [a for a in after.actions if isinstance(a, Tag)]
    tagged = dataclasses.replace(demoted, tags=tuple(sorted(tag.tags.items())))
    end = decide(
        Gathered(row, (moved.after,), template, {running.id: Read(running.id, outputs, (tagged,), ())}),
        now=T0,
        policy=policy,
        by="r",
    )
    [rejected] = end.actions
    assert isinstance(rejected, Save) and rejected.after.state is BuildState.REJECTED
    assert "its validation failed; it is never promoted" in rejected.after.message


def test_a_gated_run_whose_validation_failed_before_distributing_fails_without_a_retry() -> None:
    started = T0 - timedelta(hours=2)
    running = build(
        state=BuildState.RUNNING, sub_state=RunSubState.VALIDATING, attempts=1, run_started_at=started
    )
    message = "Validation script 'smoke' exited with 1"
    template = dataclasses.replace(
        gated_template(), last_run=LastRun(RunState.FAILED, None, started, T0 - timedelta(minutes=5), message)
    )
    row = TemplateState(running.template_id, "ubuntu2204", Region("westeurope"), T0)
    read = {running.id: Read(running.id, (), (), ())}  # nothing distributed (continueDistributeOnFailure off)
    decision = decide(
        Gathered(row, (running,), template, read), now=T0, policy=Policy(max_attempts=3), by="r"
    )
    [moved] = [a for a in decision.actions if isinstance(a, Save) and a.transition is not None]
    assert moved.after.state is BuildState.FAILED and moved.after.attempts == 1
    assert moved.transition is not None and "failed its validation" in moved.transition.why


def test_latest_drift_is_every_region_where_the_gallerys_effective_flag_disagrees_with_the_ledger() -> None:
    state = TemplateState(build().template_id, "ubuntu2204", WEU, T0)
    for where in (WEU, NEU):
        standing = RegionStanding(
            where, BuildId("b-1.0.2"), "22.04.2", f"{IMAGE}/imageversions/1.0.2", "Completed"
        )
        state = state.with_region(standing, at=T0)
    state = dataclasses.replace(state, revoked=(("b-1.0.3", "1.0.3"),), candidate_version="1.0.4")
    agreeing = [
        gallery_version("1.0.2"),
        gallery_version("1.0.3", excluded=True, regional=((WEU, True), (NEU, True))),
        gallery_version("1.0.4", excluded=True),
    ]
    assert latest_drift(state, agreeing) == ()
    drifted = [
        gallery_version("1.0.2", regional=((NEU, True),)),  # the ledger stands on it; out of latest there
        gallery_version("1.0.3", excluded=True, regional=((WEU, False),)),  # revoked, back in latest in WEU
        gallery_version("1.0.4"),  # the candidate, exposed everywhere
        gallery_version("0.9.0"),  # not the ledger's: nothing to compare
    ]
    assert latest_drift(state, drifted) == (
        LatestDrift(NEU, "1.0.2", True),
        LatestDrift(NEU, "1.0.4", False),
        LatestDrift(WEU, "1.0.3", False),
        LatestDrift(WEU, "1.0.4", False),
    )
    assert LatestDrift(NEU, "1.0.2", True).describe() == (
        "northeurope: 1.0.2 is excluded from latest in the gallery; the ledger stands on it"
    )
