"""Lineage (DESIGN §2): a child's image carries the root Marketplace version that flowed into it
through its parents. Pure; the ledger lookups that find the parent build live in services/lineage.py.
"""

from __future__ import annotations

from . import resource_ids
from .builds import Build, Lineage
from .casing import fold
from .model import SourceKind, SourceRef


def source_ref(build: Build) -> SourceRef:
    """Where the ledger keeps the versions seen for this build's source (a gallery source is keyed by
    its image definition, whatever version the template names)."""
    src = build.source
    if src.kind is SourceKind.PLATFORM_IMAGE:
        return SourceRef(src.kind, build.location, src.publisher, src.offer, src.sku)
    try:
        image = fold(resource_ids.gallery_image_id(src.gallery_image_id))
    except ValueError:
        image = src.gallery_image_id
    return SourceRef(src.kind, gallery_image_id=image)


def root_ref(build: Build) -> SourceRef:
    """Where the sightings of the build's root version are kept: its own source for a baseline."""
    return build.lineage.root_source if build.lineage else source_ref(build)


def lineage_of(parent: Build, *, previous_parent: Build | None = None) -> Lineage:
    """The lineage of a child built on the image `parent` published. `previous_parent`: the build that
    published the image the child replaces, when the ledger has it; otherwise the image it replaces is
    taken to come from the root version the parent replaced."""
    if previous_parent is not None:
        previous_root = previous_parent.root_version
    elif parent.lineage is not None:
        previous_root = parent.lineage.previous_root_version
    else:
        previous_root = parent.previous_baseline
    return Lineage(parent.id, parent.template_name, parent.root_version, root_ref(parent), previous_root)


def is_child(build: Build) -> bool:
    return build.source.kind is SourceKind.SHARED_IMAGE_VERSION
