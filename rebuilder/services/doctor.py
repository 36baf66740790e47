"""The doctor: what an operator runs on first contact, as the identity that runs the service (the API
form runs as the deployed app's own identity).

Read only: it asks for tokens, lists templates, reads permissions, image definitions, identities and
whether the ledger's tables exist; it changes nothing in Azure or in the ledger. It gathers through
the ports and leaves every judgement, and every word, to rebuilder/domain/diagnosis.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rebuilder.domain import diagnosis, resource_ids
from rebuilder.domain.casing import fold
from rebuilder.domain.diagnosis import Check, Diagnosis
from rebuilder.domain.errors import NotFound, RebuilderError
from rebuilder.domain.model import GalleryImageId, ImageTemplate, Scope
from rebuilder.domain.permissions import Where
from rebuilder.domain.planner import mode_of
from rebuilder.domain.ports import Access, ImageBuilder, LedgerStorage


@dataclass(frozen=True)
class Subject:
    """What the doctor is asked about, in the service's terms (the entry point reads the settings)."""

    scopes: tuple[Scope, ...]
    settings: str  # the settings as read, summarised
    arm_audience: str
    ledger: str  # where the ledger lives, said without secrets
    events_topic: str | None
    events_audience: str


def examine(
    subject: Subject, *, imagebuilder: ImageBuilder, access: Access, ledger_storage: LedgerStorage | None
) -> Diagnosis:
    checks = [diagnosis.settings_valid(subject.settings)]
    try:
        checks.append(diagnosis.arm_token(subject.arm_audience, access.get_token(subject.arm_audience)))
    except RebuilderError as error:
        checks.append(diagnosis.arm_token(subject.arm_audience, None, str(error)))
    else:
        checks += _azure(subject.scopes, imagebuilder, access)
    checks.append(_ledger(subject.ledger, ledger_storage))
    checks.append(_events(subject, access))
    return Diagnosis(tuple(checks))


class _Places:
    """The scopes to read permissions at, each with what it is to the service (first spelling kept)."""

    def __init__(self) -> None:
        self.kinds: dict[str, tuple[str, set[Where]]] = {}

    def add(self, scope: str, kind: Where) -> None:
        self.kinds.setdefault(fold(scope), (scope, set()))[1].add(kind)


def _azure(scopes: Iterable[Scope], imagebuilder: ImageBuilder, access: Access) -> list[Check]:
    checks: list[Check] = []
    places = _Places()
    managed: dict[str, ImageTemplate] = {}
    for scope in scopes:
        places.add(scope.id, Where.TEMPLATES)
        # The Marketplace reader is assigned at the subscription; a resource group's permissions
        # include what its subscription grants, so one read per scope covers both.
        places.add(scope.id, Where.SUBSCRIPTION)
        try:
            listed = list(imagebuilder.list_templates(scope))
        except RebuilderError as error:
            gone = isinstance(error, NotFound)
            checks.append(diagnosis.templates_unlisted(scope.id, str(error), not_found=gone))
            continue
        mine = [t for t in listed if mode_of(t.tags)[0] is not None]
        checks.append(diagnosis.templates_listed(scope.id, len(listed), len(mine)))
        managed.update((fold(t.id), t) for t in mine)
    images = _gallery_images(managed.values())
    identities = _identities(managed.values())
    for image in images.values():
        parsed = resource_ids.parse(image)
        places.add(Scope(parsed.subscription_id, parsed.resource_group).id, Where.GALLERY)
    for place, kinds in places.kinds.values():
        try:
            checks.append(diagnosis.permissions(place, kinds, access.list_permissions(place)))
        except RebuilderError as error:
            checks.append(diagnosis.permissions_unread(place, str(error)))
    for image in images.values():
        try:
            checks.append(diagnosis.gallery_image(image, access.get_gallery_image(image)))
        except RebuilderError as error:
            checks.append(diagnosis.gallery_image(image, None, str(error)))
    for identity, users in identities.values():
        if not _is_resource_id(identity):
            checks.append(diagnosis.aib_identity(identity, users, None, "not an ARM resource id"))
            continue
        try:
            checks.append(diagnosis.aib_identity(identity, users, access.get_identity(identity)))
        except RebuilderError as error:
            checks.append(diagnosis.aib_identity(identity, users, None, str(error)))
    return checks


def _is_resource_id(text: str) -> bool:
    try:
        resource_ids.parse(text)
    except ValueError:
        return False
    return True


def _gallery_images(templates: Iterable[ImageTemplate]) -> dict[str, GalleryImageId]:
    """The gallery images the templates distribute to and build from, by lower-cased id."""
    found: dict[str, GalleryImageId] = {}
    for template in templates:
        named: list[str] = [d.gallery_image_id for d in template.distributions if d.gallery_image_id]
        named += [template.source.image_version_id] if template.source.image_version_id else []
        for image in named:
            try:
                canonical = resource_ids.gallery_image_id(image)
            except ValueError:
                continue  # not a gallery image: the planner says so for the template
            found.setdefault(fold(canonical), canonical)
    return found


def _identities(templates: Iterable[ImageTemplate]) -> dict[str, tuple[str, int]]:
    """The identities the templates run as, each with how many templates use it, by lower-cased id."""
    found: dict[str, tuple[str, int]] = {}
    for template in templates:
        for identity in template.definition.identity_ids if template.definition else ():
            spelt, users = found.get(fold(identity), (identity, 0))
            found[fold(identity)] = (spelt, users + 1)
    return found


def _ledger(where: str, storage: LedgerStorage | None) -> Check:
    if storage is None:  # a ledger passed in (tests) without its storage
        return diagnosis.ledger(where, None, "no storage was given to look at")
    try:
        return diagnosis.ledger(where, storage.list_tables())
    except RebuilderError as error:
        return diagnosis.ledger(where, None, str(error))


def _events(subject: Subject, access: Access) -> Check:
    if not subject.events_topic:
        return diagnosis.events_not_set()
    try:
        expires = access.get_token(subject.events_audience)
    except RebuilderError as error:
        return diagnosis.events_token(subject.events_topic, subject.events_audience, None, str(error))
    return diagnosis.events_token(subject.events_topic, subject.events_audience, expires)
