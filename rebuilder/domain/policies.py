"""Rebuild policies (DESIGN §3): when a template is rebuilt besides "a new source version arrived".

Pure: every rule is a function of the template's tags, the service-wide defaults, the ledger's row and
`now`. Tags live with the template's own IaC; names and values are case-insensitive:

- `rebuild-patch-day` = `+N` (0–20): once per month on Patch Tuesday (the second Tuesday, UTC) + N days;
- `rebuild-max-age-days` = N (1–365): when the last successful build is older than N days;
- `rebuild-window` = `Sat,Sun 01:00-05:00`, `Mon-Fri 22:00-04:00`: automatic builds start only inside it
  (a time range that ends before it starts crosses midnight and belongs to the day it starts on);
- `rebuild-cooldown-hours` = N (1–720): no second automatic build within N hours of the last one
  started, unless a new source version arrived;
- `rebuild-min-release-age-hours` = N (1–720): a new source version is eligible N hours after it was
  first seen.

`none` (or `off`) turns a default off for one template. An invalid value is reported (the plan shows
it) and the default is used instead.
"""

from __future__ import annotations

import calendar
import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from .casing import fold

PATCH_DAY = "rebuild-patch-day"
MAX_AGE_DAYS = "rebuild-max-age-days"
WINDOW = "rebuild-window"
COOLDOWN_HOURS = "rebuild-cooldown-hours"
MIN_RELEASE_AGE_HOURS = "rebuild-min-release-age-hours"
TAGS = (PATCH_DAY, MAX_AGE_DAYS, WINDOW, COOLDOWN_HOURS, MIN_RELEASE_AGE_HOURS)
MAKE_UP = timedelta(days=7)  # a patch day missed by more than this is not made up
OFF = frozenset({"none", "off"})

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = tuple(fold(calendar.day_name[i]) for i in range(7))
_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")


# The service-wide default of each (REBUILDER_DEFAULT_<NAME>), in the tag's own grammar.
SETTINGS = {
    PATCH_DAY: "REBUILDER_DEFAULT_PATCH_DAY",
    MAX_AGE_DAYS: "REBUILDER_DEFAULT_MAX_AGE_DAYS",
    WINDOW: "REBUILDER_DEFAULT_WINDOW",
    COOLDOWN_HOURS: "REBUILDER_DEFAULT_COOLDOWN_HOURS",
    MIN_RELEASE_AGE_HOURS: "REBUILDER_DEFAULT_MIN_RELEASE_AGE_HOURS",
}


# -- windows --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """Days of the week (0 = Monday) and a time range in minutes of the day, UTC. A range whose end is
    not after its start crosses midnight: it belongs to the day it starts on."""

    days: frozenset[int]
    start: int  # minutes after midnight
    end: int  # minutes after midnight, 1–1440
    text: str

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def contains(self, at: datetime) -> bool:
        at = at.astimezone(UTC)
        minute, day = at.hour * 60 + at.minute, at.weekday()
        if not self.crosses_midnight:
            return day in self.days and self.start <= minute < self.end
        return (day in self.days and minute >= self.start) or (
            (day - 1) % 7 in self.days and minute < self.end
        )

    def next_opening(self, at: datetime) -> datetime:
        """`at` itself when the window is open then, else the next time it opens."""
        if self.contains(at):
            return at
        at = at.astimezone(UTC)
        midnight = datetime(at.year, at.month, at.day, tzinfo=UTC)
        for days in range(8):
            opening = midnight + timedelta(days=days, minutes=self.start)
            if opening >= at and opening.weekday() in self.days:
                return opening
        raise AssertionError("a window with at least one day opens within a week")  # pragma: no cover


def parse_window(text: str) -> Window:
    """`Sat,Sun 01:00-05:00`, `Mon-Fri 22:00-04:00`, `Mon,Wed-Fri 00:00-24:00`; raises ValueError."""
    parts = text.strip().split()
    if len(parts) != 2:
        raise ValueError("expected days and a time range, e.g. 'Sat,Sun 01:00-05:00'")
    days_text, hours = parts
    days: set[int] = set()
    for item in fold(days_text).split(","):
        first, _, last = item.partition("-")
        a = _day(first)
        b = _day(last) if last else a
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))  # a range may wrap: Fri-Mon
    start_text, dash, end_text = hours.partition("-")
    if not dash:
        raise ValueError(f"{hours!r} is not a time range such as 01:00-05:00")
    start, end = _minutes(start_text), _minutes(end_text)
    if start == 1440:
        raise ValueError("a window cannot start at 24:00")
    if start == end:
        raise ValueError("the window is empty (start equals end); use 00:00-24:00 for the whole day")
    return Window(frozenset(days), start, end or 1440, text.strip())


def _day(text: str) -> int:
    if text in _DAYS:
        return _DAYS.index(text)
    if text in _FULL_DAYS:
        return _FULL_DAYS.index(text)
    raise ValueError(f"{text!r} is not a day of the week (Mon … Sun)")


def _minutes(text: str) -> int:
    if not _TIME.fullmatch(text):
        raise ValueError(f"{text!r} is not a time HH:MM (00:00–24:00)")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


# -- patch day ------------------------------------------------------------------------------------------
def patch_tuesday(year: int, month: int) -> date:
    """The second Tuesday of the month."""
    first = date(year, month, 1)
    return first + timedelta(days=(1 - first.weekday()) % 7 + 7)


@dataclass(frozen=True)
class Occurrence:
    key: str  # YYYY-MM: the month whose Patch Tuesday it follows
    starts_at: datetime

    @property
    def ends_at(self) -> datetime:
        return self.starts_at + MAKE_UP


def occurrence(year: int, month: int, offset: int) -> Occurrence:
    day = patch_tuesday(year, month) + timedelta(days=offset)  # may run into the next month
    return Occurrence(f"{year:04d}-{month:02d}", datetime(day.year, day.month, day.day, tzinfo=UTC))


def latest_occurrence(now: datetime, offset: int) -> Occurrence:
    """The newest patch day that has begun by `now`."""
    year, month = now.year, now.month
    for _ in range(3):
        found = occurrence(year, month, offset)
        if found.starts_at <= now:
            return found
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    raise AssertionError("a patch day begins every month")  # pragma: no cover


def next_occurrence(now: datetime, offset: int) -> Occurrence:
    """The first patch day that begins after `now`."""
    year, month = now.year, now.month
    for _ in range(3):
        found = occurrence(year, month, offset)
        if found.starts_at > now:
            return found
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    raise AssertionError("a patch day begins every month")  # pragma: no cover


# -- the rules of one template ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Rules:
    """One template's policies (None: the rule is off), and what was wrong with its tags."""

    patch_day: int | None = None  # days after Patch Tuesday
    max_age_days: int | None = None
    window: Window | None = None
    cooldown_hours: int | None = None
    min_release_age_hours: int | None = None
    problems: tuple[str, ...] = ()

    @property
    def cooldown(self) -> timedelta | None:
        return timedelta(hours=self.cooldown_hours) if self.cooldown_hours else None

    @property
    def min_release_age(self) -> timedelta | None:
        return timedelta(hours=self.min_release_age_hours) if self.min_release_age_hours else None

    def describe(self) -> str:
        parts = []
        if self.patch_day is not None:
            parts.append(f"patch day +{self.patch_day}")
        if self.max_age_days is not None:
            parts.append(f"max age {self.max_age_days} d")
        if self.window is not None:
            parts.append(f"window {self.window.text}")
        if self.cooldown_hours:
            parts.append(f"cooldown {self.cooldown_hours} h")
        if self.min_release_age_hours:
            parts.append(f"min release age {self.min_release_age_hours} h")
        return ", ".join(parts) or "source updates only"


NO_RULES = Rules()  # no policy at all: a template rebuilt when its source changes, or on request


def _offset(text: str) -> int:
    match = re.fullmatch(r"\+?([0-9]{1,2})", text)
    if not match or not 0 <= int(match.group(1)) <= 20:
        raise ValueError("expected +N days after Patch Tuesday, N from 0 to 20 (e.g. +2)")
    return int(match.group(1))


def _count(low: int, high: int, unit: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"[0-9]{1,4}", text) or not low <= int(text) <= high:
            raise ValueError(f"expected a whole number of {unit} from {low} to {high}")
        return int(text)

    return parse


_PARSERS: dict[str, Callable[[str], object]] = {
    PATCH_DAY: _offset,
    MAX_AGE_DAYS: _count(1, 365, "days"),
    WINDOW: parse_window,
    COOLDOWN_HOURS: _count(1, 720, "hours"),
    MIN_RELEASE_AGE_HOURS: _count(1, 720, "hours"),
}


def parse_value(tag: str, text: str) -> object:
    """One tag's value (None when it says `none`/`off`); raises ValueError saying what is expected."""
    value = text.strip()
    if fold(value) in OFF:
        return None
    if len(value) > 100:
        raise ValueError("longer than 100 characters")
    return _PARSERS[tag](value)


def with_value(rules: Rules, tag: str, text: str) -> Rules:
    """`rules` with one tag's value set; raises ValueError when the value is invalid."""
    value = parse_value(tag, text)
    if tag == WINDOW:
        return dataclasses.replace(rules, window=value if isinstance(value, Window) else None)
    number = value if isinstance(value, int) else None
    if tag == PATCH_DAY:
        return dataclasses.replace(rules, patch_day=number)
    if tag == MAX_AGE_DAYS:
        return dataclasses.replace(rules, max_age_days=number)
    if tag == COOLDOWN_HOURS:
        return dataclasses.replace(rules, cooldown_hours=number)
    return dataclasses.replace(rules, min_release_age_hours=number)


def policy_tags(tags: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The template's policy tags, as the ledger keeps them (names lower-cased, values bounded)."""
    return tuple(
        sorted((fold(n.strip()), (v or "")[:200]) for n, v in tags.items() if fold(n.strip()) in TAGS)
    )


def rules_of(tags: Mapping[str, str], defaults: Rules) -> Rules:
    """A template's rules: each policy tag it has (an invalid one reported, the default kept), else the
    default."""
    rules, problems = defaults, list(defaults.problems)
    for name, value in sorted(tags.items()):
        tag = fold(name.strip())
        if tag not in _PARSERS:
            continue
        try:
            rules = with_value(rules, tag, value or "")
        except ValueError as error:
            problems.append(f"tag {tag}={str(value)[:100]!r} is invalid ({error}); the default is used")
    return dataclasses.replace(rules, problems=tuple(problems))


# -- each rule, at one moment ------------------------------------------------------------------------------
def patch_day_due(rules: Rules, built_at: datetime | None, now: datetime) -> Occurrence | None:
    """The patch day due now: begun, less than a week ago, and no build begun since it began."""
    if rules.patch_day is None:
        return None
    current = latest_occurrence(now, rules.patch_day)
    if now >= current.ends_at or (built_at is not None and built_at >= current.starts_at):
        return None
    return current


def max_age_due(rules: Rules, built_at: datetime | None, now: datetime) -> datetime | None:
    """When the last successful build grew too old, if it has by `now` (unknown age: never)."""
    if rules.max_age_days is None or built_at is None:
        return None
    limit = built_at + timedelta(days=rules.max_age_days)
    return limit if limit <= now else None


def cooling_until(rules: Rules, last_started: datetime | None, now: datetime) -> datetime | None:
    """The end of the cooldown after the last build started, while it lasts."""
    if rules.cooldown is None or last_started is None:
        return None
    end = last_started + rules.cooldown
    return end if end > now else None


def eligible_at(rules: Rules, first_seen: datetime | None, now: datetime) -> datetime | None:
    """When a version first seen at `first_seen` becomes eligible, while it is not yet."""
    if rules.min_release_age is None or first_seen is None:
        return None
    at = first_seen + rules.min_release_age
    return at if at > now else None


def opening(rules: Rules, at: datetime) -> datetime:
    """`at`, or the window's next opening after it."""
    return rules.window.next_opening(at) if rules.window is not None else at


def next_due(
    rules: Rules, built_at: datetime | None, last_started: datetime | None, now: datetime
) -> tuple[datetime, str] | None:
    """When a policy next makes the template due (inside its window, after its cooldown), and why;
    None when only a new source version would."""
    due: list[tuple[datetime, str]] = []
    if rules.patch_day is not None:
        current = latest_occurrence(now, rules.patch_day)
        done = built_at is not None and built_at >= current.starts_at
        upcoming = current if not done and now < current.ends_at else next_occurrence(now, rules.patch_day)
        due.append((upcoming.starts_at, f"patch day {upcoming.key} (Patch Tuesday +{rules.patch_day})"))
    if rules.max_age_days is not None and built_at is not None:
        due.append((built_at + timedelta(days=rules.max_age_days), f"max age {rules.max_age_days} days"))
    if not due:
        return None
    at, why = min(due)
    cooled = cooling_until(rules, last_started, at)
    at = opening(rules, max(at, cooled or at, now))
    return at, why


def bypassed(rules: Rules, last_started: datetime | None, now: datetime) -> str:
    """What an on-demand build goes past: the rules that would have held an automatic one now."""
    went_past = []
    if rules.window is not None and not rules.window.contains(now):
        went_past.append(
            f"window {rules.window.text} (closed; opens {rules.window.next_opening(now):%Y-%m-%d %H:%M} UTC)"
        )
    cooling = cooling_until(rules, last_started, now)
    if cooling is not None:
        went_past.append(f"cooldown {rules.cooldown_hours} h (until {cooling:%Y-%m-%d %H:%M} UTC)")
    if rules.min_release_age_hours:
        went_past.append(f"minimum release age {rules.min_release_age_hours} h (not applied)")
    return "; ".join(went_past)
