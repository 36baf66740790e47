"""Rebuild policies over literal dates: Patch Tuesday and its offset, windows, cooldown, minimum release
age, maximum age, and the tags that set them (rebuilder/domain/policies.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from rebuilder.domain import policies
from rebuilder.domain.policies import NO_RULES, Rules, parse_window, patch_tuesday, rules_of
from rebuilder.settings import Settings, SettingsError


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- Patch Tuesday --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("year", "month", "expected"),
    [
        (2026, 1, date(2026, 1, 13)),  # the 1st is a Thursday
        (2026, 12, date(2026, 12, 8)),  # the 1st is a Tuesday: the second Tuesday is the 8th
        (2024, 2, date(2024, 2, 13)),  # a leap year's February
        (2028, 2, date(2028, 2, 8)),  # leap year, the 1st a Tuesday
        (2025, 10, date(2025, 10, 14)),  # the 1st a Wednesday: the latest a Patch Tuesday can be
        (2027, 12, date(2027, 12, 14)),
    ],
)
def test_patch_tuesday_is_the_second_tuesday(year: int, month: int, expected: date) -> None:
    assert patch_tuesday(year, month) == expected
    assert expected.weekday() == 1 and 8 <= expected.day <= 14


@pytest.mark.parametrize(
    ("year", "month", "offset", "starts"),
    [
        (2026, 12, 0, "2026-12-08T00:00"),
        (2026, 12, 2, "2026-12-10T00:00"),
        (2025, 10, 20, "2025-11-03T00:00"),  # the offset runs into the next month
        (2027, 12, 20, "2028-01-03T00:00"),  # … and into the next year
        (2024, 2, 16, "2024-02-29T00:00"),  # a leap day
        (2024, 2, 17, "2024-03-01T00:00"),
        (2028, 2, 20, "2028-02-28T00:00"),
    ],
)
def test_a_patch_day_is_patch_tuesday_plus_the_offset(
    year: int, month: int, offset: int, starts: str
) -> None:
    found = policies.occurrence(year, month, offset)
    assert found.starts_at == at(starts)
    assert found.key == f"{year:04d}-{month:02d}"  # named after the month whose Patch Tuesday it follows


@pytest.mark.parametrize(
    ("now", "offset", "key"),
    [
        ("2026-12-07T23:59", 0, "2026-11"),  # the day before December's Patch Tuesday
        ("2026-12-08T00:00", 0, "2026-12"),
        ("2025-11-02T12:00", 20, "2025-09"),  # October's +20 is 3 November: not begun yet
        ("2025-11-03T00:00", 20, "2025-10"),
        ("2028-01-02T00:00", 20, "2027-11"),
        ("2028-01-03T00:00", 20, "2027-12"),  # over the year's end
        ("2026-01-01T00:00", 0, "2025-12"),
    ],
)
def test_the_latest_patch_day_that_has_begun(now: str, offset: int, key: str) -> None:
    assert policies.latest_occurrence(at(now), offset).key == key
    following = policies.next_occurrence(at(now), offset)
    assert following.starts_at > at(now) >= policies.latest_occurrence(at(now), offset).starts_at


PATCH = Rules(patch_day=2)  # December 2026: Thursday the 10th


@pytest.mark.parametrize(
    ("now", "built", "due"),
    [
        ("2026-12-09T23:00", "2026-11-12T03:00", None),  # the day before
        ("2026-12-10T00:00", "2026-11-12T03:00", "2026-12"),  # the day itself
        ("2026-12-10T00:00", None, "2026-12"),  # never built: due as well
        ("2026-12-13T09:00", "2026-11-12T03:00", "2026-12"),  # down three days over it: caught up once
        ("2026-12-13T10:00", "2026-12-13T09:00", None),  # … and only once
        ("2026-12-10T05:00", "2026-12-10T01:00", None),  # a build that began after it began counts
        ("2026-12-10T05:00", "2026-12-09T23:00", "2026-12"),  # one that began before does not
        ("2026-12-16T23:59", "2026-11-12T03:00", "2026-12"),  # within a week: still made up
        ("2026-12-17T00:00", "2026-11-12T03:00", None),  # missed by more than a week: not made up
    ],
)
def test_patch_day_due(now: str, built: str | None, due: str | None) -> None:
    found = policies.patch_day_due(PATCH, at(built) if built else None, at(now))
    assert (found.key if found else None) == due


def test_no_patch_day_rule_is_never_due() -> None:
    assert policies.patch_day_due(NO_RULES, None, at("2026-12-10T00:00")) is None


# -- windows --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("window", "moment", "inside"),
    [
        ("Sat,Sun 01:00-05:00", "2026-12-12T01:00", True),  # a Saturday
        ("Sat,Sun 01:00-05:00", "2026-12-12T05:00", False),  # the end is not inside
        ("Sat,Sun 01:00-05:00", "2026-12-13T04:59", True),  # Sunday
        ("Sat,Sun 01:00-05:00", "2026-12-14T02:00", False),  # Monday
        ("Mon-Fri 22:00-04:00", "2026-12-11T23:00", True),  # Friday night
        ("Mon-Fri 22:00-04:00", "2026-12-12T03:59", True),  # Saturday morning: Friday's window
        ("Mon-Fri 22:00-04:00", "2026-12-12T22:30", False),  # Saturday night: no window starts
        ("Mon-Fri 22:00-04:00", "2026-12-14T02:00", False),  # Monday morning: Sunday had none
        ("Mon-Fri 22:00-04:00", "2026-12-15T02:00", True),  # Tuesday morning: Monday's
        ("Sun 22:00-04:00", "2026-12-14T03:00", True),  # over the week's end: Sunday → Monday
        ("Sun 22:00-04:00", "2026-12-13T21:59", False),
        ("Fri-Mon 00:00-24:00", "2026-12-14T23:59", True),  # a range that wraps the week
        ("Fri-Mon 00:00-24:00", "2026-12-15T00:00", False),
        ("fri-mon 12:00-00:00", "2026-12-11T23:59", True),  # until midnight, names in any case
        ("Saturday 01:00-02:00", "2026-12-12T01:30", True),
    ],
)
def test_window_contains(window: str, moment: str, inside: bool) -> None:
    assert parse_window(window).contains(at(moment)) is inside


@pytest.mark.parametrize(
    ("window", "moment", "opens"),
    [
        ("Sat,Sun 01:00-05:00", "2026-12-10T03:00", "2026-12-12T01:00"),  # Thursday → Saturday
        ("Sat,Sun 01:00-05:00", "2026-12-12T02:00", "2026-12-12T02:00"),  # open now: now
        ("Sat,Sun 01:00-05:00", "2026-12-13T06:00", "2026-12-19T01:00"),  # after Sunday's: next week
        ("Mon-Fri 22:00-04:00", "2026-12-12T05:00", "2026-12-14T22:00"),  # Saturday → Monday night
        ("Sun 22:00-04:00", "2026-12-31T12:00", "2027-01-03T22:00"),  # over the year's end
    ],
)
def test_window_next_opening(window: str, moment: str, opens: str) -> None:
    parsed = parse_window(window)
    assert parsed.next_opening(at(moment)) == at(opens)
    assert parsed.contains(at(opens))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Sat 05:00-05:00", "empty"),
        ("Xyz 01:00-02:00", "not a day of the week"),
        ("Sat 25:00-26:00", "not a time"),
        ("Sat 1:00-2:00", "not a time"),
        ("Sat", "expected days and a time range"),
        ("Sat 01:00", "not a time range"),
        ("Sat 24:00-01:00", "cannot start at 24:00"),
        ("Sat,,Sun 01:00-02:00", "not a day of the week"),
    ],
)
def test_bad_windows_are_refused_saying_why(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_window(text)


# -- the other rules -------------------------------------------------------------------------------------
def test_cooldown_min_release_age_and_max_age() -> None:
    rules = Rules(max_age_days=30, cooldown_hours=12, min_release_age_hours=48)
    started = at("2026-12-01T00:00")
    assert policies.cooling_until(rules, started, at("2026-12-01T11:59")) == at("2026-12-01T12:00")
    assert policies.cooling_until(rules, started, at("2026-12-01T12:00")) is None
    assert policies.cooling_until(rules, None, at("2026-12-01T01:00")) is None
    seen = at("2026-12-01T06:00")
    assert policies.eligible_at(rules, seen, at("2026-12-03T05:59")) == at("2026-12-03T06:00")
    assert policies.eligible_at(rules, seen, at("2026-12-03T06:00")) is None
    assert policies.max_age_due(rules, at("2026-11-01T00:00"), at("2026-11-30T23:59")) is None
    assert policies.max_age_due(rules, at("2026-11-01T00:00"), at("2026-12-01T00:00")) == at(
        "2026-12-01T00:00"
    )
    assert policies.max_age_due(rules, None, at("2027-01-01T00:00")) is None  # age unknown: never


def test_next_due_waits_for_the_window_and_the_cooldown() -> None:
    rules = Rules(patch_day=2, window=parse_window("Sat,Sun 01:00-05:00"))
    # December 2026's patch day is Thursday the 10th: the window opens on Saturday the 12th.
    due = policies.next_due(rules, at("2026-11-14T02:00"), at("2026-11-14T02:00"), at("2026-12-02T00:00"))
    assert due == (at("2026-12-12T01:00"), "patch day 2026-12 (Patch Tuesday +2)")
    done = policies.next_due(rules, at("2026-12-12T01:00"), at("2026-12-12T01:00"), at("2026-12-12T03:00"))
    assert done is not None and done[0] == at("2027-01-16T01:00")  # January's +2 is Thursday the 14th
    aged = policies.next_due(
        Rules(max_age_days=10, cooldown_hours=240),
        at("2026-12-01T00:00"),
        at("2026-12-05T00:00"),
        at("2026-12-02"),
    )
    assert aged == (at("2026-12-15T00:00"), "max age 10 days")  # the cooldown ends after the age limit
    assert policies.next_due(NO_RULES, None, None, at("2026-12-02T00:00")) is None


# -- tags and defaults ------------------------------------------------------------------------------------
def test_tags_set_the_rules_names_and_values_in_any_case() -> None:
    rules = rules_of(
        {
            "Rebuild-Patch-Day": "+3",
            "REBUILD-WINDOW": "SAT,sun 01:00-05:00",
            "rebuild-max-age-days": " 30 ",
            "rebuild-cooldown-hours": "12",
            "rebuild-min-release-age-hours": "48",
            "unrelated": "x",
        },
        NO_RULES,
    )
    assert (rules.patch_day, rules.max_age_days, rules.cooldown_hours, rules.min_release_age_hours) == (
        3,
        30,
        12,
        48,
    )
    assert rules.window is not None and rules.window.days == frozenset({5, 6})
    assert rules.problems == ()
    assert rules.describe() == (
        "patch day +3, max age 30 d, window SAT,sun 01:00-05:00, cooldown 12 h, min release age 48 h"
    )


@pytest.mark.parametrize(
    ("tag", "value", "words"),
    [
        ("rebuild-patch-day", "+21", "N from 0 to 20"),
        ("rebuild-patch-day", "-1", "N from 0 to 20"),
        ("rebuild-patch-day", "tuesday", "N from 0 to 20"),
        ("rebuild-max-age-days", "0", "from 1 to 365"),
        ("rebuild-max-age-days", "366", "from 1 to 365"),
        ("rebuild-max-age-days", "7d", "from 1 to 365"),
        ("rebuild-window", "weekends", "expected days and a time range"),
        ("rebuild-cooldown-hours", "1.5", "from 1 to 720"),
        ("rebuild-min-release-age-hours", "x" * 500, "longer than 100 characters"),
    ],
)
def test_an_invalid_tag_is_reported_and_the_default_kept(tag: str, value: str, words: str) -> None:
    defaults = Rules(patch_day=1, max_age_days=60, window=parse_window("Sun 00:00-06:00"), cooldown_hours=6)
    rules = rules_of({tag: value}, defaults)
    assert len(rules.problems) == 1 and words in rules.problems[0] and tag in rules.problems[0]
    assert "the default is used" in rules.problems[0]
    assert (rules.patch_day, rules.max_age_days, rules.window, rules.cooldown_hours) == (
        1,
        60,
        defaults.window,
        6,
    )


def test_none_turns_a_default_off_for_one_template() -> None:
    defaults = Rules(patch_day=0, window=parse_window("Sun 00:00-06:00"))
    rules = rules_of({"rebuild-patch-day": "None", "rebuild-window": "off"}, defaults)
    assert rules.patch_day is None and rules.window is None and rules.problems == ()


def test_settings_give_the_defaults_and_refuse_bad_ones_by_name() -> None:
    base = {
        "REBUILDER_SCOPES": "/subscriptions/00000000-0000-0000-0000-000000000001",
        "REBUILDER_LEDGER": "https://ledger.table.core.windows.net",
    }
    settings = Settings.from_env(
        {**base, "REBUILDER_DEFAULT_PATCH_DAY": "+1", "REBUILDER_DEFAULT_WINDOW": "Sat 00:00-06:00"}
    )
    assert settings.rebuild_defaults.patch_day == 1
    assert settings.rebuild_defaults.window == parse_window("Sat 00:00-06:00")
    assert Settings.from_env(base).rebuild_defaults == NO_RULES
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(
            {**base, "REBUILDER_DEFAULT_MAX_AGE_DAYS": "0", "REBUILDER_DEFAULT_COOLDOWN_HOURS": "many"}
        )
    said = str(refused.value)
    assert "REBUILDER_DEFAULT_MAX_AGE_DAYS" in said and "REBUILDER_DEFAULT_COOLDOWN_HOURS" in said


def test_bypassed_names_what_an_on_demand_build_goes_past() -> None:
    rules = Rules(window=parse_window("Sat,Sun 01:00-05:00"), cooldown_hours=24, min_release_age_hours=48)
    said = policies.bypassed(rules, at("2026-12-10T00:00"), at("2026-12-10T06:00"))
    assert "window Sat,Sun 01:00-05:00 (closed; opens 2026-12-12 01:00 UTC)" in said
    assert "cooldown 24 h (until 2026-12-11 00:00 UTC)" in said
    assert "minimum release age 48 h" in said
    assert (
        policies.bypassed(Rules(window=parse_window("Thu 00:00-24:00")), None, at("2026-12-10T06:00")) == ""
    )
