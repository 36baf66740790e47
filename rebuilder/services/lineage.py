"""Tracing a child's build back to its parent build and root source version (DESIGN §2, lineage).

A child builds from a gallery image version; the managed parent that distributes to that gallery
image published it, and the ledger has the parent's build with that version among its outputs. Reads
only: the template rows (one partition) and the recent builds of the parents.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

from rebuilder.domain import resource_ids
from rebuilder.domain.builds import Build, Lineage
from rebuilder.domain.casing import fold
from rebuilder.domain.lineage import is_child, lineage_of
from rebuilder.domain.ports import Ledger
from rebuilder.domain.standing import TemplateState

from .history import every, where_we_stand

SEARCHED = 200  # recent builds of each parent looked at for the one that published a version


def trace(ledger: Ledger, build: Build, *, states: Sequence[TemplateState] | None = None) -> Lineage | None:
    """The lineage of `build`, or None for a baseline, a build whose source version is not resolved
    yet, or a gallery version no managed parent's build published (made by hand, or before us)."""
    if not is_child(build) or not build.source.resolved_version:
        return None
    try:
        image = fold(resource_ids.gallery_image_id(build.source.gallery_image_id))
    except ValueError:
        return None
    known = where_we_stand(ledger) if states is None else states
    parents = [
        s for s in known if image in s.distributes_to and fold(s.template_id) != fold(build.template_id)
    ]
    parent = _publisher(ledger, parents, image, build.source.resolved_version)
    if parent is None:
        return None
    previous = (
        _publisher(ledger, parents, image, build.previous_baseline) if build.previous_baseline else None
    )
    return lineage_of(parent, previous_parent=previous)


def _publisher(ledger: Ledger, parents: Sequence[TemplateState], image: str, version: str) -> Build | None:
    wanted = fold(f"{image}/versions/{version}")
    for parent in parents:
        for candidate in itertools.islice(_history(ledger, parent), SEARCHED):
            if any(_version_id(o) == wanted for o in candidate.outputs):
                return candidate
    return None


def _history(ledger: Ledger, parent: TemplateState) -> Iterator[Build]:
    return every(lambda token: ledger.list_builds(parent.template_id, limit=50, continuation=token))


def _version_id(artifact: str) -> str:
    try:
        return fold(resource_ids.gallery_version_id(artifact))
    except ValueError:
        return ""
