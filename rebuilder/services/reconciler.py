"""Reconcile (DESIGN §3, steps 4–6): gather, ask the pure decision (domain/reconcile.py), apply
(services/applying.py). Level-triggered and safe to repeat: a crash between any two steps is healed
by the next pass.

First, a rollback whose caller died after asking it (its lease ran out) is finished. Then, per
template with open builds: the ledger's builds, the template from AIB, and — for a build being
distributed — its run outputs, the gallery versions they name and its stored region rows. Then the
queued builds that may start are started oldest first, within the global cap on runs.

Cost: an idle pass makes no ARM call; otherwise one template GET per template with open builds, plus
one gallery-version GET per distributing build (and the run-output list once).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection
from datetime import datetime

from rebuilder.domain import notices, resource_ids
from rebuilder.domain.actions import Distribution, Gathered
from rebuilder.domain.builds import Build, BuildId, BuildState
from rebuilder.domain.casing import fold
from rebuilder.domain.errors import NotFound, RebuilderError, StaleWrite, TemporaryError
from rebuilder.domain.model import ImageTemplate, TemplateId
from rebuilder.domain.ports import Versioned
from rebuilder.domain.reconcile import decide
from rebuilder.domain.releases import abandoned, version_name
from rebuilder.domain.runs import Policy, backed_off, recovered, waiting_after_errors
from rebuilder.domain.standing import RollbackIntent, TemplateState
from rebuilder.domain.starts import describe_start, start

from .applying import Applier, ReconcileReport
from .history import where_we_stand
from .ports import Ports
from .records import update_state
from .rollbacks import finish_rollback

log = logging.getLogger(__name__)
__all__ = ["ReconcileReport", "Reconciler"]


class Reconciler:
    def __init__(
        self,
        ports: Ports,
        policy: Policy,
        *,
        now: datetime,
        by: str = "reconciler",
        correlation_id: str = "",
        dry_run: bool = False,
    ) -> None:
        """`dry_run`: decide, and list what would be done in `report.planned`, changing nothing."""
        self.ports, self.policy, self.now, self.by, self.dry_run = ports, policy, now, by, dry_run
        self.report = ReconcileReport()
        self.applier = Applier(ports, policy, self.report, now=now, by=by, correlation_id=correlation_id)

    def run(self, *, only: Collection[str] | None = None) -> ReconcileReport:
        """Advance every open build (or those of the templates in `only`, lower-cased ids)."""
        states = where_we_stand(self.ports.ledger)
        for state in states:
            if state.rollback is not None and (only is None or fold(state.template_id) in only):
                self._finish_rollback(state, state.rollback, abandoned=abandoned(state, self.now) is not None)
        busy = [s for s in states if s.open_builds]
        loaded = {s.template_id: self._load(s) for s in busy}
        self.applier.running = sum(
            1 for builds in loaded.values() for b in builds if b.record.state is BuildState.RUNNING
        )
        ready: list[tuple[Versioned[Build], ImageTemplate]] = []
        for state in busy:
            if only is None or fold(state.template_id) in only:
                ready += self._follow(state, loaded[state.template_id])
        for build, template in sorted(ready, key=lambda r: r[0].record.created_at):
            going, cap = self.applier.running, self.policy.max_concurrent_runs
            if going >= cap:
                self.report.waiting.append(
                    f"{build.record.id}: waiting for a free slot ({going} of {cap} runs going)"
                )
                continue
            try:
                if self.dry_run:
                    self._plan(
                        template.name,
                        describe_start(
                            start(build.record, template, now=self.now, policy=self.policy, by=self.by)
                        ),
                    )
                    self.applier.running += 1
                    continue
                self.applier.start(build, template)
            except StaleWrite as error:
                log.info("%s: %s", build.record.id, error)
            except RebuilderError as error:
                self._problem(build.record.template_id, error)
        return self.report

    def _follow(
        self, state: TemplateState, builds: list[Versioned[Build]]
    ) -> list[tuple[Versioned[Build], ImageTemplate]]:
        if state.follow_after is not None and state.follow_after > self.now:
            self.report.waiting.append(f"{state.name}: {waiting_after_errors(state)}")
            return []
        self.report.templates += 1
        self.report.builds += len(builds)
        try:
            ready = self._pass(state, builds)
        except StaleWrite as error:  # another pass moved first; the next pass looks again
            log.info("%s: %s", state.template_id, error)
            return []
        except TemporaryError as error:
            self._problem(state.template_id, error)
            delay = error.delay
            if not self.dry_run:
                self._note(
                    state.template_id, lambda s: backed_off(s, delay, now=self.now, policy=self.policy)
                )
            return []
        except RebuilderError as error:
            self._problem(state.template_id, error)
            return []
        if state.follow_errors and not self.dry_run:
            self._note(state.template_id, lambda s: recovered(s, now=self.now))
        return ready

    def _pass(
        self, state: TemplateState, builds: list[Versioned[Build]]
    ) -> list[tuple[Versioned[Build], ImageTemplate]]:
        stored = {b.record.id: b for b in builds}
        live = any(not b.record.state.finished for b in builds)
        template = self._template(state.template_id) if live else None
        gathered = Gathered(state, tuple(b.record for b in builds), template)
        chosen = decide(gathered, now=self.now, policy=self.policy, by=self.by)
        if chosen.read_distributions:
            read = {b: self._distribution(stored[b].record) for b in chosen.read_distributions}
            chosen = decide(
                dataclasses.replace(gathered, distributions=read),
                now=self.now,
                policy=self.policy,
                by=self.by,
            )
        for action in chosen.actions:
            if self.dry_run:
                self._plan(state.name, action.describe())
            else:
                self.applier.apply(action, stored, state.template_id)
        if chosen.runnable is None or template is None:
            return []
        return [(stored[chosen.runnable.id], template)]

    def _finish_rollback(self, state: TemplateState, intent: RollbackIntent, *, abandoned: bool) -> None:
        """A rollback asked and not finished: its demotion followed until the gallery shows it (the
        caller's, while its lease runs), or all of it done now once its caller's lease ran out."""
        if self.dry_run:
            if abandoned:
                self._plan(
                    state.name,
                    (
                        f"finish the rollback of {intent.build_id}",
                        f"asked by {intent.by} at {intent.at:%Y-%m-%d %H:%M:%S} UTC ({intent.reason}); "
                        "its caller stopped before it was done",
                    ),
                )
            return
        try:
            outcome = finish_rollback(
                self.ports,
                state.template_id,
                intent,
                now=self.now,
                by=self.by,
                fresh=False,
                send=abandoned,
            )
        except RebuilderError as error:
            self._problem(state.template_id, error)
            return
        if not outcome.done:
            self.report.waiting.append(
                f"{state.name}: the rollback of {version_name(outcome.build)} waits for the gallery to "
                "show its demotion"
            )
            return
        revoked = outcome.build
        self.report.moved.append((revoked.id, revoked.state, revoked.message))
        self.report.events.append(notices.revoked(revoked, outcome.fallbacks))

    def _template(self, template_id: TemplateId) -> ImageTemplate | None:
        try:
            return self.ports.imagebuilder.get_template(template_id)
        except NotFound:
            return None

    def _distribution(self, build: Build) -> Distribution:
        outputs = build.outputs or tuple(
            o.artifact_id or o.artifact_uri or ""
            for o in self.ports.imagebuilder.list_run_outputs(build.template_id)
            if o.artifact_id or o.artifact_uri
        )
        named = [v for v in map(resource_ids.maybe_gallery_version_id, outputs) if v is not None]
        versions = tuple(self.ports.gallery.get_version(v) for v in named)
        return Distribution(build.id, outputs, versions, tuple(self.ports.ledger.list_regions(build.id)))

    def _load(self, state: TemplateState) -> list[Versioned[Build]]:
        builds: list[Versioned[Build]] = []
        for build_id in state.open_builds:
            try:
                builds.append(self.ports.ledger.get_build(build_id))
            except NotFound:  # listed but never recorded: nothing to follow
                if not self.dry_run:
                    self._note(state.template_id, _unlisted(build_id, self.now))
        return sorted(builds, key=lambda b: b.record.created_at)

    def _note(self, template_id: TemplateId, change: Callable[[TemplateState], TemplateState]) -> None:
        try:
            update_state(self.ports.ledger, template_id, change)
        except RebuilderError as error:  # bookkeeping: the next pass tries again
            log.info("%s: updating its row failed: %s", template_id, error)

    def _plan(self, template: str, what: tuple[str, str]) -> None:
        self.report.planned.append(f"{template}: {what[0]} — {what[1]}")

    def _problem(self, subject: str, error: Exception) -> None:
        self.report.problems.append(f"{subject}: {error}")
        log.warning("%s: %s", subject, error)


def _unlisted(build_id: BuildId, now: datetime) -> Callable[[TemplateState], TemplateState]:
    return lambda state: state.without_open(build_id, at=now)
