"""Rows read per HTTP read request (issue 22, API 9): what one GET /api/builds with a sparse filter and
one GET /api/templates (the report reads the same) cost in ledger rows, against the unbounded reads
they made before — side by side in one run, on the in-memory ledger (rows are rows, wherever they are).

- GET /api/builds?state=Failed over a history where nothing failed: the service reads at most
  SCAN_PER_REQUEST builds a request and answers with a `next` link; before, one request read up to
  SCAN_LIMIT builds (and every request after that as many again).
- GET /api/templates: every template's row, its recent builds and *their* region rows; before, the
  region rows of every build the template ever had.

    .venv/bin/python bench/request_rows_bench.py [--templates 50] [--builds 200] [--regions 4]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.fakes.ledger import InMemoryLedger
from rebuilder.domain.builds import (
    Build,
    BuildReason,
    BuildSource,
    BuildState,
    Provenance,
    RegionStatus,
    new_build_id,
)
from rebuilder.domain.model import SourceKind, TemplateId
from rebuilder.domain.regions import Region
from rebuilder.domain.standing import TemplateState
from rebuilder.entrypoints.http.handlers import SCAN_PER_REQUEST
from rebuilder.services import history
from rebuilder.services.build_history import SCAN_LIMIT, HistoryQuery, list_history
from rebuilder.services.estate import survey

T0 = datetime(2025, 1, 1, tzinfo=UTC)
REGIONS = ["westeurope", "northeurope", "eastus", "eastus2", "westus2", "uksouth", "swedencentral"]


class Counting:
    """The ledger, counting every row a read hands back."""

    def __init__(self, ledger: InMemoryLedger) -> None:
        self._ledger = ledger
        self.rows = 0
        self.by_method: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._ledger, name)
        if not name.startswith(("get_", "list_", "find_")):
            return found

        def counted(*args: Any, **kwargs: Any) -> Any:
            answer = found(*args, **kwargs)
            items = getattr(answer, "items", None)
            read = len(items) if isinstance(items, list) else (0 if answer is None else 1)
            self.rows += read
            self.by_method[name] = self.by_method.get(name, 0) + read
            return answer

        return counted


def seed(templates: int, builds: int, regions: list[str]) -> InMemoryLedger:
    ledger = InMemoryLedger()
    for t in range(templates):
        tid = TemplateId(
            f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/t{t}"
        )
        ledger.save_template_state(TemplateState(tid, f"t{t}", Region("westeurope"), T0), etag=None)
        for b in range(builds):
            at = T0 + timedelta(days=b, minutes=t)
            build = Build(
                id=new_build_id(tid, at, f"k{b}"),
                template_id=tid,
                template_name=f"t{t}",
                location=Region("westeurope"),
                reason=BuildReason.SOURCE_UPDATE,
                provenance=Provenance("timer", "", "", f"k{b}"),
                source=BuildSource(SourceKind.PLATFORM_IMAGE, "p", "o", "s", "latest", f"1.0.{b}"),
                created_at=at,
                updated_at=at,
                state=BuildState.REPLICATING,  # open: its region rows can still be written
            )
            claim = ledger.claim_build(build, why="seeded", by="bench")
            rows = [RegionStatus(build.id, Region(r), True, "Completed", 100) for r in regions]
            ledger.save_build(build, etag=claim.build.etag, regions=rows)
    return ledger


def rows(ledger: InMemoryLedger, read: Callable[[Counting], object]) -> int:
    counting = Counting(ledger)
    read(counting)
    return counting.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=50)
    parser.add_argument("--builds", type=int, default=200)
    parser.add_argument("--regions", type=int, default=4)
    args = parser.parse_args()
    ledger = seed(args.templates, args.builds, REGIONS[: args.regions])
    print(f"{args.templates} templates × {args.builds} builds × {args.regions} regions", file=sys.stderr)
    failed = HistoryQuery(None, frozenset({BuildState.FAILED}))
    now = T0 + timedelta(days=args.builds)

    def bounded_history(c: Counting) -> object:
        return list_history(c, failed, scan_limit=SCAN_PER_REQUEST)  # type: ignore[arg-type]

    def unbounded_history(c: Counting) -> object:
        return list_history(c, failed, scan_limit=SCAN_LIMIT)  # type: ignore[arg-type]

    def view(c: Counting) -> object:
        return survey(c, now=now)  # type: ignore[arg-type]

    counting = Counting(ledger)
    view(counting)
    regions_now = counting.by_method.get("list_template_regions", 0)
    every_region_row = sum(
        len(
            list(
                history.every(
                    lambda token, t=s.template_id: ledger.list_template_regions(t, continuation=token)
                )
            )
        )
        for s in history.where_we_stand(ledger)
    )
    view_before = counting.rows - regions_now + every_region_row  # the same reads, all region rows

    table = [
        (
            "GET /api/builds?state=Failed (one request)",
            rows(ledger, bounded_history),
            rows(ledger, unbounded_history),
        ),
        ("GET /api/templates, GET /api/report", counting.rows, view_before),
    ]
    print(f"{'request':46} {'rows now':>10} {'before':>10} {'ratio':>8}")
    for name, now_rows, before in table:
        print(f"{name:46} {now_rows:>10,} {before:>10,} {before / max(1, now_rows):>7.1f}×")


if __name__ == "__main__":
    main()
