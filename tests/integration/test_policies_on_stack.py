"""Rebuild policies on the local stack (ARM simulator + Azurite, real SDK clients): a simulated quarter
of timer passes, then the ledger's build reasons and start times checked against the policies; and
`plan --at` previewing a patch day."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from azure.mgmt.imagebuilder.models import ImageTemplateUpdateParameters

from devstack import estate
from devstack.armsim import ArmSimulator, SimControl
from devstack.azurite import Azurite
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.domain.builds import BuildReason
from rebuilder.domain.policies import latest_occurrence, next_occurrence, parse_window
from tests.integration.orchestration import Driver, cli, make_driver

GOLDEN = ("ubuntu2204-golden", "winserver2022-golden", "rhel8-golden", "app-ubuntu2204")
WINDOW = parse_window("Mon-Sun 01:00-05:00")
COOLDOWN = timedelta(hours=12)
NEW_UBUNTU = "22.04.202502050"


@pytest.fixture
def driver(armsim: ArmSimulator, sim: SimControl, azurite: Azurite) -> Iterator[Driver]:
    made = make_driver(
        armsim,
        sim,
        azurite,
        REBUILDER_DEFAULT_PATCH_DAY="+1",
        REBUILDER_DEFAULT_WINDOW=WINDOW.text,
        REBUILDER_DEFAULT_COOLDOWN_HOURS="12",
    )
    yield made
    made.services.close()


def tag(driver: Driver, name: str, **tags: str) -> None:
    """Add policy tags to a template in Azure, as its owner's IaC would."""
    clients = AzureClients(driver.services.settings)
    try:
        templates = clients.imagebuilder(estate.SUBSCRIPTION).virtual_machine_image_templates
        current = dict(templates.get(estate.TEMPLATES_RG, name).tags or {})
        templates.begin_update(
            estate.TEMPLATES_RG, name, ImageTemplateUpdateParameters(tags={**current, **tags})
        ).result()
    finally:
        clients.close()


def settle(driver: Driver) -> None:
    """Follow open builds to their end, ten simulated minutes at a time (the reconcile timer)."""
    for _ in range(60):
        if driver.idle():
            return
        driver.sim.advance(600)
        driver.reconcile()
    raise AssertionError(f"builds still open: {driver.open_builds()}")


def at_hour(moment: datetime, hour: int) -> datetime:
    """The next `hour`:00 UTC after `moment`."""
    target = moment.replace(hour=hour, minute=0, second=0, microsecond=0)
    return target if target > moment else target + timedelta(days=1)


def test_a_simulated_quarter_follows_every_policy(driver: Driver, sim: SimControl) -> None:
    tag(driver, "rhel8-golden", **{"rebuild-patch-day": "none", "rebuild-max-age-days": "20"})
    tag(driver, "ubuntu2204-golden", **{"rebuild-min-release-age-hours": "24"})
    start = sim.now()
    release_at = start + timedelta(days=40)
    passes, now = 0, start
    while now < start + timedelta(days=92):  # two watch passes a day, at 02:00 and 14:00
        now = min(at_hour(now, 2), at_hour(now, 14))
        sim.advance((now - sim.now()).total_seconds())
        if release_at is not None and now >= release_at:
            sim.publish(*estate.UBUNTU, NEW_UBUNTU, list(estate.REGIONS))
            released, release_at = now, None
        driver.watch()
        last_pass = now
        settle(driver)
        now, passes = sim.now(), passes + 1
    builds = {n: sorted(driver.builds(n), key=lambda b: b.created_at) for n in GOLDEN}
    automatic = [b for bs in builds.values() for b in bs if b.reason is not BuildReason.EXTERNAL]
    assert automatic, "the quarter built nothing"

    # Every automatic build started inside the window, and never inside a cooldown unless a new version.
    for build in automatic:
        assert build.run_started_at is not None and WINDOW.contains(build.run_started_at), build.id
    for name, made in builds.items():
        for before, after in itertools.pairwise(made):
            if after.reason in (BuildReason.PATCH_DAY, BuildReason.MAX_AGE):
                assert after.run_started_at and before.run_started_at
                assert after.run_started_at >= before.run_started_at + COOLDOWN, (name, after.id)

    # Patch day (+1, the default): once a month per template that keeps it, on its day's window.
    days = {day.key: day for day in (latest_occurrence(start + timedelta(days=d), 1) for d in range(93))}
    for name in ("ubuntu2204-golden", "winserver2022-golden", "app-ubuntu2204"):
        # the patch days whose window came round before the quarter ended (a child's, the day after)
        reach = timedelta(hours=26 if name == "app-ubuntu2204" else 2)
        months = {k: d for k, d in days.items() if start <= d.starts_at and d.starts_at + reach <= last_pass}
        assert len(months) >= 3
        keys = [b.provenance.idempotency_key for b in builds[name] if b.reason is BuildReason.PATCH_DAY]
        assert sorted(set(keys)) == keys == sorted(f"patch-day:{k}" for k in months), (name, keys)
        for build in (b for b in builds[name] if b.reason is BuildReason.PATCH_DAY):
            day = days[build.provenance.idempotency_key.removeprefix("patch-day:")]
            assert day.starts_at <= build.created_at < day.starts_at + timedelta(days=2), build.id
    child = [b for b in builds["app-ubuntu2204"] if b.reason is BuildReason.PATCH_DAY]
    parent = {b.provenance.idempotency_key: b for b in builds["ubuntu2204-golden"]}
    for build in child:  # the child builds on its parent's patch-day image, after it
        assert build.created_at > parent[build.provenance.idempotency_key].created_at

    # RHEL opted out of patch day and rebuilds at 20 days of age instead.
    rhel = [b for b in builds["rhel8-golden"] if b.reason is not BuildReason.EXTERNAL]
    assert {b.reason for b in rhel} == {BuildReason.MAX_AGE} and len(rhel) >= 3
    for before, after in itertools.pairwise(rhel):
        assert before.run_started_at and after.created_at >= before.run_started_at + timedelta(days=20)

    # The new Ubuntu version waited its 24 hours of minimum release age.
    took = [b for b in builds["ubuntu2204-golden"] if b.source.resolved_version == NEW_UBUNTU]
    assert took and took[0].run_started_at is not None
    assert took[0].run_started_at >= released + timedelta(hours=24)
    assert passes >= 180


def test_plan_at_previews_a_patch_day(driver: Driver, sim: SimControl) -> None:
    claimed = {n: len(driver.builds(n)) for n in GOLDEN}
    upcoming = next_occurrence(sim.now() + timedelta(days=2), 1)  # the default: Patch Tuesday + 1
    day = upcoming.starts_at + timedelta(hours=2)  # inside the window
    before = day - timedelta(days=1)
    plans = {
        label: {
            t["name"]: t
            for t in cli(driver, "plan", "--at", f"{moment:%Y-%m-%dT%H:%M:%SZ}", "--output", "json")[
                "templates"
            ]
        }
        for label, moment in (("day", day), ("before", before))
    }
    ubuntu = plans["day"]["ubuntu2204-golden"]
    assert (ubuntu["action"], ubuntu["due"]) == ("rebuild", "patch-day")
    assert f"patch day {upcoming.key} (Patch Tuesday +1: {upcoming.starts_at:%Y-%m-%d})" in ubuntu["reason"]
    assert ubuntu["next_due_at"] == day.isoformat()
    waiting = plans["before"]["ubuntu2204-golden"]
    assert (waiting["action"], waiting["due"]) == ("none", None)
    assert (
        waiting["next_due_at"] == (upcoming.starts_at + timedelta(hours=1)).isoformat()
    )  # the window's opening
    assert waiting["next_due_why"] == f"patch day {upcoming.key} (Patch Tuesday +1)"
    child = plans["day"]["app-ubuntu2204"]
    assert child["action"] == "none" and "waiting for parent ubuntu2204-golden" in child["reason"]
    assert {n: len(driver.builds(n)) for n in GOLDEN} == claimed  # a what-if plan claims nothing
