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
import hashlib
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from rebuilder.domain import policies, resource_ids
from rebuilder.domain.builds import (
    Build,
    BuildReason,
    BuildState,
    Provenance,
    requested,
)
from rebuilder.domain.casing import fold
from rebuilder.domain.errors import Conflict, NotFound, PermanentError, StaleWrite
from rebuilder.domain.limits import check_idempotency_key
from rebuilder.domain.model import ImageTemplate, Scope, SourceKind, TemplateId
from rebuilder.domain.planner import is_pinned, last_started, mode_of
from rebuilder.domain.ports import Join, KeyClaim, Versioned
from rebuilder.domain.releases import abandoned, asked, rollback_under_way, versions_of
from rebuilder.domain.runs import Policy
from rebuilder.domain.standing import RollbackIntent, TemplateAction, TemplateState

from .history import where_we_stand
from .ports import Ports
from .reconciler import Reconciler, ReconcileReport
from .records import Caller, Opened, covering, open_build, retry_on_conflict, update_state
from .rollbacks import RollbackOutcome, decide_rollback, finish_rollback
from .watch import first_sight

KEY_LIFETIME_HOURS = 24
KEY_LIFETIME = timedelta(hours=KEY_LIFETIME_HOURS)  # how long a caller's Idempotency-Key names its request
KEY_GENERATIONS = 50  # uses of one key, a lifetime apart, before it is refused for good

REQUEST_KEY_PREFIX = "request:"  # a caller's key lives in its own namespace, apart from the service's keys


class Ambiguous(PermanentError):
    pass


class NotManaged(PermanentError):
    """The template exists but rebuilder does not manage it (no or another golden-image-rebuild tag,
    or a source it cannot build from)."""


class KeyReused(PermanentError):
    """An Idempotency-Key sent by another caller, or with another request, than the one it names."""


class TemplateDisabled(Conflict):
    """The template was disabled after failed builds: only an admin's enable lets it build again."""


class BuildInProgress(Conflict):
    """An open build of the template cannot take this request; `build` is that build."""

    def __init__(self, message: str, build: Build) -> None:
        super().__init__(message)
        self.build = build


def find_template(ports: Ports, scopes: Iterable[Scope], name_or_id: str) -> ImageTemplate:
    """A template by resource id, or by name within the configured scopes (names may repeat across
    resource groups: then the ids are listed)."""
    text = name_or_id.strip()
    if text.startswith("/"):
        try:
            parsed = resource_ids.parse(text)
        except ValueError as error:
            raise PermanentError(str(error)) from error
        if parsed.types != ("imagetemplates",) or fold(parsed.provider) != "microsoft.virtualmachineimages":
            raise PermanentError(f"{text[:200]!r} is not an image template id")
        if not any(_in_scope(parsed, scope) for scope in scopes):
            raise NotFound(f"no image template {text[:200]!r} in the configured scopes")
        return ports.imagebuilder.get_template(TemplateId(text))
    found = [
        t for scope in scopes for t in ports.imagebuilder.list_templates(scope) if fold(t.name) == fold(text)
    ]
    unique = {fold(t.id): t for t in found}
    if not unique:
        raise NotFound(f"no image template named {text[:100]!r} in the configured scopes")
    if len(unique) > 1:
        raise Ambiguous(
            f"{len(unique)} templates are named {text!r}; give the id: {', '.join(sorted(unique))}"
        )
    return next(iter(unique.values()))


def _in_scope(parsed: resource_ids.ResourceId, scope: Scope) -> bool:
    if fold(parsed.subscription_id) != fold(scope.subscription_id):
        return False
    return scope.resource_group is None or fold(parsed.resource_group) == fold(scope.resource_group)


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
    """Record an on-demand build of a managed template and start it if it can start now.

    A caller's key names one request of that caller for KEY_LIFETIME: the same key, caller and request
    (template, reason) again is a replay (it answers with that build and writes only its audit row);
    the key from another caller, or with another request, is refused (KeyReused) before anything is
    written. A request while a build of the template is open joins that build (its key and audit row
    are recorded on it: no build row of its own), or is refused (BuildInProgress) when that build
    cannot cover it; a disabled template is refused (TemplateDisabled): an admin enables it first."""
    mode, why = mode_of(template.tags)
    if mode is None:
        raise NotManaged(f"{template.name} is not managed by rebuilder ({why})")
    src = template.source
    if src.kind not in (SourceKind.PLATFORM_IMAGE, SourceKind.SHARED_IMAGE_VERSION):
        raise NotManaged(f"{template.name}: source type {src.raw_type or src.kind.value} is not supported")
    digest = request_digest(template.id, note)
    key = f"{BuildReason.ON_DEMAND}:{uuid.uuid4()}"
    if idempotency_key:
        claimed, key = _live_claim(ports, template.id, idempotency_key, now)
        if claimed is not None:
            return _replay(ports, claimed, caller, digest, idempotency_key, now), ReconcileReport()
    check_idempotency_key(key)
    stored = ports.ledger.get_template_state(template.id)
    state = stored.record if stored else None
    if state is not None and state.disabled:
        raise TemplateDisabled(
            f"{template.name} is disabled ({state.disabled_reason or 'after failed builds'}); a "
            f"Rebuild.Admin enables it (POST /api/templates/{template.name}/enable or python -m rebuilder "
            "enable), then ask again"
        )
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
            request_digest=digest,
        ),
        previous_baseline=state.baseline_version if state else "",
    )
    _refuse_if_busy(ports, state, build)
    twin = covering(ports.ledger, state, build)
    if twin is not None:
        return _join(ports, twin, build, caller, note, idempotency_key, now), ReconcileReport()
    if state is None:
        _ensure_state(ports, template, now)
    audit = _audit(
        caller, template.id, now, "rebuild-requested", _why(caller, note), f"build {build.id} requested"
    )
    opened = open_build(ports.ledger, build, why=_why(caller, note), by=caller.trigger, now=now, action=audit)
    acted = Reconciler(ports, policy, now=now, by=caller.trigger, correlation_id=caller.correlation_id)
    return opened, acted.run(only={fold(template.id)})


def request_digest(template_id: TemplateId, note: str) -> str:
    """What a key is bound to besides its caller: the template and the reason asked for."""
    return hashlib.sha256(f"{fold(template_id)}\n{note}".encode()).hexdigest()[:32]


def _live_claim(
    ports: Ports, template_id: TemplateId, idempotency_key: str, now: datetime
) -> tuple[KeyClaim | None, str]:
    """The claim of the caller's key still in force, and the ledger key a new request claims under: a
    key whose claim is older than KEY_LIFETIME is free again (its next use claims `key#2`, and so on)."""
    base = REQUEST_KEY_PREFIX + idempotency_key
    for generation in range(1, KEY_GENERATIONS + 1):
        key = base if generation == 1 else f"{base}#{generation}"
        found = ports.ledger.find_claim(template_id, key)
        if found is None:
            return None, key
        if now - found.claimed_at < KEY_LIFETIME:
            return found, key
    raise KeyReused(
        f"the Idempotency-Key {idempotency_key!r} was used {KEY_GENERATIONS} times; use a new key"
    )


def _replay(
    ports: Ports, claimed: KeyClaim, caller: Caller, digest: str, idempotency_key: str, now: datetime
) -> Opened:
    """The build a key named, to the caller who sent it with the same request; anyone else is refused."""
    since = f"{claimed.claimed_at:%Y-%m-%d %H:%M:%S} UTC"
    if claimed.caller_id != caller.identity:
        raise KeyReused(
            f"the Idempotency-Key {idempotency_key!r} was sent by another caller at {since}; a key names "
            f"one caller's request for {KEY_LIFETIME_HOURS} h: send a key of your own"
        )
    if claimed.digest and claimed.digest != digest:
        raise KeyReused(
            f"the Idempotency-Key {idempotency_key!r} was sent at {since} with another request (template "
            "or reason); a key names one request: send a new key for this one"
        )
    answer = claimed.build.record
    joined = claimed.joined or bool(answer.superseded_by)
    if answer.superseded_by:  # a request that joined another build before joins were claims of their own
        answer = ports.ledger.get_build(answer.superseded_by).record
    ports.ledger.record_action(
        _audit(
            caller,
            answer.template_id,
            now,
            "rebuild-replayed",
            f"Idempotency-Key {idempotency_key!r} sent again",
            f"nothing: answered with build {answer.id}",
        )
    )
    return Opened(answer, created=False, joined=joined, replayed=True)


def _join(
    ports: Ports, twin: Build, build: Build, caller: Caller, note: str, idempotency_key: str, now: datetime
) -> Opened:
    """The request recorded on the open build it joins: its key (when it has one) and its audit row."""
    audit = _audit(
        caller, twin.template_id, now, "rebuild-joined", _why(caller, note), f"joined build {twin.id}"
    )
    if not idempotency_key:
        ports.ledger.record_action(audit)
        return Opened(twin, created=False, joined=True)
    join = Join(
        twin.template_id,
        build.provenance.idempotency_key,
        twin.id,
        now,
        caller.identity,
        build.provenance.request_digest,
    )
    claimed = ports.ledger.join_build(join, action=audit)
    if (claimed.build.record.id, claimed.caller_id, claimed.digest) != (twin.id, join.caller_id, join.digest):
        # the key was claimed meanwhile by a racing request: a replay if it was this one, else refused
        return _replay(ports, claimed, caller, join.digest, idempotency_key, now)
    return Opened(twin, created=False, joined=True)


def _audit(
    caller: Caller, template_id: TemplateId, now: datetime, action: str, why: str, changed: str
) -> TemplateAction:
    return TemplateAction(
        template_id, now, action, caller.who, caller.object_id, why, caller.correlation_id, changed
    )


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
    text = fold(name_or_id.strip())
    found = [s for s in ledger_states if text in (fold(s.template_id), fold(s.name))]
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
            "the template's row: enabled, its failure count reset",
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

    def approve() -> Build:
        found = _candidate(ports, state, version)
        if found.record.approved_by:
            return found.record
        approved = dataclasses.replace(
            found.record, approved_by=caller.who, approved_by_id=caller.object_id, updated_at=now
        )
        why = f"promotion approved by {caller.who}" + (f": {note}" if note else "")
        ports.ledger.save_build(  # the approval and its audit row: one transaction
            approved,
            etag=found.etag,
            transition=found.record.becomes(approved, why=why, by=caller.trigger),
            action=_audit(
                caller, state.template_id, now, "promotion-approved", why, f"build {approved.id} approved"
            ),
        )
        return approved

    approved = retry_on_conflict(approve, f"the candidate of {state.name}")
    acted = Reconciler(ports, policy, now=now, by=caller.trigger, correlation_id=caller.correlation_id)
    report = acted.run(only={fold(state.template_id)})
    return ports.ledger.get_build(approved.id).record, report


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
        return finish_rollback(
            ports, state.template_id, left, now=now, by=caller.trigger, fresh=False, finisher=caller
        )
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
