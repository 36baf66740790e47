"""Getting a queued build going (pure): once the shell has given it a run slot, `start` says how
(lease it Running, or recreate its pinned template first); `refused` decides its move when AIB turns
the run request down; `unprovisioned` handles a template AIB could not provision."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta

from .actions import Action, Delete, Save, move
from .builds import Build, BuildReason, BuildState
from .limits import MAX_TEXT
from .model import ImageTemplate
from .planner import is_pinned
from .runs import Policy, failed_attempt

# AIB's ProvisioningErrorCode (REST definitions 2024-02-01 and 2025-10-01; azure-mgmt-imagebuilder 2.0.0
# `models.ProvisioningErrorCode`). The Bad*/Unsupported*/No* codes say the definition itself is wrong: the
# build fails at once, in Azure's words. ServerError and Other are worth another attempt, and so is any
# code outside the enum: it is `modelAsString`, so Azure may send values this list does not know yet.
PERMANENT_PROVISIONING = frozenset(
    {
        "BadSourceType",
        "BadPIRSource",
        "BadManagedImageSource",
        "BadSharedImageVersionSource",
        "BadCustomizerType",
        "UnsupportedCustomizerType",
        "NoCustomizerScript",
        "BadValidatorType",
        "UnsupportedValidatorType",
        "NoValidatorScript",
        "BadDistributeType",
        "BadSharedImageDistribute",
        "BadStagingResourceGroup",
    }
)


def permanent_provisioning(code: str) -> bool:
    """Whether AIB's provisioningErrorCode says submitting the same definition again cannot help."""
    return code in PERMANENT_PROVISIONING


def unprovisioned(
    build: Build, template: ImageTemplate, now: datetime, policy: Policy, by: str
) -> list[Action]:
    """A template AIB could not provision: a transient error spends an attempt and the template is
    deleted to be submitted again (written ahead: the definition goes on the build first); a permanent
    one fails the build at once, in Azure's words."""
    error = template.provisioning_error
    said = f"{error.code}: {error.message}" if error else "no provisioningError given"
    message = f"AIB could not provision {template.name} ({said})"
    spent = dataclasses.replace(build, attempts=build.attempts + 1)
    if error is not None and permanent_provisioning(error.code):
        failed = dataclasses.replace(spent, state=BuildState.FAILED, message=message)
        return [move(build, failed, f"{message}: not worth retrying", now, by)]
    step = failed_attempt(spent, message, now, policy)
    assert step.after is not None  # noqa: S101 - failed_attempt always moves
    if step.after.state is BuildState.FAILED or template.definition is None:
        return [move(build, step.after, step.why, now, by)]
    resubmit = dataclasses.replace(
        step.after,
        next_attempt_at=None,
        definition_after=build.definition_after or template.definition.text,
        definition_hash_before=build.definition_hash_before or template.definition.hash,
        definition_hash_after=build.definition_hash_after or template.definition.hash,
    )
    save = move(build, resubmit, f"{step.why}; deleting the template to submit it again", now, by)
    return [save, Delete(f"{template.name} failed to provision: deleted to be submitted again")]


@dataclass(frozen=True)
class Lease:
    """Write the build Running before AIB is asked (only the writer that won asks)."""

    save: Save


@dataclass(frozen=True)
class Recreate:
    """A pinned template names another version: its new definition goes on the build, then the old
    template is deleted; a later pass creates it once the delete is done."""

    save: Save


@dataclass(frozen=True)
class Refuse:
    save: Save


Start = Lease | Recreate | Refuse


def start(build: Build, template: ImageTemplate, *, now: datetime, policy: Policy, by: str) -> Start:
    if needs_recreate(template, build):
        assert template.definition is not None  # noqa: S101 - needs_recreate checks it
        after = template.definition.with_source_version(build.source.resolved_version)
        if len(after.text) > MAX_TEXT:
            why = f"the template definition ({len(after.text)} characters) is too large to recreate safely"
            return Refuse(
                move(build, dataclasses.replace(build, state=BuildState.FAILED, message=why), why, now, by)
            )
        written = dataclasses.replace(
            build,
            definition_hash_before=template.definition.hash,
            definition_hash_after=after.hash,
            definition_after=after.text,
            message=f"recreating {template.name} with {build.source.resolved_version}",
            updated_at=now,
        )
        return Recreate(Save(build, written))
    attempt = build.attempts + 1
    leased = dataclasses.replace(
        build,
        state=BuildState.RUNNING,
        sub_state=None,
        attempts=attempt,
        run_started_at=now,
        run_ended_at=None,
        next_attempt_at=None,
        cancel_requested_at=None,
        temporary_refusals=0,  # counted in a row: a refusal after this lease starts again from one
        updated_at=now,
    )
    return Lease(move(build, leased, f"run requested (attempt {attempt} of {policy.max_attempts})", now, by))


def needs_recreate(template: ImageTemplate, build: Build) -> bool:
    """A pinned template whose definition names another version than the build's."""
    wanted = build.source.resolved_version
    if build.reason is BuildReason.EXTERNAL or not wanted or not is_pinned(template):
        return False
    return template.definition is not None and template.definition.source_version != wanted


@dataclass(frozen=True)
class Refusal:
    """How AIB answered a run request that did not start a run."""

    kind: str  # busy (a run is going: 409) | temporary (429/5xx/timeout) | permanent (4xx)
    message: str
    delay: float | None = None  # the server's Retry-After, when it gave one


def refused(
    leased: Build, before: Build, refusal: Refusal, *, now: datetime, policy: Policy, by: str
) -> Save:
    """The build's move when AIB turned down the run request the lease was for. A busy template or a
    temporary error does not spend the attempt, but temporary refusals in a row have a budget too."""
    back = dataclasses.replace(
        leased, state=BuildState.QUEUED, attempts=before.attempts, run_started_at=before.run_started_at
    )
    if refusal.kind == "busy":
        return move(leased, back, f"AIB refused the run: {refusal.message}", now, by)
    if refusal.kind == "temporary":
        refusals = before.temporary_refusals + 1
        if refusals > policy.temporary_refusals:
            why = f"AIB refused the run {refusals} times in a row ({refusal.message}); giving up"
            failed = dataclasses.replace(
                back, state=BuildState.FAILED, message=why, temporary_refusals=refusals
            )
            return move(leased, failed, why, now, by)
        delay = timedelta(seconds=refusal.delay) if refusal.delay else policy.backoff(refusals)
        later = dataclasses.replace(back, next_attempt_at=now + delay, temporary_refusals=refusals)
        return move(
            leased, later, f"asking AIB for the run failed ({refusal.message}); retry after {delay}", now, by
        )
    step = failed_attempt(leased, f"AIB refused the run: {refusal.message}", now, policy)
    assert step.after is not None  # noqa: S101 - failed_attempt always moves
    return move(leased, step.after, step.why, now, by)


def describe_start(plan: Start) -> tuple[str, str]:
    """(what, why) of starting a build, as a person reads it."""
    after, why = (
        plan.save.after,
        plan.save.transition.why if plan.save.transition else plan.save.after.message,
    )
    match plan:
        case Lease():
            return f"start a run for {after.id}", why
        case Recreate():
            return f"recreate the template for {after.id}", why
        case Refuse():
            return f"fail {after.id}", why
