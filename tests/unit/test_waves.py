"""Patch waves and the estate matrix over literal summaries: the roll-up a security team reads."""

from __future__ import annotations

from datetime import timedelta

from rebuilder.domain.builds import Lineage, RegionStatus
from rebuilder.domain.estate import summarise
from rebuilder.domain.exposure import exposure_windows, root_windows
from rebuilder.domain.regions import Region
from rebuilder.domain.standing import RegionStanding, SeenVersion, TemplateState
from rebuilder.domain.waves import waves
from tests.records import T0, UBUNTU, build, template_id

H = timedelta(hours=1)
WEU, NEU = Region("westeurope"), Region("northeurope")
OLD, NEW = "22.04.202411190", "22.04.202501150"
SEEN = [SeenVersion(UBUNTU, OLD, T0 - 900 * H), SeenVersion(UBUNTU, NEW, T0)]


def completed(b_id: str, region: Region, hours: float) -> RegionStatus:
    return RegionStatus(b_id, region, True, "Completed", 100, completed_at=T0 + hours * H)  # type: ignore[arg-type]


def summary(
    name: str, hours: dict[Region, float | None], *, child: bool = False, now_hours: float = 10
) -> object:
    lineage = Lineage("p", "golden", NEW, UBUNTU, OLD) if child else None
    b = build(
        name, template_id=template_id(name), previous_baseline=OLD if not child else "", lineage=lineage
    )
    rows = [
        completed(b.id, r, h) if h is not None else RegionStatus(b.id, r, True, "Failed", 0)
        for r, h in hours.items()
    ]
    standing = tuple(
        RegionStanding(r.region, b.id, NEW, f"/g/images/i/versions/1.0.{i}", r.state, r.completed_at)
        for i, r in enumerate(rows)
        if r.completed_at
    )
    state = TemplateState(
        b.template_id, name, WEU, T0, regions=standing, gallery_image_id="g" if child else ""
    )
    history = [(b, rows)]
    return summarise(
        state, history, exposure_windows(history, SEEN), root_windows(history, SEEN), SEEN, SEEN, UBUNTU,
        now=T0 + now_hours * H,
    )  # fmt: skip


def test_a_wave_rolls_up_templates_children_regions_and_durations() -> None:
    golden = summary("golden", {WEU: 1, NEU: 3})
    child = summary("app", {WEU: 2, NEU: None}, child=True)  # replication to northeurope failed
    [wave] = waves([golden, child], now=T0 + 10 * H)  # type: ignore[list-item]
    assert wave.describe() == f"{NEW}: 1/2 templates (1 child), 3/4 regions, worst 10.0 h, median 2.5 h"
    assert wave.templates == ("golden", "app") and not wave.done


def test_the_matrix_marks_failed_and_stale_cells() -> None:
    child = summary("app", {WEU: 2, NEU: None}, child=True)
    cells = {c.region: c for c in child.cells}  # type: ignore[attr-defined]
    assert cells[NEU].failed and cells[NEU].stale and cells[NEU].image_version == ""
    assert not cells[WEU].failed and not cells[WEU].stale
    assert cells[WEU].root_version == NEW and cells[WEU].root is not None and not cells[WEU].root.open


def test_a_region_still_holding_an_older_build_shows_that_builds_root() -> None:
    old_child = build(
        "app",
        key="old",
        template_id=template_id("app"),
        version="1.0.1",
        lineage=Lineage("p", "golden", OLD, UBUNTU),
    )
    state = TemplateState(
        old_child.template_id,
        "app",
        WEU,
        T0,
        regions=(RegionStanding(WEU, old_child.id, "1.0.1", "/g/images/i/versions/1.0.1", "Completed", T0),),
    )
    [cell] = summarise(state, [], [], [], SEEN, SEEN, UBUNTU, now=T0, older=[old_child]).cells
    assert (cell.source_version, cell.root_version, cell.newer) == ("1.0.1", OLD, NEW)  # stale: NEW is out
