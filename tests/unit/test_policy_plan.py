"""The planner with rebuild policies, over literal inputs: which rule makes a template due, when one
holds it back, and what the plan says (rebuilder/domain/planner.py with domain/policies.py).

December 2026: Patch Tuesday is the 8th, so `+2` is Thursday the 10th; the 12th is a Saturday."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from rebuilder.domain.builds import BuildId, BuildReason
from rebuilder.domain.model import (
    ImageState,
    ImageTemplate,
    LastRun,
    PlatformImage,
    RunState,
    Source,
    SourceKind,
    TemplateId,
)
from rebuilder.domain.planner import Action, Candidate, Managed, Mode, PinnedSource, PlanItem, plan
from rebuilder.domain.policies import NO_RULES, Rules, parse_window
from rebuilder.domain.regions import Region
from rebuilder.domain.standing import TemplateState

TID = TemplateId(
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/ubuntu"
)
JAMMY = PlatformImage("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2")
OLD, NEW = "22.04.202411190", "22.04.202501150"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


BUILT = at("2026-11-12T02:00")  # last month's patch-day build


def template(tags: dict[str, str] | None = None, *, version: str = "latest") -> ImageTemplate:
    src = Source(SourceKind.PLATFORM_IMAGE, JAMMY, version)
    return ImageTemplate(TID, "s", "rg", "ubuntu", Region("westeurope"), src, tags=tags or {})


def state(**fields: object) -> TemplateState:
    base = TemplateState(
        TID,
        "ubuntu",
        Region("westeurope"),
        BUILT,
        baseline_version=OLD,
        baseline_build_id="b1",
        baseline_at=BUILT,
        known_run_started_at=BUILT,
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


SAME = Candidate(OLD, at("2026-10-01T00:00"), (OLD,))
NEWER = Candidate(NEW, at("2026-12-09T20:00"), (OLD, NEW))
PATCH = {"rebuild-patch-day": "+2"}


def one(
    tmpl: ImageTemplate,
    candidate: Candidate,
    stored: TemplateState | None,
    now: str,
    defaults: Rules = NO_RULES,
    mode: Mode = Mode.AUTO,
) -> PlanItem:
    states = {TemplateId(TID.lower()): stored} if stored else {}
    [item] = plan(
        [Managed(tmpl, mode)], {TemplateId(TID.lower()): candidate}, states, now=at(now), defaults=defaults
    )
    return item


CASES = {
    # name: (template, candidate, state, now, action, due, key, version, words)
    "patch day: due on its day, the source unchanged": (
        template(PATCH),
        SAME,
        state(),
        "2026-12-10T00:00",
        Action.REBUILD,
        BuildReason.PATCH_DAY,
        "patch-day:2026-12",
        OLD,
        "patch day 2026-12 (Patch Tuesday +2: 2026-12-10)",
    ),
    "patch day: the day before, up to date": (
        template(PATCH),
        SAME,
        state(),
        "2026-12-09T23:59",
        Action.NONE,
        None,
        "",
        "",
        "up to date",
    ),
    "patch day: caught up after three days down": (
        template(PATCH),
        SAME,
        state(),
        "2026-12-13T08:00",
        Action.REBUILD,
        BuildReason.PATCH_DAY,
        "patch-day:2026-12",
        OLD,
        "patch day 2026-12",
    ),
    "patch day: done already this month": (
        template(PATCH),
        SAME,
        state(baseline_at=at("2026-12-10T01:00"), known_run_started_at=at("2026-12-10T01:00")),
        "2026-12-11T00:00",
        Action.NONE,
        None,
        "",
        "",
        "up to date",
    ),
    "patch day: missed by more than a week, not made up": (
        template(PATCH),
        SAME,
        state(),
        "2026-12-17T00:00",
        Action.NONE,
        None,
        "",
        "",
        "up to date",
    ),
    "patch day with a new version: one build, reason patch-day": (
        template(PATCH),
        NEWER,
        state(),
        "2026-12-10T00:00",
        Action.REBUILD,
        BuildReason.PATCH_DAY,
        "patch-day:2026-12",
        NEW,
        f"patch day 2026-12 (Patch Tuesday +2: 2026-12-10); {OLD} → {NEW}",
    ),
    "patch day waits for the window": (
        template({**PATCH, "rebuild-window": "Sat,Sun 01:00-05:00"}),
        SAME,
        state(),
        "2026-12-10T00:00",
        Action.NONE,
        None,
        "",
        "",
        "waiting for window Sat,Sun 01:00-05:00 (opens 2026-12-12 01:00 UTC); then patch day 2026-12",
    ),
    "patch day inside the window": (
        template({**PATCH, "rebuild-window": "Sat,Sun 01:00-05:00"}),
        SAME,
        state(),
        "2026-12-12T01:00",
        Action.REBUILD,
        BuildReason.PATCH_DAY,
        "patch-day:2026-12",
        OLD,
        "patch day 2026-12",
    ),
    "patch day held by the cooldown": (
        template({**PATCH, "rebuild-cooldown-hours": "24"}),
        SAME,
        state(known_run_started_at=at("2026-12-09T12:00")),  # an on-demand build the day before
        "2026-12-10T00:00",
        Action.NONE,
        None,
        "",
        "",
        "patch day 2026-12 (Patch Tuesday +2: 2026-12-10): in cooldown until 2026-12-10 12:00 UTC (24 h)",
    ),
    "a new version ignores the cooldown": (
        template({"rebuild-cooldown-hours": "24"}),
        NEWER,
        state(known_run_started_at=at("2026-12-09T12:00")),
        "2026-12-10T00:00",
        Action.REBUILD,
        BuildReason.SOURCE_UPDATE,
        f"source-update:{NEW}",
        NEW,
        f"{OLD} → {NEW}",
    ),
    "a new version younger than the minimum release age waits": (
        template({"rebuild-min-release-age-hours": "48"}),
        NEWER,
        state(),
        "2026-12-10T00:00",
        Action.NONE,
        None,
        "",
        "",
        f"waiting: {NEW} becomes eligible at 2026-12-11 20:00 UTC (minimum release age 48 h)",
    ),
    "… and is due once it is old enough": (
        template({"rebuild-min-release-age-hours": "48"}),
        NEWER,
        state(),
        "2026-12-11T20:00",
        Action.REBUILD,
        BuildReason.SOURCE_UPDATE,
        f"source-update:{NEW}",
        NEW,
        f"{OLD} → {NEW}",
    ),
    "a latest template's patch day waits for a version it would take too early": (
        template({**PATCH, "rebuild-min-release-age-hours": "48"}),
        NEWER,
        state(),
        "2026-12-10T00:00",
        Action.NONE,
        None,
        "",
        "",
        f"waiting: {NEW} becomes eligible at 2026-12-11 20:00 UTC (minimum release age 48 h); then patch day",
    ),
    "a pinned template's patch day rebuilds its pinned version meanwhile": (
        template({**PATCH, "rebuild-min-release-age-hours": "48"}, version=OLD),
        NEWER,
        state(),
        "2026-12-10T00:00",
        Action.REBUILD,
        BuildReason.PATCH_DAY,
        "patch-day:2026-12",
        OLD,
        "patch day 2026-12",
    ),
    "maximum age reached": (
        template({"rebuild-max-age-days": "30"}),
        SAME,
        state(),
        "2026-12-12T02:00",
        Action.REBUILD,
        BuildReason.MAX_AGE,
        "max-age:20261212T020000Z",
        OLD,
        "the last successful build (2026-11-12 02:00 UTC) is over 30 days old",
    ),
    "maximum age not yet": (
        template({"rebuild-max-age-days": "30"}),
        SAME,
        state(),
        "2026-12-12T01:59",
        Action.NONE,
        None,
        "",
        "",
        "up to date",
    ),
}


@pytest.mark.parametrize(
    ("tmpl", "candidate", "stored", "now", "action", "due", "key", "version", "words"),
    CASES.values(),
    ids=CASES,
)
def test_policy_plan(
    tmpl: ImageTemplate,
    candidate: Candidate,
    stored: TemplateState,
    now: str,
    action: Action,
    due: BuildReason | None,
    key: str,
    version: str,
    words: str,
) -> None:
    item = one(tmpl, candidate, stored, now)
    assert (item.action, item.due, item.key, item.build_version) == (action, due, key, version)
    assert words in item.reason
    if action is Action.REBUILD:
        assert item.next_due_at == at(now)


def test_an_invalid_tag_falls_back_to_the_default_and_says_so() -> None:
    item = one(template({"rebuild-patch-day": "+99"}), SAME, state(), "2026-12-08T00:00", Rules(patch_day=0))
    assert (item.action, item.due, item.key) == (Action.REBUILD, BuildReason.PATCH_DAY, "patch-day:2026-12")
    assert "Patch Tuesday +0: 2026-12-08" in item.reason
    assert "rebuild-patch-day='+99' is invalid" in item.problems[0]


def test_an_invalid_tag_is_shown_in_the_plan() -> None:
    item = one(template({"rebuild-window": "weekends"}), SAME, state(), "2026-12-10T00:00")
    assert item.problems and "rebuild-window='weekends'" in item.problems[0]
    assert "the default is used" in item.problems[0]


def test_the_plan_says_when_a_template_is_next_due_and_why() -> None:
    tags = {**PATCH, "rebuild-window": "Sat,Sun 01:00-05:00"}
    before = one(template(tags), SAME, state(), "2026-12-09T12:00")
    assert before.action is Action.NONE
    assert (before.next_due_at, before.next_due_why) == (
        at("2026-12-12T01:00"),
        "patch day 2026-12 (Patch Tuesday +2)",
    )
    plain = one(template(), SAME, state(), "2026-12-09T12:00")
    assert plain.next_due_at is None  # only a new source version makes it due


def test_manual_templates_are_never_due_by_a_policy() -> None:
    item = one(template(PATCH), SAME, state(), "2026-12-10T00:00", mode=Mode.MANUAL)
    assert (item.action, item.due) == (Action.NONE, None)
    assert "manual template: patch day 2026-12" in item.reason


def test_an_open_build_or_a_disabled_template_comes_first() -> None:
    busy = one(template(PATCH), SAME, state(open_builds=(BuildId("b2"),)), "2026-12-10T00:00")
    assert (busy.action, busy.due) == (Action.NONE, None) and "build b2 is in progress" in busy.reason
    off = one(template(PATCH), SAME, state(disabled=True, disabled_reason="x"), "2026-12-10T00:00")
    assert off.action is Action.BLOCKED


def test_the_age_of_an_adopted_baseline_is_its_last_run() -> None:
    pinned = template({"rebuild-max-age-days": "10"}, version=OLD)
    tmpl = dataclasses.replace(
        pinned,
        source=dataclasses.replace(pinned.source, exact_version=OLD),
        last_run=LastRun(RunState.SUCCEEDED, None, at("2026-11-01T00:00"), at("2026-11-01T01:00")),
    )
    item = one(tmpl, SAME, None, "2026-11-11T00:00")
    assert (item.action, item.due) == (Action.REBUILD, BuildReason.MAX_AGE)
    assert item.baseline_adopted


# -- deprecation of pinned sources -----------------------------------------------------------------------
def test_a_pinned_version_scheduled_for_deprecation_is_flagged_with_its_date_and_the_newest() -> None:
    pinned = PinnedSource(OLD, ImageState.SCHEDULED_FOR_DEPRECATION, at("2027-03-01T00:00"))
    item = one(template(version=OLD), dataclasses.replace(SAME, pinned=pinned), state(), "2026-12-10T00:00")
    assert "pinned-source-scheduled-for-deprecation" in item.flags
    assert f"the pinned version {OLD} is scheduled for deprecation on 2027-03-01" in item.reason
    assert f"the newest usable version is {OLD}" in item.reason
    assert item.action is Action.NONE


def test_a_deprecated_pinned_version_blocks_a_rebuild_of_it() -> None:
    pinned = PinnedSource(OLD, ImageState.DEPRECATED)
    item = one(
        template(PATCH, version=OLD), dataclasses.replace(SAME, pinned=pinned), state(), "2026-12-10T00:00"
    )
    assert (item.action, item.due) == (Action.BLOCKED, None)
    assert f"the pinned version {OLD} is deprecated" in item.reason and "refuses new builds" in item.reason
    assert "pinned-source-deprecated" in item.flags


def test_a_deprecated_pinned_version_with_a_newer_one_is_recreated_not_blocked() -> None:
    pinned = PinnedSource(OLD, ImageState.DEPRECATED)
    item = one(template(version=OLD), dataclasses.replace(NEWER, pinned=pinned), state(), "2026-12-10T00:00")
    assert (item.action, item.due, item.build_version) == (Action.REBUILD, BuildReason.SOURCE_UPDATE, NEW)
    assert "pinned-source-deprecated" in item.flags


def test_a_default_window_from_settings_applies_to_every_template() -> None:
    defaults = Rules(patch_day=2, window=parse_window("Sun 00:00-06:00"))
    item = one(template(), SAME, state(), "2026-12-10T00:00", defaults=defaults)
    assert item.action is Action.NONE and "waiting for window Sun 00:00-06:00" in item.reason
