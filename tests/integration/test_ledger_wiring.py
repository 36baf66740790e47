"""The composition root builds the Table ledger from REBUILDER_LEDGER and REBUILDER_TABLE_PREFIX."""

from __future__ import annotations

from azure.data.tables import TableServiceClient

from devstack.azurite import Azurite
from rebuilder.bootstrap import Services
from rebuilder.domain.builds import template_key
from tests.records import build


def test_the_ledger_lives_in_tables_named_with_the_prefix(services: Services, azurite: Azurite) -> None:
    made = build()
    assert services.ledger.claim_build(made, why="wired", by="test").created
    prefix = services.settings.table_prefix

    with TableServiceClient.from_connection_string(azurite.connection_string) as account:
        ours = sorted(t.name for t in account.list_tables() if t.name.startswith(prefix))
        shard = f"{prefix}builds{template_key(made.template_id)[0]}"
        assert ours == sorted([shard, f"{prefix}history"])  # the other tables are created when first used
        rows = list(account.get_table_client(shard).list_entities())
        [entry] = account.get_table_client(f"{prefix}history").list_entities()
    assert sorted(r["Kind"] for r in rows) == ["build", "claim", "transition"]
    assert entry["BuildId"] == made.id
    assert services.ledger.get_build(made.id).record == made
