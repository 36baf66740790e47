"""Issue 21's findings on the local stack (ARM simulator + Azurite, real SDK clients): what the release
paths do where Azure behaves as its contract says rather than as we first assumed.

- Gallery version updates answer 200 `Updating` and take effect later (GalleryImageVersions_Update,
  api 2026-03-03: responses 200 only, final state via the Azure-AsyncOperation; kept in
  tests/reference/specs/compute-gallery-2026-03-03.json): a promotion is written only once read back.
- `publishingProfile.targetRegions[].excludeFromLatest` overrides the profile's flag in its region
  (TargetRegion, api 2022-03-03 on), and GETs echo it once set: a rollback demotes every region.
- A failed validation is `runState: Failed` with `runSubState: Validating` (ImageTemplateLastRunStatus
  in imagebuilder 2025-10-01; Microsoft Learn, "Azure VM Image Builder JSON: validate",
  continueDistributeOnFailure): distributed anyway, it is demoted everywhere and Rejected, never retried.
- What is latest again after a rollback is what the gallery serves, including versions published
  before rebuilder managed the template; the service's stated fallback equals the simulator's
  resolution of `latest` in every region.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import estate
from devstack.armsim import ArmSimulator, SimControl
from devstack.azurite import Azurite
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.domain.builds import BuildState
from rebuilder.domain.releases import versions_of
from rebuilder.services.history import where_we_stand
from tests.integration.orchestration import Driver, cli, make_driver
from tests.integration.test_releases_on_stack import add_gated, two_promoted

PARENT = estate.GATED
IMAGE = estate.gallery_image_id("ubuntu-gated")
REGIONS = list(estate.REGIONS)


@pytest.fixture
def driver(armsim: ArmSimulator, sim: SimControl, azurite: Azurite) -> Iterator[Driver]:
    made = make_driver(armsim, sim, azurite)
    yield made
    made.services.close()


def refused_updates(driver: Driver) -> list[str]:
    template = next(s for s in where_we_stand(driver.services.ledger) if s.name == PARENT)
    actions = driver.services.ledger.list_actions(template.template_id).items
    return [a.why for a in actions if a.action == "gallery-update-refused"]


def put_version(driver: Driver, sim: SimControl, name: str, *, regional: bool | None = None) -> None:
    """A version published into the gated image by hand (before rebuilder managed it), replicated."""
    flag = {} if regional is None else {"excludeFromLatest": regional}
    clients = AzureClients(driver.services.settings)
    try:
        versions = clients.compute(estate.SUBSCRIPTION).gallery_image_versions
        versions.begin_create_or_update(
            estate.IMAGES_RG,
            estate.GALLERY,
            "ubuntu-gated",
            name,
            {
                "location": estate.HOME,
                "properties": {
                    "publishingProfile": {"targetRegions": [{"name": r, **flag} for r in REGIONS]},
                    "storageProfile": {"source": {"virtualMachineId": "/subscriptions/x/vm"}},
                },
            },
            polling=False,
        )
    finally:
        clients.close()
    sim.advance(4 * 3600)  # replicated everywhere


def test_a_promotion_held_updating_for_three_looks_is_written_only_after_the_read_back(
    driver: Driver, sim: SimControl
) -> None:
    add_gated(driver)
    sim.configure(update_looks=3)
    driver.watch()
    driver.until(lambda: driver.last(PARENT).state is BuildState.CANDIDATE, step=600)
    candidate = driver.last(PARENT)
    [version] = versions_of(candidate)
    sim.reset_counters()
    states = []
    for _ in range(8):
        driver.reconcile()
        states.append(driver.last(PARENT).state)
        if states[-1] is BuildState.PROMOTED:
            break
    # the pass that sends the promotion leaves it a candidate; Promoted only once a read shows it
    assert states[-1] is BuildState.PROMOTED and states.count(BuildState.CANDIDATE) >= 2, states
    waits = [w for acted in driver.acted for w in acted.waiting if "Promoted once a read shows it" in w]
    assert waits and refused_updates(driver) == []  # followed, never sent while Updating
    name = version.rsplit("/", 1)[-1]
    assert sim.latest(IMAGE, REGIONS) == dict.fromkeys(REGIONS, name)
    updates = [r for r in sim.requests("gallery_image_versions.update") if name in r["path"]]
    assert len(updates) == 1  # one promotion sent, followed until it was in effect


def test_a_rollback_where_every_region_echoes_its_flag_leaves_the_version_out_of_latest_everywhere(
    driver: Driver, sim: SimControl
) -> None:
    first, second = two_promoted(driver, sim)
    [old], [new] = versions_of(first), versions_of(second)
    read = driver.services.gallery.get_version(new, with_replication=False)
    assert dict(read.regional_exclusions) == dict.fromkeys(read.regions, False)  # echoed false everywhere
    assert sim.latest(IMAGE, REGIONS) == dict.fromkeys(REGIONS, new.rsplit("/", 1)[-1])
    dry = cli(driver, "rollback", PARENT, "--reason", "boot loop", "--dry-run", "--output", "json")
    stated = {f["region"]: f["version"].rsplit("/", 1)[-1] for f in dry["fallback"]}
    assert dry["dry_run"] and driver.last(PARENT).state is BuildState.PROMOTED  # nothing changed
    shown = cli(driver, "rollback", PARENT, "--reason", "boot loop", "--output", "json")
    assert shown["done"] and shown["revoked"]["state"] == "Revoked" and shown["latest"]["id"] == first.id
    assert {f["region"]: f["version"].rsplit("/", 1)[-1] for f in shown["fallback"]} == stated
    served = sim.latest(IMAGE, REGIONS)
    assert served == dict.fromkeys(REGIONS, old.rsplit("/", 1)[-1]) == stated  # as stated, everywhere
    demoted = driver.services.gallery.get_version(new, with_replication=False)
    assert demoted.excluded_everywhere(True)


def test_a_first_rollback_falls_back_to_a_version_published_before_rebuilder(
    driver: Driver, sim: SimControl
) -> None:
    add_gated(driver)
    put_version(driver, sim, "0.9.7", regional=False)  # by hand, long ago; the ledger knows nothing of it
    driver.watch()
    driver.until(lambda: driver.last(PARENT).state is BuildState.PROMOTED, step=600)
    only = driver.last(PARENT)
    shown = cli(driver, "rollback", PARENT, "--reason", "kernel panic", "--output", "json")
    assert shown["done"] and shown["revoked"]["id"] == only.id and shown["latest"] is None
    stated = {f["region"]: f["version"].rsplit("/", 1)[-1] for f in shown["fallback"]}
    assert stated == sim.latest(IMAGE, REGIONS) == dict.fromkeys(REGIONS, "0.9.7")
    assert all(f["build"] is None and f["differs"] for f in shown["fallback"])  # the ledger expected none
    assert "0.9.7 is latest again in" in shown["summary"]


def test_an_ungated_template_whose_validation_fails_is_rejected_once_and_demoted_everywhere(
    driver: Driver, sim: SimControl
) -> None:
    smoke = {"type": "Shell", "name": "smoke", "inline": ["systemctl is-system-running"]}
    clients = AzureClients(driver.services.settings)
    try:  # publishes straight into latest, and distributes even when validation fails
        estate.create_gated(
            clients,
            {},
            validate={"continueDistributeOnFailure": True, "inVMValidations": [smoke]},
            gated=False,
        )
    finally:
        clients.close()
    put_version(driver, sim, "0.9.7")  # what latest served before
    sim.fail_build(PARENT, sub_state="Validating", message="Inline script 'smoke' exited with 1")
    driver.watch()
    driver.until(lambda: driver.last(PARENT).state.finished, step=600)
    rejected = driver.last(PARENT)
    assert rejected.state is BuildState.REJECTED and rejected.run_outcome == "Failed"
    assert driver.runs()[PARENT] == 1  # not retried
    [version] = versions_of(rejected)
    assert driver.services.gallery.get_version(version, with_replication=False).excluded_everywhere(True)
    assert sim.latest(IMAGE, REGIONS) == dict.fromkeys(REGIONS, "0.9.7")  # the bad image is in no latest
    notices = [e for acted in driver.acted for e in acted.events if e.type == "ImageRejected"]
    assert [n.data["demoted"] for n in notices] == [[version]]


def test_a_region_where_the_gallery_disagrees_with_the_ledger_is_flagged_in_templates_api_and_report(
    driver: Driver, sim: SimControl, tmp_path: Path
) -> None:
    _, second = two_promoted(driver, sim)
    cli(driver, "rollback", PARENT, "--reason", "boot loop", "--output", "json")
    [new] = versions_of(second)
    clients = AzureClients(driver.services.settings)
    try:  # someone puts the revoked version back into latest in one region, by hand (GET + PUT)
        versions = clients.compute(estate.SUBSCRIPTION).gallery_image_versions
        name = new.rsplit("/", 1)[-1]
        read = versions.get(estate.IMAGES_RG, estate.GALLERY, "ubuntu-gated", name).as_dict()
        body = {  # a hand-written update: the writable parts, storageProfile as the schema requires
            "properties": {
                "publishingProfile": {
                    "excludeFromLatest": True,
                    "targetRegions": [
                        {
                            "name": t["name"],
                            "excludeFromLatest": t["name"].replace(" ", "").lower() != "eastus2",
                        }
                        for t in read["properties"]["publishingProfile"]["targetRegions"]
                    ],
                },
                "storageProfile": {"source": read["properties"]["storageProfile"]["source"]},
            }
        }
        versions.begin_update(estate.IMAGES_RG, estate.GALLERY, "ubuntu-gated", name, body, polling=False)
    finally:
        clients.close()
    sim.advance(600)
    driver.watch()
    listed = {t["name"]: t for t in cli(driver, "templates", "--output", "json")["templates"]}
    drift = listed[PARENT]["latest_drift"]
    assert [(d["region"], d["version"], d["ledger_in_latest"]) for d in drift] == [("eastus2", name, False)]
    cells = {c["region"]: c for c in listed[PARENT]["regions"]}
    assert "in latest in the gallery; the ledger has it out of latest" in cells["eastus2"]["latest_drift"]
    assert cells["westeurope"]["latest_drift"] is None
    page = tmp_path / "report.html"
    cli(driver, "report", "--html", str(page), "--output", "json")
    assert f"gallery disagrees: {name} in latest" in page.read_text()
