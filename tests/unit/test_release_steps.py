"""The release steps over the in-memory ports: a crash after every state-changing call of two gated
builds (tag, promote) and a rollback (intent, audit, demote, revoke) is healed by the next passes (a
rollback once its caller's lease has run out), or by asking again; two racing promotions, or two
racing rollbacks, of one template change the gallery once."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from devstack.fakes import FixedClock, InMemoryGallery, InMemoryImageBuilder, InMemoryMarketplace
from devstack.fakes.ledger import InMemoryLedger
from rebuilder.domain.builds import Build, BuildState
from rebuilder.domain.definition import TemplateDefinition
from rebuilder.domain.errors import Conflict
from rebuilder.domain.model import (
    Distribution,
    GalleryImageId,
    GalleryImageVersion,
    GalleryVersionId,
    GalleryVersionName,
    ImageTemplate,
    RegionReplication,
    ReplicationState,
    RunOutput,
    RunState,
    Source,
    SourceKind,
)
from rebuilder.domain.regions import Region
from rebuilder.domain.releases import NoFallback, versions_of
from rebuilder.domain.runs import Policy
from rebuilder.domain.standing import TemplateState
from rebuilder.services.ports import Ports
from rebuilder.services.reconciler import Reconciler
from rebuilder.services.records import Caller, open_build
from rebuilder.services.requests import roll_back
from tests.crashes import Crash, CrashPlan
from tests.records import SUBSCRIPTION, build

WEU, NEU = Region("westeurope"), Region("northeurope")
IMAGE = GalleryImageId(
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/u"
)
POLICY = Policy(max_attempts=2, retry_backoff=timedelta(minutes=10), repair_limit=1)
ANA = Caller("cli", "ana@contoso.com", "0000-ana", "corr-ana")


class CountingGallery(InMemoryGallery):
    """Counts every promotion and demotion asked of the gallery, per version."""

    def __init__(self) -> None:
        super().__init__()
        self.latest_changes: list[tuple[str, bool]] = []
        self._lock = threading.Lock()

    def set_excluded_from_latest(self, version_id: GalleryVersionId, excluded: bool) -> None:
        with self._lock:
            self.latest_changes.append((version_id.rsplit("/", 1)[-1], excluded))
        super().set_excluded_from_latest(version_id, excluded)


class Releases:
    """A gated template (its distributor publishes with excludeFromLatest, promoted automatically)."""

    def __init__(self) -> None:
        self.clock = FixedClock()
        self.imagebuilder = InMemoryImageBuilder(self.clock)
        self.gallery = CountingGallery()
        self.ledger = InMemoryLedger()
        self.ports = Ports(self.imagebuilder, InMemoryMarketplace(), self.gallery, self.ledger)
        self.wrap: Any = lambda ports: ports
        b = build()
        body = {
            "location": "westeurope",
            "tags": {"golden-image-rebuild": "auto"},
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {"/id": {}}},
            "properties": {"source": {"type": "PlatformImage", "version": "latest"}},
        }
        self.template = ImageTemplate(
            b.template_id,
            SUBSCRIPTION,
            "rg-images",
            b.template_name,
            WEU,
            Source(SourceKind.PLATFORM_IMAGE, None, "latest"),
            {"golden-image-rebuild": "auto"},
            (Distribution("SharedImage", "u", IMAGE, (WEU, NEU), True),),
            "Succeeded",
            definition=TemplateDefinition.from_body(body),
        )
        self.imagebuilder.add_template(self.template)
        self.ledger.save_template_state(
            TemplateState(b.template_id, b.template_name, WEU, self.clock.now()), etag=None
        )

    def reconcile(self) -> None:
        Reconciler(self.wrap(self.ports), POLICY, now=self.clock.now()).run()

    def request(self, patch: int) -> Build:
        wanted = build(key=f"source-update:22.04.2025011{patch}", at=self.clock.now())
        return open_build(self.ledger, wanted, why="new version", by="timer", now=self.clock.now()).build

    def finish(self, patch: int) -> None:
        """The run ends and AIB has published version 1.0.<patch>, excluded from latest."""
        version = GalleryVersionId(f"{IMAGE}/versions/1.0.{patch}")
        self.imagebuilder.finish_run(
            self.template.id,
            RunState.SUCCEEDED,
            exact_version=f"22.04.2025011{patch}",
            outputs=[RunOutput("u", version.replace("/versions/", "/imageversions/"))],
        )
        self.gallery.add_version(
            GalleryImageVersion(
                version,
                GalleryVersionName(f"1.0.{patch}"),
                "Succeeded",
                target_regions=(WEU, NEU),
                excluded_from_latest=True,
                replication=tuple(RegionReplication(r, ReplicationState.COMPLETED, 100) for r in (WEU, NEU)),
            )
        )

    def builds(self) -> list[Build]:
        return list(self.ledger.list_builds(self.template.id).items)

    def release(self, patch: int) -> Build:
        """One gated build, from its request to its promotion; every pass may crash."""
        wanted = self.request(patch)
        finished = False
        for _ in range(40):
            with contextlib.suppress(Crash):  # the host starts a new worker; the next tick runs again
                self.reconcile()
            now = self.ledger.get_build(wanted.id).record
            run = self.imagebuilder.get_template(self.template.id).last_run
            if run is not None and run.state is RunState.RUNNING and not finished:
                self.clock.advance(minutes=30)
                self.finish(patch)
                finished = True
            state = self.ledger.get_template_state(self.template.id)
            if now.state is BuildState.PROMOTED and state is not None and not state.record.open_builds:
                return now
            self.clock.advance(minutes=10)
        raise AssertionError(f"build {wanted.id} never promoted: {now.state}")

    def roll_back(self, heal: str) -> None:
        """Asked once; when its caller dies, healed by the next passes, or by asking again (`heal`)."""
        try:
            roll_back(
                self.wrap(self.ports), self.template.name, now=self.clock.now(), caller=ANA, reason="boot"
            )
            return
        except Crash:
            self.clock.advance(minutes=1)
        again = lambda: roll_back(  # noqa: E731
            self.ports, self.template.name, now=self.clock.now(), caller=ANA, reason="again"
        )
        stored = self.ledger.get_template_state(self.template.id)
        if heal == "ask" and stored is not None and stored.record.rollback is not None:
            with pytest.raises(
                Conflict, match=re.escape("under way, asked by ana@contoso.com")
            ):  # its lease runs
                again()
        self.clock.advance(minutes=5)
        if heal == "pass":
            self.reconcile()
            return
        with contextlib.suppress(NoFallback):  # it died after its last step: there is nothing to finish
            again()

    def outcome(self) -> dict[str, Any]:
        builds = sorted(self.builds(), key=lambda b: b.created_at)
        versions = [(b, v) for b in builds for v in versions_of(b)]
        read = [(b, self.gallery.get_version(v, with_replication=False)) for b, v in versions]
        state = self.ledger.get_template_state(self.template.id)
        assert state is not None
        return {
            "states": [b.state for b in builds],
            "claims": [b.claim for b in builds],
            "messages": [b.message for b in builds if b.state is BuildState.REVOKED],
            "asked": state.record.rollback,
            "excluded": [v.excluded_from_latest for _, v in read],
            "tagged": [dict(v.tags).get("rebuilder-build") == b.id for b, v in read],
            "revoked": [version for _, version in state.record.revoked],
            "open": state.record.open_builds,
            "baseline": state.record.baseline_version,
            "runs": sum(self.imagebuilder.runs_started.values()),
            "rolled back": sum(
                a.action == "rolled-back" for a in self.ledger.list_actions(self.template.id).items
            ),
        }


def scenario(world: Releases, plan: CrashPlan, heal: str = "pass") -> dict[str, Any]:
    world.wrap = plan.wrap
    first = world.release(2)
    world.clock.advance(days=1)
    second = world.release(3)
    assert first.promoted_at is not None and second.promoted_at is not None
    world.roll_back(heal)
    return world.outcome()


@pytest.mark.parametrize("heal", ["pass", "ask"])
def test_a_crash_after_any_release_step_is_healed_by_the_next_pass_or_by_asking_again(heal: str) -> None:
    clean_plan = CrashPlan(None)
    clean = scenario(Releases(), clean_plan)
    assert clean["states"] == [BuildState.PROMOTED, BuildState.REVOKED]
    assert clean["excluded"] == [False, True] and clean["claims"] == ["", ""]
    assert all(clean["tagged"]) and clean["rolled back"] == 1 and clean["runs"] == 2
    assert clean["messages"] == ["revoked by ana@contoso.com: boot"] and clean["asked"] is None
    for step in ("set_tags", "set_excluded_from_latest", "save_build"):
        assert step in clean_plan.steps
    rollback_steps = clean_plan.steps[-4:]
    assert rollback_steps == [
        "save_template_state",  # the intent, on the template's row
        "set_excluded_from_latest",
        "save_build",  # Revoked, with its audit row in the same transaction (issue 22, API 5)
        "save_template_state",  # remembered as revoked, regions back on the fallback, intent gone
    ]
    for at in range(1, len(clean_plan.steps) + 1):
        plan = CrashPlan(at)
        outcome = scenario(Releases(), plan, heal)
        where = f"crash after step {at} ({plan.steps[at - 1]})"
        assert plan.crashed, where
        assert outcome == clean, f"{where}: {outcome} != {clean}"


class MeetingLedger:
    """The ledger, but the first two callers reading a record (`meet_on`: a build, or a template's
    row) wait for each other: both have read it before either writes, the closest two racing callers
    can come."""

    def __init__(self, inner: InMemoryLedger, meet_on: str) -> None:
        self._inner = inner
        self._meet_on = meet_on
        self._meet = threading.Barrier(2, timeout=10)
        self._reads = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name != self._meet_on:
            return attribute

        def read(*args: Any, **kwargs: Any) -> Any:
            found = attribute(*args, **kwargs)
            with self._lock:
                self._reads += 1
                first_two = self._reads <= 2
            if first_two:
                self._meet.wait()
            return found

        return read


def racing(world: Releases, call: Any, meet_on: str) -> list[Any]:
    ledger = MeetingLedger(world.ledger, meet_on)
    meeting = dataclasses.replace(world.ports, ledger=ledger)  # type: ignore[arg-type]
    world.wrap = lambda ports: meeting

    def one(_: int) -> Any:
        try:
            return call()
        except Conflict as error:
            return error

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(one, range(2)))
    world.wrap = lambda ports: ports
    return answers


@pytest.mark.parametrize("runs", range(5))
def test_two_racing_promotions_change_the_gallery_once(runs: int) -> None:
    world = Releases()
    wanted = world.request(2)
    world.reconcile()
    world.clock.advance(minutes=30)
    world.finish(2)
    world.reconcile()  # replicated: provenance tags sent
    world.reconcile()  # read back: a candidate
    assert world.ledger.get_build(wanted.id).record.state is BuildState.CANDIDATE
    racing(world, world.reconcile, "get_build")  # both read it unclaimed: one claims and sends
    world.reconcile()  # the promotion read back
    promoted = world.ledger.get_build(wanted.id).record
    assert promoted.state is BuildState.PROMOTED
    assert world.gallery.latest_changes == [("1.0.2", False)]
    moves = [t.to_state for t in world.ledger.list_transitions(wanted.id)]
    assert moves.count(BuildState.PROMOTED) == 1


@pytest.mark.parametrize("runs", range(5))
def test_two_racing_rollbacks_change_the_gallery_once(runs: int) -> None:
    world = Releases()
    world.release(2)
    world.clock.advance(days=1)
    second = world.release(3)
    changes = list(world.gallery.latest_changes)

    def ask() -> Any:
        return roll_back(
            world.wrap(world.ports), world.template.name, now=world.clock.now(), caller=ANA, reason="x"
        )

    answers = racing(world, ask, "get_template_state")
    refused = [a for a in answers if isinstance(a, Conflict)]
    assert len(refused) == 1  # it lost the race for the intent, or came after the winner had finished
    assert re.search(
        "a rollback of ubuntu2204 is under way|by someone else at the same time", str(refused[0])
    )
    assert world.gallery.latest_changes[len(changes) :] == [("1.0.3", True)]
    assert world.ledger.get_build(second.id).record.state is BuildState.REVOKED
    assert sum(a.action == "rolled-back" for a in world.ledger.list_actions(world.template.id).items) == 1


def test_a_rollback_whose_demotion_the_gallery_holds_is_revoked_only_once_a_pass_reads_it_back() -> None:
    """GalleryRP answers an update 200 `Updating` and applies it later (issue 21): the caller sends
    the demotion and returns; the build is written Revoked by the pass that reads it in effect."""
    world = Releases()
    world.release(2)
    world.clock.advance(days=1)
    second = world.release(3)
    world.gallery.update_looks = 3
    asked = roll_back(world.ports, world.template.name, now=world.clock.now(), caller=ANA, reason="boot")
    assert not asked.done and asked.build.state is BuildState.PROMOTED
    assert [f.name for f in asked.fallbacks] == ["1.0.2", "1.0.2"]
    stored = world.ledger.get_template_state(world.template.id)
    assert stored is not None and stored.record.rollback is not None  # still under way
    passes = 0
    while world.ledger.get_build(second.id).record.state is not BuildState.REVOKED:
        assert passes < 5, "the demotion was never read back"
        world.clock.advance(minutes=1)  # within the caller's lease: the pass only follows it
        world.reconcile()
        passes += 1
    assert passes >= 1
    assert world.gallery.latest_changes[-1:] == [("1.0.3", True)]
    assert world.gallery.latest_changes.count(("1.0.3", True)) == 1  # sent once, never again meanwhile
    state = world.ledger.get_template_state(world.template.id)
    assert state is not None and state.record.rollback is None
    assert {r.image_version.rsplit("/", 1)[-1] for r in state.record.regions} == {"1.0.2"}
    moves = [t.to_state for t in world.ledger.list_transitions(second.id)]
    assert moves.count(BuildState.REVOKED) == 1


def test_a_first_rollback_falls_back_to_a_version_published_before_rebuilder_managed_the_template() -> None:
    world = Releases()
    before = GalleryImageVersion(
        GalleryVersionId(f"{IMAGE}/versions/0.9.7"),
        GalleryVersionName("0.9.7"),
        "Succeeded",
        target_regions=(WEU, NEU),
        replication=tuple(RegionReplication(r, ReplicationState.COMPLETED, 100) for r in (WEU, NEU)),
    )
    world.gallery.add_version(before)
    only = world.release(2)  # the ledger knows no earlier build of the template
    dry = roll_back(
        world.ports, world.template.name, now=world.clock.now(), caller=ANA, reason="x", dry_run=True
    )
    assert not dry.done and [f.version for f in dry.fallbacks] == [before.id, before.id]
    assert world.ledger.get_build(only.id).record.state is BuildState.PROMOTED  # the dry run changed nothing
    done = roll_back(world.ports, world.template.name, now=world.clock.now(), caller=ANA, reason="boot")
    assert done.done and done.build.state is BuildState.REVOKED
    assert [(f.region, f.name, f.build_id, f.differs) for f in done.fallbacks] == [
        (WEU, "0.9.7", "", True),  # the ledger expected nothing: it had no earlier build
        (NEU, "0.9.7", "", True),
    ]
    assert done.decided.latest is None
    state = world.ledger.get_template_state(world.template.id)
    assert state is not None
    assert {(r.build_id, r.image_version) for r in state.record.regions} == {("", before.id)}
    trail = [a for a in world.ledger.list_actions(world.template.id).items if a.action == "rolled-back"]
    assert len(trail) == 1 and "0.9.7 is latest again in northeurope, westeurope" in trail[0].why


def test_a_rollback_with_nothing_the_gallery_would_serve_is_refused_before_anything_changes() -> None:
    world = Releases()
    only = world.release(2)
    changes = list(world.gallery.latest_changes)
    with pytest.raises(NoFallback, match="no earlier version to fall back to in northeurope, westeurope"):
        roll_back(world.ports, world.template.name, now=world.clock.now(), caller=ANA, reason="boot")
    assert world.gallery.latest_changes == changes
    assert world.ledger.get_build(only.id).record.state is BuildState.PROMOTED
    state = world.ledger.get_template_state(world.template.id)
    assert state is not None and state.record.rollback is None
