"""Ledger benchmark (DESIGN §7): 1,000 templates × 50 builds on Azurite, keyed reads vs a naive scan.

Seeds the real key layout (rows written through `ledger_entities`, 100 per entity-group transaction),
then times, side by side in one run:
  - "current state of every template × region": the service's one-partition read of the template rows,
    against a naive scan of every build and region row that answers the same question;
  - "history of one template": the service's range reads (builds newest first, their regions, the
    exposure windows), against a naive scan filtered on the template id.
Prints the medians and the ratios. Targets: current state < 300 ms, one template < 100 ms.

    .venv/bin/python bench/ledger_bench.py [--templates 1000] [--builds 50] [--regions 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.data.tables import TableServiceClient

from devstack.azurite import running_azurite
from rebuilder.adapters import ledger_entities as entities
from rebuilder.adapters.ledger_tables import TableLedger
from rebuilder.domain.builds import (
    Build,
    BuildReason,
    BuildSource,
    BuildState,
    Provenance,
    RegionStatus,
    first_transition,
    new_build_id,
)
from rebuilder.domain.model import RunSubState, SourceKind, SourceRef, TemplateId
from rebuilder.domain.regions import Region
from rebuilder.domain.standing import RegionStanding, SeenVersion, TemplateState
from rebuilder.services.history import template_history, where_we_stand

T0 = datetime(2025, 1, 1, tzinfo=UTC)
REGIONS = ["westeurope", "northeurope", "eastus", "eastus2", "westus2", "uksouth", "swedencentral"]
SUB = "7f3c2a10-0000-4000-8000-000000000001"


def template(i: int) -> TemplateId:
    return TemplateId(
        f"/subscriptions/{SUB}/resourceGroups/rg-images-{i % 20}/providers/"
        f"Microsoft.VirtualMachineImages/imageTemplates/golden-{i:04d}"
    )


def version(k: int) -> str:
    return f"22.04.{202500000 + k * 10}"


def rows_of_template(i: int, builds: int, regions: list[str]) -> tuple[list[dict[str, Any]], TemplateState]:
    tid = template(i)
    rows: list[dict[str, Any]] = []
    state = TemplateState(tid, f"golden-{i:04d}", Region(regions[0]), T0)
    for k in range(builds):
        at = T0 + timedelta(days=7 * k, minutes=i % 60)
        key = f"source-update:{version(k)}"
        build = Build(
            id=new_build_id(tid, at, key),
            template_id=tid,
            template_name=f"golden-{i:04d}",
            location=Region(regions[0]),
            reason=BuildReason.SOURCE_UPDATE,
            provenance=Provenance("timer", "", str(uuid.uuid4()), key),
            source=BuildSource(
                SourceKind.PLATFORM_IMAGE, "Canonical", "jammy", "22_04-lts-gen2", "latest", version(k)
            ),
            created_at=at,
            updated_at=at,
            previous_baseline=version(k - 1) if k else "",
        )
        moves = [first_transition(build, why="new version", by="watch_sources")]
        for to, sub in ((BuildState.RUNNING, RunSubState.BUILDING), (BuildState.REPLICATING, None)):
            after = dataclasses.replace(build, state=to, sub_state=sub, updated_at=at + timedelta(hours=1))
            moves.append(build.becomes(after, why="reported by AIB", by="reconcile"))
            build = after
        done_at = at + timedelta(hours=3)
        build, move = build.moved(
            BuildState.PUBLISHED, at=done_at, why="every region completed", by="reconcile"
        )
        moves.append(move)
        rows.append(entities.claim_to_entity(build))
        rows.append(entities.build_to_entity(build, transitions=len(moves)))
        rows += [entities.transition_to_entity(m, seq=n) for n, m in enumerate(moves, 1)]
        for r in regions:
            status = RegionStatus(
                build.id, Region(r), True, "Completed", 100, completed_at=done_at, updated_at=done_at
            )
            rows.append(entities.region_to_entity(status))
            image = f"/subscriptions/{SUB}/.../images/golden-{i:04d}/versions/1.0.{k}"
            state = state.with_region(
                RegionStanding(Region(r), build.id, version(k), image, "Completed", done_at), at=done_at
            )
    return rows, state


def seed(service: TableServiceClient, prefix: str, templates: int, builds: int, regions: list[str]) -> int:
    kinds = [*(f"builds{shard}" for shard in entities.SHARDS), "templates", "sources"]
    ledger_tables = {kind: service.create_table(f"{prefix}{kind}") for kind in kinds}
    source = SourceRef(SourceKind.PLATFORM_IMAGE, regions[0], "Canonical", "jammy", "22_04-lts-gen2")
    for k in range(builds):
        ledger_tables["sources"].create_entity(
            entities.seen_to_entity(SeenVersion(source, version(k), T0 + timedelta(days=7 * k)))
        )

    def one(i: int) -> int:
        rows, state = rows_of_template(i, builds, regions)
        shard = ledger_tables[f"builds{rows[0]['PartitionKey'][0]}"]
        for start in range(0, len(rows), 100):
            shard.submit_transaction([("create", r) for r in rows[start : start + 100]])
        ledger_tables["templates"].create_entity(entities.template_to_entity(state))
        return len(rows) + 1

    written = 0
    with ThreadPoolExecutor(8) as pool:
        for n, count in enumerate(pool.map(one, range(templates)), 1):
            written += count
            if n % 100 == 0:
                print(f"  seeded {n}/{templates} templates ({written:,} rows)", flush=True)
    return written


def median_ms(action: Callable[[], object], repeat: int, *, warm: bool = True) -> tuple[float, object]:
    if warm:
        action()  # connections, table clients
    samples, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = action()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), result


def scan(
    service: TableServiceClient, name: str, query: str | None = None, **params: str
) -> Iterator[dict[str, Any]]:
    table = service.get_table_client(name)
    if query is None:
        yield from table.list_entities(results_per_page=1000)
    else:
        yield from table.query_entities(query, parameters=params, results_per_page=1000)


def naive_current_state(service: TableServiceClient, prefix: str) -> dict[tuple[str, str], str]:
    """Without the template rows: scan every build and region row, keep the newest build per template."""
    newest: dict[str, dict[str, Any]] = {}
    regions: dict[str, list[dict[str, Any]]] = {}
    for row in (r for shard in entities.SHARDS for r in scan(service, f"{prefix}builds{shard}")):
        if row["Kind"] == "build":
            kept = newest.get(row["TemplateId"])
            if kept is None or row["CreatedAt"] > kept["CreatedAt"]:
                newest[row["TemplateId"]] = row
        elif row["Kind"] == "region":
            regions.setdefault(row["BuildId"], []).append(row)
    return {
        (tid, r["Region"]): r["State"]
        for tid, build in newest.items()
        for r in regions.get(build["BuildId"], [])
    }


def naive_history(service: TableServiceClient, prefix: str, tid: str) -> int:
    """Without the key design: a scan filtered on a plain property (the service cannot use the key)."""
    tables = [f"{prefix}builds{shard}" for shard in entities.SHARDS]
    rows = [r for t in tables for r in scan(service, t, "TemplateId eq @tid", tid=tid)]
    build_ids = {r["BuildId"] for r in rows}
    regions = [
        r
        for t in tables
        for r in scan(service, t, "Kind eq @kind", kind="region")
        if r["BuildId"] in build_ids
    ]
    return len(rows) + len(regions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=1000)
    parser.add_argument("--builds", type=int, default=50)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    regions = REGIONS[: args.regions]
    prefix = "bench"
    with (
        running_azurite() as azurite,
        TableServiceClient.from_connection_string(azurite.connection_string) as service,
    ):
        print(
            f"Seeding Azurite: {args.templates:,} templates × {args.builds} builds × {len(regions)} regions …"
        )
        start = time.perf_counter()
        rows = seed(service, prefix, args.templates, args.builds, regions)
        print(
            f"  {rows:,} rows ({args.templates * args.builds:,} builds)"
            f" in {time.perf_counter() - start:.1f} s\n"
        )

        ledger = TableLedger(service, prefix=prefix)
        target = template(args.templates // 2)
        keyed_state, states = median_ms(lambda: where_we_stand(ledger), args.repeat)
        naive_state, cells = median_ms(lambda: naive_current_state(service, prefix), 1, warm=False)
        keyed_one, history = median_ms(lambda: template_history(ledger, target), args.repeat)
        naive_one, _ = median_ms(lambda: naive_history(service, prefix, target), 1, warm=False)

        assert isinstance(states, list)
        assert sum(len(s.regions) for s in states) == len(cells)  # type: ignore[arg-type]
        assert len(history.builds) == args.builds  # type: ignore[union-attr]
        print(f"{'question':<44}{'keyed':>10}{'naive scan':>13}{'ratio':>9}{'target':>10}")
        for question, keyed, naive, target_ms in (
            (f"current state, {len(cells):,} template × region", keyed_state, naive_state, 300),
            (f"history of one template ({args.builds} builds)", keyed_one, naive_one, 100),
        ):
            verdict = "ok" if keyed < target_ms else "MISSED"
            print(
                f"{question:<44}{keyed:>8.1f}ms{naive:>11.1f}ms"
                f"{naive / keyed:>8.0f}×{target_ms:>6} ms {verdict}"
            )


if __name__ == "__main__":
    main()
