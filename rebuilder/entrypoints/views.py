"""Builds, templates and passes as the CLI (and later the HTTP API) present them: rows and documents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rebuilder.domain.builds import Build, RegionStatus, Transition
from rebuilder.domain.estate import TemplateSummary
from rebuilder.domain.exposure import ExposureWindow
from rebuilder.domain.releases import Rollback, fallen_back, version_name
from rebuilder.domain.standing import TemplateState


def _at(moment: Any) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "-"


def build_document(
    build: Build, regions: list[RegionStatus] | None = None, transitions: list[Transition] | None = None
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": build.id,
        "template": build.template_name,
        "template_id": build.template_id,
        "reason": build.reason.value,
        "state": build.state.value,
        "sub_state": build.sub_state.value if build.sub_state else None,
        "source_version": build.source.resolved_version or None,
        "root_version": build.root_version or None,
        "previous_baseline": build.previous_baseline or None,
        "lineage": _lineage(build),
        "superseded_by": build.superseded_by or None,
        "attempts": build.attempts,
        "next_attempt_at": build.next_attempt_at,
        "created_at": build.created_at,
        "updated_at": build.updated_at,
        "run_started_at": build.run_started_at,
        "run_ended_at": build.run_ended_at,
        "outputs": list(build.outputs),
        "message": build.message or None,
        "definition_hash_before": build.definition_hash_before or None,
        "definition_hash_after": build.definition_hash_after or None,
        "run_outcome": build.run_outcome or None,
        "candidate_at": build.candidate_at,
        "approved_by": build.approved_by or None,
        "approved_by_id": build.approved_by_id or None,
        "promoted_at": build.promoted_at,
        "provenance": {
            "trigger": build.provenance.trigger,
            "caller": build.provenance.caller or None,
            "caller_object_id": build.provenance.caller_id or None,
            "note": build.provenance.note or None,
            "bypassed": build.provenance.bypassed or None,
            "correlation_id": build.provenance.correlation_id or None,
            "idempotency_key": build.provenance.idempotency_key,
        },
    }
    if regions is not None:
        document["regions"] = [
            {
                "region": r.region,
                "state": r.state,
                "progress": r.progress,
                "repairs": r.repairs,
                "completed_at": r.completed_at,
                "details": r.details or None,
            }
            for r in regions
        ]
    if transitions is not None:
        document["transitions"] = [
            {
                "at": t.at,
                "from": t.from_state.value if t.from_state else None,
                "to": t.to_state.value,
                "sub_state": t.to_sub_state.value if t.to_sub_state else None,
                "why": t.why,
                "by": t.by,
            }
            for t in transitions
        ]
    return document


def build_summary(build: Build) -> dict[str, Any]:
    """What a caller who may request builds but not read the ledger learns of a build: enough to
    follow it, nothing of who else asked or why."""
    return {
        "id": build.id,
        "template": build.template_name,
        "template_id": build.template_id,
        "reason": build.reason.value,
        "state": build.state.value,
        "source_version": build.source.resolved_version or None,
        "created_at": build.created_at,
    }


def _lineage(build: Build) -> dict[str, Any] | None:
    lineage = build.lineage
    if lineage is None:
        return None
    return {
        "parent_build_id": lineage.parent_build_id,
        "parent_template": lineage.parent_template,
        "root_version": lineage.root_version,
        "root_source": str(lineage.root_source),
        "previous_root_version": lineage.previous_root_version or None,
    }


BUILD_HEADERS = ["build", "template", "reason", "state", "source version", "attempts", "created"]


def build_row(build: Build) -> list[str]:
    state = build.state.value + (f"/{build.sub_state.value}" if build.sub_state else "")
    return [
        build.id,
        build.template_name,
        build.reason.value,
        state,
        build.source.resolved_version or "latest",
        str(build.attempts),
        _at(build.created_at),
    ]


REGION_HEADERS = ["region", "replication", "progress", "repairs", "completed"]


def region_row(region: RegionStatus) -> list[str]:
    return [region.region, region.state, f"{region.progress}%", str(region.repairs), _at(region.completed_at)]


def transition_row(t: Transition) -> list[str]:
    to = t.to_state.value + (f"/{t.to_sub_state.value}" if t.to_sub_state else "")
    return [f"{t.at:%Y-%m-%d %H:%M:%S}", t.from_state.value if t.from_state else "-", to, t.why]


TEMPLATE_HEADERS = [
    "template",
    "location",
    "mode",
    "baseline",
    "last build",
    "open",
    "failures",
    "status",
    "next due",
]


def template_row(summary: TemplateSummary) -> list[str]:
    state = summary.state
    status = f"disabled: {state.disabled_reason[:60]}" if state.disabled else "enabled"
    if state.candidate_build:
        waiting = state.candidate_version.rsplit("/", 1)[-1] or state.candidate_build
        status += f"; candidate {waiting} awaits promotion"
    if summary.built_on_revoked:
        status += f"; {summary.built_on_revoked}"
    if state.latest_drift:
        where = ", ".join(sorted({d.region for d in state.latest_drift}))
        status += f"; the gallery's latest disagrees with the ledger in {where}"
    due = f"{summary.next_due_at:%Y-%m-%d %H:%M} UTC: " if summary.next_due_at else ""
    return [
        state.name,
        state.location,
        state.mode,
        state.baseline_version or "-",
        state.last_build_state.value if state.last_build_state else "-",
        str(len(state.open_builds)),
        str(state.consecutive_failures),
        status,
        due + summary.next_due_why,
    ]


def template_document(state: TemplateState) -> dict[str, Any]:
    return {
        "id": state.template_id,
        "name": state.name,
        "location": state.location,
        "mode": state.mode,
        "baseline_version": state.baseline_version or None,
        "baseline_build_id": state.baseline_build_id or None,
        "last_build_id": state.last_build_id or None,
        "last_build_state": state.last_build_state.value if state.last_build_state else None,
        "open_builds": list(state.open_builds),
        "consecutive_failures": state.consecutive_failures,
        "disabled": state.disabled,
        "disabled_reason": state.disabled_reason or None,
        "disabled_at": state.disabled_at,
        "awaiting_promotion": (
            {"build_id": state.candidate_build, "version": state.candidate_version or None}
            if state.candidate_build
            else None
        ),
        "revoked": [{"build_id": b, "version": v} for b, v in state.revoked],
        "latest_drift": [
            {
                "region": d.region,
                "version": d.version,
                "ledger_in_latest": d.ledger_in_latest,
                "why": d.describe(),
            }
            for d in state.latest_drift
        ],
        "regions": [
            {
                "region": r.region,
                "build_id": r.build_id,
                "source_version": r.source_version,
                "image_version": r.image_version,
                "state": r.state,
                "completed_at": r.completed_at,
            }
            for r in state.regions
        ],
    }


WINDOW_HEADERS = ["template", "region", "source version", "first seen", "replicated", "exposure"]


def window_row(template: str, window: ExposureWindow) -> list[str]:
    closed = window.replicated_at
    length = f"{(closed - window.first_seen_at).total_seconds() / 3600:.1f} h" if closed else "open"
    return [template, window.region, window.version, _at(window.first_seen_at), _at(closed), length]


def rollback_document(
    build: Build,
    decided: Rollback,
    *,
    done: bool,
    dry_run: bool = False,
    show: Callable[[Build], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A rollback as it stands: the build demoted (Revoked once `done`), what is latest again per
    region (read from the gallery) and where that differs from what the ledger expected. `show`: how
    a build is shown (its summary, to a caller who may not read the ledger)."""
    shown = show or build_document
    return {
        "revoked": shown(build),
        "latest": shown(decided.latest) if decided.latest is not None else None,
        "done": done,
        "dry_run": dry_run,
        "fallback": [
            {
                "region": f.region,
                "version": f.version,
                "build": f.build_id or None,
                "expected": f.expected or None,
                "differs": f.differs,
            }
            for f in decided.fallbacks
        ],
        "summary": fallen_back(decided.fallbacks),
    }


def rollback_text(build: Build, decided: Rollback, *, done: bool, dry_run: bool = False) -> str:
    name, again = f"{build.template_name}: {version_name(build)}", fallen_back(decided.fallbacks)
    if dry_run:
        return f"dry run, nothing changed: {name} would be revoked; {again}"
    if done:
        return f"{name} revoked; {again}"
    return (
        f"{name}: its demotion is sent and it is revoked once the gallery shows it (the next reconcile "
        f"pass); then {again}"
    )
