"""The watch timer's pass (DESIGN §3, steps 1–4): detect and claim due builds, record runs started
elsewhere, then start what can start — only for the templates this pass touched; the reconcile timer
follows everything else."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime

from rebuilder.domain.builds import BuildId
from rebuilder.domain.casing import fold
from rebuilder.domain.errors import RebuilderError
from rebuilder.domain.model import Scope, TemplateId
from rebuilder.domain.notices import deprecation_scheduled, detected
from rebuilder.domain.planner import Action, Managed
from rebuilder.domain.reconcile import started_elsewhere
from rebuilder.domain.runs import Policy

from .detection import PassReport, watch_pass
from .ports import Ports
from .reconciler import Reconciler, ReconcileReport
from .records import adopt_external


def watch_and_act(
    ports: Ports,
    scopes: Iterable[Scope],
    policy: Policy,
    *,
    now: datetime,
    trigger: str,
    correlation_id: str = "",
    concurrency: int = 8,
    only: Sequence[Managed] | None = None,
) -> tuple[PassReport, ReconcileReport]:
    """The watch timer: detect and claim due builds, record runs started elsewhere, then start what
    can start (only the templates this pass touched: the reconcile timer follows the rest)."""
    report = watch_pass(
        ports,
        scopes,
        now=now,
        trigger=trigger,
        correlation_id=correlation_id,
        concurrency=concurrency,
        only=only,
        defaults=policy.defaults,
    )
    touched = {fold(i.template.id) for i in report.items if i.action is Action.REBUILD}
    adopted: list[BuildId] = []
    problems: list[str] = []
    for managed in report.discovery.managed:
        t = managed.template
        state = report.states.get(TemplateId(fold(t.id)))
        if state is None or state.open_builds or t.last_run is None:
            continue
        if started_elsewhere(t.last_run, state, ()):
            try:
                adopt = adopt_external(
                    ports.ledger, t, t.last_run, now=now, by=trigger, correlation_id=correlation_id
                )
                adopted.append(adopt.record.id)
                touched.add(fold(t.id))
            except RebuilderError as error:
                problems.append(f"{t.id}: recording a run started elsewhere failed: {error}")
    acted = ReconcileReport()
    if touched:
        acted = Reconciler(ports, policy, now=now, by=trigger, correlation_id=correlation_id).run(
            only=touched
        )
    detections = [detected(seen) for seen in report.new_versions]
    detections += [deprecation_scheduled(*d) for d in report.deprecations]
    return (
        dataclasses.replace(report, problems=[*report.problems, *problems]),
        dataclasses.replace(acted, external=[*adopted, *acted.external], events=[*detections, *acted.events]),
    )
