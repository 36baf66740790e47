"""The reconcile decision over literal inputs, table-driven like the planner's: what was gathered for
one template in, the actions (and the build that may start) out — and how a build starts or what a
refused run request means."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from rebuilder.domain.actions import (
    Account,
    Adopt,
    Cancel,
    Create,
    Delete,
    Distribution,
    Gathered,
    Repair,
    Save,
    Settle,
    Tag,
    Wait,
)
from rebuilder.domain.builds import Build, BuildReason, BuildState
from rebuilder.domain.definition import TemplateDefinition
from rebuilder.domain.model import (
    GalleryImageVersion,
    GalleryVersionId,
    GalleryVersionName,
    ImageTemplate,
    LastRun,
    ProvisioningError,
    RegionReplication,
    ReplicationState,
    RunState,
    RunSubState,
    Source,
    SourceKind,
)
from rebuilder.domain.policies import NO_RULES, rules_of
from rebuilder.domain.reconcile import decide
from rebuilder.domain.regions import Region
from rebuilder.domain.releases import provenance_tags
from rebuilder.domain.runs import Policy
from rebuilder.domain.standing import TemplateState
from rebuilder.domain.starts import Lease, Recreate, Refusal, refused, start
from tests.records import T0, build

NOW = T0 + timedelta(hours=1)
POLICY = Policy(max_attempts=3, retry_backoff=timedelta(minutes=5), repair_limit=1, temporary_refusals=2)
WEU, NEU = Region("westeurope"), Region("northeurope")
VERSION = GalleryVersionId(
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/u/versions/1.0.2"
)


def body(version: str = "latest") -> dict[str, Any]:
    return {
        "location": "westeurope",
        "tags": {"golden-image-rebuild": "auto"},
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {"/id": {}}},
        "properties": {"source": {"type": "PlatformImage", "version": version}},
    }


def template(**changes: Any) -> ImageTemplate:
    b = build()
    made = ImageTemplate(
        b.template_id,
        "s",
        "rg-images",
        b.template_name,
        WEU,
        Source(SourceKind.PLATFORM_IMAGE, None, "latest", exact_version="22.04.202501150"),
        {"golden-image-rebuild": "auto"},
        (),
        "Succeeded",
        definition=TemplateDefinition.from_body(body()),
    )
    return dataclasses.replace(made, **changes)


def state(**changes: Any) -> TemplateState:
    return dataclasses.replace(
        TemplateState(build().template_id, "ubuntu2204", WEU, T0, known_run_started_at=T0), **changes
    )


def running(**changes: Any) -> Build:
    return build(**{"state": BuildState.RUNNING, "attempts": 1, "run_started_at": T0, **changes})


def run(state_: RunState, sub: RunSubState | None = None, *, started: Any = T0, ended: Any = None) -> LastRun:
    return LastRun(state_, sub, started, ended, "")


def replicated(
    *states: tuple[Region, ReplicationState], tags: dict[str, str] | None = None
) -> dict[Any, Distribution]:
    version = GalleryImageVersion(
        VERSION,
        GalleryVersionName("1.0.2"),
        "Succeeded",
        target_regions=tuple(r for r, _ in states),
        replication=tuple(RegionReplication(r, s, 100) for r, s in states),
        tags=tuple(sorted((tags or {}).items())),
    )
    b = build(state=BuildState.REPLICATING)
    return {b.id: Distribution(b.id, (VERSION,), (version,), ())}


def kinds(actions: tuple[object, ...]) -> list[str]:
    return [type(a).__name__ for a in actions]


# Each case: the gathered inputs, the action kinds expected, a check on them, the build that may start.
Check = Callable[[tuple[object, ...]], bool]
CASES: dict[str, tuple[Gathered, list[str], Check, bool]] = {
    "a finished build still listed is settled": (
        Gathered(state(), (build(state=BuildState.PUBLISHED),), template()),
        ["Settle"],
        lambda a: isinstance(a[0], Settle),
        False,
    ),
    "a queued build of an idle template may start": (
        Gathered(state(), (build(),), template()),
        [],
        lambda a: True,
        True,
    ),
    "not before its retry time": (
        Gathered(state(), (build(next_attempt_at=NOW + timedelta(minutes=1)),), template()),
        [],
        lambda a: True,
        False,
    ),
    "a template being deleted is waited for": (
        Gathered(state(), (build(),), template(provisioning_state="Deleting")),
        ["Wait"],
        lambda a: isinstance(a[0], Wait) and "is Deleting" in a[0].why,
        False,
    ),
    "a template being created is waited for": (
        Gathered(state(), (build(),), template(provisioning_state="Creating")),
        ["Wait"],
        lambda a: "is Creating" in a[0].why,  # type: ignore[attr-defined]
        False,
    ),
    "a missing template with a recreate pending is created": (
        Gathered(
            state(), (build(definition_after=TemplateDefinition.from_body(body("22.04.2")).text),), None
        ),
        ["Create"],
        lambda a: isinstance(a[0], Create) and a[0].definition.source_version == "22.04.2",
        False,
    ),
    "a missing template fails its builds": (
        Gathered(state(), (build(), running(key="k2")), None),
        ["Save", "Save"],
        lambda a: all(isinstance(s, Save) and s.after.state is BuildState.FAILED for s in a),
        False,
    ),
    "a transient provisioning error spends an attempt and deletes to resubmit": (
        Gathered(
            state(),
            (build(),),
            template(
                provisioning_state="Failed",
                provisioning_error=ProvisioningError("ServerError", "oops"),
            ),
        ),
        ["Save", "Delete"],
        lambda a: (
            isinstance(a[0], Save)
            and (a[0].after.state, a[0].after.attempts) == (BuildState.QUEUED, 1)
            and bool(a[0].after.definition_after)
            and "ServerError: oops" in (a[0].transition.why if a[0].transition else "")
            and isinstance(a[1], Delete)
        ),
        False,
    ),
    "a permanent provisioning error fails the build at once": (
        Gathered(
            state(),
            (build(),),
            template(
                provisioning_state="Failed", provisioning_error=ProvisioningError("BadPIRSource", "no such")
            ),
        ),
        ["Save"],
        lambda a: a[0].after.state is BuildState.FAILED and "BadPIRSource: no such" in a[0].after.message,  # type: ignore[attr-defined]
        False,
    ),
    "a run started elsewhere is adopted and the queued build waits": (
        Gathered(
            state(), (build(),), template(last_run=run(RunState.RUNNING, RunSubState.BUILDING, started=NOW))
        ),
        ["Adopt", "Wait"],
        lambda a: isinstance(a[0], Adopt) and "run started elsewhere first" in a[1].why,  # type: ignore[attr-defined]
        False,
    ),
    "a run's new sub-state is recorded and the run accounted for": (
        Gathered(
            state(known_run_started_at=None),
            (running(),),
            template(last_run=run(RunState.RUNNING, RunSubState.CUSTOMIZING)),
        ),
        ["Account", "Save"],
        lambda a: isinstance(a[0], Account) and a[1].after.sub_state is RunSubState.CUSTOMIZING,  # type: ignore[attr-defined]
        False,
    ),
    "an overrunning run is canceled": (
        Gathered(
            state(),
            (running(run_started_at=T0 - timedelta(hours=9)),),
            template(
                last_run=run(RunState.RUNNING, RunSubState.CUSTOMIZING, started=T0 - timedelta(hours=9))
            ),
        ),
        ["Cancel", "Save"],
        lambda a: isinstance(a[0], Cancel) and a[1].after.cancel_requested_at == NOW,  # type: ignore[attr-defined]
        False,
    ),
    "a run that ended asks for its distribution first": (
        Gathered(state(), (running(),), template(last_run=run(RunState.SUCCEEDED, started=T0, ended=NOW))),
        [],
        lambda a: True,
        False,
    ),
    "every region completed publishes the build": (
        Gathered(
            state(),
            (build(state=BuildState.REPLICATING),),
            template(),
            replicated((WEU, ReplicationState.COMPLETED), (NEU, ReplicationState.COMPLETED)),
        ),
        ["Tag", "Wait", "Save"],  # the version is tagged with its provenance; Published once read back
        lambda a: (
            a[2].after.state is BuildState.REPLICATING  # type: ignore[attr-defined]
            and a[2].transition is None  # type: ignore[attr-defined]
            and len(a[2].rows) == 2  # type: ignore[attr-defined]
            and a[0].version == VERSION  # type: ignore[attr-defined]
            and a[0].tags["rebuilder-build"] == build().id  # type: ignore[attr-defined]
            and a[0].tags["rebuilder-source-version"] == "22.04.202501150"  # type: ignore[attr-defined]
            and a[0].tags["rebuilder-reason"] == "source-update"  # type: ignore[attr-defined]
            and a[0].tags["rebuilder-definition-hash"] == template().definition.hash  # type: ignore[union-attr, attr-defined]
        ),
        False,
    ),
    "every region completed and the provenance read back publishes the build": (
        Gathered(
            state(),
            (build(state=BuildState.REPLICATING),),
            template(),
            replicated(
                (WEU, ReplicationState.COMPLETED),
                (NEU, ReplicationState.COMPLETED),
                tags=provenance_tags(build(), template().definition.hash),  # type: ignore[union-attr]
            ),
        ),
        ["Save"],
        lambda a: a[0].after.state is BuildState.PUBLISHED and len(a[0].rows) == 2,  # type: ignore[attr-defined]
        False,
    ),
    "a failed region is repaired, no rebuild": (
        Gathered(
            state(),
            (build(state=BuildState.REPLICATING),),
            template(),
            replicated((WEU, ReplicationState.COMPLETED), (NEU, ReplicationState.FAILED)),
        ),
        ["Repair", "Save"],
        lambda a: (
            isinstance(a[0], Repair) and a[0].failed == (NEU,) and a[1].after.state is BuildState.REPLICATING
        ),  # type: ignore[attr-defined]
        False,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_decision(case: str) -> None:
    gathered, expected, check, startable = CASES[case]
    chosen = decide(gathered, now=NOW, policy=POLICY, by="reconciler")
    assert kinds(chosen.actions) == expected
    assert check(chosen.actions)
    assert (chosen.runnable is not None) is startable


def test_every_build_that_needs_its_distribution_is_read_in_one_pass() -> None:
    older = build(key="k-old", state=BuildState.REPLICATING)
    newer = running(key="k-new", at=T0 + timedelta(minutes=1))
    gathered = Gathered(
        state(), (older, newer), template(last_run=run(RunState.SUCCEEDED, started=T0, ended=NOW))
    )
    chosen = decide(
        dataclasses.replace(gathered, builds=(older, dataclasses.replace(newer, run_started_at=T0))),
        now=NOW,
        policy=POLICY,
        by="r",
    )
    assert set(chosen.read_distributions) == {older.id, newer.id}  # both asked for at once


def test_a_run_that_ended_is_read_then_published() -> None:
    ended = run(RunState.SUCCEEDED, started=T0, ended=NOW)
    gathered = Gathered(state(), (running(),), template(last_run=ended))
    first = decide(gathered, now=NOW, policy=POLICY, by="r")
    assert first.read_distributions == (running().id,) and first.actions == ()
    [read] = replicated((WEU, ReplicationState.COMPLETED)).values()
    seen = dataclasses.replace(read, build_id=running().id)
    second = decide(
        dataclasses.replace(gathered, distributions={seen.build_id: seen}), now=NOW, policy=POLICY, by="r"
    )
    tag, wait, save = second.actions
    assert isinstance(tag, Tag) and tag.version == VERSION and isinstance(wait, Wait)
    assert isinstance(save, Save) and save.transition is not None
    assert (save.transition.from_state, save.after.state, save.after.outputs) == (
        BuildState.RUNNING,
        BuildState.REPLICATING,
        (VERSION,),
    )  # the run's end and outputs recorded; Published once the tags read back
    assert save.after.run_ended_at == NOW
    tagged = dataclasses.replace(
        seen,
        versions=tuple(dataclasses.replace(v, tags=tuple(sorted(tag.tags.items()))) for v in seen.versions),
    )
    third = decide(
        Gathered(state(), (save.after,), template(last_run=ended), {save.after.id: tagged}),
        now=NOW,
        policy=POLICY,
        by="r",
    )
    [published] = third.actions
    assert isinstance(published, Save) and published.after.state is BuildState.PUBLISHED


# -- starting -------------------------------------------------------------------------------------------
def test_a_build_with_a_slot_is_leased_before_aib_is_asked() -> None:
    plan = start(build(temporary_refusals=2), template(), now=NOW, policy=POLICY, by="r")
    assert isinstance(plan, Lease)
    assert plan.save.after.temporary_refusals == 0  # refusals are counted in a row
    assert (plan.save.after.state, plan.save.after.attempts, plan.save.after.run_started_at) == (
        BuildState.RUNNING,
        1,
        NOW,
    )


def test_a_pinned_template_naming_another_version_is_recreated_first() -> None:
    pinned = template(
        source=Source(SourceKind.PLATFORM_IMAGE, None, "22.04.1"),
        definition=TemplateDefinition.from_body(body("22.04.1")),
    )
    plan = start(build(version="22.04.2"), pinned, now=NOW, policy=POLICY, by="r")
    assert isinstance(plan, Recreate)
    written = plan.save.after
    assert TemplateDefinition(written.definition_after).source_version == "22.04.2"
    assert written.definition_hash_before != written.definition_hash_after and plan.save.transition is None


@pytest.mark.parametrize(
    ("refusal", "before", "state_", "attempts", "next_at"),
    [
        (Refusal("busy", "a run is going"), build(), BuildState.QUEUED, 0, None),
        (Refusal("temporary", "429", 120), build(), BuildState.QUEUED, 0, NOW + timedelta(seconds=120)),
        (
            Refusal("temporary", "503"),
            build(temporary_refusals=1),
            BuildState.QUEUED,
            0,
            NOW + timedelta(minutes=10),
        ),
        (Refusal("temporary", "503"), build(temporary_refusals=2), BuildState.FAILED, 0, None),
        (Refusal("permanent", "400 bad"), build(), BuildState.QUEUED, 1, NOW + timedelta(minutes=5)),
    ],
)
def test_a_refused_run_request(
    refusal: Refusal, before: Build, state_: BuildState, attempts: int, next_at: Any
) -> None:
    lease = start(before, template(), now=NOW, policy=POLICY, by="r")
    assert isinstance(lease, Lease)
    save = refused(lease.save.after, before, refusal, now=NOW, policy=POLICY, by="r")
    assert (save.after.state, save.after.attempts, save.after.next_attempt_at) == (state_, attempts, next_at)
    assert save.transition is not None and save.transition.from_state is BuildState.RUNNING
    assert refusal.message in save.transition.why
    if refusal.kind == "temporary":
        assert save.after.temporary_refusals == before.temporary_refusals + 1


def test_an_external_build_is_never_recreated() -> None:
    pinned = template(
        source=Source(SourceKind.PLATFORM_IMAGE, None, "22.04.1"),
        definition=TemplateDefinition.from_body(body("22.04.1")),
    )
    assert isinstance(
        start(build(version="22.04.2", reason=BuildReason.EXTERNAL), pinned, now=NOW, policy=POLICY, by="r"),
        Lease,
    )


# -- the maintenance window ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reason", "window", "starts"),
    [
        (BuildReason.PATCH_DAY, "closed", False),  # an automatic build waits for the window
        (BuildReason.SOURCE_UPDATE, "closed", False),
        (BuildReason.MAX_AGE, "closed", False),
        (BuildReason.PATCH_DAY, "open", True),
        (BuildReason.ON_DEMAND, "closed", True),  # the emergency path goes past it
        (BuildReason.SOURCE_UPDATE, "default closed", False),  # the service-wide default applies too
    ],
)
def test_a_queued_build_starts_only_inside_its_window(reason: BuildReason, window: str, starts: bool) -> None:
    hour = NOW.hour
    shut = f"Mon-Sun {(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00"  # opens in an hour or two
    opened = f"Mon-Sun {hour:02d}:00-{(hour + 1) % 24:02d}:00"
    tags = {"golden-image-rebuild": "auto"}
    policy = POLICY
    if window == "default closed":
        policy = dataclasses.replace(POLICY, defaults=rules_of({"rebuild-window": shut}, NO_RULES))
    else:
        tags["rebuild-window"] = shut if window == "closed" else opened
    decision = decide(
        Gathered(state(), (build(reason=reason),), template(tags=tags)), now=NOW, policy=policy, by="r"
    )
    assert (decision.runnable is not None) is starts
    if not starts:
        [wait] = decision.actions
        assert isinstance(wait, Wait) and f"waiting for window {shut} (opens " in wait.why


# AIB's ProvisioningErrorCode, as the 2024-02-01 and 2025-10-01 REST definitions and azure-mgmt-imagebuilder
# 2.0.0 (`models.ProvisioningErrorCode`) list it; `modelAsString`, so a code outside it must be handled too.
PROVISIONING_CODES = {
    "BadSourceType": True,
    "BadPIRSource": True,
    "BadManagedImageSource": True,
    "BadSharedImageVersionSource": True,
    "BadCustomizerType": True,
    "UnsupportedCustomizerType": True,
    "NoCustomizerScript": True,
    "BadValidatorType": True,
    "UnsupportedValidatorType": True,
    "NoValidatorScript": True,
    "BadDistributeType": True,
    "BadSharedImageDistribute": True,
    "BadStagingResourceGroup": True,
    "ServerError": False,
    "Other": False,
    "QuotaExhaustedForNewThing": False,  # not in the enum (yet): worth another attempt
    "Unknown": False,  # what shapes.py records when Azure gave no code at all
}


@pytest.mark.parametrize(("code", "permanent"), list(PROVISIONING_CODES.items()))
def test_a_provisioning_error_is_permanent_by_the_enum(code: str, permanent: bool) -> None:
    failed = template(provisioning_state="Failed", provisioning_error=ProvisioningError(code, "said"))
    chosen = decide(Gathered(state(), (build(),), failed), now=NOW, policy=POLICY, by="test")
    save = chosen.actions[0]
    assert isinstance(save, Save)
    assert f"{code}: said" in save.after.message
    if permanent:  # fails at once, one attempt spent, nothing deleted or resubmitted
        assert kinds(chosen.actions) == ["Save"]
        assert (save.after.state, save.after.attempts) == (BuildState.FAILED, 1)
    else:  # deleted, to be submitted again within the attempt budget
        assert kinds(chosen.actions) == ["Save", "Delete"]
        assert (save.after.state, save.after.attempts) == (BuildState.QUEUED, 1)
