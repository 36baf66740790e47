"""Exposure windows over literal builds, region rows and sightings."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from rebuilder.domain.builds import Build, BuildState, RegionStatus
from rebuilder.domain.exposure import exposure_windows
from rebuilder.domain.regions import Region
from rebuilder.domain.standing import SeenVersion
from tests.records import T0, UBUNTU, build

H = timedelta(hours=1)
WEU, EUS = Region("westeurope"), Region("eastus")


def completed(b: Build, region: Region, after: timedelta) -> RegionStatus:
    return RegionStatus(b.id, region, True, "Completed", 100, completed_at=T0 + after)


def replicating(b: Build, region: Region) -> RegionStatus:
    return RegionStatus(b.id, region, True, "Replicating", 30)


def seen(version: str, after: timedelta) -> SeenVersion:
    return SeenVersion(UBUNTU, version, T0 + after)


def spans(windows: list) -> set[tuple[str, str, timedelta | None]]:  # type: ignore[type-arg]
    return {
        (w.region, w.version, (w.replicated_at - w.first_seen_at) if w.replicated_at else None)
        for w in windows
    }


def test_a_window_runs_from_first_seen_to_replicated_per_region() -> None:
    b = build(version="22.04.202501150")  # previous baseline 22.04.202411190
    rows = [completed(b, WEU, 3 * H), completed(b, EUS, 5 * H)]
    windows = exposure_windows([(b, rows)], [seen("22.04.202411190", -900 * H), seen("22.04.202501150", H)])
    assert spans(windows) == {(WEU, "22.04.202501150", 2 * H), (EUS, "22.04.202501150", 4 * H)}


def test_a_region_still_replicating_is_still_exposed() -> None:
    b = build(version="22.04.202501150")
    windows = exposure_windows(
        [(b, [completed(b, WEU, 3 * H), replicating(b, EUS)])], [seen("22.04.202501150", H)]
    )
    assert spans(windows) == {(WEU, "22.04.202501150", 2 * H), (EUS, "22.04.202501150", None)}
    [still] = [w for w in windows if w.open]
    assert still.duration(T0 + 10 * H) == 9 * H


def test_coalesced_versions_each_keep_their_own_start() -> None:
    b = build(version="22.04.202501150")
    sightings = [seen("22.04.202412010", H), seen("22.04.202501150", 20 * H)]
    windows = exposure_windows([(b, [completed(b, WEU, 30 * H)])], sightings)
    assert spans(windows) == {(WEU, "22.04.202412010", 29 * H), (WEU, "22.04.202501150", 10 * H)}


def test_the_earliest_build_at_or_above_the_version_closes_it() -> None:
    old = build(key="a", version="22.04.202501150")
    new = build(key="b", version="22.04.202502010", at=T0 + 48 * H, previous_baseline="22.04.202501150")
    rows_old, rows_new = [completed(old, WEU, 10 * H)], [completed(new, WEU, 60 * H)]
    sightings = [seen("22.04.202501150", H), seen("22.04.202502010", 40 * H), seen("22.04.202503010", 70 * H)]
    windows = exposure_windows([(new, rows_new), (old, rows_old)], sightings)
    assert spans(windows) == {
        (WEU, "22.04.202501150", 9 * H),
        (WEU, "22.04.202502010", 20 * H),
        (WEU, "22.04.202503010", None),
    }
    assert {w.version: w.closed_by for w in windows} == {
        "22.04.202501150": old.id,
        "22.04.202502010": new.id,
        "22.04.202503010": None,
    }


def test_versions_at_or_below_the_oldest_baseline_open_no_window() -> None:
    b = build(version="22.04.202501150", previous_baseline="22.04.202411190")
    sightings = [
        seen("22.04.202310010", -5000 * H),
        seen("22.04.202411190", -900 * H),
        seen("22.04.202501150", H),
    ]
    assert {w.version for w in exposure_windows([(b, [completed(b, WEU, 2 * H)])], sightings)} == {
        "22.04.202501150"
    }


def test_numeric_order_decides_newer_not_text_order() -> None:
    b = build(version="20348.2849.241106", previous_baseline="20348.587.220303")
    windows = exposure_windows(
        [(b, [completed(b, WEU, 5 * H)])], [seen("20348.2849.241106", H), seen("20348.9.1", H)]
    )
    assert {w.version for w in windows} == {"20348.2849.241106"}  # 20348.9.1 is older than the baseline


# -- root windows: a child's exposure from the root Marketplace version's first sighting ---------------
def child_build(version: str, root: str, previous_root: str, at_hours: float) -> Build:
    from rebuilder.domain.builds import Lineage

    return build(
        "app",
        key=f"parent-published:{version}",
        at=T0 + at_hours * H,
        version=version,
        previous_baseline="",
        lineage=Lineage("parent-build", "ubuntu", root, UBUNTU, previous_root),
    )


def test_a_childs_root_window_starts_at_the_root_versions_first_sighting() -> None:
    from rebuilder.domain.exposure import Basis, root_windows

    child = child_build("1.0.2", "22.04.202501150", "22.04.202411190", 2)
    rows = [completed(child, WEU, 3 * H)]
    windows = root_windows([(child, rows)], [seen("22.04.202411190", -900 * H), seen("22.04.202501150", H)])
    assert spans(windows) == {(WEU, "22.04.202501150", 2 * H)}  # 01:00 seen → 03:00 replicated
    assert {w.basis for w in windows} == {Basis.ROOT}


def test_without_a_known_previous_root_only_versions_from_the_oldest_built_root_count() -> None:
    from rebuilder.domain.exposure import root_windows

    child = child_build("1.0.2", "22.04.202501150", "", 2)
    sightings = [
        seen("22.04.202409100", -2000 * H),
        seen("22.04.202501150", H),
        seen("22.04.202502010", 5 * H),
    ]
    windows = root_windows([(child, [completed(child, WEU, 3 * H)])], sightings)
    assert spans(windows) == {(WEU, "22.04.202501150", 2 * H), (WEU, "22.04.202502010", None)}


def test_a_baselines_root_windows_are_its_direct_windows() -> None:
    from rebuilder.domain.exposure import Basis, root_windows

    b = build(version="22.04.202501150")
    rows = [completed(b, WEU, 3 * H)]
    sightings = [seen("22.04.202501150", H)]
    root = root_windows([(b, rows)], sightings)
    assert spans(root) == spans(exposure_windows([(b, rows)], sightings)) and root[0].basis is Basis.ROOT


def test_a_gated_image_closes_its_windows_at_promotion_and_a_revoked_one_closes_none() -> None:
    sightings = [seen("22.04.202501150", H)]
    b = build(version="22.04.202501150", state=BuildState.CANDIDATE, candidate_at=T0 + 5 * H)
    rows = [completed(b, WEU, 3 * H), completed(b, EUS, 5 * H)]
    assert spans(exposure_windows([(b, rows)], sightings)) == {  # a candidate protects nobody yet
        (WEU, "22.04.202501150", None),
        (EUS, "22.04.202501150", None),
    }
    promoted = dataclasses.replace(b, state=BuildState.PROMOTED, promoted_at=T0 + 29 * H)
    assert spans(exposure_windows([(promoted, rows)], sightings)) == {
        (WEU, "22.04.202501150", 28 * H),
        (EUS, "22.04.202501150", 28 * H),
    }
    for withdrawn in (
        dataclasses.replace(promoted, state=BuildState.REVOKED),
        dataclasses.replace(b, state=BuildState.REJECTED),
    ):
        assert {w.replicated_at for w in exposure_windows([(withdrawn, rows)], sightings)} == {None}
    ungated = build(version="22.04.202501150", state=BuildState.PUBLISHED)  # replicated: protects at once
    assert (WEU, "22.04.202501150", 2 * H) in spans(exposure_windows([(ungated, rows)], sightings))


def test_a_new_templates_first_build_is_exposed_to_the_version_it_builds_not_to_older_history() -> None:
    b = build(version="22.04.202501150", previous_baseline="")
    sightings = [
        seen("22.04.202409100", -900 * H),
        seen("22.04.202411190", -500 * H),
        seen("22.04.202501150", H),
    ]
    windows = exposure_windows([(b, [completed(b, WEU, 3 * H)])], sightings)
    assert spans(windows) == {(WEU, "22.04.202501150", 2 * H)}
