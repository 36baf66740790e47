"""The real azure-data-tables SDK against a real Azurite: the behaviour the ledger relies on. No mocks."""

import socket
import uuid
from collections.abc import Iterator

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from devstack.azurite import Azurite, running_azurite


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _unique_table_name() -> str:
    # Table names: letters and digits, starting with a letter. The Azurite is shared by the whole session.
    return f"t{uuid.uuid4().hex}"


@pytest.fixture
def table(azurite: Azurite) -> Iterator[TableClient]:
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        client = service.create_table(_unique_table_name())
        with client:
            yield client
        service.delete_table(client.table_name)


def test_connection_string_points_at_the_running_instance(azurite: Azurite) -> None:
    assert azurite.host == "127.0.0.1"
    assert azurite.table_endpoint == f"http://127.0.0.1:{azurite.port}/devstoreaccount1"
    assert f"TableEndpoint={azurite.table_endpoint};" in azurite.connection_string
    assert _accepts(azurite.port)


def test_create_and_list_tables(azurite: Azurite) -> None:
    name = _unique_table_name()
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_table(name)
        assert name in {t.name for t in service.list_tables()}
        service.delete_table(name)
        assert name not in {t.name for t in service.list_tables()}


def test_entities_round_trip(table: TableClient) -> None:
    table.create_entity({"PartitionKey": "image-a", "RowKey": "0001", "State": "Queued", "Attempt": 1})
    table.upsert_entity({"PartitionKey": "image-a", "RowKey": "0002", "State": "Running", "Attempt": 2})
    table.upsert_entity({"PartitionKey": "image-a", "RowKey": "0001", "State": "Done"}, mode=UpdateMode.MERGE)

    first = table.get_entity(partition_key="image-a", row_key="0001")
    assert first["State"] == "Done"
    assert first["Attempt"] == 1  # MERGE kept the property it was not given
    assert first.metadata["etag"]

    table.upsert_entity(
        {"PartitionKey": "image-a", "RowKey": "0001", "State": "Replaced"}, mode=UpdateMode.REPLACE
    )
    replaced = table.get_entity(partition_key="image-a", row_key="0001")
    assert replaced["State"] == "Replaced"
    assert "Attempt" not in replaced
    assert [e["RowKey"] for e in table.list_entities()] == ["0001", "0002"]


def test_parameterised_query(table: TableClient) -> None:
    for pk in ("image-a", "image-b"):
        for rk in ("0001", "0002", "0003"):
            table.create_entity({"PartitionKey": pk, "RowKey": rk, "Value": f"{pk}/{rk}"})

    found = table.query_entities(
        "PartitionKey eq @pk and RowKey ge @rk", parameters={"pk": "image-b", "rk": "0002"}
    )
    assert sorted(e["Value"] for e in found) == ["image-b/0002", "image-b/0003"]

    # Quotes in a parameter value are escaped by the SDK, not interpreted as OData.
    tricky = table.query_entities("PartitionKey eq @pk", parameters={"pk": "x' or PartitionKey ne 'x"})
    assert list(tricky) == []


def test_create_entity_of_an_existing_key_raises(table: TableClient) -> None:
    table.create_entity({"PartitionKey": "p", "RowKey": "r", "Value": 1})
    with pytest.raises(ResourceExistsError):
        table.create_entity({"PartitionKey": "p", "RowKey": "r", "Value": 2})
    assert table.get_entity(partition_key="p", row_key="r")["Value"] == 1


def test_update_with_a_stale_etag_raises(table: TableClient) -> None:
    table.create_entity({"PartitionKey": "p", "RowKey": "r", "State": "Queued"})
    stale = table.get_entity(partition_key="p", row_key="r")
    stale_etag = stale.metadata["etag"]

    table.update_entity(
        {"PartitionKey": "p", "RowKey": "r", "State": "Running"},
        etag=stale_etag,
        match_condition=MatchConditions.IfNotModified,
    )
    with pytest.raises(ResourceModifiedError):
        table.update_entity(
            {"PartitionKey": "p", "RowKey": "r", "State": "Failed"},
            etag=stale_etag,
            match_condition=MatchConditions.IfNotModified,
        )
    assert table.get_entity(partition_key="p", row_key="r")["State"] == "Running"


def test_port_is_closed_after_the_context_exits() -> None:
    with running_azurite() as azurite:
        port = azurite.port
        assert _accepts(port)
    assert not _accepts(port)


def test_port_is_closed_even_when_the_body_raises() -> None:
    ports: list[int] = []

    def use_and_fail() -> None:
        with running_azurite() as azurite:
            ports.append(azurite.port)
            raise RuntimeError("the body failed")

    with pytest.raises(RuntimeError, match="the body failed"):
        use_and_fail()
    assert not _accepts(ports[0])


def test_two_concurrent_instances_get_different_ports_and_both_work() -> None:
    with running_azurite() as first, running_azurite() as second:
        assert first.port != second.port
        names = {}
        for instance in (first, second):
            with TableServiceClient.from_connection_string(instance.connection_string) as service:
                names[instance.port] = _unique_table_name()
                with service.create_table(names[instance.port]) as client:
                    client.create_entity({"PartitionKey": "p", "RowKey": "r", "Port": instance.port})
                    assert client.get_entity(partition_key="p", row_key="r")["Port"] == instance.port
        # Separate processes, separate (in-memory) data.
        for instance, other in ((first, second), (second, first)):
            with TableServiceClient.from_connection_string(instance.connection_string) as service:
                tables = {t.name for t in service.list_tables()}
                assert names[instance.port] in tables
                assert names[other.port] not in tables
