"""The reconciler over the in-memory ports: fast, literal, asserting on the ledger's end state.
The same code runs against the SDK adapters on the simulator in tests/integration."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from devstack.fakes import FixedClock, InMemoryGallery, InMemoryImageBuilder, InMemoryMarketplace
from devstack.fakes.ledger import InMemoryLedger
from rebuilder.domain.builds import Build, BuildState
from rebuilder.domain.definition import TemplateDefinition
from rebuilder.domain.errors import TemporaryError
from rebuilder.domain.model import (
    Distribution,
    GalleryImageId,
    GalleryImageVersion,
    GalleryVersionId,
    GalleryVersionName,
    ImageTemplate,
    ProvisioningError,
    RegionReplication,
    ReplicationState,
    RunOutput,
    RunState,
    Source,
    SourceKind,
    TemplateId,
)
from rebuilder.domain.regions import Region
from rebuilder.domain.runs import Policy
from rebuilder.domain.standing import TemplateState
from rebuilder.services.ports import Ports
from rebuilder.services.reconciler import Reconciler, ReconcileReport
from rebuilder.services.records import open_build
from tests.records import build

SUB = "11111111-2222-3333-4444-555555555555"
WEU, NEU = Region("westeurope"), Region("northeurope")
IMAGE = GalleryImageId(
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/u"
)
VERSION = GalleryVersionId(f"{IMAGE}/versions/1.0.2")
POLICY = Policy(max_attempts=2, retry_backoff=timedelta(minutes=10), repair_limit=1, disable_after=2)


class ThrottledImageBuilder(InMemoryImageBuilder):
    """AIB answering 429 to the next `refusals` run requests."""

    refusals = 0
    outages = 0  # the next template reads answer 503
    reads = 0

    def get_template(self, template_id: TemplateId) -> ImageTemplate:
        self.reads += 1
        if self.outages:
            self.outages -= 1
            raise TemporaryError("get image template: HTTP 503 ServiceUnavailable")
        return super().get_template(template_id)

    def start_run(self, template_id: TemplateId) -> None:
        if self.refusals:
            self.refusals -= 1
            raise TemporaryError("run image template: HTTP 429 TooManyRequests", delay=120)
        super().start_run(template_id)


class World:
    def __init__(self) -> None:
        self.clock = FixedClock()
        self.imagebuilder = ThrottledImageBuilder(self.clock)
        self.gallery = InMemoryGallery()
        self.ledger = InMemoryLedger()
        self.ports = Ports(self.imagebuilder, InMemoryMarketplace(), self.gallery, self.ledger)
        self.template = self._template()

    def _template(self) -> ImageTemplate:
        b = build()
        body = {
            "location": "westeurope",
            "tags": {"golden-image-rebuild": "auto"},
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {"/id": {}}},
            "properties": {"source": {"type": "PlatformImage", "version": "latest"}},
        }
        template = ImageTemplate(
            b.template_id,
            SUB,
            "rg-images",
            b.template_name,
            WEU,
            Source(SourceKind.PLATFORM_IMAGE, None, "latest"),
            {"golden-image-rebuild": "auto"},
            (Distribution("SharedImage", "u", IMAGE, (WEU, NEU)),),
            "Succeeded",
            definition=TemplateDefinition.from_body(body),
        )
        self.imagebuilder.add_template(template)
        self.ledger.save_template_state(
            TemplateState(b.template_id, b.template_name, WEU, self.clock.now()), etag=None
        )
        return template

    def request(self, **changes: object) -> Build:
        wanted = build(at=self.clock.now(), **changes)  # type: ignore[arg-type]
        return open_build(self.ledger, wanted, why="new version", by="timer", now=self.clock.now()).build

    def reconcile(self, policy: Policy = POLICY) -> ReconcileReport:
        return Reconciler(self.ports, policy, now=self.clock.now()).run()

    def get(self, b: Build) -> Build:
        return self.ledger.get_build(b.id).record

    def state(self) -> TemplateState:
        stored = self.ledger.get_template_state(self.template.id)
        assert stored is not None
        return stored.record

    def finish(self, outcome: RunState = RunState.SUCCEEDED, *, failed: tuple[Region, ...] = ()) -> None:
        self.clock.advance(hours=1)
        artifact = VERSION.replace("/versions/", "/imageversions/")  # as AIB spells it
        self.imagebuilder.finish_run(
            self.template.id,
            outcome,
            exact_version="22.04.202501150",
            outputs=[RunOutput("u", artifact)],
            message="done",
        )
        self.replicate(failed)

    def replicate(self, failed: tuple[Region, ...] = ()) -> None:
        states = {
            r: ReplicationState.FAILED if r in failed else ReplicationState.COMPLETED for r in (WEU, NEU)
        }
        self.gallery.add_version(
            GalleryImageVersion(
                VERSION,
                GalleryVersionName("1.0.2"),
                "Failed" if failed else "Succeeded",
                target_regions=(WEU, NEU),
                replication=tuple(
                    RegionReplication(r, s, 100 if s is ReplicationState.COMPLETED else 40)
                    for r, s in states.items()
                ),
            )
        )


@pytest.fixture
def world() -> World:
    return World()


def test_a_build_is_leased_run_followed_and_published(world: World) -> None:
    wanted = world.request()
    acted = world.reconcile()
    assert acted.started == [wanted.id]
    running = world.get(wanted)
    assert (running.state, running.attempts, running.run_started_at) == (
        BuildState.RUNNING,
        1,
        world.clock.now(),
    )
    assert world.reconcile().started == []  # the run is going: nothing else starts
    world.finish()
    replicated = world.reconcile()  # every region completed: provenance tags sent
    assert world.get(wanted).state is BuildState.REPLICATING
    assert any("provenance tags sent" in w for w in replicated.waiting)
    acted = world.reconcile()  # the tags read back: published
    published = world.get(wanted)
    assert published.state is BuildState.PUBLISHED and published.outputs
    assert {r.region: r.state for r in world.ledger.list_regions(wanted.id)} == {
        WEU: "Completed",
        NEU: "Completed",
    }
    state = world.state()
    assert (state.open_builds, state.baseline_version, state.last_build_state) == (
        (),
        "22.04.202501150",
        BuildState.PUBLISHED,
    )
    assert [e.type for e in replicated.events + acted.events] == [
        "RegionReplicated",
        "RegionReplicated",
        "ImagePublished",
        "BuildSucceeded",
    ]
    assert world.imagebuilder.runs_started == {world.imagebuilder._key(world.template.id): 1}


def test_a_throttled_run_request_waits_for_retry_after_without_spending_an_attempt(world: World) -> None:
    world.imagebuilder.refusals = 1
    wanted = world.request()
    acted = world.reconcile()
    queued = world.get(wanted)
    assert (queued.state, queued.attempts) == (BuildState.QUEUED, 0)
    assert queued.next_attempt_at == world.clock.now() + timedelta(seconds=120)
    assert acted.started == [] and "429" in acted.moved[-1][2]
    world.clock.advance(seconds=60)
    assert world.reconcile().started == []  # not yet due
    world.clock.advance(seconds=61)
    assert world.reconcile().started == [wanted.id]
    assert world.get(wanted).attempts == 1


def test_a_run_request_that_never_shows_is_asked_again_after_the_grace_period(world: World) -> None:
    wanted = world.request()
    queued = world.get(wanted)
    leased = dataclasses.replace(
        queued,
        state=BuildState.RUNNING,
        attempts=1,
        run_started_at=world.clock.now(),
        updated_at=world.clock.now(),
    )
    transition = queued.becomes(leased, why="run requested", by="test")
    world.ledger.save_build(
        leased, etag=world.ledger.get_build(wanted.id).etag, transition=transition
    )  # then a crash
    world.clock.advance(minutes=5)
    world.reconcile()
    assert world.get(wanted).state is BuildState.RUNNING  # within the grace period: maybe AIB is slow
    world.clock.advance(minutes=6)
    world.reconcile()
    lost = world.get(wanted)
    assert lost.state is BuildState.QUEUED and "shows no run" in lost.message
    world.clock.advance(minutes=10)
    assert world.reconcile().started == [wanted.id]
    assert sum(world.imagebuilder.runs_started.values()) == 1


def test_a_failed_region_is_repaired_once_then_the_build_ends_partially_published(world: World) -> None:
    wanted = world.request()
    world.reconcile()
    world.finish(RunState.PARTIALLY_SUCCEEDED, failed=(NEU,))
    acted = world.reconcile()
    assert acted.repaired == [(wanted.id, NEU)]
    assert world.get(wanted).state is BuildState.REPLICATING
    world.replicate(failed=(NEU,))  # the repair failed too
    world.reconcile()  # its repairs spent: provenance tags sent
    world.reconcile()
    ended = world.get(wanted)
    assert ended.state is BuildState.PARTIALLY_PUBLISHED and "northeurope" in ended.message
    rows = {r.region: r for r in world.ledger.list_regions(wanted.id)}
    assert (rows[NEU].state, rows[NEU].repairs, rows[WEU].state) == ("Failed", 1, "Completed")
    assert {r.region for r in world.state().regions} == {WEU}


def test_failed_builds_disable_the_template(world: World) -> None:
    for n in range(2):
        wanted = world.request(key=f"source-update:22.04.{n}", version=f"22.04.{n}")
        for _ in range(POLICY.max_attempts):
            world.reconcile()
            world.finish(RunState.FAILED)
            world.reconcile()
            world.clock.advance(minutes=30)
        assert world.get(wanted).state is BuildState.FAILED
    state = world.state()
    assert state.disabled and state.consecutive_failures == 2
    assert state.disabled_reason == "2 consecutive failed builds; the last: done"  # AIB's message


def test_a_deleted_template_fails_its_open_builds(world: World) -> None:
    wanted = world.request()
    world.imagebuilder.delete_template(world.template.id)
    acted = world.reconcile()
    assert world.get(wanted).state is BuildState.QUEUED  # Azure is still deleting it
    assert any("is Deleting" in w for w in acted.waiting)
    world.clock.advance(seconds=121)
    world.reconcile()
    gone = world.get(wanted)
    assert gone.state is BuildState.FAILED and "no longer exists" in gone.message
    assert world.state().open_builds == ()


def failed_provisioning(world: World, code: str) -> None:
    error = ProvisioningError(code, f"{code}: the template could not be provisioned")
    failed = dataclasses.replace(world.template, provisioning_state="Failed", provisioning_error=error)
    world.imagebuilder.add_template(failed)


def test_a_template_that_failed_to_provision_is_deleted_and_submitted_again(world: World) -> None:
    wanted = world.request()
    failed_provisioning(world, "ServerError")
    world.reconcile()
    first = world.get(wanted)
    assert (first.state, first.attempts) == (BuildState.QUEUED, 1)  # the attempt is spent
    assert "ServerError" in first.message and first.definition_after  # written ahead of the delete
    assert world.imagebuilder.get_template(world.template.id).provisioning_state == "Deleting"
    assert "ServerError" in world.ledger.list_transitions(wanted.id)[-1].why
    puts = world.imagebuilder.puts
    world.clock.advance(seconds=60)
    world.reconcile()  # still deleting: no create is sent against it
    assert world.imagebuilder.puts == puts
    world.clock.advance(seconds=61)
    assert world.reconcile().recreated == [world.template.id]
    assert world.imagebuilder.puts == puts + 1
    started = world.reconcile()
    assert started.started == [wanted.id] and world.get(wanted).attempts == 2


def test_a_permanent_provisioning_error_fails_the_build_at_once_in_azures_words(world: World) -> None:
    wanted = world.request()
    failed_provisioning(world, "BadPIRSource")
    world.reconcile()
    failed = world.get(wanted)
    assert failed.state is BuildState.FAILED and failed.attempts == 1
    assert "BadPIRSource: BadPIRSource: the template could not be provisioned" in failed.message
    assert world.imagebuilder.get_template(world.template.id).provisioning_state == "Failed"  # not deleted
    assert world.imagebuilder.runs_started == {} and world.imagebuilder.puts == 0


def test_provisioning_that_keeps_failing_spends_the_attempt_budget(world: World) -> None:
    wanted = world.request()
    for _ in range(POLICY.max_attempts):
        failed_provisioning(world, "ServerError")
        world.imagebuilder.deleting.clear()
        world.reconcile()
    assert world.get(wanted).state is BuildState.FAILED
    assert world.get(wanted).attempts == POLICY.max_attempts and world.imagebuilder.runs_started == {}


def test_temporary_errors_back_off_across_passes_then_clear(world: World) -> None:
    wanted = world.request()
    world.imagebuilder.outages = 2
    first = world.reconcile()
    assert "503" in first.problems[0] and world.state().follow_errors == 1
    assert world.state().follow_after == world.clock.now() + POLICY.retry_backoff
    reads = world.imagebuilder.reads
    world.clock.advance(minutes=5)
    assert world.reconcile().waiting and world.imagebuilder.reads == reads  # not asked again yet
    world.clock.advance(minutes=6)
    world.reconcile()  # the second outage: the wait doubles
    assert world.state().follow_errors == 2
    assert world.state().follow_after == world.clock.now() + 2 * POLICY.retry_backoff
    world.clock.advance(minutes=21)
    assert world.reconcile().started == [wanted.id]
    state = world.state()
    assert (state.follow_errors, state.follow_after) == (0, None)
