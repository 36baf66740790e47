"""The doctor as the CLI and the API serve it: the settings said as the doctor reports them, one call
of the service, and the diagnosis as a document (JSON) and as text (✅/❌, one check a line)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rebuilder.domain.diagnosis import Check, Diagnosis
from rebuilder.services.doctor import Subject, examine
from rebuilder.settings import EVENTGRID_CREDENTIAL_SCOPE, Settings

if TYPE_CHECKING:
    from rebuilder.bootstrap import Services

PASS, FAIL = "✅", "❌"


def subject_of(settings: Settings) -> Subject:
    summary = (
        f"valid: {len(settings.scopes)} scope(s), cloud {settings.cloud.value}, ARM {settings.arm_endpoint}"
        + (" (static REBUILDER_ARM_TOKEN: local stack)" if settings.arm_token else "")
        + f", ledger tables '{settings.table_prefix}*' at {settings.ledger.where}"
        + (f", events topic {settings.events_topic}" if settings.events_topic else "")
    )
    return Subject(
        scopes=settings.scopes,
        settings=summary,
        arm_audience=settings.arm_credential_scope,
        ledger=f"'{settings.table_prefix}*' at {settings.ledger.where}",
        events_topic=settings.events_topic,
        events_audience=EVENTGRID_CREDENTIAL_SCOPE,
    )


def diagnose(services: Services) -> Diagnosis:
    """Every check, as the identity these services run as."""
    return examine(
        subject_of(services.settings),
        imagebuilder=services.imagebuilder,
        access=services.access,
        ledger_storage=services.ledger_storage,
    )


def check_document(check: Check) -> dict[str, Any]:
    return {
        "check": check.kind.value,
        "subject": check.subject,
        "ok": check.ok,
        "detail": check.detail,
        "fix": check.fix or None,
        "missing": [{"action": m.action, "role": m.role.name} for m in check.missing],
    }


def document(diagnosis: Diagnosis) -> dict[str, Any]:
    return {
        "ok": diagnosis.ok,
        "passed": len(diagnosis.checks) - len(diagnosis.failed),
        "failed": len(diagnosis.failed),
        "checks": [check_document(c) for c in diagnosis.checks],
    }


def check_line(check: Check) -> str:
    line = f"{PASS if check.ok else FAIL} {check.kind.value} {check.subject}: {check.detail}"
    return f"{line} — {check.fix}" if check.fix and not check.ok else line


def text(diagnosis: Diagnosis) -> str:
    lines = [check_line(c) for c in diagnosis.checks]
    total = len(diagnosis.checks)
    lines.append(
        f"\nall {total} checks pass"
        if diagnosis.ok
        else f"\n{len(diagnosis.failed)} of {total} checks fail: each ❌ says what to do"
    )
    return "\n".join(lines)
