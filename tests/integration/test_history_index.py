"""The history index on Azurite: written just before a claim, so a process that dies in between
leaves an entry without a build. The history across templates skips it; the next page goes on."""

from __future__ import annotations

import uuid
from datetime import timedelta

from azure.data.tables import TableServiceClient

from devstack.azurite import Azurite
from rebuilder.adapters import ledger_entities as entities
from rebuilder.adapters.ledger_tables import TableLedger
from rebuilder.services.build_history import HistoryQuery, list_history
from tests.records import T0, build, template_id


def test_an_entry_whose_claim_never_happened_is_skipped(azurite: Azurite) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    ledger = TableLedger.from_connection(prefix=prefix, connection_string=azurite.connection_string)
    made = [
        ledger.claim_build(
            build(n, key=f"k{i}", at=T0 + timedelta(hours=i), template_id=template_id(n)), why="", by=""
        ).build.record
        for i, n in enumerate(["a", "b", "a", "b"])
    ]
    ghost = build("c", key="crashed", at=T0 + timedelta(hours=2, minutes=30), template_id=template_id("c"))
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        service.get_table_client(f"{prefix}history").create_entity(
            entities.index_to_entity(ghost)
        )  # then died
    first = list_history(ledger, HistoryQuery(), limit=2)
    assert [b.id for b in first.builds] == [made[3].id, made[2].id]
    assert first.scanned == 3  # the ghost between them was read past, not answered
    rest = list_history(ledger, HistoryQuery(), after=first.next, limit=2)
    assert [b.id for b in rest.builds] == [made[1].id, made[0].id] and rest.next is None
    assert [e.build_id for e in ledger.list_build_index().items][1] == ghost.id
    ledger.close()
