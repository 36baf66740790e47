"""The ports' contract, run against the in-memory fakes and the SDK adapters on the simulator alike."""

from __future__ import annotations

import pytest

from rebuilder.domain import resource_ids
from rebuilder.domain.errors import Conflict, NotFound
from rebuilder.domain.model import (
    GalleryVersionId,
    ImageState,
    MarketplaceVersion,
    PlatformImage,
    ProvisioningError,
    ReplicationState,
    RunState,
    Scope,
)
from rebuilder.domain.regions import region
from tests.conftest import SUBSCRIPTION
from tests.contract.conftest import Estate, image_id

UBUNTU = PlatformImage("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2")
WEST = region("westeurope")


# -- MarketplaceCatalog -------------------------------------------------------------------------------
def test_marketplace_lists_every_version_of_the_location(estate: Estate) -> None:
    for version in ("22.04.202409100", "22.04.202411190"):
        estate.publish("westeurope", UBUNTU, version)
    estate.publish("eastus", UBUNTU, "22.04.202501150")
    listed = estate.marketplace.list_versions(SUBSCRIPTION, WEST, UBUNTU)
    assert sorted(listed) == ["22.04.202409100", "22.04.202411190"]
    lower = PlatformImage("canonical", UBUNTU.offer.upper(), UBUNTU.sku)  # Azure ignores letter case
    assert sorted(estate.marketplace.list_versions(SUBSCRIPTION, WEST, lower)) == sorted(listed)


def test_marketplace_reports_deprecation_per_version(estate: Estate) -> None:
    estate.publish("westeurope", UBUNTU, "22.04.1", ImageState.SCHEDULED_FOR_DEPRECATION)
    estate.publish("westeurope", UBUNTU, "22.04.2")
    soon = estate.marketplace.get_version(SUBSCRIPTION, WEST, UBUNTU, MarketplaceVersion("22.04.1"))
    assert (soon.version, soon.state, soon.location) == (
        "22.04.1",
        ImageState.SCHEDULED_FOR_DEPRECATION,
        WEST,
    )
    fine = estate.marketplace.get_version(SUBSCRIPTION, WEST, UBUNTU, MarketplaceVersion("22.04.2"))
    assert fine.state is ImageState.ACTIVE


def test_marketplace_unknown_images_and_versions_are_not_found(estate: Estate) -> None:
    estate.publish("westeurope", UBUNTU, "22.04.1")
    with pytest.raises(NotFound):
        estate.marketplace.list_versions(SUBSCRIPTION, WEST, PlatformImage("Canonical", "nope", "none"))
    with pytest.raises(NotFound):
        estate.marketplace.get_version(SUBSCRIPTION, WEST, UBUNTU, MarketplaceVersion("22.04.9"))
    with pytest.raises(NotFound):
        estate.marketplace.list_versions(SUBSCRIPTION, region("japaneast"), UBUNTU)


# -- ImageBuilder -------------------------------------------------------------------------------------
def test_templates_are_listed_per_scope(estate: Estate) -> None:
    estate.add_template("rg-a", "one", UBUNTU)
    estate.add_template("rg-a", "two", UBUNTU)
    estate.add_template("rg-b", "three", UBUNTU)
    everything = sorted(t.name for t in estate.imagebuilder.list_templates(Scope(SUBSCRIPTION)))
    assert everything == ["one", "three", "two"]
    in_a = sorted(t.name for t in estate.imagebuilder.list_templates(Scope(SUBSCRIPTION, "RG-A")))
    assert in_a == ["one", "two"]
    assert list(estate.imagebuilder.list_templates(Scope("99999999-9999-9999-9999-999999999999"))) == []


def test_a_template_runs_once_at_a_time_and_finishes(estate: Estate) -> None:
    estate.publish("westeurope", UBUNTU, "22.04.202409100")
    estate.publish("westeurope", UBUNTU, "22.04.202411190")
    template_id = estate.add_template("rg-a", "ubuntu", UBUNTU)
    fresh = estate.imagebuilder.get_template(template_id)
    assert (fresh.name, fresh.location, fresh.last_run) == ("ubuntu", WEST, None)
    assert fresh.source.image == UBUNTU and fresh.tags["golden-image-rebuild"] == "auto"
    assert estate.imagebuilder.list_run_outputs(template_id) == []

    with pytest.raises(Conflict):
        estate.imagebuilder.cancel_run(template_id)
    estate.imagebuilder.start_run(template_id)
    running = estate.imagebuilder.get_template(template_id).last_run
    assert running is not None and running.state is RunState.RUNNING and running.ended_at is None
    with pytest.raises(Conflict):
        estate.imagebuilder.start_run(template_id)

    estate.finish_runs()
    done = estate.imagebuilder.get_template(template_id)
    assert done.last_run is not None and done.last_run.state is RunState.SUCCEEDED
    assert done.last_run.started_at is not None and done.last_run.ended_at is not None
    assert done.last_run.ended_at > done.last_run.started_at
    assert done.source.exact_version == "22.04.202411190"


def test_a_running_template_can_be_canceled(estate: Estate) -> None:
    estate.publish("westeurope", UBUNTU, "22.04.1")
    template_id = estate.add_template("rg-a", "ubuntu", UBUNTU)
    estate.imagebuilder.start_run(template_id)
    estate.imagebuilder.cancel_run(template_id)
    run = estate.imagebuilder.get_template(template_id).last_run
    assert run is not None and run.state is RunState.CANCELING


def test_unknown_templates_are_not_found(estate: Estate) -> None:
    missing = resource_ids.template_id(SUBSCRIPTION, "rg-a", "missing")
    with pytest.raises(NotFound):
        estate.imagebuilder.get_template(missing)
    with pytest.raises(NotFound):
        estate.imagebuilder.start_run(missing)


def test_a_template_is_recreated_from_its_definition_with_another_version(estate: Estate) -> None:
    estate.publish("westeurope", UBUNTU, "22.04.202411190")
    template_id = estate.add_template("rg-a", "pinned", UBUNTU)
    before = estate.imagebuilder.get_template(template_id)
    assert before.definition is not None and before.definition.source_version == "latest"
    after = before.definition.with_source_version("22.04.202411190")
    assert after.hash != before.definition.hash

    estate.imagebuilder.start_run(template_id)
    with pytest.raises(Conflict):  # AIB refuses to delete a template while it builds
        estate.imagebuilder.delete_template(template_id)
    estate.finish_runs()
    estate.imagebuilder.delete_template(template_id)
    deleting = estate.imagebuilder.get_template(template_id)
    assert deleting.provisioning_state == "Deleting"  # a delete takes Azure about two minutes
    with pytest.raises(Conflict):  # and the name cannot be submitted again meanwhile
        estate.imagebuilder.create_template(template_id, after)
    estate.imagebuilder.delete_template(template_id)  # asking again while it deletes is harmless
    estate.advance(120)
    with pytest.raises(NotFound):
        estate.imagebuilder.get_template(template_id)
    estate.imagebuilder.delete_template(template_id)  # deleting what is gone is not an error
    estate.imagebuilder.create_template(template_id, after)

    again = estate.imagebuilder.get_template(template_id)
    assert again.definition == after  # nothing but the version changed
    assert (again.source.version, again.tags, again.last_run) == ("22.04.202411190", before.tags, None)


def test_a_template_that_fails_to_provision_says_why_and_must_be_deleted_first(estate: Estate) -> None:
    estate.publish("westeurope", UBUNTU, "22.04.202411190")
    template_id = estate.add_template("rg-a", "flaky", UBUNTU)
    definition = estate.imagebuilder.get_template(template_id).definition
    assert definition is not None
    estate.imagebuilder.delete_template(template_id)
    estate.advance(120)
    estate.fail_provisioning("flaky", "ServerError", "An internal error occurred.")
    estate.imagebuilder.create_template(template_id, definition)
    estate.advance(1)
    failed = estate.imagebuilder.get_template(template_id)
    assert failed.provisioning_state == "Failed"
    assert failed.provisioning_error == ProvisioningError("ServerError", "An internal error occurred.")
    with pytest.raises(Conflict):  # a Failed template must be deleted before its name is used again
        estate.imagebuilder.create_template(template_id, definition)
    estate.imagebuilder.delete_template(template_id)
    estate.advance(120)
    estate.imagebuilder.create_template(template_id, definition)
    estate.advance(1)
    healed = estate.imagebuilder.get_template(template_id)
    assert (healed.provisioning_state, healed.provisioning_error) == ("Succeeded", None)


# -- Gallery ------------------------------------------------------------------------------------------
def test_gallery_versions_replicate_to_every_target_region(estate: Estate) -> None:
    estate.add_gallery_image("ubuntu")
    version_id = estate.add_gallery_version("ubuntu", "1.0.0", ["westeurope", "East US 2"])
    assert [v.name for v in estate.gallery.list_versions(image_id("ubuntu"))] == ["1.0.0"]
    estate.replicate()
    version = estate.gallery.get_version(version_id)
    assert version.provisioning_state == "Succeeded"
    assert [(r.region, r.state) for r in version.replication] == [
        ("westeurope", ReplicationState.COMPLETED),
        ("eastus2", ReplicationState.COMPLETED),
    ]
    assert estate.gallery.get_version(version_id, with_replication=False).replication == ()


def test_a_failed_region_restarts_when_target_regions_are_reapplied(estate: Estate) -> None:
    estate.add_gallery_image("ubuntu")
    version_id = estate.add_gallery_version("ubuntu", "1.0.0", ["westeurope", "eastus2"], failing=["eastus2"])
    estate.replicate()
    failed = {r.region: r.state for r in estate.gallery.get_version(version_id).replication}
    assert failed == {"westeurope": ReplicationState.COMPLETED, "eastus2": ReplicationState.FAILED}
    estate.gallery.set_target_regions(version_id, [region("westeurope"), region("eastus2")])
    retrying = {r.region: r.state for r in estate.gallery.get_version(version_id).replication}
    assert retrying["westeurope"] is ReplicationState.COMPLETED
    assert retrying["eastus2"] is not ReplicationState.FAILED
    estate.replicate()
    repaired = {r.region: r.state for r in estate.gallery.get_version(version_id).replication}
    assert set(repaired.values()) == {ReplicationState.COMPLETED}


def test_unknown_gallery_versions_and_images_are_not_found(estate: Estate) -> None:
    estate.add_gallery_image("ubuntu")
    with pytest.raises(NotFound):
        estate.gallery.get_version(GalleryVersionId(f"{image_id('ubuntu')}/versions/9.9.9"))
    with pytest.raises(NotFound):
        estate.gallery.list_versions(image_id("nothing"))


def test_a_version_excluded_from_latest_is_promoted_then_demoted(estate: Estate) -> None:
    estate.add_gallery_image("ubuntu")
    version_id = estate.add_gallery_version("ubuntu", "1.0.0", ["westeurope"])
    estate.replicate()
    estate.gallery.set_excluded_from_latest(version_id, True)
    estate.replicate()
    assert estate.gallery.get_version(version_id, with_replication=False).excluded_from_latest is True
    estate.gallery.set_excluded_from_latest(version_id, False)
    estate.replicate()
    promoted = estate.gallery.get_version(version_id)
    assert promoted.excluded_from_latest is False
    assert [r.state for r in promoted.replication] == [ReplicationState.COMPLETED]  # replicas untouched


def test_an_update_is_in_effect_only_once_a_read_shows_it(estate: Estate) -> None:
    """GalleryImageVersions_Update answers 200 `Updating` with an Azure-AsyncOperation (REST definitions
    GalleryRP 2026-03-03, x-ms-long-running-operation); the change shows in a later read. A second
    update meanwhile is refused, and so is an update of a version still Updating."""
    estate.add_gallery_image("ubuntu")
    version_id = estate.add_gallery_version("ubuntu", "1.0.0", ["westeurope", "northeurope"])
    estate.replicate()
    estate.hold_updates(3)
    estate.gallery.set_excluded_from_latest(version_id, True)
    first = estate.gallery.get_version(version_id, with_replication=False)  # look 1
    assert first.updating and first.excluded_in(WEST) is False
    with pytest.raises(Conflict, match="in flight"):
        estate.gallery.set_tags(version_id, {"owner": "platform"})  # look 2
    assert estate.gallery.get_version(version_id, with_replication=False).updating  # look 3
    done = estate.gallery.get_version(version_id, with_replication=False)
    assert not done.updating and done.provisioning_state == "Succeeded"
    assert done.excluded_everywhere(True) and not dict(done.tags)


@pytest.mark.parametrize("regional", [None, False, True])
def test_promotion_and_demotion_set_every_region_s_flag(estate: Estate, regional: bool | None) -> None:
    """targetRegions[].excludeFromLatest overrides the profile's flag in that region (GalleryRP
    2022-03-03 and later, TargetRegion.excludeFromLatest): a demotion that flipped only the profile's
    would leave a version whose regions say `false` in `latest` everywhere."""
    estate.add_gallery_image("ubuntu")
    version_id = estate.add_gallery_version(
        "ubuntu", "1.0.0", ["westeurope", "northeurope"], regional=regional
    )
    estate.replicate()
    read = estate.gallery.get_version(version_id, with_replication=False)
    assert read.excluded_in(WEST) is (regional is True)
    estate.gallery.set_excluded_from_latest(version_id, True)
    estate.replicate()
    demoted = estate.gallery.get_version(version_id, with_replication=False)
    assert demoted.excluded_everywhere(True)
    assert sorted(demoted.regional_exclusions) == [(region("northeurope"), True), (WEST, True)]
    estate.gallery.set_excluded_from_latest(version_id, False)
    estate.replicate()
    promoted = estate.gallery.get_version(version_id)
    assert promoted.excluded_everywhere(False) and promoted.target_regions == read.target_regions
    assert {r.state for r in promoted.replication} == {ReplicationState.COMPLETED}


def test_a_version_s_tags_are_read_and_replaced(estate: Estate) -> None:
    estate.add_gallery_image("ubuntu")
    version_id = estate.add_gallery_version("ubuntu", "1.0.0", ["westeurope"])
    estate.replicate()
    estate.gallery.set_tags(version_id, {"owner": "platform"})
    estate.replicate()
    read = dict(estate.gallery.get_version(version_id).tags)
    assert read == {"owner": "platform"}
    estate.gallery.set_tags(version_id, {**read, "rebuilder-build": "b-1"})
    estate.replicate()
    tags = dict(estate.gallery.get_version(version_id, with_replication=False).tags)
    assert tags == {"owner": "platform", "rebuilder-build": "b-1"}
    assert [r.state for r in estate.gallery.get_version(version_id).replication] == [
        ReplicationState.COMPLETED
    ]
