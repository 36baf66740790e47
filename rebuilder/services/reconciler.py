"""Reconcile (DESIGN §3, steps 4–6): the shell around the pure decision in domain/reconcile.py.

Per template with open builds it gathers (the ledger's builds, the template from AIB, and the run
outputs and replication of a build being distributed), asks `decide`, applies the actions in order,
and records. Queued builds that may start are then started oldest first, within the global cap on
runs. Every action is safe to repeat, so a crash between any two is healed by the next pass: a build
is leased (written Running) before AIB is asked, a recreated definition is on the build before the
old template is deleted, a failed region is repaired before the repair is counted.

Cost: an idle pass makes no ARM call; otherwise one template GET per template with open builds, plus
one gallery-version GET per distributing build (and the run-output list once).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rebuilder.domain import reconcile as decision
from rebuilder.domain.builds import Build, BuildId, BuildState
from rebuilder.domain.errors import (
    Conflict,
    NotFound,
    PermanentError,
    RebuilderError,
    StaleWrite,
    TemporaryError,
)
from rebuilder.domain.model import ImageTemplate, TemplateId
from rebuilder.domain.notices import Notice, about, disabled, ended
from rebuilder.domain.ports import Versioned
from rebuilder.domain.regions import Region
from rebuilder.domain.runs import Policy, settled
from rebuilder.domain.standing import TemplateState

from .history import where_we_stand
from .lineage import trace
from .ports import Ports
from .records import adopt_external, update_state

log = logging.getLogger(__name__)
Change = Callable[[TemplateState], TemplateState]


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
    planned: list[str] = field(default_factory=list)  # a dry run: the actions it would take


class Reconciler:
    def __init__(
        self, ports: Ports, policy: Policy, *, now: datetime, by: str = "reconciler", correlation_id: str = ""
    ) -> None:
        self.ports, self.policy, self.now, self.by = ports, policy, now, by
        self.correlation_id = correlation_id
        self.report = ReconcileReport()
        self.running = 0

    def run(self, *, only: Collection[str] | None = None) -> ReconcileReport:
        """Advance every open build (or those of the templates in `only`, lower-cased ids)."""
        busy = [s for s in where_we_stand(self.ports.ledger) if s.open_builds]
        loaded = {s.template_id: self._load(s) for s in busy}
        self.running = sum(1 for bs in loaded.values() for b in bs if b.record.state is BuildState.RUNNING)
        ready: list[tuple[Versioned[Build], ImageTemplate]] = []
        for state in busy:
            if only is not None and state.template_id.lower() not in only:
                continue
            if state.follow_after is not None and state.follow_after > self.now:
                self.report.waiting.append(f"{state.name}: {waiting_after_errors(state)}")
                continue
            self.report.templates += 1
            self.report.builds += len(loaded[state.template_id])
            try:
                ready += self._pass(state, loaded[state.template_id])
            except StaleWrite as error:  # another pass moved first; the next pass looks again
                log.info("%s: %s", state.template_id, error)
                continue
            except TemporaryError as error:
                self._problem(state.template_id, error)
                self._note(state, self._backed_off(state, error))
                continue
            except RebuilderError as error:
                self._problem(state.template_id, error)
                continue
            if state.follow_errors:
                self._note(
                    state,
                    lambda s: dataclasses.replace(s, follow_after=None, follow_errors=0, updated_at=self.now),
                )
        for build, template in sorted(ready, key=lambda r: r[0].record.created_at):
            if self.running >= self.policy.max_concurrent_runs:
                cap = self.policy.max_concurrent_runs
                self.report.waiting.append(
                    f"{build.record.id}: waiting for a free slot ({self.running} of {cap} runs going)"
                )
                continue
            try:
                self._start(build, template)
            except StaleWrite as error:
                log.info("%s: %s", build.record.id, error)
            except RebuilderError as error:
                self._problem(build.record.template_id, error)
        return self.report

    # -- one template -----------------------------------------------------------------------------------
    def _pass(
        self, state: TemplateState, builds: list[Versioned[Build]]
    ) -> list[tuple[Versioned[Build], ImageTemplate]]:
        stored = {b.record.id: b for b in builds}
        live = any(not b.record.state.finished for b in builds)
        template = self._template(state.template_id) if live else None
        gathered = decision.Gathered(state, tuple(b.record for b in builds), template)
        chosen = decision.decide(gathered, now=self.now, policy=self.policy, by=self.by)
        if chosen.read_distribution is not None:
            gathered = dataclasses.replace(
                gathered, distribution=self._distribution(stored[chosen.read_distribution].record)
            )
            chosen = decision.decide(gathered, now=self.now, policy=self.policy, by=self.by)
        for action in chosen.actions:
            self._apply(action, stored, state)
        if chosen.runnable is None or template is None:
            return []
        return [(stored[chosen.runnable.id], template)]

    def _template(self, template_id: TemplateId) -> ImageTemplate | None:
        try:
            return self.ports.imagebuilder.get_template(template_id)
        except NotFound:
            return None

    def _distribution(self, build: Build) -> decision.Distribution:
        outputs = build.outputs or tuple(
            o.artifact_id or o.artifact_uri or ""
            for o in self.ports.imagebuilder.list_run_outputs(build.template_id)
            if o.artifact_id or o.artifact_uri
        )
        named = [v for v in map(decision.gallery_version, outputs) if v is not None]
        versions = tuple(self.ports.gallery.get_version(v) for v in named)
        return decision.Distribution(
            build.id, outputs, versions, tuple(self.ports.ledger.list_regions(build.id))
        )

    # -- applying -----------------------------------------------------------------------------------------
    def _apply(
        self, action: decision.Action, stored: dict[BuildId, Versioned[Build]], state: TemplateState
    ) -> None:
        ib, tid = self.ports.imagebuilder, state.template_id
        match action:
            case decision.Save():
                self._save(action, stored)
            case decision.Settle(build=build):
                self._settle(build)
            case decision.Account(started_at=started):
                update_state(
                    self.ports.ledger,
                    tid,
                    lambda s: (
                        s
                        if s.known_run_started_at and s.known_run_started_at >= started
                        else dataclasses.replace(s, known_run_started_at=started, updated_at=self.now)
                    ),
                )
            case decision.Adopt(run=run):
                template = ib.get_template(tid)
                adopted = adopt_external(
                    self.ports.ledger,
                    template,
                    run,
                    now=self.now,
                    by=self.by,
                    correlation_id=self.correlation_id,
                )
                self.report.external.append(adopted.record.id)
            case decision.Cancel(build=build):
                ib.cancel_run(build.template_id)
            case decision.Repair(version=version, regions=regions, failed=failed, build=build_id):
                self.ports.gallery.set_target_regions(version, regions)
                self.report.repaired.extend((build_id, r) for r in failed)
            case decision.Delete():
                ib.delete_template(tid)
            case decision.Create(definition=definition):
                ib.create_template(tid, definition)
                self.report.recreated.append(tid)
            case decision.Wait(why=why):
                self.report.waiting.append(why)

    def _save(self, save: decision.Save, stored: dict[BuildId, Versioned[Build]]) -> None:
        before, after = stored[save.before.id], save.after
        if save.trace_lineage:
            after = dataclasses.replace(after, lineage=trace(self.ports.ledger, after))
        etag = self.ports.ledger.save_build(
            after, etag=before.etag, transition=save.transition, regions=save.rows
        )
        stored[after.id] = Versioned(after, etag)
        if before.record.state is BuildState.RUNNING and after.state is not BuildState.RUNNING:
            self.running -= 1  # a slot freed in this pass serves a queued build in this pass
        if save.transition is not None:
            self.report.moved.append((after.id, after.state, save.transition.why))
        self.report.events += [
            about(after, "RegionReplicated", region=r.region)
            for r in save.rows
            if r.state == "Completed" and r.completed_at == self.now
        ]
        if after.state.finished:
            self.report.finished.append(after.id)
            self.report.events += ended(
                after, next((v for v in map(decision.gallery_version, after.outputs) if v), "")
            )
            self._settle(after)

    def _settle(self, build: Build) -> None:
        rows = self.ports.ledger.list_regions(build.id)
        before: list[TemplateState] = []

        def change(state: TemplateState) -> TemplateState:
            before.append(state)
            return settled(state, build, rows, now=self.now, policy=self.policy)

        after = update_state(self.ports.ledger, build.template_id, change)
        if after is not None and after.disabled and before and not before[-1].disabled:
            self.report.events.append(disabled(build, after.disabled_reason))

    def _start(self, build: Versioned[Build], template: ImageTemplate) -> None:
        stored = {build.record.id: build}
        plan = decision.start(build.record, template, now=self.now, policy=self.policy, by=self.by)
        self._save(plan.save, stored)
        if isinstance(plan, decision.Recreate):  # the definition is on the build: now the delete
            self.ports.imagebuilder.delete_template(template.id)
            self.report.recreated.append(template.id)
            return
        if not isinstance(plan, decision.Lease):
            return
        self.running += 1
        refusal = self._run(template.id)
        if refusal is None:
            self.report.started.append(build.record.id)
            self.report.events.append(
                about(plan.save.after, "BuildStarted", attempt=plan.save.after.attempts)
            )
            return
        back = decision.refused(
            plan.save.after, build.record, refusal, now=self.now, policy=self.policy, by=self.by
        )
        self._save(back, stored)

    def _run(self, template_id: TemplateId) -> decision.Refusal | None:
        try:
            self.ports.imagebuilder.start_run(template_id)
        except Conflict as error:  # somebody else's run is going: wait for it, this attempt not spent
            return decision.Refusal("busy", str(error))
        except TemporaryError as error:
            return decision.Refusal("temporary", str(error), error.delay)
        except PermanentError as error:
            return decision.Refusal("permanent", str(error))
        return None

    # -- bookkeeping --------------------------------------------------------------------------------------
    def _load(self, state: TemplateState) -> list[Versioned[Build]]:
        builds: list[Versioned[Build]] = []
        for build_id in state.open_builds:
            try:
                builds.append(self.ports.ledger.get_build(build_id))
            except NotFound:  # listed but never recorded: nothing to follow
                self._note(state, _unlisted(build_id, self.now))
        return sorted(builds, key=lambda b: b.record.created_at)

    def _backed_off(self, state: TemplateState, error: TemporaryError) -> Change:
        """Look at the template again only after the server's Retry-After, or the backoff from settings
        (growing with each error in a row): a throttled API is not hammered by every pass."""
        errors = state.follow_errors + 1
        wait = max(self.policy.backoff(errors), timedelta(seconds=error.delay or 0))
        return lambda s: dataclasses.replace(
            s, follow_after=self.now + wait, follow_errors=errors, updated_at=self.now
        )

    def _note(self, state: TemplateState, change: Change) -> None:
        try:
            update_state(self.ports.ledger, state.template_id, change)
        except RebuilderError as error:  # the backoff is a courtesy: the next pass tries again
            log.info("%s: recording the backoff failed: %s", state.template_id, error)

    def _problem(self, subject: str, error: Exception) -> None:
        self.report.problems.append(f"{subject}: {error}")
        log.warning("%s: %s", subject, error)


def _unlisted(build_id: BuildId, now: datetime) -> Change:
    return lambda s: s.without_open(build_id, at=now)


def waiting_after_errors(state: TemplateState) -> str:
    return (
        f"Azure answered with temporary errors; looking again at {state.follow_after:%Y-%m-%d %H:%M:%S} UTC"
    )
