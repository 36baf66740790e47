"""Reading where the estate stands for the templates view and the security report: every template's
row, recent builds with their regions, and the sightings of its own and its root source. Reads only,
a few range reads per template, run with bounded concurrency."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from rebuilder.domain.builds import Build
from rebuilder.domain.casing import fold
from rebuilder.domain.errors import NotFound
from rebuilder.domain.estate import TemplateSummary, revoked_builds, summarise
from rebuilder.domain.model import SourceRef
from rebuilder.domain.policies import NO_RULES, Rules
from rebuilder.domain.ports import Ledger
from rebuilder.domain.standing import SeenVersion, TemplateState

from .history import template_history, versions_seen, where_we_stand

RECENT_BUILDS = 50  # builds per template read for the view (exposure floors come from these)


def summary_of(
    ledger: Ledger,
    state: TemplateState,
    *,
    now: datetime,
    max_builds: int = RECENT_BUILDS,
    versions: Callable[[SourceRef | None], list[SeenVersion]] | None = None,
    defaults: Rules = NO_RULES,
    revoked: Mapping[str, tuple[str, str]] | None = None,
) -> TemplateSummary:
    """`revoked`: every revoked build by id (`revoked_builds`); read from the rows when not given."""
    if revoked is None:
        revoked = revoked_builds(where_we_stand(ledger)) if state.baseline_parent_build else {}
    h = template_history(ledger, state.template_id, max_builds=max_builds, state=state, versions=versions)
    read = {b.id for b, _ in h.builds}
    older = [_build(ledger, r.build_id) for r in state.regions if r.build_id and r.build_id not in read]
    return summarise(
        state,
        h.builds,
        h.windows,
        h.root_windows,
        h.seen,
        h.root_seen,
        h.root_source,
        now=now,
        older=[b for b in older if b is not None],
        defaults=defaults,
        revoked=revoked,
    )


def _build(ledger: Ledger, build_id: str) -> Build | None:
    """A build whose image is still in a region although it is older than the builds read."""
    try:
        return ledger.get_build(build_id).record
    except NotFound:
        return None


def survey(
    ledger: Ledger,
    *,
    now: datetime,
    states: Sequence[TemplateState] | None = None,
    concurrency: int = 8,
    defaults: Rules = NO_RULES,
) -> list[TemplateSummary]:
    """Every template's summary, by name."""
    rows = sorted(where_we_stand(ledger) if states is None else states, key=lambda s: fold(s.name))
    shared = _SharedSightings(ledger)
    revoked = revoked_builds(rows)

    def one(state: TemplateState) -> TemplateSummary:
        return summary_of(ledger, state, now=now, versions=shared.of, defaults=defaults, revoked=revoked)

    with ThreadPoolExecutor(max(1, min(concurrency, len(rows) or 1))) as pool:
        return list(pool.map(one, rows))


class _SharedSightings:
    """Each source's sightings read once per survey: many templates build from one source."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._lock = threading.Lock()
        self._known: dict[str, list[SeenVersion]] = {}

    def of(self, source: SourceRef | None) -> list[SeenVersion]:
        if source is None:
            return []
        with self._lock:
            if source.key not in self._known:
                self._known[source.key] = versions_seen(self._ledger, source)
            return self._known[source.key]
