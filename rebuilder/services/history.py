"""Reading the ledger back: one template's history with its regions and exposure windows, and where
every template stands. Reads only; every list is followed through its continuation tokens."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from rebuilder.domain.builds import Build, BuildId, RegionStatus
from rebuilder.domain.exposure import ExposureWindow, exposure_windows, root_windows
from rebuilder.domain.lineage import root_ref, source_ref
from rebuilder.domain.model import SourceRef, TemplateId
from rebuilder.domain.ports import Ledger, Page
from rebuilder.domain.standing import SeenVersion, TemplateState

from .build_history import Position

_T = TypeVar("_T")


@dataclass(frozen=True)
class TemplateHistory:
    state: TemplateState | None
    builds: list[tuple[Build, list[RegionStatus]]]  # newest first
    windows: list[ExposureWindow]  # direct: from the sightings of its own source's versions
    root_windows: list[ExposureWindow]  # root: from the sightings of the root Marketplace versions
    seen: list[SeenVersion]  # its own source's versions, oldest first
    root_seen: list[SeenVersion]  # the root source's versions (the same as `seen` for a baseline)
    root_source: SourceRef | None = None


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


def template_history(
    ledger: Ledger,
    template_id: TemplateId,
    *,
    max_builds: int = 1000,
    state: TemplateState | None = None,
    versions: Callable[[SourceRef | None], list[SeenVersion]] | None = None,
) -> TemplateHistory:
    """One template's builds (newest first), their regions, and its exposure windows, direct and root.
    `state`: the template's row when the caller has read it already; `versions`: how to read a
    source's sightings (a survey shares them between the templates of one source)."""
    seen_of = versions or (lambda source: versions_seen(ledger, source))
    builds: list[Build] = []
    for build in every(lambda token: ledger.list_builds(template_id, limit=100, continuation=token)):
        builds.append(build)
        if len(builds) >= max_builds:
            break
    if state is None:
        stored = ledger.get_template_state(template_id)
        state = stored.record if stored else None
    regions: dict[BuildId, list[RegionStatus]] = defaultdict(list)
    if builds:  # the region rows of the builds read, and none older: they sort newest build first
        per_build = len(state.regions) if state and state.regions else 4  # a guess, for the page size
        oldest, size = Position.of(builds[-1]), min(1000, per_build * (len(builds) + 1))
        for row in every(
            lambda token: ledger.list_template_regions(template_id, limit=size, continuation=token)
        ):
            if Position.of_id(row.build_id) > oldest:
                break
            regions[row.build_id].append(row)
    history = [(b, sorted(regions.get(b.id, []), key=lambda r: r.region)) for b in builds]
    source = state.source if state else None
    if builds and (source is None or source_ref(builds[0]).key == source.key):
        source = source_ref(builds[0])  # the same source, spelt as the template spells it
    seen = seen_of(source)
    rooted = next((b for b in builds if b.lineage), None)
    root = root_ref(rooted) if rooted else source
    same = root is not None and source is not None and root.key == source.key
    root_seen = seen if same else seen_of(root)
    return TemplateHistory(
        state,
        history,
        exposure_windows(history, seen),
        root_windows(history, root_seen),
        seen,
        root_seen,
        root,
    )


def versions_seen(ledger: Ledger, source: SourceRef | None) -> list[SeenVersion]:
    """Every version seen of `source`, oldest first (none when the source is unknown)."""
    if source is None:
        return []
    return list(every(lambda token: ledger.list_versions(source, continuation=token)))
