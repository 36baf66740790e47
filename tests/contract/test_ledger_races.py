"""Races on one ledger, as concurrent triggers produce them: one claim wins, no update is lost."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TypeVar

from rebuilder.domain.builds import BuildState
from rebuilder.domain.errors import StaleWrite
from rebuilder.domain.ports import Claim, Ledger
from tests.records import T0, build

THREADS = 16
_R = TypeVar("_R")


def _race(work: Callable[[int], _R]) -> list[_R]:
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(work, range(THREADS)))


def test_sixteen_claims_of_one_key_have_exactly_one_winner(ledger: Ledger) -> None:
    start = threading.Barrier(THREADS)

    def claim(i: int) -> Claim:
        start.wait()
        # Each trigger saw the same new version at a slightly different time: same key, other build ids.
        return ledger.claim_build(build(at=T0 + timedelta(seconds=i)), why=f"trigger {i}", by=f"t{i}")

    claims = _race(claim)

    assert sum(c.created for c in claims) == 1
    winner = next(c.build.record for c in claims if c.created)
    assert {c.build.record.id for c in claims} == {winner.id}
    assert [b.id for b in ledger.list_builds(winner.template_id).items] == [winner.id]
    assert len(ledger.list_transitions(winner.id)) == 1


def test_sixteen_racing_updates_with_stale_versions_lose_nothing(ledger: Ledger) -> None:
    claimed = ledger.claim_build(build(), why="", by="").build
    running, move = claimed.record.moved(BuildState.RUNNING, at=T0, why="run accepted", by="setup")
    ledger.save_build(running, etag=ledger.get_build(running.id).etag, transition=move)
    everyone_has_read = threading.Barrier(THREADS)
    stale = [0] * THREADS

    def record_attempt(i: int) -> None:
        first_read = True
        while True:
            current = ledger.get_build(running.id)
            if first_read:  # all sixteen hold the same version: fifteen of them must lose the first round
                everyone_has_read.wait()
                first_read = False
            after = dataclasses.replace(
                current.record, attempts=current.record.attempts + 1, updated_at=T0 + timedelta(minutes=i)
            )
            transition = current.record.becomes(after, why=f"attempt by worker {i}", by=f"worker-{i}")
            try:
                ledger.save_build(after, etag=current.etag, transition=transition)
                return
            except StaleWrite:
                stale[i] += 1

    _race(record_attempt)

    final = ledger.get_build(running.id).record
    assert final.attempts == THREADS  # the serialised result: every increment applied exactly once
    whys = [t.why for t in ledger.list_transitions(running.id)][2:]
    assert sorted(whys) == sorted(f"attempt by worker {i}" for i in range(THREADS))
    assert sum(stale) >= THREADS - 1
