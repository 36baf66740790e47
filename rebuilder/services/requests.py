"""What on-call engineers ask for: an on-demand rebuild, re-enabling a disabled template, and finding
a template by name. Every request is idempotent: the caller's key names the build."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Iterable
from datetime import datetime

from rebuilder.domain import resource_ids
from rebuilder.domain.builds import BuildReason, Provenance, requested
from rebuilder.domain.errors import NotFound, PermanentError, StaleWrite
from rebuilder.domain.limits import check_idempotency_key
from rebuilder.domain.model import ImageTemplate, Scope, SourceKind, TemplateId
from rebuilder.domain.planner import is_pinned, mode_of
from rebuilder.domain.runs import Policy
from rebuilder.domain.standing import TemplateState

from .detection import Ports
from .history import where_we_stand
from .reconciler import Reconciler, ReconcileReport
from .records import Opened, open_build, update_state
from .watch import first_sight


class Ambiguous(PermanentError):
    pass


def find_template(ports: Ports, scopes: Iterable[Scope], name_or_id: str) -> ImageTemplate:
    """A template by resource id, or by name within the configured scopes (names may repeat across
    resource groups: then the ids are listed)."""
    text = name_or_id.strip()
    if text.startswith("/"):
        try:
            resource_ids.parse(text)
        except ValueError as error:
            raise PermanentError(str(error)) from error
        return ports.imagebuilder.get_template(TemplateId(text))
    found = [
        t
        for scope in scopes
        for t in ports.imagebuilder.list_templates(scope)
        if t.name.lower() == text.lower()
    ]
    unique = {t.id.lower(): t for t in found}
    if not unique:
        raise NotFound(f"no image template named {text[:100]!r} in the configured scopes")
    if len(unique) > 1:
        raise Ambiguous(
            f"{len(unique)} templates are named {text!r}; give the id: {', '.join(sorted(unique))}"
        )
    return next(iter(unique.values()))


def request_rebuild(
    ports: Ports,
    template: ImageTemplate,
    policy: Policy,
    *,
    now: datetime,
    trigger: str,
    caller: str = "",
    idempotency_key: str = "",
    correlation_id: str = "",
) -> tuple[Opened, ReconcileReport]:
    """Record an on-demand build of a managed template and start it if it can start now. The same key
    gives the same build; a request while a build of the template is open joins that build."""
    mode, why = mode_of(template.tags)
    if mode is None:
        raise PermanentError(f"{template.name} is not managed by rebuilder ({why})")
    src = template.source
    if src.kind not in (SourceKind.PLATFORM_IMAGE, SourceKind.SHARED_IMAGE_VERSION):
        raise PermanentError(
            f"{template.name}: source type {src.raw_type or src.kind.value} is not supported"
        )
    key = idempotency_key or f"{BuildReason.ON_DEMAND}:{uuid.uuid4()}"
    check_idempotency_key(key)
    _ensure_state(ports, template, now)
    pinned = (src.version or "") if is_pinned(template) and src.kind is SourceKind.PLATFORM_IMAGE else ""
    build = requested(
        template,
        reason=BuildReason.ON_DEMAND,
        key=key,
        resolved_version=pinned,
        now=now,
        provenance=Provenance(trigger, caller, correlation_id),
    )
    opened = open_build(ports.ledger, build, why=f"requested by {caller or trigger}", by=trigger, now=now)
    acted = Reconciler(ports, policy, now=now, by=trigger, correlation_id=correlation_id)
    return opened, acted.run(only={template.id.lower()})


def _ensure_state(ports: Ports, template: ImageTemplate, now: datetime) -> None:
    if ports.ledger.get_template_state(template.id) is not None:
        return
    mode, _ = mode_of(template.tags)
    state = first_sight(template, mode.value if mode else "manual", now=now)
    with contextlib.suppress(StaleWrite):  # somebody recorded it first
        ports.ledger.save_template_state(state, etag=None)


def find_state(ledger_states: list[TemplateState], name_or_id: str) -> TemplateState:
    text = name_or_id.strip().lower()
    found = [s for s in ledger_states if text in (s.template_id.lower(), s.name.lower())]
    if not found:
        raise NotFound(f"the ledger knows no template {name_or_id[:100]!r}")
    if len(found) > 1:
        raise Ambiguous(
            f"{len(found)} templates are named {name_or_id!r}; give the id: "
            + ", ".join(s.template_id for s in found)
        )
    return found[0]


def enable(ports: Ports, name_or_id: str, *, now: datetime) -> tuple[TemplateState, bool]:
    """Re-enable an auto-disabled template: (its row, whether it was disabled)."""
    state = find_state(where_we_stand(ports.ledger), name_or_id)
    was = state.disabled
    updated = update_state(
        ports.ledger,
        state.template_id,
        lambda s: (
            dataclasses.replace(
                s,
                disabled=False,
                disabled_reason="",
                disabled_at=None,
                consecutive_failures=0,
                updated_at=now,
            )
            if s.disabled or s.consecutive_failures
            else s
        ),
    )
    return updated or state, was
