"""The Ledger contract: the in-memory ledger and the Table ledger on Azurite behave the same."""

from __future__ import annotations

import base64
import dataclasses
from datetime import timedelta

import pytest

from rebuilder.domain.builds import (
    BuildState,
    IllegalTransition,
    InvalidBuildId,
    RegionStatus,
    Transition,
)
from rebuilder.domain.errors import InvalidContinuation, InvalidRecord, NotFound, PermanentError, StaleWrite
from rebuilder.domain.model import ImageState, RunSubState, SourceKind, SourceRef
from rebuilder.domain.ports import Ledger
from rebuilder.domain.regions import Region
from rebuilder.domain.standing import (
    LatestDrift,
    RegionStanding,
    RollbackIntent,
    SeenVersion,
    TemplateState,
)
from rebuilder.services.history import template_history
from tests.records import T0, UBUNTU, build, template_id

LATER = T0 + timedelta(minutes=5)


def test_a_claim_records_the_build_and_its_first_transition(ledger: Ledger) -> None:
    new = build()
    claim = ledger.claim_build(new, why="22.04.202501150 available in westeurope", by="watch_sources")

    assert claim.created
    assert claim.build.record == new
    assert ledger.get_build(new.id).record == new
    [first] = ledger.list_transitions(new.id)
    assert (first.from_state, first.to_state, first.at) == (None, BuildState.QUEUED, T0)
    assert (first.why, first.by) == ("22.04.202501150 available in westeurope", "watch_sources")


def test_a_repeated_claim_returns_the_build_that_claimed_the_key(ledger: Ledger) -> None:
    original = ledger.claim_build(build(at=T0), why="first", by="timer").build.record
    again = ledger.claim_build(build(at=LATER), why="redelivered", by="eventgrid")

    assert not again.created
    assert again.build.record == original
    assert [b.id for b in ledger.list_builds(original.template_id).items] == [original.id]
    assert len(ledger.list_transitions(original.id)) == 1


def test_claims_are_scoped_to_the_template(ledger: Ledger) -> None:
    a = ledger.claim_build(build("a", key="k"), why="", by="")
    b = ledger.claim_build(build("b", key="k"), why="", by="")
    assert a.created and b.created
    assert a.build.record.id != b.build.record.id


def test_template_ids_are_compared_case_insensitively(ledger: Ledger) -> None:
    made = ledger.claim_build(build(), why="", by="").build.record
    shouted = template_id("ubuntu2204").upper()
    assert [b.id for b in ledger.list_builds(shouted).items] == [made.id]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build_id", "error"),
    [
        ("20261110T060000Z-0123456789abcdef-0123456789", NotFound),
        ("not-a-build", InvalidBuildId),
        ("20261110T060000Z-0123456789abcdef-0123456789' or RowKey ne '", InvalidBuildId),
        ("", InvalidBuildId),
    ],
)
def test_reading_a_missing_or_malformed_build(ledger: Ledger, build_id: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        ledger.get_build(build_id)


def test_a_move_appends_a_transition_and_returns_a_new_version(ledger: Ledger) -> None:
    claimed = ledger.claim_build(build(), why="", by="timer").build
    running = dataclasses.replace(
        claimed.record, state=BuildState.RUNNING, sub_state=RunSubState.QUEUED, updated_at=LATER
    )
    transition = claimed.record.becomes(running, why="run accepted", by="reconcile_builds")
    version = ledger.save_build(running, etag=claimed.etag, transition=transition)

    stored = ledger.get_build(running.id)
    assert stored.record == running
    assert stored.etag == version != claimed.etag
    assert [(t.from_state, t.to_state, t.to_sub_state) for t in ledger.list_transitions(running.id)] == [
        (None, BuildState.QUEUED, None),
        (BuildState.QUEUED, BuildState.RUNNING, RunSubState.QUEUED),
    ]


def test_a_write_with_a_stale_version_is_refused_and_changes_nothing(ledger: Ledger) -> None:
    claimed = ledger.claim_build(build(), why="", by="").build
    first, t1 = claimed.record.moved(BuildState.RUNNING, at=LATER, why="mine", by="a")
    ledger.save_build(first, etag=claimed.etag, transition=t1)

    late, t2 = claimed.record.moved(BuildState.CANCELED, at=LATER, why="theirs", by="b")
    with pytest.raises(StaleWrite):
        ledger.save_build(late, etag=claimed.etag, transition=t2)
    assert ledger.get_build(first.id).record.state is BuildState.RUNNING
    assert [t.why for t in ledger.list_transitions(first.id)] == ["", "mine"]


def test_the_state_machine_refuses_illegal_moves(ledger: Ledger) -> None:
    claimed = ledger.claim_build(build(), why="", by="").build
    published, t1 = claimed.record.moved(BuildState.RUNNING, at=LATER, why="", by="")
    version = ledger.save_build(published, etag=claimed.etag, transition=t1)
    done, t2 = published.moved(BuildState.PUBLISHED, at=LATER, why="every region completed", by="")
    version = ledger.save_build(done, etag=version, transition=t2)

    with pytest.raises(IllegalTransition, match=r"Published → Running is not a legal transition"):
        done.moved(BuildState.RUNNING, at=LATER, why="", by="")
    # A forged record that skips Build.moved is refused by the ledger too, and nothing is written.
    forged = dataclasses.replace(done, state=BuildState.RUNNING)
    forged_move = Transition(done.id, LATER, BuildState.PUBLISHED, None, BuildState.RUNNING, None, "", "")
    with pytest.raises(IllegalTransition):
        ledger.save_build(forged, etag=version, transition=forged_move)
    with pytest.raises(IllegalTransition):  # a finished build is history: not even a quiet change
        ledger.save_build(dataclasses.replace(done, updated_at=LATER, message="rewritten"), etag=version)
    assert ledger.get_build(done.id).record == done
    assert len(ledger.list_transitions(done.id)) == 3


def test_a_change_of_state_without_a_transition_is_refused(ledger: Ledger) -> None:
    claimed = ledger.claim_build(build(), why="", by="").build
    sneaky = dataclasses.replace(claimed.record, state=BuildState.RUNNING)
    with pytest.raises(IllegalTransition):
        ledger.save_build(sneaky, etag=claimed.etag)
    assert ledger.get_build(sneaky.id).record.state is BuildState.QUEUED


def test_regions_are_written_with_their_build(ledger: Ledger) -> None:
    claimed = ledger.claim_build(build(), why="", by="").build
    running, t1 = claimed.record.moved(BuildState.RUNNING, at=LATER, why="", by="")
    rows = [
        RegionStatus(running.id, Region("westeurope"), True, "Completed", 100, completed_at=LATER),
        RegionStatus(running.id, Region("eastus"), True, "Replicating", 40, first_seen_replicating_at=LATER),
    ]
    version = ledger.save_build(running, etag=claimed.etag, transition=t1, regions=rows)
    assert ledger.list_regions(running.id) == sorted(rows, key=lambda r: r.region)

    done = dataclasses.replace(rows[1], state="Completed", progress=100, completed_at=LATER)
    ledger.save_build(dataclasses.replace(running, updated_at=LATER), etag=version, regions=[done])
    assert ledger.list_regions(running.id) == sorted([rows[0], done], key=lambda r: r.region)

    with pytest.raises(StaleWrite):  # a stale write carries no region rows through either
        ledger.save_build(
            dataclasses.replace(running, updated_at=LATER),
            etag=version,
            regions=[dataclasses.replace(done, progress=1)],
        )
    assert {r.progress for r in ledger.list_regions(running.id)} == {100}


def test_history_is_newest_first_a_page_at_a_time(ledger: Ledger) -> None:
    made = [
        ledger.claim_build(build(key=f"k{i}", at=T0 + timedelta(days=i)), why="", by="").build.record
        for i in range(5)
    ]
    ledger.claim_build(build("other", key="k0"), why="", by="")

    seen, token, pages = [], None, 0
    while True:
        page = ledger.list_builds(made[0].template_id, limit=2, continuation=token)
        seen += page.items
        pages += 1
        token = page.continuation
        if token is None:
            break
    assert [b.id for b in seen] == [b.id for b in reversed(made)]
    assert pages == 3


@pytest.mark.parametrize(
    "token",
    [
        "garbage!!",
        "%%%",
        base64.urlsafe_b64encode(b'{"x": 1}').decode(),
        base64.urlsafe_b64encode(b"[]").decode(),
        base64.urlsafe_b64encode(b"offset:-5").decode(),
    ],
)
def test_a_forged_continuation_token_is_refused(ledger: Ledger, token: str) -> None:
    ledger.claim_build(build(), why="", by="")
    with pytest.raises(InvalidContinuation):
        ledger.list_template_states(continuation=token)
    with pytest.raises(InvalidContinuation):
        ledger.list_builds(template_id("ubuntu2204"), continuation=token)


def test_a_page_size_out_of_range_is_refused(ledger: Ledger) -> None:
    for limit in (0, 1001):
        with pytest.raises(PermanentError, match="a page holds 1 to 1000"):
            ledger.list_builds(template_id("x"), limit=limit)


def test_naive_timestamps_are_refused(ledger: Ledger) -> None:
    with pytest.raises(InvalidRecord, match="naive"):
        ledger.claim_build(build(at=T0.replace(tzinfo=None)), why="", by="")


def test_template_state_is_created_once_then_updated_conditionally(ledger: Ledger) -> None:
    tid = template_id("ubuntu2204")
    assert ledger.get_template_state(tid) is None
    state = TemplateState(tid, "ubuntu2204", Region("westeurope"), T0, baseline_version="22.04.202411190")
    version = ledger.save_template_state(state, etag=None)
    with pytest.raises(StaleWrite):
        ledger.save_template_state(state, etag=None)

    standing = RegionStanding(
        Region("eastus"), build().id, "22.04.202501150", "/x/versions/1.0.1", "Completed", LATER
    )
    newer = dataclasses.replace(
        state.with_region(standing, at=LATER).with_open(build().id, at=LATER),
        known_run_started_at=T0,
        distributes_to=(
            "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/galleries/g/images/i",
        ),
        follow_after=LATER,
        follow_errors=2,
        consecutive_failures=1,
        baseline_at=T0,
        baseline_parent_build="20261110T060000Z-0123456789abcdef-0123456789",
        revoked=(("20261101T060000Z-0123456789abcdef-9876543210", "1.0.4"),),
        candidate_build=str(build().id),
        candidate_version="1.0.2",
        policy_tags=(("rebuild-patch-day", "+2"), ("rebuild-window", "Sat,Sun 01:00-05:00")),
        rollback=RollbackIntent(str(build().id), LATER, "ana@contoso.com", "0000-ana", "boot loop: é", "c-1"),
        latest_drift=(
            LatestDrift(Region("eastus"), "1.0.1", True),
            LatestDrift(Region("westus2"), "1.0.4", False),
        ),
    )
    second = ledger.save_template_state(newer, etag=version)
    with pytest.raises(StaleWrite):
        ledger.save_template_state(state, etag=version)
    stored = ledger.get_template_state(tid)
    assert stored is not None
    assert (stored.record, stored.etag) == (newer, second)
    finished = dataclasses.replace(newer, rollback=None, latest_drift=())  # replaced whole: both gone
    ledger.save_template_state(finished, etag=second)
    again = ledger.get_template_state(tid)
    assert again is not None and again.record == finished


def test_every_template_state_is_listed_a_page_at_a_time(ledger: Ledger) -> None:
    for i in range(7):
        ledger.save_template_state(
            TemplateState(template_id(f"t{i}"), f"t{i}", Region("eastus"), T0), etag=None
        )
    names, token = [], None
    while True:
        page = ledger.list_template_states(limit=3, continuation=token)
        names += [s.name for s in page.items]
        token = page.continuation
        if token is None:
            break
    assert sorted(names) == [f"t{i}" for i in range(7)]


def test_first_sightings_are_never_rewritten(ledger: Ledger) -> None:
    first = ledger.record_version(SeenVersion(UBUNTU, "22.04.202501150", T0))
    again = ledger.record_version(SeenVersion(UBUNTU, "22.04.202501150", LATER))
    assert again == first

    flagged = ledger.record_version(
        SeenVersion(UBUNTU, "22.04.202501150", LATER, ImageState.SCHEDULED_FOR_DEPRECATION)
    )
    assert flagged.first_seen_at == T0
    assert (flagged.deprecation, flagged.deprecation_changed_at) == (
        ImageState.SCHEDULED_FOR_DEPRECATION,
        LATER,
    )


def test_versions_are_listed_per_source_in_numeric_order(ledger: Ledger) -> None:
    windows = SourceRef(
        SourceKind.PLATFORM_IMAGE,
        "westeurope",
        "MicrosoftWindowsServer",
        "WindowsServer",
        "2022-datacenter-g2",
    )
    elsewhere = dataclasses.replace(windows, location="eastus")
    for version in ("20348.2849.241106", "20348.587.220303", "20348.2966.241205", "20348.10.1"):
        ledger.record_version(SeenVersion(windows, version, T0))
    ledger.record_version(SeenVersion(elsewhere, "20348.9999.1", T0))

    listed = [s.version for s in ledger.list_versions(windows).items]
    assert listed == ["20348.10.1", "20348.587.220303", "20348.2849.241106", "20348.2966.241205"]
    assert [s.version for s in ledger.list_versions(elsewhere).items] == ["20348.9999.1"]
    shouted = dataclasses.replace(windows, publisher="MICROSOFTWINDOWSSERVER", location="WestEurope")
    assert len(ledger.list_versions(shouted).items) == 4  # Azure compares these case-insensitively


def test_a_long_message_is_bounded_and_says_so(ledger: Ledger) -> None:
    made = build(message="x" * 50_000)
    ledger.claim_build(made, why="", by="")
    stored = ledger.get_build(made.id).record.message
    assert len(stored) <= 8_000
    assert stored.startswith("xxx")
    assert stored.endswith("characters]")


def test_history_and_exposure_windows_are_read_back_from_the_rows(ledger: Ledger) -> None:
    ledger.record_version(SeenVersion(UBUNTU, "22.04.202411190", T0 - timedelta(days=60)))
    ledger.record_version(SeenVersion(UBUNTU, "22.04.202501150", T0 - timedelta(hours=2)))
    claimed = ledger.claim_build(build(), why="", by="").build
    running, move = claimed.record.moved(BuildState.RUNNING, at=T0, why="", by="")
    rows = [
        RegionStatus(
            running.id, Region("westeurope"), True, "Completed", 100, completed_at=T0 + timedelta(hours=3)
        ),
        RegionStatus(running.id, Region("eastus"), True, "Replicating", 50),
    ]
    ledger.save_build(running, etag=claimed.etag, transition=move, regions=rows)
    ledger.save_template_state(
        TemplateState(running.template_id, "ubuntu2204", Region("westeurope"), T0), etag=None
    )

    history = template_history(ledger, running.template_id)

    assert history.state is not None
    assert [(b.id, [r.region for r in regions]) for b, regions in history.builds] == [
        (running.id, ["eastus", "westeurope"])
    ]
    assert {(w.region, w.version, w.duration(T0 + timedelta(hours=10))) for w in history.windows} == {
        ("westeurope", "22.04.202501150", timedelta(hours=5)),
        ("eastus", "22.04.202501150", timedelta(hours=12)),  # still open at T0 + 10 h
    }
