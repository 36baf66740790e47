"""Reconcile (DESIGN §3, steps 4–6): start builds, follow them to every region, repair, retry.

Level-triggered: each pass reads the ledger's open builds and what Azure says, decides with the pure
functions of domain/runs.py, and writes the outcome with conditional writes. Every step is safe to
repeat, so a crash between any two of them is healed by the next pass:

- a build is listed on its template's row before anything runs (records.open_build);
- a run is *leased* before it is asked for: the build is written Running (If-Match) and only the
  writer that won asks AIB — two passes never start two runs, and a request that AIB never shows is
  asked again after a grace period;
- a pinned template's new definition is written to the build before the old template is deleted,
  so a crash between the delete and the create is healed from the ledger;
- a failed region is repaired (target regions re-applied) before the repair is counted;
- the template's row is brought up to date from the finished build, idempotently.

Cost: an idle pass (no open build) makes no ARM call; otherwise one template GET per template with
open builds, plus one gallery-version GET per distributing build (and the run-output list once).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rebuilder.domain import resource_ids
from rebuilder.domain.builds import (
    Build,
    BuildId,
    BuildReason,
    BuildState,
    RegionStatus,
)
from rebuilder.domain.definition import TemplateDefinition
from rebuilder.domain.errors import (
    Conflict,
    NotFound,
    PermanentError,
    RebuilderError,
    StaleWrite,
    TemporaryError,
)
from rebuilder.domain.limits import MAX_TEXT
from rebuilder.domain.lineage import is_child
from rebuilder.domain.model import (
    GalleryVersionId,
    ImageTemplate,
    LastRun,
    RunState,
    TemplateId,
)
from rebuilder.domain.notices import Notice, about, disabled, ended
from rebuilder.domain.planner import is_pinned
from rebuilder.domain.ports import Versioned
from rebuilder.domain.regions import Region
from rebuilder.domain.runs import (
    Policy,
    Seen,
    Step,
    after_distribution,
    changed_rows,
    decide,
    failed_attempt,
    observe,
    replication,
    settled,
    unaccounted,
)
from rebuilder.domain.standing import TemplateState

from .detection import Ports
from .history import where_we_stand
from .lineage import trace
from .records import adopt_external, update_state, version_name

log = logging.getLogger(__name__)
_BUSY = (RunState.RUNNING, RunState.CANCELING)


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
    waiting: list[str] = field(default_factory=list)  # why a queued build did not start
    problems: list[str] = field(default_factory=list)
    events: list[Notice] = field(default_factory=list)


class Reconciler:
    def __init__(
        self, ports: Ports, policy: Policy, *, now: datetime, by: str = "reconciler", correlation_id: str = ""
    ) -> None:
        self.ports = ports
        self.policy = policy
        self.now = now
        self.by = by
        self.correlation_id = correlation_id
        self.report = ReconcileReport()
        self.running = 0

    # -- the pass -------------------------------------------------------------------------------------
    def run(
        self, states: Sequence[TemplateState] | None = None, *, only: Collection[str] | None = None
    ) -> ReconcileReport:
        """Advance every open build (or those of the templates in `only`, lower-cased ids)."""
        states = where_we_stand(self.ports.ledger) if states is None else states
        busy = [s for s in states if s.open_builds]
        loaded = {s.template_id: self._load(s) for s in busy}
        self.running = sum(
            1 for builds in loaded.values() for b in builds if b.record.state is BuildState.RUNNING
        )
        ready: list[tuple[Versioned[Build], ImageTemplate]] = []
        for state in busy:
            if only is not None and state.template_id.lower() not in only:
                continue
            if state.follow_after is not None and state.follow_after > self.now:
                self.report.waiting.append(
                    f"{state.name}: Azure answered with temporary errors; looking again at "
                    f"{state.follow_after:%Y-%m-%d %H:%M:%S} UTC"
                )
                continue
            self.report.templates += 1
            self.report.builds += len(loaded[state.template_id])
            try:
                startable = self._follow(state, loaded[state.template_id])
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
                self._note(state, self._recovered)
            if startable is not None:
                ready.append(startable)
        for build, template in sorted(ready, key=lambda r: r[0].record.created_at):
            if self.running >= self.policy.max_concurrent_runs:
                self.report.waiting.append(
                    f"{build.record.id}: waiting for a free slot ({self.running} of "
                    f"{self.policy.max_concurrent_runs} runs going)"
                )
                continue
            try:
                self._start(build, template)
            except StaleWrite as error:
                log.info("%s: %s", build.record.id, error)
            except RebuilderError as error:
                self._problem(build.record.template_id, error)
        return self.report

    def _backed_off(
        self, state: TemplateState, error: TemporaryError
    ) -> Callable[[TemplateState], TemplateState]:
        """Look at the template again only after the server's Retry-After, or the backoff from settings
        (growing with each error in a row): a throttled API is not hammered by every pass."""
        errors = state.follow_errors + 1
        wait = max(self.policy.backoff(errors), timedelta(seconds=error.delay or 0))
        return lambda s: dataclasses.replace(
            s, follow_after=self.now + wait, follow_errors=errors, updated_at=self.now
        )

    def _recovered(self, state: TemplateState) -> TemplateState:
        return dataclasses.replace(state, follow_after=None, follow_errors=0, updated_at=self.now)

    def _note(self, state: TemplateState, change: Callable[[TemplateState], TemplateState]) -> None:
        try:
            update_state(self.ports.ledger, state.template_id, change)
        except RebuilderError as error:  # the backoff is a courtesy: the next pass tries again
            log.info("%s: recording the backoff failed: %s", state.template_id, error)

    def _problem(self, subject: str, error: Exception) -> None:
        self.report.problems.append(f"{subject}: {error}")
        log.warning("%s: %s", subject, error)

    def _load(self, state: TemplateState) -> list[Versioned[Build]]:
        builds: list[Versioned[Build]] = []
        for build_id in state.open_builds:
            try:
                builds.append(self.ports.ledger.get_build(build_id))
            except NotFound:  # listed but never recorded: nothing to follow
                self._unlist(state.template_id, build_id)
        return sorted(builds, key=lambda b: b.record.created_at)

    def _unlist(self, template_id: TemplateId, build_id: BuildId) -> None:
        update_state(self.ports.ledger, template_id, lambda s: s.without_open(build_id, at=self.now))

    # -- one template -----------------------------------------------------------------------------------
    def _follow(
        self, state: TemplateState, builds: list[Versioned[Build]]
    ) -> tuple[Versioned[Build], ImageTemplate] | None:
        for done in [b for b in builds if b.record.state.finished]:
            self._settle(done.record)  # a crash came between the build's end and its template's row
        live = [b for b in builds if not b.record.state.finished]
        template = self._template(state, live) if live else None
        if template is None:
            return None
        run = template.last_run
        if (
            run is not None
            and not any(b.record.state is BuildState.RUNNING for b in live)
            and unaccounted(run, state)
        ):
            live.append(self._adopt(template, run))
        live = [b for b in (self._advance(b, template, state) for b in live) if not b.record.state.finished]
        return self._startable(template, live)

    def _advance(
        self, build: Versioned[Build], template: ImageTemplate, state: TemplateState
    ) -> Versioned[Build]:
        if build.record.state is BuildState.RUNNING:
            return self._follow_run(build, template, state)
        if build.record.state is BuildState.REPLICATING:
            return self._follow_replication(build, template, None)
        return build

    def _startable(
        self, template: ImageTemplate, live: list[Versioned[Build]]
    ) -> tuple[Versioned[Build], ImageTemplate] | None:
        """The template's oldest queued build that is due, if the template can run now."""
        if any(b.record.state is BuildState.RUNNING for b in live):
            return None
        queued = [
            b
            for b in live
            if b.record.state is BuildState.QUEUED
            and (b.record.next_attempt_at is None or b.record.next_attempt_at <= self.now)
        ]
        if not queued:
            return None
        run = template.last_run
        if run is not None and run.state in _BUSY:  # AIB refuses a second run; it is followed above
            self.report.waiting.append(f"{queued[0].record.id}: {template.name} is running a build")
            return None
        if (template.provisioning_state or "Succeeded") != "Succeeded":
            self._not_ready(queued[0], template)
            return None
        return queued[0], template

    def _not_ready(self, build: Versioned[Build], template: ImageTemplate) -> None:
        if template.provisioning_state != "Failed":
            self.report.waiting.append(f"{build.record.id}: {template.name} is {template.provisioning_state}")
            return
        spent = build.record.attempts + 1  # the attempt is spent although no run could start
        attempt = dataclasses.replace(build.record, attempts=spent)
        step = failed_attempt(
            attempt, f"the template {template.name} failed to provision", self.now, self.policy
        )
        self._apply(build, step.to or BuildState.FAILED, step.why, {**step.changes, "attempts": spent})

    def _template(self, state: TemplateState, live: list[Versioned[Build]]) -> ImageTemplate | None:
        try:
            return self.ports.imagebuilder.get_template(state.template_id)
        except NotFound:
            pending = next(
                (b for b in live if b.record.definition_after and b.record.state is BuildState.QUEUED), None
            )
            if pending is not None:  # deleted for a recreate, not yet created again: create it now
                self.ports.imagebuilder.create_template(
                    state.template_id, TemplateDefinition(pending.record.definition_after)
                )
                self.report.recreated.append(state.template_id)
                return None
            why = f"the image template {state.name} no longer exists"
            for build in live:
                self._apply(build, BuildState.FAILED, why, {"message": why})
            return None

    # -- runs -------------------------------------------------------------------------------------------
    def _adopt(self, template: ImageTemplate, run: LastRun) -> Versioned[Build]:
        """A run nobody asked rebuilder for: recorded as a build with reason `external`."""
        build = adopt_external(
            self.ports.ledger, template, run, now=self.now, by=self.by, correlation_id=self.correlation_id
        )
        self.report.external.append(build.record.id)
        return build

    def _follow_run(
        self, build: Versioned[Build], template: ImageTemplate, state: TemplateState
    ) -> Versioned[Build]:
        b = build.record
        seen = observe(template.last_run, requested_at=b.run_started_at)
        if seen.seen is not Seen.NOT_VISIBLE and seen.started_at is not None:
            build = self._matched(build, template, state, seen.started_at)
            b = build.record
        step = decide(b, seen, now=self.now, policy=self.policy)
        if step.cancel:
            self.ports.imagebuilder.cancel_run(b.template_id)
            changed = b.changed(at=self.now, cancel_requested_at=self.now, message=step.why)
            return Versioned(changed, self.ports.ledger.save_build(changed, etag=build.etag))
        if step.follow_outputs:
            return self._follow_replication(build, template, step)
        if step.to is None:
            return build
        return self._apply(build, step.to, step.why, dict(step.changes))

    def _matched(
        self, build: Versioned[Build], template: ImageTemplate, state: TemplateState, started: datetime
    ) -> Versioned[Build]:
        """First sight of the build's run in AIB: record its real start and resolved source version,
        and account for the run on the template's row (so it is never taken for somebody else's)."""
        b = build.record
        if state.known_run_started_at is None or state.known_run_started_at < started:
            update_state(
                self.ports.ledger,
                b.template_id,
                lambda s: (
                    s
                    if s.known_run_started_at is not None and s.known_run_started_at >= started
                    else dataclasses.replace(s, known_run_started_at=started, updated_at=self.now)
                ),
            )
        exact = version_name(template.source.exact_version)
        if b.run_started_at == started and (not exact or exact == b.source.resolved_version):
            return build
        source = dataclasses.replace(b.source, resolved_version=exact or b.source.resolved_version)
        changed = b.changed(at=self.now, run_started_at=started, source=source)
        if is_child(changed) and source.resolved_version != b.source.resolved_version:
            changed = changed.changed(at=self.now, lineage=trace(self.ports.ledger, changed))
        return Versioned(changed, self.ports.ledger.save_build(changed, etag=build.etag))

    def _start(self, build: Versioned[Build], template: ImageTemplate) -> None:
        b = build.record
        if needs_recreate(template, b):
            self._recreate(build, template)
            return
        attempt = b.attempts + 1
        leased, transition = b.moved(
            BuildState.RUNNING,
            at=self.now,
            why=f"run requested (attempt {attempt} of {self.policy.max_attempts})",
            by=self.by,
            attempts=attempt,
            run_started_at=self.now,
            run_ended_at=None,
            next_attempt_at=None,
            cancel_requested_at=None,
        )
        etag = self.ports.ledger.save_build(leased, etag=build.etag, transition=transition)  # the lease
        self.running += 1
        current = Versioned(leased, etag)
        try:
            self.ports.imagebuilder.start_run(b.template_id)
        except Conflict as error:  # somebody else's run is going: wait for it, this attempt not spent
            self._apply(current, BuildState.QUEUED, f"AIB refused the run: {error}", {"attempts": b.attempts})
            return
        except TemporaryError as error:
            delay = timedelta(seconds=error.delay) if error.delay else self.policy.retry_backoff
            self._apply(
                current,
                BuildState.QUEUED,
                f"asking AIB for the run failed ({error}); retry after {delay}",
                {"attempts": b.attempts, "next_attempt_at": self.now + delay},
            )
            return
        except PermanentError as error:
            step = failed_attempt(leased, f"AIB refused the run: {error}", self.now, self.policy)
            self._apply(current, step.to or BuildState.FAILED, step.why, dict(step.changes))
            return
        self.report.started.append(b.id)
        self.report.events.append(about(leased, "BuildStarted", attempt=attempt))

    def _recreate(self, build: Versioned[Build], template: ImageTemplate) -> None:
        """AIB templates are immutable: delete and create the pinned template with the new version.
        The new definition is in the ledger before the old template is deleted."""
        b = build.record
        if template.definition is None:
            raise PermanentError(f"the definition of {template.name} could not be read to recreate it")
        after = template.definition.with_source_version(b.source.resolved_version)
        if len(after.text) > MAX_TEXT:
            self._apply(
                build,
                BuildState.FAILED,
                f"the template definition ({len(after.text)} characters) is too large to recreate safely",
                {},
            )
            return
        written = b.changed(
            at=self.now,
            definition_hash_before=template.definition.hash,
            definition_hash_after=after.hash,
            definition_after=after.text,
            message=f"recreating {template.name} with {b.source.resolved_version}",
        )
        self.ports.ledger.save_build(written, etag=build.etag)
        self.ports.imagebuilder.delete_template(b.template_id)
        self.ports.imagebuilder.create_template(b.template_id, after)
        self.report.recreated.append(b.template_id)

    # -- distribution -----------------------------------------------------------------------------------
    def _follow_replication(
        self, build: Versioned[Build], template: ImageTemplate, step: Step | None
    ) -> Versioned[Build]:
        """Run outputs → gallery image versions → one row per target region; repair failed regions
        once the run is over; Published when every region is Completed."""
        b = build.record
        over = step is None or step.to is BuildState.REPLICATING
        outputs = b.outputs or self._outputs(b.template_id)
        if outputs != b.outputs:
            b = b.changed(at=self.now, outputs=outputs)
        versions = [v for v in (_gallery_version(o) for o in outputs) if v is not None]
        found = [self.ports.gallery.get_version(v) for v in versions]
        previous = self.ports.ledger.list_regions(b.id)
        seen = replication(b, found, previous, now=self.now, policy=self.policy, may_repair=over)
        for version in found:
            if any(r.region in seen.repair for r in version.replication):
                self.ports.gallery.set_target_regions(version.id, version.target_regions)
        self.report.repaired.extend((b.id, r) for r in seen.repair)
        rows = changed_rows(seen.rows, previous)
        for row in rows:
            if row.state == "Completed" and row.completed_at == self.now:
                self.report.events.append(about(b, "RegionReplicated", region=row.region))
        to, why, changes = after_distribution(
            step, seen, over=over, gallery=bool(versions), repair_limit=self.policy.repair_limit
        )
        if to is None:
            if not rows and b is build.record:
                return build
            return Versioned(
                b, self.ports.ledger.save_build(b.changed(at=self.now), etag=build.etag, regions=rows)
            )
        return self._apply(Versioned(b, build.etag), to, why, changes, rows)

    def _outputs(self, template_id: TemplateId) -> tuple[str, ...]:
        outputs = self.ports.imagebuilder.list_run_outputs(template_id)
        return tuple(
            o.artifact_id or o.artifact_uri or "" for o in outputs if o.artifact_id or o.artifact_uri
        )

    # -- writes -----------------------------------------------------------------------------------------
    def _apply(
        self,
        build: Versioned[Build],
        to: BuildState,
        why: str,
        changes: dict[str, object],
        rows: Sequence[RegionStatus] = (),
    ) -> Versioned[Build]:
        after, transition = build.record.moved(to, at=self.now, why=why, by=self.by, **changes)
        etag = self.ports.ledger.save_build(after, etag=build.etag, transition=transition, regions=rows)
        if build.record.state is BuildState.RUNNING and to is not BuildState.RUNNING:
            self.running -= 1  # a slot freed in this pass serves a queued build in this pass
        self.report.moved.append((after.id, to, why))
        if to.finished:
            self.report.finished.append(after.id)
            image = next((v for v in map(_gallery_version, after.outputs) if v), "")
            self.report.events.extend(ended(after, image))
            self._settle(after)
        return Versioned(after, etag)

    def _settle(self, build: Build) -> None:
        rows = self.ports.ledger.list_regions(build.id)
        before: list[TemplateState] = []

        def change(state: TemplateState) -> TemplateState:
            before.append(state)
            return settled(state, build, rows, now=self.now, policy=self.policy)

        after = update_state(self.ports.ledger, build.template_id, change)
        if after is not None and after.disabled and before and not before[-1].disabled:
            self.report.events.append(disabled(build, after.disabled_reason))


def needs_recreate(template: ImageTemplate, build: Build) -> bool:
    """A pinned template whose definition names another version than the build's."""
    wanted = build.source.resolved_version
    if build.reason is BuildReason.EXTERNAL or not wanted or not is_pinned(template):
        return False
    return template.definition is not None and template.definition.source_version != wanted


def _gallery_version(artifact: str) -> GalleryVersionId | None:
    try:
        return resource_ids.gallery_version_id(artifact)
    except ValueError:
        return None
