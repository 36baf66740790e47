"""Events in (DESIGN §5): a gallery image version was written (or rebuilder announced an image it
published), so re-plan only the templates that build from that image — no full scan. Everything else
is acknowledged and ignored. The event arrives here as plain fields; the trigger has already refused
what could not be read."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from rebuilder.domain import resource_ids
from rebuilder.domain.casing import fold
from rebuilder.domain.errors import NotFound
from rebuilder.domain.model import Scope
from rebuilder.domain.notices import TYPE_PREFIX
from rebuilder.domain.planner import Managed, mode_of
from rebuilder.domain.runs import Policy

from .detection import PassReport
from .history import where_we_stand
from .ports import Ports
from .reconciler import ReconcileReport
from .watch_and_act import watch_and_act

log = logging.getLogger(__name__)
WRITE_SUCCESS = "microsoft.resources.resourcewritesuccess"
GALLERY_VERSION_WRITE = "microsoft.compute/galleries/images/versions/write"
IMAGE_PUBLISHED = fold(TYPE_PREFIX + "ImagePublished")  # our own notice, routed back: children next


@dataclass(frozen=True)
class ResourceEvent:
    id: str
    type: str
    subject: str
    operation: str = ""
    resource_uri: str = ""


@dataclass(frozen=True)
class EventOutcome:
    handled: bool
    reason: str
    report: PassReport | None = None
    acted: ReconcileReport | None = None


def on_resource_event(
    ports: Ports,
    scopes: Iterable[Scope],
    event: ResourceEvent,
    policy: Policy,
    *,
    now: datetime,
    correlation_id: str = "",
) -> EventOutcome:
    gallery_write = fold(event.type) == WRITE_SUCCESS and fold(event.operation) == GALLERY_VERSION_WRITE
    if not gallery_write and fold(event.type) != IMAGE_PUBLISHED:
        return EventOutcome(False, f"ignored: {event.type} {event.operation}".strip())
    try:
        image = fold(resource_ids.gallery_image_id(event.resource_uri or event.subject))
    except ValueError as error:
        return EventOutcome(False, f"ignored: not a gallery image version ({error})")
    managed: list[Managed] = []
    for state in where_we_stand(ports.ledger):
        if state.gallery_image_id != image:
            continue
        try:
            template = ports.imagebuilder.get_template(state.template_id)
        except NotFound:
            continue  # deleted since: the next full pass forgets it
        mode, _ = mode_of(template.tags)
        if mode is not None:
            managed.append(Managed(template, mode))
    if not managed:
        return EventOutcome(True, f"no managed template builds from {image}")
    report, acted = watch_and_act(
        ports, scopes, policy, now=now, trigger="eventgrid", correlation_id=correlation_id, only=managed
    )
    return EventOutcome(True, f"re-planned {len(managed)} template(s) built from {image}", report, acted)
