"""Applying what the reconcile decision chose (domain/actions.py, domain/starts.py), one action at a
time, in order, and reporting what happened. No decisions here: each action is carried out as said.

Write-ahead order is the decision's: a build is leased (written Running) before AIB is asked for the
run; a recreated definition is on the build before the template is deleted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from rebuilder.domain import actions as act
from rebuilder.domain import resource_ids
from rebuilder.domain import starts as starting
from rebuilder.domain.builds import Build, BuildId, BuildState
from rebuilder.domain.errors import Conflict, PermanentError, TemporaryError
from rebuilder.domain.model import ImageTemplate, TemplateId
from rebuilder.domain.notices import Notice, about, disabled, ended
from rebuilder.domain.ports import Versioned
from rebuilder.domain.regions import Region
from rebuilder.domain.releases import version_name
from rebuilder.domain.runs import Policy, settled
from rebuilder.domain.standing import TemplateAction, TemplateState

from .lineage import trace
from .ports import Ports
from .records import adopt_external, update_state


@dataclass
class ReconcileReport:
    templates: int = 0  # templates with open builds looked at
    builds: int = 0  # open builds looked at
    started: list[BuildId] = field(default_factory=list)
    moved: list[tuple[BuildId, BuildState, str]] = field(default_factory=list)  # every transition
    finished: list[BuildId] = field(default_factory=list)
    repaired: list[tuple[BuildId, Region]] = field(default_factory=list)
    recreated: list[TemplateId] = field(default_factory=list)
    external: list[BuildId] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # why a build did not move on
    problems: list[str] = field(default_factory=list)
    events: list[Notice] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)  # a dry run: what the pass would do


class Applier:
    def __init__(
        self,
        ports: Ports,
        policy: Policy,
        report: ReconcileReport,
        *,
        now: datetime,
        by: str,
        correlation_id: str,
    ) -> None:
        self.ports, self.policy, self.report, self.now, self.by = ports, policy, report, now, by
        self.correlation_id = correlation_id
        self.running = 0  # runs going: a slot freed in a pass serves a queued build in that pass

    def apply(
        self, action: act.Action, stored: dict[BuildId, Versioned[Build]], template_id: TemplateId
    ) -> None:
        ib = self.ports.imagebuilder
        match action:
            case act.Save():
                self.save(action, stored)
            case act.Settle(build=build):
                self.settle(build)
            case act.Account(started_at=started):
                update_state(self.ports.ledger, template_id, _accounting(started, self.now))
            case act.Adopt(run=run, template=template):
                adopted = adopt_external(
                    self.ports.ledger,
                    template,
                    run,
                    now=self.now,
                    by=self.by,
                    correlation_id=self.correlation_id,
                )
                self.report.external.append(adopted.record.id)
            case act.Cancel(build=build):
                ib.cancel_run(build.template_id)
            case act.Repair() | act.Tag() | act.Promote() | act.Demote():
                self.gallery(action, template_id)
            case act.Delete():
                ib.delete_template(template_id)
            case act.Create(definition=definition):
                ib.create_template(template_id, definition)
                self.report.recreated.append(template_id)
            case act.Wait(why=why):
                self.report.waiting.append(why)

    def gallery(
        self, action: act.Repair | act.Tag | act.Promote | act.Demote, template_id: TemplateId
    ) -> None:
        """The Compute Gallery changes: repairs, provenance tags, promotion into latest and demotion from
        it (each idempotent, each read back by the next pass). One Azure refuses (a version Updating, a
        body it rejects, throttling) is recorded on the template's trail and sent again next pass."""
        gallery = self.ports.gallery
        match action:
            case act.Repair(build=build_id, version=version, regions=regions, failed=failed):
                if self._sent(template_id, action, lambda: gallery.set_target_regions(version, regions)):
                    self.report.repaired.extend((build_id, r) for r in failed)
            case act.Tag(version=version, tags=tags):
                self._sent(template_id, action, lambda: gallery.set_tags(version, tags))
            case act.Promote(versions=versions) | act.Demote(versions=versions):
                excluded = isinstance(action, act.Demote)
                for version in versions:
                    self._sent(
                        template_id,
                        action,
                        lambda v=version: gallery.set_excluded_from_latest(v, excluded),  # type: ignore[misc]
                    )

    def _sent(self, template_id: TemplateId, action: act.Action, send: Callable[[], None]) -> bool:
        try:
            send()
            return True
        except (Conflict, PermanentError, TemporaryError) as error:
            what, _ = action.describe()
            why = f"Azure refused to {what}: {error}; sent again next pass"
            self.report.waiting.append(why)
            self.ports.ledger.record_action(
                TemplateAction(
                    template_id, self.now, "gallery-update-refused", self.by, "", why, self.correlation_id
                )
            )
            return False

    def save(self, save: act.Save, stored: dict[BuildId, Versioned[Build]]) -> None:
        before, after = stored[save.before.id], save.after
        if save.trace_lineage:
            after = dataclasses.replace(after, lineage=trace(self.ports.ledger, after))
        etag = self.ports.ledger.save_build(
            after, etag=before.etag, transition=save.transition, regions=save.rows
        )
        stored[after.id] = Versioned(after, etag)
        if before.record.state is BuildState.RUNNING and after.state is not BuildState.RUNNING:
            self.running -= 1
        if save.transition is not None:
            self.report.moved.append((after.id, after.state, save.transition.why))
        self.report.events += [
            about(after, "RegionReplicated", region=r.region)
            for r in save.rows
            if r.state == "Completed" and r.completed_at == self.now
        ]
        if after.state is BuildState.CANDIDATE and before.record.state is not BuildState.CANDIDATE:
            update_state(self.ports.ledger, after.template_id, _awaiting(after, self.now))
        if after.state.finished:
            self.report.finished.append(after.id)
            image = next((v for v in map(resource_ids.maybe_gallery_version_id, after.outputs) if v), "")
            self.report.events += ended(after, image)
            self.settle(after)

    def settle(self, build: Build) -> None:
        """The template's row from a finished build (idempotent), announcing a template disabled now."""
        rows = self.ports.ledger.list_regions(build.id)
        before: list[TemplateState] = []

        def change(state: TemplateState) -> TemplateState:
            before.append(state)
            return settled(state, build, rows, now=self.now, policy=self.policy)

        after = update_state(self.ports.ledger, build.template_id, change)
        if after is not None and after.disabled and before and not before[-1].disabled:
            self.report.events.append(disabled(build, after.disabled_reason))

    def start(self, build: Versioned[Build], template: ImageTemplate) -> None:
        """A queued build that has a run slot: leased and run, or its pinned template recreated first."""
        stored = {build.record.id: build}
        plan = starting.start(build.record, template, now=self.now, policy=self.policy, by=self.by)
        self.save(plan.save, stored)
        if isinstance(plan, starting.Recreate):  # the definition is on the build: now the delete
            self.ports.imagebuilder.delete_template(template.id)
            self.report.recreated.append(template.id)
            return
        if not isinstance(plan, starting.Lease):
            return
        self.running += 1
        refusal = self._run(template.id)
        if refusal is None:
            self.report.started.append(build.record.id)
            self.report.events.append(
                about(plan.save.after, "BuildStarted", attempt=plan.save.after.attempts)
            )
            return
        back = starting.refused(
            plan.save.after, build.record, refusal, now=self.now, policy=self.policy, by=self.by
        )
        self.save(back, stored)

    def _run(self, template_id: TemplateId) -> starting.Refusal | None:
        try:
            self.ports.imagebuilder.start_run(template_id)
        except Conflict as error:  # somebody else's run is going
            return starting.Refusal("busy", str(error))
        except TemporaryError as error:
            return starting.Refusal("temporary", str(error), error.delay)
        except PermanentError as error:
            return starting.Refusal("permanent", str(error))
        return None


def _awaiting(build: Build, now: datetime) -> Callable[[TemplateState], TemplateState]:
    """The template's row names its candidate: the plan and its children say it awaits promotion."""
    version = version_name(build)

    def change(state: TemplateState) -> TemplateState:
        if state.candidate_build == build.id:
            return state
        return dataclasses.replace(state, candidate_build=build.id, candidate_version=version, updated_at=now)

    return change


def _accounting(started: datetime, now: datetime) -> Callable[[TemplateState], TemplateState]:
    def change(state: TemplateState) -> TemplateState:
        if state.known_run_started_at is not None and state.known_run_started_at >= started:
            return state
        return dataclasses.replace(state, known_run_started_at=started, updated_at=now)

    return change
