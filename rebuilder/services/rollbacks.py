"""The steps of a rollback once it has been asked (its intent is on the template's row): shared by the
caller who asked and by the reconcile pass that finishes a rollback whose caller died.

Order, each step idempotent: the template's audit trail records it (keyed by when it was asked: a
second recording is the same row), the gallery demotes the version (`excludeFromLatest: true`), the
build is written Revoked, and the template's row remembers the revoked build (its children are
checked against it), stands its regions on the fallback's image and drops the intent. A crash after
any step leaves the intent on the row, and whoever comes next does the rest.
"""

from __future__ import annotations

import itertools
from datetime import datetime

from rebuilder.domain.builds import Build, BuildState
from rebuilder.domain.errors import Conflict
from rebuilder.domain.model import TemplateId
from rebuilder.domain.releases import (
    after_rollback,
    forgotten,
    in_latest,
    rollback,
    version_name,
    versions_of,
)
from rebuilder.domain.standing import RollbackIntent, TemplateAction

from .history import every
from .ports import Ports
from .records import update_state

ROLLBACK_DEPTH = 200  # a template's newest builds looked at for its versions in latest


def recent_builds(ports: Ports, template_id: TemplateId) -> list[Build]:
    return list(
        itertools.islice(
            every(lambda token: ports.ledger.list_builds(template_id, continuation=token)), ROLLBACK_DEPTH
        )
    )


def finish_rollback(
    ports: Ports,
    template_id: TemplateId,
    intent: RollbackIntent,
    *,
    now: datetime,
    by: str,
    fresh: bool,
) -> tuple[Build, Build]:
    """Carry out the rollback `intent` (the steps it has not done yet): (the revoked build, the one
    fallen back to). `fresh`: asked just now, so a build revoked or out of latest since the caller
    listed the builds is a rollback that raced with another, refused (and the intent dropped) before
    anything changes; otherwise (an abandoned rollback being finished) its done steps are skipped."""
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
    decided = rollback(builds, now=now, by=intent.by, why=intent.reason, of=intent.build_id)
    why = f"rolled back by {intent.by}: {intent.reason}; {version_name(decided.fallback)} is latest again"
    ports.ledger.record_action(
        TemplateAction(
            template_id, intent.at, "rolled-back", intent.by, intent.by_id, why, intent.correlation_id
        )
    )
    for version in versions_of(decided.revoke):
        ports.gallery.set_excluded_from_latest(version, True)
    if current.record.state is not BuildState.REVOKED:
        finishing = "" if fresh else " (finished after its caller stopped)"
        ports.ledger.save_build(
            decided.revoke,
            etag=current.etag,
            transition=current.record.becomes(decided.revoke, why=why + finishing, by=by),
        )
    rows = ports.ledger.list_regions(decided.fallback.id)
    update_state(
        ports.ledger,
        template_id,
        lambda s: after_rollback(s, decided.revoke, decided.fallback, rows, now=now),
    )
    return decided.revoke, decided.fallback
