"""Patch waves: every root source version's way through the estate, rolled up for the security team
("22.04.202501150: 5/5 templates (2 children), 19/20 regions, worst 31 h, median 2.1 h"). Pure.

A wave is one root Marketplace version (by image, wherever it is listed) and every template whose
root windows it opened — baselines built on it directly and children built on them. A template is
done with a wave when every one of its regions has an image from that version or newer; durations
of windows still open are counted up to `now`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .casing import fold
from .estate import TemplateSummary
from .exposure import Basis
from .versions import version_key


@dataclass(frozen=True)
class Wave:
    image: str  # publisher:offer:sku (or gallery/image for a root that is a gallery image)
    version: str
    first_seen_at: datetime
    templates: tuple[str, ...]  # names of the templates it reaches
    templates_done: int
    children: int  # how many of `templates` are children
    regions: int  # template × region windows
    regions_done: int
    worst: timedelta
    median: timedelta

    @property
    def done(self) -> bool:
        return self.regions_done == self.regions

    def describe(self) -> str:
        children = (
            f" ({self.children} {'child' if self.children == 1 else 'children'})" if self.children else ""
        )
        return (
            f"{self.version}: {self.templates_done}/{len(self.templates)} templates{children}, "
            f"{self.regions_done}/{self.regions} regions, worst {_hours(self.worst)}, "
            f"median {_hours(self.median)}"
        )


def waves(summaries: Sequence[TemplateSummary], *, now: datetime) -> list[Wave]:
    """Every wave, newest root version first within an image."""
    grouped: dict[tuple[str, str], list[tuple[TemplateSummary, list[timedelta], int]]] = {}
    first_seen: dict[tuple[str, str], datetime] = {}
    labels: dict[str, str] = {}
    for summary in summaries:
        if summary.root_source is None:
            continue
        image = fold(summary.root_source.image)  # compared as Azure does; shown as first spelt
        labels.setdefault(image, summary.root_source.image)
        per_version: dict[str, list[tuple[timedelta, bool]]] = {}
        for window in summary.windows:
            if window.basis is not Basis.ROOT:
                continue
            per_version.setdefault(window.version, []).append((window.duration(now), window.open))
            key = (image, window.version)
            first_seen[key] = min(first_seen.get(key, window.first_seen_at), window.first_seen_at)
        for version, spans in per_version.items():
            grouped.setdefault((image, version), []).append(
                (summary, [d for d, _ in spans], sum(1 for _, still in spans if not still))
            )
    found = []
    for (image, version), reached in grouped.items():
        durations = [d for _, spans, _ in reached for d in spans]
        found.append(
            Wave(
                labels[image],
                version,
                first_seen[(image, version)],
                tuple(s.state.name for s, _, _ in reached),
                sum(1 for _, spans, closed in reached if closed == len(spans)),
                sum(1 for s, _, _ in reached if s.is_child),
                len(durations),
                sum(closed for _, _, closed in reached),
                max(durations),
                timedelta(seconds=statistics.median(d.total_seconds() for d in durations)),
            )
        )
    found.sort(key=lambda w: version_key(w.version), reverse=True)
    return sorted(found, key=lambda w: w.image)  # stable: newest version first within an image


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 100 else f"{hours:.0f} h"
