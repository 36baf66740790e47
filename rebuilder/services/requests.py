"""What on-call engineers ask for: an on-demand rebuild, re-enabling a disabled template, and finding
a template by name. Every request is idempotent: the caller's key names the build.

A request with a key that was claimed before is a replay: it answers with that build and writes
nothing. A request while the template has an open build joins it when that build covers it; when it
cannot (the open build builds an older version than the one asked for), it is refused with the open
build named, before anything is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from rebuilder.domain import policies, resource_ids
from rebuilder.domain.builds import (
    Build,
    BuildReason,
    BuildState,
    Provenance,
    requested,
)
from rebuilder.domain.errors import Conflict, NotFound, PermanentError, StaleWrite
from rebuilder.domain.limits import check_idempotency_key
from rebuilder.domain.model import ImageTemplate, Scope, SourceKind, TemplateId
from rebuilder.domain.planner import is_pinned, last_started, mode_of
from rebuilder.domain.ports import Versioned
from rebuilder.domain.releases import abandoned, asked, rollback_under_way, versions_of
from rebuilder.domain.runs import Policy
from rebuilder.domain.standing import RollbackIntent, TemplateAction, TemplateState

from .history import where_we_stand
from .ports import Ports
from .reconciler import Reconciler, ReconcileReport
from .records import Opened, covering, open_build, update_state
from .rollbacks import RollbackOutcome, decide_rollback, finish_rollback
from .watch import first_sight

_ATTEMPTS = 20  # re-reads of a build that keeps changing under a promotion

REQUEST_KEY_PREFIX = "request:"  # a caller's key lives in its own namespace, apart from the service's keys


class Ambiguous(PermanentError):
    pass


class NotManaged(PermanentError):
    """The template exists but rebuilder does not manage it (no or another golden-image-rebuild tag,
    or a source it cannot build from)."""


class BuildInProgress(Conflict):
    """An open build of the template cannot take this request; `build` is that build."""

    def __init__(self, message: str, build: Build) -> None:
        super().__init__(message)
        self.build = build


@dataclass(frozen=True)
class Caller:
    """Who asks, as the ledger records it."""

    trigger: str  # http | cli
    name: str = ""  # principal name (or the CLI user)
    object_id: str = ""
    correlation_id: str = ""

    @property
    def who(self) -> str:
        return self.name or self.object_id or self.trigger


def find_template(ports: Ports, scopes: Iterable[Scope], name_or_id: str) -> ImageTemplate:
    """A template by resource id, or by name within the configured scopes (names may repeat across
    resource groups: then the ids are listed)."""
    text = name_or_id.strip()
    if text.startswith("/"):
        try:
            parsed = resource_ids.parse(text)
        except ValueError as error:
            raise PermanentError(str(error)) from error
        if parsed.types != ("imagetemplates",) or parsed.provider.lower() != "microsoft.virtualmachineimages":
            raise PermanentError(f"{text[:200]!r} is not an image template id")
        if not any(_in_scope(parsed, scope) for scope in scopes):
            raise NotFound(f"no image template {text[:200]!r} in the configured scopes")
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


def _in_scope(parsed: resource_ids.ResourceId, scope: Scope) -> bool:
    if parsed.subscription_id.lower() != scope.subscription_id.lower():
        return False
    return scope.resource_group is None or parsed.resource_group.lower() == scope.resource_group.lower()


def request_rebuild(
    ports: Ports,
    template: ImageTemplate,
    policy: Policy,
    *,
    now: datetime,
    caller: Caller,
    note: str = "",
    idempotency_key: str = "",
) -> tuple[Opened, ReconcileReport]:
    """Record an on-demand build of a managed template and start it if it can start now. The same key
    gives the same build (a replay writes nothing); a request while a build of the template is open
    joins that build, or is refused (BuildInProgress) when that build cannot cover it."""
    mode, why = mode_of(template.tags)
    if mode is None:
        raise NotManaged(f"{template.name} is not managed by rebuilder ({why})")
    src = template.source
    if src.kind not in (SourceKind.PLATFORM_IMAGE, SourceKind.SHARED_IMAGE_VERSION):
        raise NotManaged(f"{template.name}: source type {src.raw_type or src.kind.value} is not supported")
    key = (
        REQUEST_KEY_PREFIX + idempotency_key if idempotency_key else f"{BuildReason.ON_DEMAND}:{uuid.uuid4()}"
    )
    check_idempotency_key(key)
    replayed = ports.ledger.find_claim(template.id, key) if idempotency_key else None
    if replayed is not None:
        answer = replayed.record
        if answer.superseded_by:
            answer = ports.ledger.get_build(answer.superseded_by).record
        return Opened(answer, created=False, joined=bool(replayed.record.superseded_by)), ReconcileReport()
    stored = ports.ledger.get_template_state(template.id)
    state = stored.record if stored else None
    pinned = (src.version or "") if is_pinned(template) and src.kind is SourceKind.PLATFORM_IMAGE else ""
    build = requested(
        template,
        reason=BuildReason.ON_DEMAND,
        key=key,
        resolved_version=pinned,
        now=now,
        provenance=Provenance(
            caller.trigger,
            caller.name,
            caller.correlation_id,
            caller_id=caller.object_id,
            note=note,
            bypassed=policies.bypassed(
                policies.rules_of(template.tags, policy.defaults), last_started(template, state), now
            ),
        ),
        previous_baseline=state.baseline_version if state else "",
    )
    _refuse_if_busy(ports, state, build)
    if state is None:
        _ensure_state(ports, template, now)
    opened = open_build(ports.ledger, build, why=_why(caller, note), by=caller.trigger, now=now)
    acted = Reconciler(ports, policy, now=now, by=caller.trigger, correlation_id=caller.correlation_id)
    return opened, acted.run(only={template.id.lower()})


def _why(caller: Caller, note: str) -> str:
    return f"requested by {caller.who}" + (f": {note}" if note else "")


def _refuse_if_busy(ports: Ports, state: TemplateState | None, build: Build) -> None:
    if state is None or not state.open_builds or covering(ports.ledger, state, build) is not None:
        return
    for build_id in state.open_builds:
        with contextlib.suppress(NotFound):
            other = ports.ledger.get_build(build_id).record
            if not other.state.finished:
                if other.state is BuildState.CANDIDATE:
                    raise BuildInProgress(
                        f"build {other.id} of {other.template_name} is a candidate awaiting promotion"
                        f" (python -m rebuilder promote {other.template_name}); ask again once it is"
                        " promoted or rejected",
                        other,
                    )
                raise BuildInProgress(
                    f"build {other.id} of {other.template_name} is open ({other.state.value}, building "
                    f"{other.source.resolved_version or 'latest'}) and cannot take this request; "
                    "ask again when it has ended",
                    other,
                )


def _ensure_state(ports: Ports, template: ImageTemplate, now: datetime) -> None:
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


def enable(
    ports: Ports, name_or_id: str, *, now: datetime, caller: Caller, note: str = ""
) -> tuple[TemplateState, bool]:
    """Re-enable an auto-disabled template: (its row, whether it was disabled). The template's audit
    trail records who did it and why, before the row changes (a crash between the two leaves the
    intent recorded; asking again finishes it)."""
    state = find_state(where_we_stand(ports.ledger), name_or_id)
    if not (state.disabled or state.consecutive_failures):
        return state, False
    why = f"re-enabled after {state.consecutive_failures} consecutive failed build(s)"
    ports.ledger.record_action(
        TemplateAction(
            state.template_id,
            now,
            "enabled",
            caller.who,
            caller.object_id,
            f"{why}: {note}" if note else why,
            caller.correlation_id,
        )
    )
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
    return updated or state, state.disabled


def promote(
    ports: Ports,
    name_or_id: str,
    policy: Policy,
    *,
    now: datetime,
    caller: Caller,
    version: str = "",
    note: str = "",
) -> tuple[Build, ReconcileReport]:
    """Approve the template's candidate (its `version`, if given) for promotion, then let the reconcile
    pass promote it if its other gates hold (the bake): (the build as it stands after, that pass)."""
    state = find_state(where_we_stand(ports.ledger), name_or_id)
    for _ in range(_ATTEMPTS):
        found = _candidate(ports, state, version)
        if found.record.approved_by:
            break
        approved = dataclasses.replace(found.record, approved_by=caller.who, updated_at=now)
        why = f"promotion approved by {caller.who}" + (f": {note}" if note else "")
        try:
            ports.ledger.save_build(
                approved,
                etag=found.etag,
                transition=found.record.becomes(approved, why=why, by=caller.trigger),
            )
        except StaleWrite:
            continue
        ports.ledger.record_action(
            TemplateAction(state.template_id, now, "promotion-approved", caller.who, caller.object_id, why)
        )
        break
    acted = Reconciler(ports, policy, now=now, by=caller.trigger, correlation_id=caller.correlation_id)
    report = acted.run(only={state.template_id.lower()})
    return ports.ledger.get_build(found.record.id).record, report


def _candidate(ports: Ports, state: TemplateState, version: str) -> Versioned[Build]:
    for build_id in state.open_builds:
        with contextlib.suppress(NotFound):
            found = ports.ledger.get_build(build_id)
            names = {v.rsplit("/", 1)[-1] for v in versions_of(found.record)}
            if found.record.state is BuildState.CANDIDATE and (not version or version in names):
                return found
    which = f" {version}" if version else ""
    raise NotFound(f"no candidate{which} of {state.name} awaits promotion")


def roll_back(
    ports: Ports, name_or_id: str, *, now: datetime, caller: Caller, reason: str, dry_run: bool = False
) -> RollbackOutcome:
    """Demote the template's current version in latest so what the gallery serves before it is
    `latest` again, and revoke its build once the gallery shows the demotion in effect.

    What is latest again is decided from the gallery, before anything changes (a refusal says where
    nothing would be; `dry_run` says it all and changes nothing). The intent then goes on the
    template's row (etag-checked: of two racing rollbacks one goes on, the other is refused before
    anything changes); then services/rollbacks.py does the steps. A demotion still `Updating` is
    finished by the next reconcile pass; a caller that dies leaves the intent on the row: once its
    lease has run out the next reconcile pass finishes it, and so does asking again (rather than
    rolling back one more version)."""
    state = find_state(where_we_stand(ports.ledger), name_or_id)
    busy = rollback_under_way(state, now)
    if busy:
        raise Conflict(busy)
    left = abandoned(state, now)
    if left is not None and not dry_run:
        return finish_rollback(ports, state.template_id, left, now=now, by=caller.trigger, fresh=False)
    decided = decide_rollback(ports, state.template_id, now=now, by=caller.who, why=reason)
    if dry_run:
        return RollbackOutcome(ports.ledger.get_build(decided.revoke.id).record, decided, done=False)
    intent = RollbackIntent(
        decided.revoke.id, now, caller.who, caller.object_id, reason, caller.correlation_id
    )
    update_state(ports.ledger, state.template_id, lambda s: asked(s, intent))
    return finish_rollback(
        ports, state.template_id, intent, now=now, by=caller.trigger, fresh=True, decided=decided
    )
