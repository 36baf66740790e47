"""The Ledger contract, continued: what the HTTP API and the security report read — provenance with the
caller's identity and words, a child's lineage, claims looked up without claiming, history read from a
point in time, and a template's own append-only audit trail. In memory and on Azurite alike."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from rebuilder.domain.builds import BuildState, Lineage, Provenance
from rebuilder.domain.errors import PermanentError, StaleWrite
from rebuilder.domain.model import SourceKind, SourceRef
from rebuilder.domain.ports import Join, Ledger
from rebuilder.domain.regions import Region
from rebuilder.domain.standing import TemplateAction, TemplateState
from rebuilder.services.history import every
from tests.records import T0, UBUNTU, build, template_id

GALLERY_IMAGE = SourceRef(
    SourceKind.SHARED_IMAGE_VERSION,
    gallery_image_id="/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/galleries/g/images/u",
)


def test_provenance_and_lineage_round_trip(ledger: Ledger) -> None:
    child = build(
        "app",
        provenance=Provenance(
            "http",
            "Ana Ops",
            "corr-9",
            "request:k1",
            "0000-oid",
            "CVE-2026-1234 <b>urgent</b>",
            "window Sat,Sun 01:00-05:00 (closed; opens 2026-11-14 01:00 UTC)",
        ),
        lineage=Lineage(
            "20261110T060000Z-0123456789abcdef-0123456789", "ubuntu", "22.04.2", UBUNTU, "22.04.1"
        ),
    )
    ledger.claim_build(child, why="asked", by="http")
    stored = ledger.get_build(child.id).record
    assert stored == child
    assert stored.root_version == "22.04.2"
    assert build().root_version == build().source.resolved_version  # a baseline is its own root


def test_a_claim_is_found_by_its_key_without_claiming_anything(ledger: Ledger) -> None:
    made = build(key="request:k1")
    assert ledger.find_claim(made.template_id, "request:k1") is None
    ledger.claim_build(made, why="", by="")
    found = ledger.find_claim(made.template_id.upper(), "request:k1")  # type: ignore[arg-type]
    assert found is not None and found.build.record.id == made.id and not found.joined
    assert found.claimed_at == made.created_at
    assert ledger.find_claim(made.template_id, "request:k2") is None
    assert ledger.find_claim(template_id("other"), "request:k1") is None


def test_a_superseded_build_names_the_build_it_joined(ledger: Ledger) -> None:
    made = build(key="k")
    claim = ledger.claim_build(made, why="", by="")
    after = dataclasses.replace(made, state=BuildState.SUPERSEDED, superseded_by="other-build")
    transition = made.becomes(after, why="joined", by="http")
    ledger.save_build(after, etag=claim.build.etag, transition=transition)
    assert ledger.get_build(made.id).record.superseded_by == "other-build"


def test_history_is_read_from_a_point_in_time(ledger: Ledger) -> None:
    made = [
        ledger.claim_build(build(key=f"k{i}", at=T0 + timedelta(hours=i)), why="", by="").build.record
        for i in range(6)
    ]
    until = T0 + timedelta(hours=3, minutes=30)
    page = ledger.list_builds(made[0].template_id, limit=2, until=until)
    rest = list(
        every(lambda token: ledger.list_builds(made[0].template_id, limit=2, continuation=token, until=until))
    )
    assert [b.id for b in page.items] == [made[3].id, made[2].id]
    assert [b.id for b in rest] == [b.id for b in reversed(made[:4])]
    exact = ledger.list_builds(made[0].template_id, until=made[4].created_at).items
    assert exact[0].id == made[4].id  # inclusive, to the second


def test_the_template_audit_trail_is_append_only_and_newest_first(ledger: Ledger) -> None:
    tid = template_id("ubuntu2204")
    first = TemplateAction(tid, T0, "enabled", "Ana Ops", "oid-1", "fixed the customizer", "corr-1")
    second = dataclasses.replace(first, at=T0 + timedelta(hours=1), why="again", correlation_id="corr-2")
    assert ledger.record_action(first) == first
    ledger.record_action(second)
    assert ledger.record_action(dataclasses.replace(first, why="rewritten?")) == first  # same fact
    trail = ledger.list_actions(tid).items
    assert trail == [second, first]
    assert ledger.list_actions(template_id("other")).items == []
    paged = ledger.list_actions(tid, limit=1)
    assert paged.items == [second] and paged.continuation is not None


def test_a_template_row_keeps_its_source(ledger: Ledger) -> None:
    for source in (UBUNTU, GALLERY_IMAGE, None):
        tid = template_id(f"t-{source.kind if source else 'none'}")
        state = TemplateState(tid, "t", Region("westeurope"), T0, source=source)
        ledger.save_template_state(state, etag=None)
        stored = ledger.get_template_state(tid)
        assert stored is not None and stored.record == state


def test_the_history_index_lists_every_build_across_templates_newest_first(ledger: Ledger) -> None:
    made = [
        ledger.claim_build(
            build(name, key=f"k{i}", at=T0 + timedelta(hours=i), template_id=template_id(name)), why="", by=""
        ).build.record
        for i, name in enumerate(["a", "b", "c", "a", "b", "c", "a"])
    ]
    lost = ledger.claim_build(
        build("a", key="k0", at=T0 + timedelta(days=3), template_id=template_id("a")), why="", by=""
    )
    assert not lost.created  # the key was claimed: this build never came to be
    listed = list(every(lambda token: ledger.list_build_index(limit=3, continuation=token)))
    assert [e.build_id for e in listed] == [b.id for b in reversed(made)]
    assert {e.template_id for e in listed} == {template_id(n) for n in "abc"}
    assert listed[0].created_at == made[-1].created_at and listed[0].reason is made[-1].reason
    until = T0 + timedelta(hours=4, minutes=30)
    bounded = ledger.list_build_index(until=until, after=made[3].id).items
    assert [e.build_id for e in bounded] == [b.id for b in reversed(made[:3])]
    assert ledger.list_build_index(until=made[2].created_at).items[0].build_id == made[2].id  # inclusive


def test_a_repeated_claim_of_the_same_build_keeps_its_index_entry(ledger: Ledger) -> None:
    made = build(key="k")
    ledger.claim_build(made, why="", by="")
    again = ledger.claim_build(made, why="redelivered", by="eventgrid")
    assert not again.created
    assert [e.build_id for e in ledger.list_build_index().items] == [made.id]


def test_a_request_key_names_its_caller_and_request(ledger: Ledger) -> None:
    """Issue 22 (API 2): a key is bound to who sent it and to a digest of what it asked."""
    asked = Provenance("http", "Ana Ops", "corr-1", "request:k1", "oid-ana", "why", request_digest="d1")
    made = build(key="request:k1", provenance=asked)
    ledger.claim_build(made, why="", by="")
    found = ledger.find_claim(made.template_id, "request:k1")
    assert found is not None and (found.caller_id, found.digest) == ("oid-ana", "d1")
    assert ledger.get_build(made.id).record.provenance.request_digest == "d1"


def test_a_join_is_a_claim_on_the_open_build_with_its_audit_row(ledger: Ledger) -> None:
    """Issue 22 (API 9): a request joining an open build leaves no build row of its own."""
    made = build()
    ledger.claim_build(made, why="", by="")
    later = T0 + timedelta(minutes=5)
    audit = TemplateAction(made.template_id, later, "rebuild-joined", "Bo", "oid-bo", "asked", "corr-2")
    join = Join(made.template_id, "request:late", made.id, later, "oid-bo", "d2")
    claimed = ledger.join_build(join, action=audit)
    assert claimed.build.record.id == made.id and claimed.joined
    assert (claimed.caller_id, claimed.digest, claimed.claimed_at) == ("oid-bo", "d2", later)
    again = ledger.join_build(dataclasses.replace(join, caller_id="oid-eve"), action=audit)
    assert again.caller_id == "oid-bo"  # the first claim of a key stands
    assert [b.id for b in ledger.list_builds(made.template_id).items] == [made.id]
    assert ledger.list_actions(made.template_id).items == [audit]


def test_an_audit_row_is_written_with_the_change_or_not_at_all(ledger: Ledger) -> None:
    """Issue 22 (API 5): the row of who changed a build goes in the build's own transaction."""
    made = build(key="request:k1")
    asked = TemplateAction(made.template_id, T0, "rebuild-requested", "Ana", "oid-ana", "x", "corr-1")
    claim = ledger.claim_build(made, why="", by="", action=asked)
    after = dataclasses.replace(made, message="approved", approved_by="Ana", approved_by_id="oid-ana")
    approved = dataclasses.replace(asked, at=T0 + timedelta(seconds=1), action="promotion-approved")
    ledger.save_build(after, etag=claim.build.etag, action=approved)
    assert ledger.get_build(made.id).record.approved_by_id == "oid-ana"
    refused = dataclasses.replace(asked, at=T0 + timedelta(seconds=2), action="lost-race")
    with pytest.raises(StaleWrite):
        ledger.save_build(after, etag=claim.build.etag, action=refused)  # a stale etag: neither is written
    assert sorted(a.action for a in ledger.list_actions(made.template_id).items) == [
        "promotion-approved",
        "rebuild-requested",
    ]
    elsewhere = dataclasses.replace(asked, template_id=template_id("other"), action="misplaced")
    with pytest.raises(PermanentError):
        ledger.save_build(after, etag=ledger.get_build(made.id).etag, action=elsewhere)
