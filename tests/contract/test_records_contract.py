"""Claiming builds for a template (services/records.py) on both ledgers: a request that an open build
covers joins it; the same request twice is one build; runs started elsewhere are never joined."""

from __future__ import annotations

from datetime import timedelta

from rebuilder.domain.builds import BuildReason, BuildState
from rebuilder.domain.ports import Ledger
from rebuilder.services.records import open_build
from tests.records import T0, build


def test_requests_join_the_open_build_that_covers_them(ledger: Ledger) -> None:
    first = open_build(
        ledger, build(key="source-update:22.04.3", version="22.04.3"), why="new", by="timer", now=T0
    )
    assert (first.created, first.joined) == (True, False)
    again = open_build(
        ledger, build(key="source-update:22.04.3", version="22.04.3"), why="new", by="timer", now=T0
    )
    assert (again.build.id, again.created, again.joined) == (first.build.id, False, False)

    later = T0 + timedelta(minutes=1)
    older = build(key="on-demand:req-1", version="22.04.2", at=later, reason=BuildReason.ON_DEMAND)
    joined = open_build(ledger, older, why="asked", by="http", now=later)
    assert (joined.build.id, joined.joined) == (first.build.id, True)
    assert ledger.get_build(older.id).record.state is BuildState.SUPERSEDED
    assert f"joined build {first.build.id}" in ledger.list_transitions(older.id)[-1].why
    repeat = open_build(ledger, older, why="asked", by="http", now=later)
    assert (repeat.build.id, repeat.joined, repeat.created) == (first.build.id, True, False)  # the replay
    assert ledger.get_build(older.id).record.superseded_by == first.build.id

    newer = build(key="source-update:22.04.4", version="22.04.4", at=later)
    opened = open_build(ledger, newer, why="newer", by="timer", now=later)
    assert (opened.build.id, opened.joined) == (newer.id, False)  # a newer version is its own build

    outside = build(key="external:2026-11-10T06:30:00+00:00", at=later, reason=BuildReason.EXTERNAL)
    recorded = open_build(ledger, outside, why="seen", by="reconciler", now=later)
    assert (recorded.build.id, recorded.joined) == (outside.id, False)
    stored = ledger.get_template_state(first.build.template_id)
    assert stored is not None
    assert stored.record.open_builds == (first.build.id, newer.id, outside.id)
