"""A detection pass over the in-memory ports: discover → watch → plan → record and request."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from devstack.fakes import FixedClock, InMemoryGallery, InMemoryImageBuilder, InMemoryMarketplace
from devstack.fakes.ledger import InMemoryLedger
from rebuilder.domain.builds import BuildReason, BuildState, Provenance, requested
from rebuilder.domain.model import (
    GalleryImageId,
    GalleryImageVersion,
    GalleryVersionId,
    GalleryVersionName,
    ImageState,
    ImageTemplate,
    LastRun,
    PlatformImage,
    RegionReplication,
    ReplicationState,
    RunState,
    Scope,
    Source,
    SourceKind,
    TemplateId,
)
from rebuilder.domain.planner import Action
from rebuilder.domain.regions import Region
from rebuilder.domain.runs import Policy
from rebuilder.services.detection import compute_plan, watch_pass
from rebuilder.services.ports import Ports
from rebuilder.services.records import Caller, open_build
from rebuilder.services.requests import BuildInProgress, request_rebuild
from rebuilder.services.watch_and_act import watch_and_act

SUB = "11111111-2222-3333-4444-555555555555"
SCOPE = Scope(SUB)
WEU, EUS = Region("westeurope"), Region("eastus")
JAMMY = PlatformImage("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2")
WINDOWS = PlatformImage("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-g2")
IMAGE = GalleryImageId(
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/ubuntu"
)


class World:
    def __init__(self) -> None:
        self.clock = FixedClock(datetime(2026, 11, 10, 6, 0, tzinfo=UTC))
        self.marketplace = InMemoryMarketplace()
        self.imagebuilder = InMemoryImageBuilder(self.clock)
        self.gallery = InMemoryGallery()
        self.ledger = InMemoryLedger()
        self.ports = Ports(self.imagebuilder, self.marketplace, self.gallery, self.ledger)

    def template(
        self,
        name: str,
        source: Source,
        *,
        location: Region = WEU,
        tag: str | None = "auto",
        last_run: LastRun | None = None,
    ) -> TemplateId:
        tid = TemplateId(
            f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/{name}"
        )
        tags = {"golden-image-rebuild": tag} if tag is not None else {}
        self.imagebuilder.add_template(
            ImageTemplate(tid, SUB, "rg", name, location, source, tags, last_run=last_run)
        )
        return tid

    def gallery_version(
        self,
        name: str,
        completed: tuple[Region, ...],
        *,
        excluded: bool = False,
        regional: tuple[tuple[Region, bool], ...] = (),
    ) -> None:
        replication = tuple(RegionReplication(r, ReplicationState.COMPLETED, 100) for r in completed)
        self.gallery.add_version(
            GalleryImageVersion(
                GalleryVersionId(f"{IMAGE}/versions/{name}"),
                GalleryVersionName(name),
                "Succeeded",
                target_regions=completed,
                excluded_from_latest=excluded,
                replication=replication,
                regional_exclusions=regional,
            )
        )


def latest(image: PlatformImage, version: str = "latest") -> Source:
    return Source(SourceKind.PLATFORM_IMAGE, image, version)


@pytest.fixture
def world() -> World:
    w = World()
    for version in ("22.04.202411190", "22.04.202412010", "22.04.202501150"):
        w.marketplace.publish(WEU, JAMMY, version)
    w.marketplace.publish(WEU, WINDOWS, "20348.587.220303")
    w.marketplace.publish(WEU, WINDOWS, "20348.2849.241106")
    return w


def test_one_list_call_per_distinct_source_whatever_the_number_of_templates(world: World) -> None:
    for i in range(12):
        world.template(f"ubuntu-{i}", latest(JAMMY))
    world.template("windows", latest(WINDOWS, "20348.587.220303"))
    report = compute_plan(world.ports, [SCOPE], now=world.clock.now())
    assert report.list_calls == 2
    assert len([c for c in world.marketplace.calls if c[0] == "list"]) == 2
    assert {i.candidate_version for i in report.items} == {"22.04.202501150", "20348.2849.241106"}


def test_a_pass_plans_every_kind_of_template_and_requests_due_builds_once(world: World) -> None:
    due = world.template("ubuntu", latest(JAMMY))
    world.template("manual", latest(JAMMY), tag="Manual")
    world.template("ignored", latest(JAMMY), tag="sometimes")
    world.template("untagged", latest(JAMMY), tag=None)
    world.template("managed", Source(SourceKind.MANAGED_IMAGE, raw_type="ManagedImage"))
    adopted = world.template(
        "adopted",
        Source(SourceKind.PLATFORM_IMAGE, JAMMY, "latest", exact_version="22.04.202501150"),
        last_run=LastRun(RunState.SUCCEEDED, None, world.clock.now(), world.clock.now()),
    )

    report = watch_pass(world.ports, [SCOPE], now=world.clock.now(), trigger="timer")

    actions = {i.template.name: i.action for i in report.items}
    assert actions == {
        "ubuntu": Action.REBUILD,
        "manual": Action.NONE,
        "managed": Action.SKIP,
        "adopted": Action.NONE,
    }
    assert {why for _, why in report.discovery.ignored} == {
        "tag golden-image-rebuild='sometimes' is neither 'auto' nor 'manual'",
        "no golden-image-rebuild tag",
    }
    [(build_id, created)] = report.requested
    assert created
    build = world.ledger.get_build(build_id).record
    assert (build.template_id, build.state, build.source.resolved_version) == (
        due,
        BuildState.QUEUED,
        "22.04.202501150",
    )
    assert build.previous_baseline == ""
    adopted_state = world.ledger.get_template_state(adopted)
    assert adopted_state is not None
    assert adopted_state.record.baseline_version == "22.04.202501150"
    assert len(report.new_versions) == 3  # first sightings, recorded once

    world.clock.advance(minutes=15)
    again = watch_pass(world.ports, [SCOPE], now=world.clock.now(), trigger="timer")
    assert again.requested == []  # the build is in progress: the plan says so, nothing new is claimed
    assert {i.template.name: i.action for i in again.items}["ubuntu"] is Action.NONE
    assert again.new_versions == []
    assert [b.id for b in world.ledger.list_builds(due).items] == [build_id]


def test_deprecated_versions_are_never_chosen_and_scheduled_ones_are_flagged(world: World) -> None:
    world.marketplace.publish(WEU, JAMMY, "22.04.202502010", ImageState.DEPRECATED)
    world.marketplace.publish(WEU, JAMMY, "22.04.202501150", ImageState.SCHEDULED_FOR_DEPRECATION)
    world.template("ubuntu", latest(JAMMY))
    [item] = compute_plan(world.ports, [SCOPE], now=world.clock.now()).items
    assert item.candidate_version == "22.04.202501150"
    assert item.flags == ("scheduled-for-deprecation",)


def test_availability_is_per_template_location(world: World) -> None:
    world.marketplace.publish(EUS, JAMMY, "22.04.202411190")
    world.template("weu", latest(JAMMY))
    world.template("eus", latest(JAMMY), location=EUS)
    items = {
        i.template.name: i.candidate_version
        for i in compute_plan(world.ports, [SCOPE], now=world.clock.now()).items
    }
    assert items == {"weu": "22.04.202501150", "eus": "22.04.202411190"}


def test_gallery_sources_need_a_completed_replica_in_the_template_location(world: World) -> None:
    world.gallery.add_image(IMAGE)
    world.gallery_version("1.0.3", (WEU, EUS))
    world.gallery_version("1.0.4", (EUS,))  # not in westeurope yet
    world.gallery_version("1.0.5", (WEU, EUS), excluded=True)  # excluded from latest
    world.template(
        "child", Source(SourceKind.SHARED_IMAGE_VERSION, image_version_id=f"{IMAGE.upper()}/versions/latest")
    )
    world.template(
        "child-eus",
        Source(SourceKind.SHARED_IMAGE_VERSION, image_version_id=f"{IMAGE}/versions/latest"),
        location=EUS,
    )
    report = compute_plan(world.ports, [SCOPE], now=world.clock.now())
    assert {i.template.name: i.candidate_version for i in report.items} == {
        "child": "1.0.3",
        "child-eus": "1.0.4",
    }
    assert report.list_calls == 1  # one gallery image, whatever the letter case of the ids


def test_a_regions_own_exclude_from_latest_decides_what_latest_is_there(world: World) -> None:
    """TargetRegion.excludeFromLatest overrides the profile's flag in its region (Compute 2022-03-03
    on; tests/reference/specs/compute-gallery-2026-03-03.json): a child builds from what AIB resolves
    `latest` to in the child's own region."""
    world.gallery.add_image(IMAGE)
    world.gallery_version("1.0.3", (WEU, EUS))
    world.gallery_version("1.0.4", (WEU, EUS), regional=((WEU, True),))  # out of latest in westeurope only
    world.gallery_version("1.0.5", (WEU, EUS), excluded=True, regional=((EUS, False),))  # in it in eastus
    source = Source(SourceKind.SHARED_IMAGE_VERSION, image_version_id=f"{IMAGE}/versions/latest")
    world.template("child", source)
    world.template("child-eus", source, location=EUS)
    report = compute_plan(world.ports, [SCOPE], now=world.clock.now())
    assert {i.template.name: i.candidate_version for i in report.items} == {
        "child": "1.0.3",
        "child-eus": "1.0.5",
    }


def test_a_source_that_cannot_be_read_blocks_only_its_templates(world: World) -> None:
    world.template("ubuntu", latest(JAMMY))
    world.template("nowhere", latest(PlatformImage("Contoso", "missing", "sku")))
    items = {i.template.name: i for i in compute_plan(world.ports, [SCOPE], now=world.clock.now()).items}
    assert items["ubuntu"].action is Action.REBUILD
    assert items["nowhere"].action is Action.BLOCKED
    assert "retried next pass" in items["nowhere"].reason


def test_a_pinned_version_scheduled_for_deprecation_is_flagged_and_announced_once(world: World) -> None:
    when = datetime(2027, 3, 1, tzinfo=UTC)
    world.template("pinned", latest(WINDOWS, "20348.2849.241106"))
    world.template("pinned-too", latest(WINDOWS, "20348.2849.241106"))
    first = watch_and_act(world.ports, [SCOPE], Policy(), now=world.clock.now(), trigger="timer")[1]
    assert [e.type for e in first.events if e.type == "SourceDeprecationScheduled"] == []
    world.marketplace.publish(WEU, WINDOWS, "20348.2849.241106", ImageState.SCHEDULED_FOR_DEPRECATION, when)
    world.marketplace.publish(WEU, WINDOWS, "20348.2900.250101")  # a newer one, not deprecated
    report, acted = watch_and_act(world.ports, [SCOPE], Policy(), now=world.clock.now(), trigger="timer")
    items = {i.template.name: i for i in report.items}
    assert "pinned-source-scheduled-for-deprecation" in items["pinned"].flags
    assert (
        "the pinned version 20348.2849.241106 is scheduled for deprecation on 2027-03-01"
        in items["pinned"].reason
    )
    assert "the newest usable version is 20348.2900.250101" in items["pinned"].reason
    [notice] = [e for e in acted.events if e.type == "SourceDeprecationScheduled"]
    assert notice.data["version"] == "20348.2849.241106"
    assert notice.data["templates"] == ["pinned", "pinned-too"]  # one notice for every template pinning it
    assert notice.data["scheduledDeprecationTime"] == when.isoformat()
    again = watch_and_act(world.ports, [SCOPE], Policy(), now=world.clock.now(), trigger="timer")[1]
    assert [e for e in again.events if e.type == "SourceDeprecationScheduled"] == []  # once per version


def test_a_deprecated_pinned_version_blocks_the_template(world: World) -> None:
    world.marketplace.publish(WEU, WINDOWS, "20348.2849.241106", ImageState.DEPRECATED)
    started = datetime(2026, 11, 1, tzinfo=UTC)
    source = Source(
        SourceKind.PLATFORM_IMAGE, WINDOWS, "20348.2849.241106", exact_version="20348.2849.241106"
    )
    world.template("pinned", source, last_run=LastRun(RunState.SUCCEEDED, None, started, started))
    [item] = compute_plan(world.ports, [SCOPE], now=world.clock.now()).items
    assert (item.action, item.baseline_version) == (Action.BLOCKED, "20348.2849.241106")
    assert "the pinned version 20348.2849.241106 is deprecated" in item.reason
    assert "Azure refuses new builds from it" in item.reason
    assert "the newest usable version is 20348.587.220303" in item.reason


def test_an_on_demand_build_goes_past_window_cooldown_and_minimum_age_and_says_so(world: World) -> None:
    tags = {
        "golden-image-rebuild": "auto",
        "rebuild-window": "Sat,Sun 01:00-05:00",  # closed: 10 November 2026 is a Tuesday
        "rebuild-cooldown-hours": "24",
        "rebuild-min-release-age-hours": "48",
    }
    tid = world.template("ubuntu", latest(JAMMY))
    template = dataclasses.replace(world.imagebuilder.get_template(tid), tags=tags)
    world.imagebuilder.add_template(template)
    scheduled, _ = watch_and_act(world.ports, [SCOPE], Policy(), now=world.clock.now(), trigger="timer")
    [item] = scheduled.items
    assert item.action is Action.NONE and "waiting: 22.04.202501150 becomes eligible" in item.reason
    opened, acted = request_rebuild(
        world.ports, template, Policy(), now=world.clock.now(), caller=Caller("cli", "ops@example.com")
    )
    bypassed = opened.build.provenance.bypassed
    assert "window Sat,Sun 01:00-05:00 (closed; opens 2026-11-14 01:00 UTC)" in bypassed
    assert "minimum release age 48 h (not applied)" in bypassed
    assert acted.started == [opened.build.id]  # started at once, window or not
    stored = world.ledger.get_build(opened.build.id).record
    assert stored.provenance.bypassed == bypassed and stored.state is BuildState.RUNNING


def test_a_pinned_version_among_the_newest_costs_no_extra_read(world: World) -> None:
    world.template("pinned", latest(WINDOWS, "20348.2849.241106"))  # the newest: read for the candidate
    world.template("older", latest(WINDOWS, "20348.587.220303"))  # not among those read: one more read
    compute_plan(world.ports, [SCOPE], now=world.clock.now())
    gets = [c for c in world.marketplace.calls if c[0] == "get" and c[2] == WINDOWS]
    assert len(gets) == 2


def test_an_on_demand_request_while_a_candidate_awaits_promotion_is_refused(world: World) -> None:
    tid = world.template("gated", latest(JAMMY))
    template = world.imagebuilder.get_template(tid)
    waiting = requested(
        template,
        reason=BuildReason.SOURCE_UPDATE,
        key="source-update:22.04.202501150",
        resolved_version="22.04.202501150",
        now=world.clock.now(),
        provenance=Provenance("timer"),
        state=BuildState.CANDIDATE,
    )
    open_build(world.ledger, waiting, why="test", by="timer", now=world.clock.now())
    with pytest.raises(BuildInProgress, match="is a candidate awaiting promotion"):
        request_rebuild(world.ports, template, Policy(), now=world.clock.now(), caller=Caller("cli", "ana"))
    assert [b.id for b in world.ledger.list_builds(tid).items] == [waiting.id]  # nothing joined it


def test_a_plan_records_nothing_so_the_next_pass_still_announces_what_it_saw(world: World) -> None:
    """Issue 22 (API 1): a plan (GET /api/plan, the CLI `plan`) is a read. Before, it recorded the new
    version and the deprecation change, and the timer's pass then announced neither."""
    when = datetime(2027, 3, 1, tzinfo=UTC)
    world.template("ubuntu", latest(JAMMY))
    world.template("pinned", latest(WINDOWS, "20348.2849.241106"))
    watch_and_act(world.ports, [SCOPE], Policy(), now=world.clock.now(), trigger="timer")
    world.marketplace.publish(WEU, JAMMY, "22.04.202502010")
    world.marketplace.publish(WEU, WINDOWS, "20348.2849.241106", ImageState.SCHEDULED_FOR_DEPRECATION, when)
    written = world.ledger.writes
    planned = {i.template.name: i for i in compute_plan(world.ports, [SCOPE], now=world.clock.now()).items}
    assert planned["ubuntu"].candidate_version == "22.04.202502010"  # the plan sees it ...
    assert "pinned-source-scheduled-for-deprecation" in planned["pinned"].flags
    assert world.ledger.writes == written  # ... and writes nothing
    acted = watch_and_act(world.ports, [SCOPE], Policy(), now=world.clock.now(), trigger="timer")[1]
    types = [e.type for e in acted.events]
    assert types.count("SourceVersionDetected") == 1
    assert types.count("SourceDeprecationScheduled") == 1
