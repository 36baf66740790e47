"""Orchestration on the local stack: the real service passes, the SDK adapters against the ARM
simulator, the ledger on Azurite, simulated time."""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from devstack import estate
from devstack.armsim import ArmSimulator, SimControl
from devstack.azurite import Azurite
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.domain.builds import Build, BuildReason, BuildState
from rebuilder.domain.model import RunSubState
from tests.integration.orchestration import (
    NEW_RHEL,
    NEW_UBUNTU,
    NEW_WINDOWS,
    NEWER_RHEL,
    Driver,
    cli,
    make_driver,
    states_by_name,
    template_id,
)


@pytest.fixture
def driver(armsim: ArmSimulator, sim: SimControl, azurite: Azurite) -> Iterator[Driver]:
    made = make_driver(armsim, sim, azurite)
    yield made
    made.services.close()


def test_a_new_version_is_built_and_published_in_every_region(driver: Driver, sim: SimControl) -> None:
    baseline_runs = driver.runs()
    sim.publish(*estate.UBUNTU, NEW_UBUNTU, list(estate.REGIONS))
    acted = driver.watch()
    assert len(acted.started) == 1
    build = driver.last("ubuntu2204-golden")
    assert (build.state, build.reason, build.source.resolved_version) == (
        BuildState.RUNNING,
        BuildReason.SOURCE_UPDATE,
        NEW_UBUNTU,
    )
    driver.until(lambda: driver.last("ubuntu2204-golden").state is BuildState.PUBLISHED)
    build = driver.last("ubuntu2204-golden")
    regions = driver.services.ledger.list_regions(build.id)
    assert {r.region: r.state for r in regions} == dict.fromkeys(estate.REGIONS, "Completed")
    assert all(r.completed_at is not None and r.completed_at >= build.created_at for r in regions)
    transitions = [t.to_state for t in driver.services.ledger.list_transitions(build.id)]
    assert transitions[0] is BuildState.QUEUED and transitions[-1] is BuildState.PUBLISHED
    assert BuildState.REPLICATING in transitions or BuildState.RUNNING in transitions
    state = states_by_name(driver.services)["ubuntu2204-golden"]
    assert (state.baseline_version, state.open_builds, state.last_build_state) == (
        NEW_UBUNTU,
        (),
        BuildState.PUBLISHED,
    )
    assert {r.region for r in state.regions} == set(estate.REGIONS)
    runs = driver.runs()
    assert runs["ubuntu2204-golden"] == baseline_runs["ubuntu2204-golden"] + 1


def test_a_pinned_template_is_recreated_with_the_new_version_then_run(
    driver: Driver, sim: SimControl
) -> None:
    tid = template_id("winserver2022-golden")
    before = driver.services.imagebuilder.get_template(tid)
    assert before.definition is not None
    sim.publish(*estate.WINDOWS, NEW_WINDOWS, list(estate.REGIONS), os="Windows")
    acted = driver.watch()
    assert acted.recreated == [tid] and acted.started == []  # the new template provisions first
    driver.until(lambda: driver.last("winserver2022-golden").state is BuildState.PUBLISHED)
    build = driver.last("winserver2022-golden")
    after = driver.services.imagebuilder.get_template(tid)
    assert after.definition is not None
    assert (build.definition_hash_before, build.definition_hash_after) == (
        before.definition.hash,
        after.definition.hash,
    )
    assert before.definition.hash != after.definition.hash
    assert after.source.version == NEW_WINDOWS and after.source.exact_version == NEW_WINDOWS
    assert (
        after.definition.with_source_version(before.source.version or "") == before.definition
    )  # nothing else
    assert after.tags == before.tags
    assert after.definition.body["identity"] == before.definition.body["identity"]
    assert build.source.resolved_version == NEW_WINDOWS
    assert driver.runs()["winserver2022-golden"] == 2


def test_a_failed_region_is_repaired_without_a_rebuild(driver: Driver, sim: SimControl) -> None:
    sim.fail_region("eastus2")
    sim.publish(*estate.UBUNTU, NEW_UBUNTU, list(estate.REGIONS))
    driver.watch()
    driver.until(lambda: driver.last("ubuntu2204-golden").state.finished)
    build = driver.last("ubuntu2204-golden")
    assert build.state is BuildState.PUBLISHED
    regions = {r.region: r for r in driver.services.ledger.list_regions(build.id)}
    assert regions["eastus2"].state == "Completed" and regions["eastus2"].repairs == 1
    assert all(r.repairs == 0 for name, r in regions.items() if name != "eastus2")
    assert any(r == (build.id, "eastus2") for a in driver.acted for r in a.repaired)
    assert driver.runs()["ubuntu2204-golden"] == 2  # the baseline and this build: no rebuild
    # one re-application of the target regions, and one PATCH of the provenance tags
    assert sim.counters().get("gallery_image_versions.update", 0) == 2


def test_a_region_failing_beyond_the_repair_limit_ends_partially_published(
    armsim: ArmSimulator, sim: SimControl, azurite: Azurite
) -> None:
    driver = make_driver(armsim, sim, azurite, REBUILDER_REPAIR_LIMIT="1")
    try:
        # the repair fails, and so does the retry that the provenance-tag update starts (an update
        # carries the target regions, and Azure retries a failed region's replication on an update)
        sim.fail_region("swedencentral", times=3)
        sim.publish(*estate.UBUNTU, NEW_UBUNTU, list(estate.REGIONS))
        driver.until(lambda: driver.last("ubuntu2204-golden").state.finished)
        build = driver.last("ubuntu2204-golden")
        assert build.state is BuildState.PARTIALLY_PUBLISHED
        assert "swedencentral" in build.message
        regions = {r.region: r for r in driver.services.ledger.list_regions(build.id)}
        assert (regions["swedencentral"].state, regions["swedencentral"].repairs) == ("Failed", 1)
        state = states_by_name(driver.services)["ubuntu2204-golden"]
        assert state.baseline_version == NEW_UBUNTU  # three regions have it; the failed one is named
        assert "swedencentral" not in {r.region for r in state.regions if r.build_id == build.id}
    finally:
        driver.services.close()


def test_failed_runs_are_retried_then_fail_then_disable_the_template_until_enabled(
    armsim: ArmSimulator, sim: SimControl, azurite: Azurite
) -> None:
    driver = make_driver(
        armsim, sim, azurite, REBUILDER_MAX_RUN_ATTEMPTS="2", REBUILDER_DISABLE_AFTER_FAILURES="2"
    )
    try:
        sim.fail_build("rhel8-golden", times=4, message="Customization script 'baseline' failed (exit 1)")
        sim.publish(*estate.RHEL, NEW_RHEL, list(estate.REGIONS))
        driver.until(lambda: driver.last("rhel8-golden").state.finished)
        first = driver.last("rhel8-golden")
        assert (first.state, first.attempts) == (BuildState.FAILED, 2)
        assert "exit 1" in first.message
        whys = [t.why for t in driver.services.ledger.list_transitions(first.id)]
        assert any("retry at" in w for w in whys)
        assert states_by_name(driver.services)["rhel8-golden"].consecutive_failures == 1

        sim.publish(*estate.RHEL, NEWER_RHEL, list(estate.REGIONS))
        driver.until(
            lambda: driver.last("rhel8-golden").id != first.id and driver.last("rhel8-golden").state.finished
        )
        state = states_by_name(driver.services)["rhel8-golden"]
        assert state.disabled and state.consecutive_failures == 2
        assert driver.runs()["rhel8-golden"] == 1 + 4
        plan = cli(driver, "plan", "--output", "json")
        [rhel] = [t for t in plan["templates"] if t["name"] == "rhel8-golden"]
        assert rhel["action"] == "blocked" and "enable rhel8-golden" in rhel["reason"]

        enabled = cli(driver, "enable", "rhel8-golden", "--output", "json")
        assert enabled["was_disabled"] is True and enabled["template"]["disabled"] is False
        driver.until(lambda: driver.last("rhel8-golden").state is BuildState.PUBLISHED)
        assert driver.last("rhel8-golden").source.resolved_version == NEWER_RHEL
        assert states_by_name(driver.services)["rhel8-golden"].consecutive_failures == 0
    finally:
        driver.services.close()


def test_a_run_started_elsewhere_is_recorded_as_an_external_build(driver: Driver, sim: SimControl) -> None:
    driver.watch()  # first sight: the baselines are history, not external builds
    assert driver.idle()
    clients = AzureClients(driver.services.settings)
    clients.imagebuilder(estate.SUBSCRIPTION).virtual_machine_image_templates.begin_run(
        estate.TEMPLATES_RG, "rhel8-golden", polling=False
    )
    clients.close()
    driver.until(driver.idle)
    [external, *_] = driver.builds("rhel8-golden")
    assert (external.reason, external.state) == (BuildReason.EXTERNAL, BuildState.PUBLISHED)
    assert external.source.resolved_version == estate.MARKETPLACE[estate.RHEL][-1]
    assert external.previous_baseline == estate.MARKETPLACE[estate.RHEL][-1]  # the baseline it replaced
    assert driver.runs()["rhel8-golden"] == 2  # the baseline and the external run: none by rebuilder
    assert len(driver.builds("rhel8-golden")) == 1


def test_a_parent_publishes_then_its_child_builds_on_it(driver: Driver, sim: SimControl) -> None:
    sim.publish(*estate.UBUNTU, NEW_UBUNTU, list(estate.REGIONS))
    driver.until(
        lambda: driver.builds("app-ubuntu2204") != [] and driver.last("app-ubuntu2204").state.finished
    )
    parent, child = driver.last("ubuntu2204-golden"), driver.last("app-ubuntu2204")
    assert child.state is BuildState.PUBLISHED and child.reason is BuildReason.PARENT_PUBLISHED
    home = {r.region: r for r in driver.services.ledger.list_regions(parent.id)}[estate.HOME]
    assert home.completed_at is not None and child.created_at >= home.completed_at
    parent_version = parent.outputs[0].rsplit("/", 1)[-1]
    assert child.source.resolved_version == parent_version
    assert child.lineage is not None  # the lineage: the parent build, and the root Ubuntu version in it
    assert (child.lineage.parent_build_id, child.lineage.root_version) == (parent.id, NEW_UBUNTU)
    assert child.lineage.previous_root_version == parent.previous_baseline
    assert driver.runs()["app-ubuntu2204"] == 2


def test_throttling_and_server_error_storms_end_in_success(driver: Driver, sim: SimControl) -> None:
    sim.publish(*estate.UBUNTU, NEW_UBUNTU, list(estate.REGIONS))
    sim.inject("*", status=429, times=12, retry_after=0)
    problems = [*driver.watch().problems]
    sim.inject("image_templates.get", status=503, times=10)
    sim.inject("gallery_image_versions.get", status=500, times=10)
    driver.until(
        lambda: driver.builds("ubuntu2204-golden") != [] and driver.last("ubuntu2204-golden").state.finished
    )
    problems += [p for a in driver.acted for p in a.problems]
    assert driver.last("ubuntu2204-golden").state is BuildState.PUBLISHED
    assert driver.runs()["ubuntu2204-golden"] == 2
    assert problems  # the storms were felt, reported, and outlasted
    statuses = [r.get("status") for r in sim.requests()]
    assert statuses.count(429) >= 12 and statuses.count(503) >= 1, statuses


def test_a_reconcile_pass_costs_one_template_get_per_open_build_and_nothing_when_idle(
    driver: Driver, sim: SimControl
) -> None:
    sim.publish(*estate.UBUNTU, NEW_UBUNTU, list(estate.REGIONS))
    sim.publish(*estate.RHEL, NEW_RHEL, list(estate.REGIONS))
    driver.watch()
    seen_distributing = False
    while not driver.idle():
        sim.advance(300)
        open_builds = driver.open_builds()
        sim.reset_counters()
        acted = driver.reconcile()
        calls = sim.counters()
        # Distributing: AIB reported Distributing or the run was over, before or after this pass.
        distributing = {b.id for b in open_builds if _distributing(b)}
        distributing |= {b.id for b in driver.open_builds() if _distributing(b)} | set(acted.finished)
        assert calls.get("image_templates.get", 0) <= len(open_builds), calls
        updates = calls.get("gallery_image_versions.update", 0)  # each reads the version it updates
        assert calls.get("gallery_image_versions.get", 0) <= len(distributing) + updates, calls
        seen_distributing |= bool(distributing)
    assert seen_distributing
    sim.reset_counters()
    driver.reconcile()
    assert sum(sim.counters().values()) == 0


def _distributing(build: Build) -> bool:
    return build.state is BuildState.REPLICATING or build.sub_state is RunSubState.DISTRIBUTING


def test_a_global_cap_on_runs_queues_builds_and_starts_them_oldest_first(
    armsim: ArmSimulator, sim: SimControl, azurite: Azurite
) -> None:
    driver = make_driver(armsim, sim, azurite, REBUILDER_MAX_CONCURRENT_RUNS="1")
    try:
        for image, version in (
            (estate.RHEL, NEW_RHEL),
            (estate.UBUNTU, NEW_UBUNTU),
            (estate.WINDOWS, NEW_WINDOWS),
        ):
            sim.publish(
                *image, version, list(estate.REGIONS), os="Windows" if image == estate.WINDOWS else "Linux"
            )
            sim.advance(60)
            driver.watch()  # each claims its build a minute after the previous one
        waiting = [w for a in driver.acted for w in a.waiting]
        assert any("waiting for a free slot (1 of 1 runs going)" in w for w in waiting)
        most = 0
        while not driver.idle():
            sim.advance(300)
            driver.watch()
            driver.reconcile()
            most = max(most, sum(b.state is BuildState.RUNNING for b in driver.open_builds()))
        assert most == 1
        names = ("rhel8-golden", "ubuntu2204-golden", "winserver2022-golden")
        builds = [driver.last(n) for n in names]
        assert all(b.state is BuildState.PUBLISHED for b in builds)
        started = [b.run_started_at for b in builds]
        assert all(s is not None for s in started) and started == sorted(started)  # oldest claim runs first
        assert all(
            later.run_started_at and earlier.run_ended_at and later.run_started_at >= earlier.run_ended_at
            for earlier, later in itertools.pairwise(builds)
        )
    finally:
        driver.services.close()


def test_the_cli_rebuilds_on_demand_once_per_key_and_shows_the_ledger(
    driver: Driver, sim: SimControl
) -> None:
    driver.watch()
    first = cli(driver, "rebuild", "rhel8-golden", "--key", "change-4711", "--output", "json")
    again = cli(driver, "rebuild", "rhel8-golden", "--key", "change-4711", "--output", "json")
    assert first["created"] is True and again["created"] is False
    assert first["build"]["id"] == again["build"]["id"]
    assert first["build"]["reason"] == "on-demand" and first["build"]["state"] == "Running"
    assert first["build"]["provenance"]["idempotency_key"] == "request:change-4711"  # the caller's namespace
    other = cli(driver, "rebuild", "rhel8-golden", "--output", "json")  # a new request joins the open build
    assert other["joined"] is True and other["build"]["id"] == first["build"]["id"]
    driver.until(driver.idle)
    shown = cli(driver, "show", first["build"]["id"], "--output", "json")
    assert shown["state"] == "Published"
    assert [r["state"] for r in shown["regions"]] == ["Completed"] * len(estate.REGIONS)
    assert [t["to"] for t in shown["transitions"]][:2] == ["Queued", "Running"]
    listed = cli(driver, "builds", "--template", "rhel8-golden", "--output", "json")
    assert first["build"]["id"] in [b["id"] for b in listed["builds"]]
    templates = {t["name"]: t for t in cli(driver, "templates", "--output", "json")["templates"]}
    assert templates["rhel8-golden"]["last_build_state"] == "Published"
    assert len(templates["rhel8-golden"]["regions"]) == len(estate.REGIONS)
    assert driver.runs()["rhel8-golden"] == 2
    missing = subprocess.run(
        [sys.executable, "-m", "rebuilder", "show", "not-a-build-id"],
        env={**os.environ, **driver.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1 and "is not a build id" in missing.stderr


def test_a_run_that_overruns_the_timeout_is_canceled_and_counted_as_failed(
    armsim: ArmSimulator, sim: SimControl, azurite: Azurite
) -> None:
    driver = make_driver(
        armsim, sim, azurite, REBUILDER_RUN_TIMEOUT_MINUTES="30", REBUILDER_MAX_RUN_ATTEMPTS="1"
    )
    try:
        sim.configure(run_timing={"customizing": 4 * 3600})  # a customizer that hangs
        sim.publish(*estate.UBUNTU, NEW_UBUNTU, list(estate.REGIONS))
        driver.until(lambda: driver.last("ubuntu2204-golden").state.finished)
        build = driver.last("ubuntu2204-golden")
        assert build.state is BuildState.FAILED and "timed out" in build.message
        assert sim.counters().get("image_templates.cancel", 0) == 1
        run = driver.services.imagebuilder.get_template(template_id("ubuntu2204-golden")).last_run
        assert run is not None and run.state.value == "Canceled"
        assert states_by_name(driver.services)["ubuntu2204-golden"].consecutive_failures == 1
    finally:
        driver.services.close()


def test_the_cli_writes_the_report_and_exports_the_audit_trail(
    driver: Driver, sim: SimControl, tmp_path: Path
) -> None:
    driver.watch()
    sim.publish(*estate.UBUNTU, NEW_UBUNTU, list(estate.REGIONS))
    driver.until(lambda: bool(driver.builds("app-ubuntu2204")) and driver.idle())
    asked = cli(
        driver, "rebuild", "rhel8-golden", "--reason", '=HYPERLINK("x") CVE drill', "--output", "json"
    )
    report = tmp_path / "report.html"
    written = cli(driver, "report", "--html", str(report), "--output", "json")
    assert written["report"] == str(report.resolve())
    page = report.read_text()
    assert "22.04.202501150: 2/2 templates (1 child)" in page
    assert "<script" not in page
    exported = tmp_path / "audit.csv"
    since = (driver.services.clock.now() - timedelta(days=1)).isoformat()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack.simcli",
            "export",
            "--since",
            since,
            "--file",
            str(exported),
        ],
        env={**os.environ, **driver.env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "exported" in run.stderr  # progress goes to stderr
    rows = list(csv.DictReader(exported.open(encoding="utf-8")))
    by_build = {r["build_id"] for r in rows}
    assert asked["build"]["id"] in by_build
    child = [r for r in rows if r["template"] == "app-ubuntu2204"]
    assert child and {r["root_version"] for r in child} == {NEW_UBUNTU} and child[0]["parent_build_id"]
    drill = [r for r in rows if r["build_id"] == asked["build"]["id"]]
    assert drill[0]["note"].startswith("'=HYPERLINK")  # a spreadsheet never runs what a caller wrote
    assert {r["transition_to"] for r in drill} >= {"Queued", "Running"}
    jsonl = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack.simcli",
            "export",
            "--format",
            "jsonl",
            "--template",
            "rhel8-golden",
        ],
        env={**os.environ, **driver.env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    documents = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert {d["template"] for d in documents} == {"rhel8-golden"} and documents[0]["transitions"]
