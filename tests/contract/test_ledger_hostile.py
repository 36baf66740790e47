"""Hostile values: each round-trips or is refused with a clear error, and none changes what a query
returns (keys are hashed or escaped; filters are parameterised)."""

from __future__ import annotations

import dataclasses

import pytest

from rebuilder.domain.builds import BuildState, RegionStatus
from rebuilder.domain.errors import InvalidRecord
from rebuilder.domain.ports import Ledger
from rebuilder.domain.regions import Region
from rebuilder.domain.standing import SeenVersion, TemplateState
from tests.records import T0, UBUNTU, build, template_id

HOSTILE = [
    "it's",
    'say "cheese"',
    "x eq x",
    "' or PartitionKey ne '",
    "a or b",
    "100%",
    "%27",
    "a/b",
    "a#b",
    "a?b=c",
    "a\\b",
    "~0041",
    "Zürich-東京-🚀",
    "n" * 1_000,
]


def test_hostile_names_and_keys_round_trip_and_stay_apart(ledger: Ledger) -> None:
    made = {}
    for i, name in enumerate(HOSTILE):
        tid = template_id(name)
        new = build(name, template_id=tid, key=name, message=name, at=T0)
        made[name] = ledger.claim_build(new, why=name, by=name).build.record
        ledger.save_template_state(
            TemplateState(tid, name, Region("westeurope"), T0, baseline_version=str(i)), etag=None
        )

    for name, stored in made.items():
        assert ledger.get_build(stored.id).record == stored
        assert [b.id for b in ledger.list_builds(stored.template_id).items] == [stored.id]
        [first] = ledger.list_transitions(stored.id)
        assert (first.why, first.by) == (name, name)
        again = ledger.claim_build(build(name, template_id=stored.template_id, key=name), why="", by="")
        assert not again.created
        assert again.build.record.id == stored.id
    states = ledger.list_template_states().items
    assert sorted(s.name for s in states) == sorted(HOSTILE)
    assert {s.name: s.baseline_version for s in states} == {n: str(i) for i, n in enumerate(HOSTILE)}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_region_names_round_trip(ledger: Ledger, name: str) -> None:
    claimed = ledger.claim_build(build(), why="", by="").build
    running, move = claimed.record.moved(BuildState.RUNNING, at=T0, why="", by="")
    rows = [RegionStatus(running.id, Region(name), True, "Replicating", details=name)]
    rows.append(RegionStatus(running.id, Region("eastus"), True, "Completed"))
    ledger.save_build(running, etag=claimed.etag, transition=move, regions=rows)
    assert sorted(ledger.list_regions(running.id), key=lambda r: r.region) == sorted(
        rows, key=lambda r: r.region
    )


@pytest.mark.parametrize(
    "version", ["1.0'or'1", "1.0 eq 1", "2.0/3", "4#5", "6?7", "8%9", "10.~11", "版本.1"]
)
def test_hostile_versions_round_trip_within_their_source(ledger: Ledger, version: str) -> None:
    other = dataclasses.replace(UBUNTU, sku=f"{UBUNTU.sku}' or '1")
    ledger.record_version(SeenVersion(UBUNTU, "1.0.0", T0))
    ledger.record_version(SeenVersion(UBUNTU, version, T0))
    ledger.record_version(SeenVersion(other, "9.9.9", T0))
    assert sorted(s.version for s in ledger.list_versions(UBUNTU).items) == sorted(["1.0.0", version])
    assert [s.version for s in ledger.list_versions(other).items] == ["9.9.9"]


@pytest.mark.parametrize("version", ["", "1.0\n", "1.0\x00", "1." + "9" * 200])
def test_versions_that_cannot_be_keys_are_refused_clearly(ledger: Ledger, version: str) -> None:
    with pytest.raises(InvalidRecord, match="source version"):
        ledger.record_version(SeenVersion(UBUNTU, version, T0))
    assert ledger.list_versions(UBUNTU).items == []


def test_a_name_too_long_to_store_is_refused_and_nothing_is_written(ledger: Ledger) -> None:
    huge = "n" * 50_000
    with pytest.raises(InvalidRecord, match=r"template_name is too long to record \(50000 characters\)"):
        ledger.claim_build(build(huge, template_id=template_id("short")), why="", by="")
    assert ledger.list_builds(template_id("short")).items == []
    with pytest.raises(InvalidRecord, match="idempotency key"):
        ledger.claim_build(build(key="k" * 1_001), why="", by="")
    with pytest.raises(InvalidRecord, match="name is too long"):
        ledger.save_template_state(TemplateState(template_id("short"), huge, Region("x"), T0), etag=None)
    assert ledger.get_template_state(template_id("short")) is None
