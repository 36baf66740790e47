"""The steps of a rollback once it has been asked (its intent is on the template's row): shared by the
caller who asked and by the reconcile pass that finishes a rollback whose caller died, or whose
demotion the gallery had not applied yet.

What is latest again is read from the gallery, not from the ledger: per region, the highest Succeeded
version replicated there that is not excluded from latest once the revoked one is demoted (a version
built before rebuilder managed the template counts). It is said before anything changes (a refusal, a
dry run) and recorded with the rollback.

Order, each step idempotent: the template's audit trail records it (keyed by when it was asked: a
second recording is the same row), the gallery is sent the demotion (`excludeFromLatest: true`, the
profile's and every region's), and once a read shows it in effect the build is written Revoked and
the template's row remembers the revoked build (its children are checked against it), stands its
regions on the fallback and drops the intent. A crash after any step, or a demotion still `Updating`,
leaves the intent on the row, and whoever comes next does the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from rebuilder.domain import resource_ids
from rebuilder.domain.builds import Build, BuildId, BuildState, RegionStatus
from rebuilder.domain.casing import fold
from rebuilder.domain.errors import Conflict, StaleWrite
from rebuilder.domain.model import GalleryImageVersion, TemplateId
from rebuilder.domain.regions import Region
from rebuilder.domain.releases import (
    Fallback,
    NoFallback,
    Rollback,
    after_rollback,
    fallback_in,
    fallen_back,
    forgotten,
    in_latest,
    previous_in_latest,
    rollback,
    serves_in,
    to_roll_back,
    version_name,
    version_order,
    versions_of,
)
from rebuilder.domain.standing import RollbackIntent, TemplateAction

from .history import every
from .ports import Ports
from .records import Caller, update_state

ROLLBACK_DEPTH = 200  # a template's newest builds looked at for its versions in latest


def recent_builds(ports: Ports, template_id: TemplateId) -> list[Build]:
    return list(
        itertools.islice(
            every(lambda token: ports.ledger.list_builds(template_id, continuation=token)), ROLLBACK_DEPTH
        )
    )


FALLBACK_READS = 20  # gallery versions read (with replication) per image looking for the fallback


@dataclass(frozen=True)
class RollbackOutcome:
    """A rollback as it stands: `done` once the demotion is read back and the build written Revoked
    (else the build as it stands, the demotion sent and followed by the next pass)."""

    build: Build
    decided: Rollback
    done: bool

    @property
    def fallbacks(self) -> tuple[Fallback, ...]:
        return self.decided.fallbacks


def fallbacks_for(ports: Ports, current: Build, builds: Sequence[Build]) -> tuple[Fallback, ...]:
    """What the gallery will serve as `latest`, per region of each of `current`'s versions, once they
    are demoted (highest first; at most FALLBACK_READS versions read per image)."""
    previous = previous_in_latest(builds, current)
    leaving = {fold(v) for v in versions_of(current)}
    found: list[Fallback] = []
    rows: dict[str, list[RegionStatus]] = {}  # the ledger's regions of each fallback build, read once
    for version_id in versions_of(current):
        regions = ports.gallery.get_version(version_id, with_replication=False).regions
        listed = ports.gallery.list_versions(resource_ids.gallery_image_id(version_id))
        ordered = sorted(
            (v for v in listed if fold(v.id) not in leaving and version_order(v.name) is not None),
            key=lambda v: version_order(v.name) or (),
            reverse=True,
        )
        served: dict[Region, GalleryImageVersion] = {}
        reads = 0
        for listed_version in ordered:
            looking = [r for r in regions if r not in served and not listed_version.excluded_in(r)]
            if not looking or fold(listed_version.provisioning_state or "") != "succeeded":
                continue
            if reads == FALLBACK_READS or len(served) == len(regions):
                break
            full = ports.gallery.get_version(listed_version.id)
            reads += 1
            served.update({r: full for r in looking if serves_in(full, r)})
        for where in regions:
            fallback = fallback_in(where, served.get(where), builds, previous)
            if fallback.build_id:
                if fallback.build_id not in rows:
                    rows[fallback.build_id] = ports.ledger.list_regions(BuildId(fallback.build_id))
                done = next((r.completed_at for r in rows[fallback.build_id] if r.region == where), None)
                fallback = dataclasses.replace(fallback, completed_at=done or fallback.completed_at)
            found.append(fallback)
    return tuple(found)


def decide_rollback(
    ports: Ports, template_id: TemplateId, *, now: datetime, by: str, why: str, of: str = ""
) -> Rollback:
    """The rollback that would be done now (nothing changed): what is demoted, what is latest again."""
    builds = recent_builds(ports, template_id)
    current = to_roll_back(builds, of=of)
    previous = previous_in_latest(builds, current)
    fallbacks = fallbacks_for(ports, current, builds)
    return rollback(current, fallbacks, now=now, by=by, why=why, previous=previous, builds=builds)


def finish_rollback(
    ports: Ports,
    template_id: TemplateId,
    intent: RollbackIntent,
    *,
    now: datetime,
    by: str,
    fresh: bool,
    send: bool = True,
    decided: Rollback | None = None,
    finisher: Caller | None = None,
) -> RollbackOutcome:
    """Carry out the rollback `intent` (the steps it has not done yet). `fresh`: asked just now, so a
    build revoked or out of latest since the caller listed the builds is a rollback that raced with
    another, refused (and the intent dropped) before anything changes; otherwise (an abandoned
    rollback being finished) its done steps are skipped. `send`: False to only follow a demotion sent
    by a caller still within its lease (read it back, finish once it is in effect). `decided`: the
    rollback its caller decided just now (the gallery is not read for it again). `finisher`: the person
    finishing somebody else's abandoned rollback (the audit row names them, and whose rollback it was);
    without one, the audit row names the requester (a reconcile pass finishes on their behalf).

    The audit row is written in the transaction that revokes the build: a rollback is in the trail
    exactly when it took effect."""
    current = ports.ledger.get_build(intent.build_id)
    name = current.record.template_name
    gone = in_latest(current.record) is None and (fresh or current.record.state is not BuildState.REVOKED)
    if gone:
        update_state(ports.ledger, template_id, lambda s: forgotten(s, intent, now=now))
        raise Conflict(
            f"{version_name(current.record)} of {name} is no longer in latest: it was rolled back or "
            "replaced by someone else at the same time"
        )
    builds = [current.record if b.id == current.record.id else b for b in recent_builds(ports, template_id)]
    if decided is None or decided.revoke.id != current.record.id:
        try:
            to_roll_back(builds, of=intent.build_id)
            decided = rollback(
                current.record,
                fallbacks_for(ports, current.record, builds),
                now=now,
                by=intent.by,
                why=intent.reason,
                previous=previous_in_latest(builds, current.record),
                builds=builds,
            )
        except NoFallback:
            update_state(ports.ledger, template_id, lambda s: forgotten(s, intent, now=now))
            raise
    why = f"rolled back by {intent.by}: {intent.reason}; {fallen_back(decided.fallbacks)}"
    if send:
        for version in versions_of(decided.revoke):
            read = ports.gallery.get_version(version, with_replication=False)
            if not read.excluded_everywhere(True) and not read.updating:
                with contextlib.suppress(Conflict):  # an update in flight: sent again by the next pass
                    ports.gallery.set_excluded_from_latest(version, True)
    demoted = all(
        (read := ports.gallery.get_version(v, with_replication=False)).excluded_everywhere(True)
        and not read.updating
        for v in versions_of(decided.revoke)
    )
    if not demoted:
        return RollbackOutcome(current.record, decided, done=False)
    if current.record.state is not BuildState.REVOKED:
        finishing = "" if fresh else " (finished after its caller stopped)"
        if finisher is not None:
            finishing = f" (finished by {finisher.who} after its caller stopped)"
        audit = TemplateAction(
            template_id,
            now,
            "rolled-back",
            finisher.who if finisher else intent.by,
            finisher.object_id if finisher else intent.by_id,
            why + finishing,
            finisher.correlation_id if finisher else intent.correlation_id,
            changed=f"build {decided.revoke.id} revoked; {fallen_back(decided.fallbacks)}",
        )
        try:
            ports.ledger.save_build(
                decided.revoke,
                etag=current.etag,
                transition=current.record.becomes(decided.revoke, why=why + finishing, by=by),
                action=audit,
            )
        except StaleWrite:  # the caller and a pass finishing it at once: one wrote it
            if ports.ledger.get_build(current.record.id).record.state is not BuildState.REVOKED:
                raise
    update_state(
        ports.ledger,
        template_id,
        lambda s: after_rollback(s, decided.revoke, decided.fallbacks, now=now),
    )
    return RollbackOutcome(decided.revoke, decided, done=True)
