"""Where the estate stands, as the API, the CLI and the export present it: template summaries with
their cells (template × region), exposure windows labelled direct or root, and patch waves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rebuilder.domain.estate import Cell, Exposure, TemplateSummary, is_failing
from rebuilder.domain.exposure import ExposureWindow
from rebuilder.domain.standing import TemplateAction
from rebuilder.domain.waves import Wave

from .views import build_document, template_document


def hours(seconds: float) -> float:
    return round(seconds / 3600, 2)


def exposure_document(exposure: Exposure | None) -> dict[str, Any] | None:
    if exposure is None:
        return None
    return {
        "basis": exposure.basis.value,
        "version": exposure.version,
        "first_seen_at": exposure.first_seen_at,
        "hours": hours(exposure.duration.total_seconds()),
        "open": exposure.open,
    }


def cell_document(cell: Cell, drift: str = "") -> dict[str, Any]:
    return {
        "region": cell.region,
        "build_id": cell.build_id or None,
        "image_version": cell.image_version or None,
        "image_version_id": cell.image_version_id or None,
        "source_version": cell.source_version or None,
        "root_version": cell.root_version or None,
        "replication": cell.replication or None,
        "failed": cell.failed,
        "stale": cell.stale,
        "newer_source_version": cell.newer or None,
        "exposure": exposure_document(cell.root),
        "direct_exposure": exposure_document(cell.direct),
        "promoted": cell.promoted,
        "candidate_version": cell.candidate or None,
        "revoked_version": cell.revoked or None,
        "latest_drift": drift or None,
    }


def summary_document(summary: TemplateSummary) -> dict[str, Any]:
    """One template as GET /api/templates lists it."""
    document: dict[str, Any] = template_document(summary.state)
    last = summary.last_build
    document.update(
        child=summary.is_child,
        parents=list(summary.parents),
        source=str(summary.state.source) if summary.state.source else None,
        root_source=str(summary.root_source) if summary.root_source else None,
        candidate_version=summary.candidate or None,
        newest_root_version=summary.newest_root or None,
        last_build=build_document(last) if last else None,
        open_builds=_open(summary),
        failing=is_failing(summary),
        regions=[cell_document(c, drift_in(summary, c.region)) for c in summary.cells],
        policies=summary.policies,
        next_due_at=summary.next_due_at,
        next_due_why=summary.next_due_why or None,
        built_on_revoked=summary.built_on_revoked or None,
    )
    return document


def drift_in(summary: TemplateSummary, region: str) -> str:
    """Where the gallery's latest disagrees with the ledger in `region` (last watch pass), in words."""
    return "; ".join(d.describe() for d in summary.state.latest_drift if d.region == region)


def _open(summary: TemplateSummary) -> list[dict[str, str | None]]:
    known = {b.id: b.state.value for b in summary.open_builds}
    return [{"id": b, "state": known.get(b)} for b in summary.state.open_builds]


def window_document(window: ExposureWindow, now: datetime) -> dict[str, Any]:
    return {
        "basis": window.basis.value,
        "region": window.region,
        "version": window.version,
        "first_seen_at": window.first_seen_at,
        "replicated_at": window.replicated_at,
        "closed_by": window.closed_by,
        "closed_by_version": window.closed_by_version or None,
        "hours": hours(window.duration(now).total_seconds()),
        "open": window.open,
    }


def action_document(action: TemplateAction) -> dict[str, Any]:
    return {
        "at": action.at,
        "action": action.action,
        "by": action.by,
        "by_object_id": action.by_id or None,
        "why": action.why or None,
        "correlation_id": action.correlation_id or None,
        "changed": action.changed or None,
    }


def wave_document(wave: Wave) -> dict[str, Any]:
    return {
        "image": wave.image,
        "version": wave.version,
        "first_seen_at": wave.first_seen_at,
        "templates": list(wave.templates),
        "templates_done": wave.templates_done,
        "children": wave.children,
        "regions": wave.regions,
        "regions_done": wave.regions_done,
        "worst_hours": hours(wave.worst.total_seconds()),
        "median_hours": hours(wave.median.total_seconds()),
        "summary": wave.describe(),
    }
