"""Detection as the triggers and the CLI present it: the plan as rows or JSON, a pass as a summary."""

from __future__ import annotations

from typing import Any

from rebuilder.domain.planner import PlanItem
from rebuilder.services.applying import ReconcileReport
from rebuilder.services.detection import PassReport


def plan_item(item: PlanItem) -> dict[str, Any]:
    t = item.template
    return {
        "id": t.id,
        "name": t.name,
        "location": t.location,
        "mode": item.mode.value,
        "source": item.source,
        "baseline_version": item.baseline_version or None,
        "baseline_adopted": item.baseline_adopted,
        "candidate_version": item.candidate_version or None,
        "action": item.action.value,
        "reason": item.reason,
        "flags": list(item.flags),
        "due": item.due.value if item.due else None,
        "policies": item.rules.describe(),
        "next_due_at": item.next_due_at.isoformat() if item.next_due_at else None,
        "next_due_why": item.next_due_why or None,
        "policy_problems": list(item.problems),
    }


def plan_document(report: PassReport) -> dict[str, Any]:
    return {
        "at": report.at.isoformat() if report.at else None,
        "templates": [plan_item(i) for i in report.items],
        "ignored": [{"id": tid, "reason": why} for tid, why in report.discovery.ignored],
        "problems": report.problems,
        "list_calls": report.list_calls,
        "new_versions": len(report.new_versions),
    }


PLAN_HEADERS = ["template", "location", "baseline", "candidate", "action", "reason", "next due"]


def plan_rows(report: PassReport) -> list[list[str]]:
    return [
        [
            i.template.name,
            i.template.location,
            i.baseline_version or "-",
            i.candidate_version or "-",
            i.action.value,
            "; ".join([i.reason, *(f"policy problem: {p}" for p in i.problems)]),
            _next_due(i),
        ]
        for i in report.items
    ]


def _next_due(item: PlanItem) -> str:
    if item.next_due_at is None:
        return "on a new source version" if item.action.value in ("none", "rebuild") else "-"
    return f"{item.next_due_at:%Y-%m-%d %H:%M} UTC ({item.next_due_why})"


def pass_summary(report: PassReport) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for item in report.items:
        counts[item.action.value] = counts.get(item.action.value, 0) + 1
    return {
        "templates": len(report.items),
        "actions": counts,
        "list_calls": report.list_calls,
        "new_versions": len(report.new_versions),
        "requested": [build_id for build_id, _ in report.requested],
        "newly_requested": [build_id for build_id, created in report.requested if created],
        "problems": report.problems,
    }


def act_summary(report: ReconcileReport) -> dict[str, Any]:
    """What a pass did to builds, for logs and the CLI's JSON output."""
    return {
        "templates_followed": report.templates,
        "builds_followed": report.builds,
        "started": list(report.started),
        "transitions": [{"build": b, "to": str(to), "why": why} for b, to, why in report.moved],
        "finished": list(report.finished),
        "repaired": [{"build": b, "region": r} for b, r in report.repaired],
        "recreated": list(report.recreated),
        "external": list(report.external),
        "waiting": list(report.waiting),
        "act_problems": list(report.problems),
        "planned": list(report.planned),
        "events": [e.type for e in report.events],
    }
