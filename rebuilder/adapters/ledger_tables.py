"""The ledger on Azure Table storage (azure-data-tables): Azurite locally, an account endpoint with
managed identity in Azure. Keys and entities: see `ledger_entities`.

Every write is insert-only (`create`) or ETag-conditional, and everything about one build is written
in one entity-group transaction in the template's partition. Filters are parameterised, always.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rebuilder.domain.builds import (
    Build,
    BuildId,
    BuildState,
    RegionStatus,
    Transition,
    check_write,
    first_transition,
    template_key,
)
from rebuilder.domain.errors import (
    InvalidContinuation,
    InvalidRecord,
    NotFound,
    PermanentError,
    RebuilderError,
    StaleWrite,
)
from rebuilder.domain.limits import (
    MAX_TEXT,
    check_idempotency_key,
    check_page_size,
    check_storable,
    check_version,
)
from rebuilder.domain.model import SourceRef, TemplateId
from rebuilder.domain.ports import Claim, IndexedBuild, Join, KeyClaim, Page, Versioned
from rebuilder.domain.standing import SeenVersion, TemplateAction, TemplateState

from . import ledger_entities as entities
from .errors import translated

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient

_FILTER_RANGE = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"


class TableLedger:
    def __init__(self, service: TableServiceClient, *, prefix: str) -> None:
        self._service = service
        self._prefix = prefix
        self._names = {kind: f"{prefix}{kind}" for kind in ("templates", "sources", "history")}
        self._tables: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_connection(
        cls, *, prefix: str, connection_string: str | None = None, endpoint: str | None = None
    ) -> TableLedger:
        from azure.data.tables import TableServiceClient

        if connection_string:
            return cls(TableServiceClient.from_connection_string(connection_string), prefix=prefix)
        if not endpoint:
            raise PermanentError("REBUILDER_LEDGER: neither a connection string nor an endpoint")
        from azure.identity import DefaultAzureCredential

        return cls(TableServiceClient(endpoint, credential=DefaultAzureCredential()), prefix=prefix)

    def close(self) -> None:
        for table in self._tables.values():
            table.close()
        self._service.close()

    def list_tables(self) -> dict[str, bool]:
        """Every table the ledger uses and whether it exists: one empty query each, which a missing
        table answers TableNotFound (an entity read is what Storage Table Data Contributor allows);
        unlike `_table`, creates nothing."""
        from azure.core.exceptions import ResourceNotFoundError

        builds = [entities.builds_table(self._prefix, shard) for shard in entities.SHARDS]
        found: dict[str, bool] = {}
        for name in [*builds, *self._names.values()]:
            with translated(f"look for table {name}"), self._service.get_table_client(name) as table:
                try:
                    query = table.query_entities("PartitionKey eq @pk", parameters={"pk": "~"})
                    next(query.by_page(), None)
                    found[name] = True
                except ResourceNotFoundError:
                    found[name] = False
        return found

    def _table(self, kind: str) -> TableClient:
        """A table by kind ('templates', 'sources') or full name, created on first use (deployments
        create them; Azurite starts empty)."""
        name = self._names.get(kind, kind)
        with self._lock:
            if name not in self._tables:
                from azure.core.exceptions import ResourceExistsError

                with translated(f"create table {name}"), contextlib.suppress(ResourceExistsError):
                    self._service.create_table(name)
                self._tables[name] = self._service.get_table_client(name)
            return self._tables[name]

    def _builds(self, partition: str) -> str:
        return entities.builds_table(self._prefix, partition)

    # -- builds ----------------------------------------------------------------------------------------
    def claim_build(self, build: Build, *, why: str, by: str, action: TemplateAction | None = None) -> Claim:
        check_idempotency_key(build.provenance.idempotency_key)
        check_storable(build)
        if action is not None:
            check_storable(action)
        first = first_transition(build, why=why, by=by)
        index = _checked(entities.index_to_entity(build))
        self._index(index)  # before the claim: a claimed build is always in the index
        operations = [
            ("create", _checked(entities.claim_to_entity(build))),
            ("create", _checked(entities.build_to_entity(build, transitions=1))),
            ("create", _checked(entities.transition_to_entity(first, seq=1))),
        ]
        if action is not None:  # the builds and the audit trail share the template's partition
            operations.append(("create", _checked(_audit(action, build.template_id))))
        try:
            results = self._transact(f"claim build {build.id}", operations)
        except _AlreadyExists:
            claimed = self._claimed(build)
            if claimed.record.id != build.id:  # this build will never be: tidy its entry (readers skip it)
                self._unindex(index)
            return Claim(claimed, created=False)
        return Claim(Versioned(build, _version(1, build.state, results[1]["etag"])), created=True)

    def _claimed(self, build: Build) -> Versioned[Build]:
        partition, _ = entities.build_stem(build.id)
        row = entities.claim_row(build.provenance.idempotency_key)
        with translated(f"read the claim of {build.provenance.idempotency_key[:100]!r}"):
            claim = self._table(self._builds(partition)).get_entity(partition, row)
        return self.get_build(claim["BuildId"])

    def _index(self, entity: dict[str, Any]) -> None:
        from azure.data.tables import UpdateMode

        with translated(f"index build {entity['BuildId']}"):
            self._table("history").upsert_entity(entity, mode=UpdateMode.REPLACE)

    def _unindex(self, entity: dict[str, Any]) -> None:
        with contextlib.suppress(RebuilderError), translated(f"unindex build {entity['BuildId']}"):
            self._table("history").delete_entity(entity["PartitionKey"], entity["RowKey"])

    def list_build_index(
        self,
        *,
        until: datetime | None = None,
        after: BuildId | None = None,
        limit: int = 100,
        continuation: str | None = None,
    ) -> Page[IndexedBuild]:
        low = entities.inverted(until) if until is not None else ""
        if after is not None:
            # Keys share one length and alphabet: every key after K sorts at or after K + "0".
            low = max(low, entities.index_row(after) + "0")
        found, token = self._query_page(
            "history",
            "PartitionKey eq @pk and RowKey ge @low",
            {"pk": entities.HISTORY_PARTITION, "low": low},
            limit=limit,
            continuation=continuation,
        )
        return Page([entities.index_from_entity(e) for e in found], token)

    def find_claim(self, template_id: TemplateId, idempotency_key: str) -> KeyClaim | None:
        check_idempotency_key(idempotency_key)
        partition = template_key(template_id)
        try:
            claim = self._get(
                self._builds(partition),
                partition,
                entities.claim_row(idempotency_key),
                what=f"the claim of {idempotency_key[:100]!r}",
            )
        except NotFound:
            return None
        return entities.key_claim(claim, self.get_build(claim["BuildId"]))

    def join_build(self, join: Join, *, action: TemplateAction) -> KeyClaim:
        check_idempotency_key(join.key)
        check_storable(action)
        partition = template_key(join.template_id)
        claim = _checked(entities.join_to_entity(join))
        operations = [("create", claim), ("create", _checked(_audit(action, join.template_id)))]
        # Claimed before (or this very join, retried): the claim that stands answers.
        with contextlib.suppress(_AlreadyExists):
            self._transact(f"join build {join.build_id}", operations)
        found = self.find_claim(join.template_id, join.key)
        if found is None:
            raise NotFound(f"the claim of {join.key[:100]!r} in {partition} vanished")
        return found

    def get_build(self, build_id: str) -> Versioned[Build]:
        partition, stem = entities.build_stem(build_id)
        entity = self._get(
            self._builds(partition), partition, entities.build_row(stem), what=f"build {build_id}"
        )
        version = _version(int(entity["Transitions"]), entity["State"], entity.metadata["etag"])
        return Versioned(entities.build_from_entity(entity), version)

    def save_build(
        self,
        build: Build,
        *,
        etag: str,
        transition: Transition | None = None,
        regions: Sequence[RegionStatus] = (),
        action: TemplateAction | None = None,
    ) -> str:
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        for record in (build, transition, *regions, action):
            if record is not None:
                check_storable(record)
        transitions, stored_state, table_etag = _unversion(etag)
        check_write(stored_state, build, transition, regions)
        count = transitions + (1 if transition else 0)
        conditional = {
            "mode": UpdateMode.REPLACE,
            "etag": table_etag,
            "match_condition": MatchConditions.IfNotModified,
        }
        operations: list[tuple[str, dict[str, Any], dict[str, Any]] | tuple[str, dict[str, Any]]] = [
            ("update", _checked(entities.build_to_entity(build, transitions=count)), conditional)
        ]
        if transition is not None:
            operations.append(("create", _checked(entities.transition_to_entity(transition, seq=count))))
        for region in regions:
            # Guarded by the build's ETag in the same transaction: a lost race writes none of them.
            row = _checked(entities.region_to_entity(region))
            operations.append(("upsert", row, {"mode": UpdateMode.REPLACE}))
        if action is not None:
            operations.append(("create", _checked(_audit(action, build.template_id))))
        if len(operations) > 100:
            raise PermanentError(f"build {build.id}: {len(regions)} regions exceed one transaction")
        try:
            results = self._transact(f"save build {build.id}", operations)
        except _AlreadyExists as error:  # another writer appended the same transition first
            raise StaleWrite(f"build {build.id} changed since it was read; re-read it") from error
        return _version(count, build.state, results[0]["etag"])

    def list_builds(
        self,
        template_id: TemplateId,
        *,
        limit: int = 50,
        continuation: str | None = None,
        until: datetime | None = None,
    ) -> Page[Build]:
        low, high = entities.prefix_range("b-")
        if until is not None:
            low = f"b-{entities.inverted(until)}"  # newest first: later rows were created earlier
        partition = template_key(template_id)
        entities_, token = self._range_page(
            self._builds(partition), partition, low, high, limit=limit, continuation=continuation
        )
        return Page([entities.build_from_entity(e) for e in entities_], token)

    def list_transitions(self, build_id: str) -> list[Transition]:
        partition, stem = entities.build_stem(build_id)
        low, high = entities.prefix_range(f"t-{stem}-")
        return [
            entities.transition_from_entity(e)
            for e in self._range(self._builds(partition), partition, low, high)
        ]

    def list_regions(self, build_id: str) -> list[RegionStatus]:
        partition, stem = entities.build_stem(build_id)
        low, high = entities.prefix_range(f"r-{stem}-")
        rows = [
            entities.region_from_entity(e) for e in self._range(self._builds(partition), partition, low, high)
        ]
        return sorted(rows, key=lambda r: r.region)

    def list_template_regions(
        self, template_id: TemplateId, *, limit: int = 1000, continuation: str | None = None
    ) -> Page[RegionStatus]:
        low, high = entities.prefix_range("r-")
        partition = template_key(template_id)
        found, token = self._range_page(
            self._builds(partition), partition, low, high, limit=limit, continuation=continuation
        )
        return Page([entities.region_from_entity(e) for e in found], token)

    # -- templates -------------------------------------------------------------------------------------
    def get_template_state(self, template_id: TemplateId) -> Versioned[TemplateState] | None:
        try:
            entity = self._get(
                "templates", entities.TEMPLATES_PARTITION, template_key(template_id), what=template_id
            )
        except NotFound:
            return None
        return Versioned(entities.template_from_entity(entity), entity.metadata["etag"])

    def save_template_state(self, state: TemplateState, *, etag: str | None) -> str:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError
        from azure.data.tables import UpdateMode

        check_storable(state)
        entity = _checked(entities.template_to_entity(state))
        table = self._table("templates")
        with translated(f"save the state of {state.template_id}"):
            try:
                if etag is None:
                    return str(table.create_entity(entity)["etag"])
                written = table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
                return str(written["etag"])
            except ResourceExistsError as error:
                raise StaleWrite(f"the state of {state.template_id} exists already; re-read it") from error

    def list_template_states(
        self, *, limit: int = 1000, continuation: str | None = None
    ) -> Page[TemplateState]:
        found, token = self._query_page(
            "templates",
            "PartitionKey eq @pk",
            {"pk": entities.TEMPLATES_PARTITION},
            limit=limit,
            continuation=continuation,
        )
        return Page([entities.template_from_entity(e) for e in found], token)

    # -- the template's audit trail --------------------------------------------------------------------
    def record_action(self, action: TemplateAction) -> TemplateAction:
        from azure.core.exceptions import ResourceExistsError

        check_storable(action)
        entity = _checked(entities.action_to_entity(action))
        table = self._table(self._builds(entity["PartitionKey"]))
        with translated(f"record {action.action} of {action.template_id}"):
            try:
                table.create_entity(entity)
            except ResourceExistsError:  # the same action recorded again: the first row stands
                return entities.action_from_entity(table.get_entity(entity["PartitionKey"], entity["RowKey"]))
        return action

    def list_actions(
        self, template_id: TemplateId, *, limit: int = 50, continuation: str | None = None
    ) -> Page[TemplateAction]:
        low, high = entities.prefix_range("a-")
        partition = template_key(template_id)
        found, token = self._range_page(
            self._builds(partition), partition, low, high, limit=limit, continuation=continuation
        )
        return Page([entities.action_from_entity(e) for e in found], token)

    # -- source versions -------------------------------------------------------------------------------
    def record_version(self, seen: SeenVersion) -> SeenVersion:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError
        from azure.data.tables import UpdateMode

        check_storable(seen)
        check_version(seen.version)
        entity = _checked(entities.seen_to_entity(seen))
        table = self._table("sources")
        what = f"version {seen.version[:100]} of {seen.source}"
        with translated(f"record {what}"):
            try:
                table.create_entity(entity)
                return seen
            except ResourceExistsError:
                pass
        for _ in range(5):  # first sighting exists: keep it; record only a change of deprecation
            stored = self._get("sources", entity["PartitionKey"], entity["RowKey"], what=what)
            kept = entities.seen_from_entity(stored)
            if kept.deprecation == seen.deprecation:
                return kept
            stored.update(Deprecation=seen.deprecation.value, DeprecationChangedAt=seen.first_seen_at)
            try:
                with translated(f"record the deprecation of {what}"):
                    table.update_entity(
                        stored,
                        mode=UpdateMode.MERGE,
                        etag=stored.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                return entities.seen_from_entity(stored)
            except StaleWrite:
                continue
        raise StaleWrite(f"{what} kept changing while being recorded")

    def list_versions(
        self, source: SourceRef, *, limit: int = 1000, continuation: str | None = None
    ) -> Page[SeenVersion]:
        found, token = self._query_page(
            "sources",
            "PartitionKey eq @pk",
            {"pk": entities.source_partition(source)},
            limit=limit,
            continuation=continuation,
        )
        return Page([entities.seen_from_entity(e) for e in found], token)

    # -- plumbing --------------------------------------------------------------------------------------
    def _get(self, kind: str, partition: str, row: str, *, what: str) -> Any:
        with translated(f"read {what}"):
            return self._table(kind).get_entity(partition, row)

    def _transact(self, action: str, operations: Sequence[Any]) -> list[dict[str, Any]]:
        """One entity-group transaction in one build partition."""
        from azure.data.tables import TableTransactionError

        table = self._table(self._builds(operations[0][1]["PartitionKey"]))
        with translated(action):
            try:
                return [dict(r) for r in table.submit_transaction(list(operations))]
            except TableTransactionError as error:
                if error.status_code == 409:
                    raise _AlreadyExists(action) from error
                if error.status_code == 412:
                    raise StaleWrite(f"{action}: changed since it was read; re-read it") from error
                raise

    def _range(self, kind: str, partition: str, low: str, high: str) -> Iterator[Any]:
        with translated(f"query {self._names.get(kind, kind)}"):
            yield from self._table(kind).query_entities(
                _FILTER_RANGE, parameters={"pk": partition, "low": low, "high": high}
            )

    def _range_page(
        self, kind: str, partition: str, low: str, high: str, *, limit: int, continuation: str | None
    ) -> tuple[list[Any], str | None]:
        parameters = {"pk": partition, "low": low, "high": high}
        return self._query_page(kind, _FILTER_RANGE, parameters, limit=limit, continuation=continuation)

    def _query_page(
        self, kind: str, query: str, parameters: dict[str, str], *, limit: int, continuation: str | None
    ) -> tuple[list[Any], str | None]:
        check_page_size(limit)
        # The SDK's continuation token is a dict of next keys, although by_page is typed for str.
        resume: Any = _decode(continuation)
        with translated(f"query {self._names.get(kind, kind)}"):
            found = self._table(kind).query_entities(query, parameters=parameters, results_per_page=limit)
            pages = found.by_page(continuation_token=resume)
            items = list(next(pages, []))
            token = pages.continuation_token  # type: ignore[attr-defined]
        return items, _encode(token)


class _AlreadyExists(Exception):
    pass


def _audit(action: TemplateAction, template_id: TemplateId) -> dict[str, Any]:
    """The audit row of a change to a build: in the build's partition, so one transaction holds both."""
    if template_key(action.template_id) != template_key(template_id):
        raise PermanentError(f"an audit row of {action.template_id} cannot go with a build of {template_id}")
    return entities.action_to_entity(action)


def _checked(entity: dict[str, Any]) -> dict[str, Any]:
    """Refuse, with the property named, what Table storage would refuse with a bare 400."""
    for name, value in entity.items():
        if isinstance(value, str) and len(value.encode("utf-16-le")) > 2 * MAX_TEXT:
            raise InvalidRecord(f"{name} is too long to record ({len(value)} characters)")
    return entity


def _version(transitions: int, state: str, etag: str) -> str:
    """A build's version token: its ETag, its stored state (to refuse illegal moves without a read)
    and how many transitions it has (the number of the next transition row)."""
    return f"{transitions}:{state}:{etag}"


def _unversion(version: str) -> tuple[int, BuildState, str]:
    count, _, rest = version.partition(":")
    state, _, etag = rest.partition(":")
    if not count.isdigit() or state not in BuildState.__members__.values() or not etag:
        raise PermanentError(f"{version[:80]!r} is not a build version token from this ledger")
    return int(count), BuildState(state), etag


def _encode(token: Any) -> str | None:
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(token, sort_keys=True).encode()).decode()


def _decode(token: str | None) -> dict[str, str] | None:
    if token is None:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError as error:
        raise InvalidContinuation("the continuation token is not one this service issued") from error
    if not isinstance(decoded, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in decoded.items()
    ):
        raise InvalidContinuation("the continuation token is not one this service issued")
    return decoded
