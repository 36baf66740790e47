"""Timer and Event Grid triggers, independent of the Functions types: plain values in, a summary out.

A timer invocation with bad settings fails (the host records it and the next tick tries again). An
Event Grid invocation never raises: a raise makes Event Grid redeliver, and a malformed or unreadable
event would be redelivered forever; the timer catches up with anything an event could not do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rebuilder.bootstrap import Services
from rebuilder.domain.errors import RebuilderError
from rebuilder.domain.notices import Notice
from rebuilder.services.detection import PassReport
from rebuilder.services.events import ResourceEvent, on_resource_event
from rebuilder.services.reconciler import Reconciler
from rebuilder.services.watch_and_act import watch_and_act

from .detection import act_summary, pass_summary

log = logging.getLogger("rebuilder.triggers")


def watch_sources(get_services: Callable[[], Services], *, correlation_id: str = "") -> dict[str, Any]:
    _, summary = watch_once(get_services(), trigger="timer", correlation_id=correlation_id)
    log.info("watch_sources: %s", summary)
    return summary


def reconcile_builds(get_services: Callable[[], Services], *, correlation_id: str = "") -> dict[str, Any]:
    """Advance every open build from what Azure reports; start queued builds as slots free up."""
    summary = reconcile_once(get_services(), by="reconciler", correlation_id=correlation_id)
    log.info("reconcile_builds: %s", summary)
    return summary


def watch_once(
    services: Services, *, trigger: str, correlation_id: str = ""
) -> tuple[PassReport, dict[str, Any]]:
    """One watch pass (the timer's, or the CLI's): detect, claim, start; its notices announced."""
    report, acted = watch_and_act(
        services.detection(),
        services.settings.scopes,
        services.policy(),
        now=services.clock.now(),
        trigger=trigger,
        correlation_id=correlation_id,
        concurrency=services.settings.watch_concurrency,
    )
    return report, {**pass_summary(report), **act_summary(acted), **announce(services, acted.events)}


def reconcile_once(
    services: Services, *, by: str, correlation_id: str = "", dry_run: bool = False
) -> dict[str, Any]:
    """One reconcile pass (the timer's, or the CLI's); its notices announced. A dry run decides and
    lists what it would do, and changes nothing."""
    acted = Reconciler(
        services.detection(),
        services.policy(),
        now=services.clock.now(),
        by=by,
        correlation_id=correlation_id,
        dry_run=dry_run,
    ).run()
    if dry_run:
        return act_summary(acted)
    return {**act_summary(acted), **announce(services, acted.events)}


def announce(services: Services, notices: Sequence[Notice]) -> dict[str, Any]:
    """Publish the pass's notices when a topic is configured. Best effort: the ledger already holds
    every fact, so a topic that is down costs announcements, never the pass."""
    if services.notifier is None or not notices:
        return {"notices_published": 0}
    try:
        services.notifier.publish(notices)
    except RebuilderError as error:
        log.warning("publishing %d notice(s) failed: %s", len(notices), error)
        return {"notices_published": 0, "notices_failed": len(notices)}
    return {"notices_published": len(notices)}


def resource_event(
    get_services: Callable[[], Services], event: Mapping[str, Any], *, correlation_id: str = ""
) -> dict[str, Any]:
    """`event`: the fields of an Event Grid or CloudEvents event (type, subject, id, data)."""
    try:
        parsed = _parse(event)
    except ValueError as error:
        log.warning("on_resource_event: malformed event acknowledged and dropped: %s", error)
        return {"handled": False, "reason": f"malformed event: {error}"}
    try:
        services = get_services()
        outcome = on_resource_event(
            services.detection(),
            services.settings.scopes,
            parsed,
            services.policy(),
            now=services.clock.now(),
            correlation_id=correlation_id,
        )
    except Exception as error:  # the outermost boundary: log, acknowledge, let the timer catch up
        log.exception("on_resource_event %s failed; the next watch pass catches up", parsed.id)
        return {"handled": False, "reason": f"failed: {type(error).__name__}: {error}"}
    result: dict[str, Any] = {"handled": outcome.handled, "reason": outcome.reason}
    if outcome.report is not None:
        result.update(pass_summary(outcome.report))
    if outcome.acted is not None:
        result.update(act_summary(outcome.acted))
        result.update(announce(services, outcome.acted.events))
    log.info("on_resource_event %s: %s", parsed.id, result)
    return result


def _parse(event: Mapping[str, Any]) -> ResourceEvent:
    kind, subject, event_id = event.get("type"), event.get("subject"), event.get("id")
    if not isinstance(kind, str) or not kind:
        raise ValueError("no event type")
    data = event.get("data")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValueError(f"data is a {type(data).__name__}, not an object")
    operation, uri = data.get("operationName", ""), data.get("resourceUri", "")
    if not all(isinstance(v, str) for v in (operation, uri)) or not isinstance(subject or "", str):
        raise ValueError("operationName, resourceUri and subject must be strings")
    return ResourceEvent(
        str(event_id or ""), kind[:200], str(subject or "")[:2000], operation[:200], uri[:2000]
    )


def event_fields(event: Any) -> dict[str, Any]:
    """The fields rebuilder reads, from either schema the Functions worker hands over (an
    EventGridEvent has `event_type`, a CloudEvent `type`); unreadable data becomes None."""
    try:
        data = event.get_json()
    except (AttributeError, TypeError, ValueError):
        data = getattr(event, "data", None)
    kind = getattr(event, "event_type", None) or getattr(event, "type", None)
    return {
        "id": getattr(event, "id", None),
        "type": kind,
        "subject": getattr(event, "subject", None),
        "data": data,
    }
