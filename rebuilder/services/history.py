"""Reading the ledger back: one template's history with its regions and exposure windows, and where
every template stands. Reads only; every list is followed through its continuation tokens."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from rebuilder.domain.builds import Build, BuildId, RegionStatus
from rebuilder.domain.exposure import ExposureWindow, exposure_windows, source_ref
from rebuilder.domain.model import TemplateId
from rebuilder.domain.ports import Ledger, Page
from rebuilder.domain.standing import SeenVersion, TemplateState

_T = TypeVar("_T")


@dataclass(frozen=True)
class TemplateHistory:
    state: TemplateState | None
    builds: list[tuple[Build, list[RegionStatus]]]  # newest first
    windows: list[ExposureWindow]


def every(read: Callable[[str | None], Page[_T]]) -> Iterator[_T]:
    """Every item of a paged list: `read(continuation)` until the ledger says there is no more."""
    token: str | None = None
    while True:
        page = read(token)
        yield from page.items
        token = page.continuation
        if token is None:
            return


def where_we_stand(ledger: Ledger) -> list[TemplateState]:
    """Every template's current row (its regions included): one partition read, page by page."""
    return list(every(lambda token: ledger.list_template_states(continuation=token)))


def template_history(ledger: Ledger, template_id: TemplateId, *, max_builds: int = 1000) -> TemplateHistory:
    """One template's builds (newest first), their regions, and its exposure windows."""
    builds: list[Build] = []
    for build in every(lambda token: ledger.list_builds(template_id, limit=100, continuation=token)):
        builds.append(build)
        if len(builds) >= max_builds:
            break
    regions: dict[BuildId, list[RegionStatus]] = defaultdict(list)
    for row in every(lambda token: ledger.list_template_regions(template_id, continuation=token)):
        regions[row.build_id].append(row)
    history = [(b, sorted(regions.get(b.id, []), key=lambda r: r.region)) for b in builds]
    stored = ledger.get_template_state(template_id)
    state = stored.record if stored else None
    seen: list[SeenVersion] = []
    if builds:
        ref = source_ref(builds[0])
        seen = list(every(lambda token: ledger.list_versions(ref, continuation=token)))
    baseline = state.baseline_version if state else ""
    return TemplateHistory(state, history, exposure_windows(history, seen, baseline=baseline))
