"""The audit export (`python -m rebuilder export`, GET /api/builds?format=csv|jsonl): every build in
a range with its transitions and regions, in the columns an auditor files.

CSV has one row per transition, the build's columns repeated, so a spreadsheet filter on any column
works; JSONL has one line per build with its transitions and regions nested. Text a person wrote
(a request's reason) cannot become a spreadsheet formula: every field is quoted, and a formula leader
(= + - @ and their full-width twins) at the start of a cell or after any character a spreadsheet may
split on (, ; tab | and line breaks, whatever the locale's separator) is prefixed with an apostrophe.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from rebuilder.domain.builds import Build, RegionStatus, Transition
from rebuilder.domain.ports import Ledger

from .views import build_document

COLUMNS = (
    "build_id",
    "template",
    "template_id",
    "reason",
    "trigger",
    "caller",
    "caller_object_id",
    "note",
    "correlation_id",
    "source_version",
    "root_version",
    "parent_build_id",
    "previous_baseline",
    "state",
    "created_at",
    "run_started_at",
    "run_ended_at",
    "regions",
    "transition_at",
    "transition_from",
    "transition_to",
    "transition_why",
    "transition_by",
)
_FORMULA = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # and full-width twins
# A leader after a separator: the cell a spreadsheet would make of the text after it, in any locale.
_SPLIT_FORMULA = re.compile("([,;\t|\r\n\uff0c\uff1b][ \u00a0]*)([-=+@\uff1d\uff0b\uff0d\uff20])")


def _at(value: Any) -> str:
    return value.isoformat() if value else ""


def _regions(regions: Iterable[RegionStatus]) -> str:
    return "; ".join(
        f"{r.region}={r.state}" + (f"@{_at(r.completed_at)}" if r.completed_at else "") for r in regions
    )


def csv_rows(build: Build, regions: list[RegionStatus], transitions: list[Transition]) -> Iterator[list[str]]:
    p = build.provenance
    fixed = [
        build.id,
        build.template_name,
        build.template_id,
        build.reason.value,
        p.trigger,
        p.caller,
        p.caller_id,
        p.note,
        p.correlation_id,
        build.source.resolved_version,
        build.root_version,
        build.lineage.parent_build_id if build.lineage else "",
        build.previous_baseline,
        build.state.value,
        _at(build.created_at),
        _at(build.run_started_at),
        _at(build.run_ended_at),
        _regions(regions),
    ]
    moves = [
        [_at(t.at), t.from_state.value if t.from_state else "", t.to_state.value, t.why, t.by]
        for t in transitions
    ]
    for moved in moves or [[""] * 5]:
        yield [_cell(v) for v in (*fixed, *moved)]


def _cell(value: str) -> str:
    value = _SPLIT_FORMULA.sub(r"\1'\2", value)
    return "'" + value if value.lstrip(" ").startswith(_FORMULA) else value


def render(ledger: Ledger, builds: Iterable[Build], kind: str) -> Iterator[str]:
    """The export of `builds` as `csv` or `jsonl`, chunk by chunk (two range reads per build)."""
    if kind == "csv":
        yield _csv_line(list(COLUMNS))
    for build in builds:
        regions, transitions = ledger.list_regions(build.id), ledger.list_transitions(build.id)
        if kind == "csv":
            yield "".join(_csv_line(row) for row in csv_rows(build, regions, transitions))
        else:
            document = build_document(build, regions, transitions)
            yield json.dumps(document, sort_keys=True, default=_at, ensure_ascii=False) + "\n"


def _csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_ALL).writerow(row)
    return out.getvalue()
