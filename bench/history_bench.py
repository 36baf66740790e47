"""History and estate benchmark: what GET /api/builds and GET /api/templates cost on Azurite.

Seeds the real key layout (bench/ledger_bench.py's seeding, plus the history index), then times, side by
side in one run, a page of the build history across every template, newest first: the service's
keyset paging over the history index (services/build_history.py — one range read from the page's
position, then the page's builds read at once), first page and a page deep in the history, against a
naive offset pager that reads every template's whole history, sorts it and slices;
and the time of the templates view (services/estate.py survey: what GET /api/templates and the report
read). Prints medians and ratios.

    .venv/bin/python bench/history_bench.py [--templates 200] [--builds 20] [--regions 4]
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.data.tables import TableServiceClient

from bench.ledger_bench import median_ms, rows_of_template, seed
from devstack.azurite import running_azurite
from rebuilder.adapters import ledger_entities as entities
from rebuilder.adapters.ledger_tables import TableLedger
from rebuilder.domain.builds import Build
from rebuilder.domain.model import TemplateId
from rebuilder.domain.ports import Ledger
from rebuilder.services.build_history import HistoryQuery, Position, list_history
from rebuilder.services.estate import survey
from rebuilder.services.history import every, where_we_stand

REGIONS = ["westeurope", "northeurope", "eastus", "eastus2", "westus2", "uksouth", "swedencentral"]
PAGE = 50


def index(service: TableServiceClient, prefix: str, templates: int, builds: int, regions: list[str]) -> int:
    """The history index entries of every seeded build, as claim_build writes them."""
    table = service.create_table(f"{prefix}history")
    entries = [
        {
            "PartitionKey": entities.HISTORY_PARTITION,
            "RowKey": entities.index_row(row["BuildId"]),
            "BuildId": row["BuildId"],
            "TemplateId": row["TemplateId"],
            "Reason": row["Reason"],
            "CreatedAt": row["CreatedAt"],
        }
        for i in range(templates)
        for row in rows_of_template(i, builds, regions)[0]
        if row["Kind"] == "build"
    ]
    for start in range(0, len(entries), 100):
        table.submit_transaction([("create", e) for e in entries[start : start + 100]])
    return len(entries)


def naive_page(ledger: Ledger, templates: tuple[TemplateId, ...], offset: int) -> list[Build]:
    """An offset pager: every build of every template, sorted, sliced."""
    builds = [
        b
        for t in templates
        for b in every(lambda token, t=t: ledger.list_builds(t, limit=1000, continuation=token))
    ]
    builds.sort(key=Position.of)
    return builds[offset : offset + PAGE]


def keyset_page(ledger: Ledger, query: HistoryQuery, after: Position | None) -> list[Build]:
    return list_history(ledger, query, after=after, limit=PAGE).builds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=200)
    parser.add_argument("--builds", type=int, default=20)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    regions = REGIONS[: args.regions]
    prefix = "hist"
    with (
        running_azurite() as azurite,
        TableServiceClient.from_connection_string(azurite.connection_string) as service,
    ):
        print(
            f"Seeding Azurite: {args.templates:,} templates × {args.builds} builds × {len(regions)} regions …"
        )
        seed(service, prefix, args.templates, args.builds, regions)
        print(f"  {index(service, prefix, args.templates, args.builds, regions):,} history index entries")
        ledger = TableLedger(service, prefix=prefix)
        states = where_we_stand(ledger)
        templates = tuple(TemplateId(s.template_id) for s in states)
        query = HistoryQuery()  # every template: the history index
        deep_offset = (args.templates * args.builds) // 2 // PAGE * PAGE
        naive_first = naive_page(ledger, templates, 0)
        naive_deep = naive_page(ledger, templates, deep_offset)
        after = Position.of(naive_page(ledger, templates, deep_offset - PAGE)[-1])
        assert [b.id for b in keyset_page(ledger, query, None)] == [b.id for b in naive_first]
        assert [b.id for b in keyset_page(ledger, query, after)] == [b.id for b in naive_deep]

        rows = [
            (
                "history, first page of 50",
                median_ms(lambda: keyset_page(ledger, query, None), args.repeat)[0],
                median_ms(lambda: naive_page(ledger, templates, 0), 1)[0],
                "offset pager",
            ),
            (
                f"history, page at build {deep_offset:,}",
                median_ms(lambda: keyset_page(ledger, query, after), args.repeat)[0],
                median_ms(lambda: naive_page(ledger, templates, deep_offset), 1)[0],
                "offset pager",
            ),
        ]
        now = datetime.now(UTC)
        view, _ = median_ms(lambda: survey(ledger, now=now, states=states), 3)
        print(f"\n{'question':<40}{'service':>11}{'naive':>12}{'ratio':>8}  naive is")
        for question, fast, slow, naive in rows:
            print(f"{question:<40}{fast:>9.0f}ms{slow:>10.0f}ms{slow / fast:>7.1f}×  {naive}")
        print(f"templates view (GET /api/templates, the report), {len(states)} templates: {view:.0f} ms")


if __name__ == "__main__":
    main()
