"""A simulated year of watch passes through the pure planner: whatever the passes, outages, releases
and policies, patch-day rebuilds happen at most once per month (exactly once when passes keep coming
and the window opens daily), never outside the window, never inside a cooldown, and no version is
built before its minimum release age. Builds are simulated: requested at a pass, started there (the
watch pass starts what it claims), finished 1–3 hours later, as the ledger would record them."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rebuilder.domain.builds import BuildId, BuildReason
from rebuilder.domain.model import ImageTemplate, PlatformImage, Source, SourceKind, TemplateId
from rebuilder.domain.planner import Action, Candidate, Managed, Mode, plan
from rebuilder.domain.policies import NO_RULES, occurrence, rules_of
from rebuilder.domain.regions import Region
from rebuilder.domain.standing import TemplateState
from rebuilder.domain.versions import version_key

TID = TemplateId(
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/golden"
)
START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)
DAILY_WINDOWS = ("Mon-Sun 00:00-06:00", "Mon-Sun 20:00-04:00")
WINDOWS = (None, *DAILY_WINDOWS, "Sat,Sun 01:00-05:00", "Mon-Fri 22:00-04:00")


@dataclass(frozen=True)
class Built:
    at: datetime
    reason: BuildReason
    key: str
    version: str


@dataclass
class World:
    tags: dict[str, str]
    releases: list[tuple[datetime, str]]  # (released at, version), in order
    passes: list[datetime]
    seeded: bool = True  # the ledger knows a build of the first release, from the day before the year
    builds: list[Built] = field(default_factory=list)
    first_seen: dict[str, datetime] = field(default_factory=dict)


def version_at(day: int) -> str:
    return f"22.04.2026{day:05d}"


def simulate(world: World) -> None:
    tmpl = ImageTemplate(
        TID,
        "s",
        "rg",
        "golden",
        Region("westeurope"),
        Source(SourceKind.PLATFORM_IMAGE, PlatformImage("Canonical", "jammy", "22_04"), "latest"),
        tags=world.tags,
    )
    state = TemplateState(TID, "golden", Region("westeurope"), START)
    if world.seeded:
        before = START - timedelta(days=1)
        state = dataclasses.replace(
            state, baseline_version=world.releases[0][1], baseline_at=before, known_run_started_at=before
        )
        world.first_seen[world.releases[0][1]] = START - timedelta(days=2)
    claimed: set[str] = set()
    finishing: tuple[datetime, Built] | None = None
    rng = random.Random(len(world.passes))  # noqa: S311 - a simulation, not a secret
    for now in world.passes:
        if finishing is not None and finishing[0] <= now:  # the build ended between two passes
            done = finishing[1]
            newer = not state.baseline_version or version_key(done.version) >= version_key(
                state.baseline_version
            )
            state = dataclasses.replace(
                state,
                open_builds=(),
                baseline_version=done.version if newer else state.baseline_version,
                baseline_at=done.at,
                updated_at=now,
            )
            finishing = None
        listed = [v for released, v in world.releases if released <= now]
        for version in listed:
            world.first_seen.setdefault(version, now)  # the watch records a version at first sight
        newest = max(listed, key=version_key)
        candidate = Candidate(newest, world.first_seen[newest], tuple(listed))
        [item] = plan([Managed(tmpl, Mode.AUTO)], {TID.lower(): candidate}, {TID.lower(): state}, now=now)  # type: ignore[dict-item]
        if item.action is not Action.REBUILD:
            continue
        assert item.due is not None and item.key not in claimed  # a key is claimed once
        claimed.add(item.key)
        build = Built(now, item.due, item.key, item.build_version)
        world.builds.append(build)
        state = dataclasses.replace(
            state, open_builds=(BuildId(item.key),), known_run_started_at=now, updated_at=now
        )
        finishing = (now + timedelta(minutes=rng.randint(60, 180)), build)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[World, bool]:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)  # noqa: S311 - a simulation, not a secret
    window = draw(st.sampled_from(WINDOWS))
    cooldown = draw(st.one_of(st.none(), st.integers(1, 240)))
    min_age = draw(st.one_of(st.none(), st.integers(1, 96)))
    max_age = draw(st.one_of(st.none(), st.integers(3, 60)))
    tags = {"rebuild-patch-day": f"+{draw(st.integers(0, 20))}"}
    for name, value in (
        ("rebuild-window", window),
        ("rebuild-cooldown-hours", cooldown),
        ("rebuild-min-release-age-hours", min_age),
        ("rebuild-max-age-days", max_age),
    ):
        if value is not None:
            tags[name] = str(value)
    dense = draw(st.booleans())  # passes at most 6 h apart and no outage
    max_gap = 6 if dense else draw(st.integers(1, 96))
    outages = [] if dense else draw(st.lists(st.tuples(st.integers(0, 364), st.integers(1, 10)), max_size=4))
    passes, now = [], START
    while now < END:
        passes.append(now)
        now += timedelta(minutes=rng.randint(1, max_gap * 60))
        for day, length in outages:
            down = START + timedelta(days=day)
            if down <= now < down + timedelta(days=length):
                now = down + timedelta(days=length)
    releases, day = [(START, version_at(0))], 0
    while (day := day + rng.randint(8, 40)) < 365:  # releases at least 8 days apart
        releases.append((START + timedelta(days=day, hours=rng.randint(0, 23)), version_at(day)))
    live = dense and (window is None or window in DAILY_WINDOWS) and (cooldown or 0) <= 24
    return World(tags, releases, passes, seeded=draw(st.booleans())), live


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_a_simulated_year_keeps_every_policy(drawn: tuple[World, bool]) -> None:
    world, live = drawn
    simulate(world)
    check(world, live)


def check(world: World, live: bool) -> None:
    rules = rules_of(world.tags, NO_RULES)
    assert rules.problems == () and rules.patch_day is not None
    patch_days = [b for b in world.builds if b.reason is BuildReason.PATCH_DAY]
    keys = [b.key for b in patch_days]
    assert len(keys) == len(set(keys))  # at most once per month
    previous: Built | None = None
    for build in world.builds:
        if rules.window is not None:
            assert rules.window.contains(build.at), f"{build} outside {rules.window.text}"
        if (
            previous is not None
            and rules.cooldown is not None
            and build.reason is not BuildReason.SOURCE_UPDATE
        ):
            newer = version_key(build.version) > version_key(previous.version)
            assert newer or build.at >= previous.at + rules.cooldown, (
                f"{build} in the cooldown after {previous}"
            )
        if rules.min_release_age is not None:  # `latest` takes the newest version listed
            newest = max((v for released, v in world.releases if released <= build.at), key=version_key)
            assert world.first_seen[newest] + rules.min_release_age <= build.at, (
                f"{build} took {newest} early"
            )
        previous = build
    for month in range(1, 13):
        day = occurrence(2026, month, rules.patch_day)
        if day.ends_at > END:
            continue
        served = [b for b in world.builds if day.starts_at <= b.at < day.ends_at]
        assert len([b for b in served if b.reason is BuildReason.PATCH_DAY]) <= 1
        if live:  # passes kept coming and the window opens daily: the month's patch day was served
            assert served, f"no build in the week of patch day {day.key} ({world.tags})"
            first = served[0]
            assert first.reason in (BuildReason.PATCH_DAY, BuildReason.SOURCE_UPDATE), first
            assert not [b for b in served[1:] if b.reason is BuildReason.PATCH_DAY]


def test_an_hourly_year_has_exactly_twelve_patch_day_builds() -> None:
    world = World(
        {"rebuild-patch-day": "+1", "rebuild-window": "Mon-Sun 01:00-05:00", "rebuild-cooldown-hours": "12"},
        [(START, version_at(0))],
        [START + timedelta(hours=h) for h in range(365 * 24)],
    )
    simulate(world)
    check(world, live=True)
    assert [b.key for b in world.builds] == [f"patch-day:2026-{m:02d}" for m in range(1, 13)]
    # each on its day (Patch Tuesday + 1), when the window opened
    assert [b.at.day for b in world.builds] == [14, 11, 11, 15, 13, 10, 15, 12, 9, 14, 11, 9]
    assert {b.at.hour for b in world.builds} == {1}


def test_a_service_down_over_patch_day_catches_up_once() -> None:
    down_from, down_until = datetime(2026, 12, 7, tzinfo=UTC), datetime(2026, 12, 11, 9, tzinfo=UTC)
    hours = [START + timedelta(hours=h) for h in range(365 * 24)]
    world = World(
        {"rebuild-patch-day": "+0"},
        [(START, version_at(0))],
        [h for h in hours if not down_from <= h < down_until],
    )
    simulate(world)
    december = [b for b in world.builds if b.key == "patch-day:2026-12"]
    assert [b.at for b in december] == [down_until]  # the first pass back, and only it
