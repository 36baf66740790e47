"""The doctor over the in-memory ports: Azure RBAC's matching of actions (wildcards, notActions per
role), what each check finds and the fix it names, and the report as text and as a document."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.fakes import FixedClock, InMemoryGallery, InMemoryImageBuilder
from devstack.fakes.access import InMemoryAccess, InMemoryLedgerStorage
from rebuilder.domain.definition import TemplateDefinition
from rebuilder.domain.diagnosis import CheckKind, Diagnosis, settings_invalid
from rebuilder.domain.model import (
    Distribution,
    GalleryImageId,
    ImageTemplate,
    PlatformImage,
    Scope,
    Source,
    SourceKind,
    TemplateId,
)
from rebuilder.domain.permissions import Permission, Where, allows, matches, missing
from rebuilder.domain.regions import Region
from rebuilder.entrypoints import doctor as views
from rebuilder.services.doctor import Subject, examine
from rebuilder.settings import Settings

SUB = "11111111-2222-3333-4444-555555555555"
SUB_ID = f"/subscriptions/{SUB}"
TEMPLATES = f"/subscriptions/{SUB}/resourceGroups/rg-templates"
GALLERY_RG = f"/subscriptions/{SUB}/resourceGroups/rg-gallery"
IDENTITY = f"{SUB_ID}/resourceGroups/rg-id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aib"
RUN = "Microsoft.VirtualMachineImages/imageTemplates/run/action"
ARM = "https://management.azure.com/.default"
GRID = "https://eventgrid.azure.net/.default"
UBUNTU = PlatformImage("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2")


# -- Azure RBAC: which actions a caller's permissions allow -------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "action", "matched"),
    [
        ("*", RUN, True),
        (RUN, RUN, True),
        (RUN.upper(), RUN.lower(), True),  # operations compare case-insensitively
        ("Microsoft.VirtualMachineImages/*", RUN, True),
        ("Microsoft.VirtualMachineImages/imageTemplates/*", RUN, True),
        ("*/read", "Microsoft.Compute/galleries/images/read", True),  # '*' spans segments
        ("Microsoft.Compute/*/read", "Microsoft.Compute/galleries/images/versions/read", True),
        ("*/read", RUN, False),
        ("Microsoft.Compute/*", RUN, False),
        ("Microsoft.VirtualMachineImages/imageTemplates/run", RUN, False),  # no prefix match
        ("Microsoft.VirtualMachineImages/imageTemplates/run/action/extra", RUN, False),
        ("Microsoft.VirtualMachineImages/imageTemplates/r?n/action", RUN, False),  # only '*' is special
        (
            "Microsoft.VirtualMachineImages/imageTemplates/run.action",
            RUN.replace("/action", "xaction"),
            False,
        ),
    ],
)
def test_an_action_pattern_matches_as_azure_rbac_reads_it(pattern: str, action: str, matched: bool) -> None:
    assert matches(pattern, action) is matched


@pytest.mark.parametrize(
    ("held", "allowed"),
    [
        ([], False),
        ([Permission(("*",))], True),
        ([Permission(("*",), (RUN,))], False),
        ([Permission(("*",), ("Microsoft.VirtualMachineImages/*",))], False),
        ([Permission(("*",), ("*/action",))], False),
        ([Permission(("*",), ("*/read",))], True),
        # notActions only subtract from their own role: another role granting the action allows it
        ([Permission(("*",), (RUN,)), Permission((RUN,))], True),
        ([Permission(("*/read",)), Permission(("Microsoft.VirtualMachineImages/imageTemplates/*",))], True),
        ([Permission((), (RUN,))], False),
    ],
)
def test_an_action_is_allowed_when_a_role_grants_it_and_that_role_does_not_take_it_back(
    held: list[Permission], allowed: bool
) -> None:
    assert allows(held, RUN) is allowed


def test_each_missing_action_is_named_with_the_role_that_grants_it_there() -> None:
    held = [Permission(("*",), (RUN, "Microsoft.Compute/locations/*"))]
    gaps = missing(held, [Where.TEMPLATES, Where.SUBSCRIPTION])
    assert [(g.action, g.role.name) for g in gaps] == [
        (RUN, "rebuilder template operator"),
        (
            "Microsoft.Compute/locations/publishers/artifacttypes/offers/skus/versions/read",
            "rebuilder marketplace reader",
        ),
    ]
    assert missing(held, [Where.GALLERY]) == ()


# -- the checks ---------------------------------------------------------------------------------------
class Estate:
    """Two managed templates in rg-templates distributing to one gallery in rg-gallery, running as one
    AIB identity; an untagged one; the identity and the image definitions exist; every table too."""

    def __init__(self) -> None:
        self.clock = FixedClock()
        self.imagebuilder = InMemoryImageBuilder(self.clock)
        self.gallery = InMemoryGallery()
        self.access = InMemoryAccess(gallery=self.gallery, now=self.clock.now())
        self.access.add_identity(IDENTITY, "9d3f3c0e-0000-4000-8000-000000000001")
        self.storage = InMemoryLedgerStorage()
        self.events_topic: str | None = None
        for name, tag in (("ubuntu", "auto"), ("app", "manual"), ("sandbox", None)):
            self.add(name, tag)

    def add(self, name: str, tag: str | None) -> None:
        image = image_id(name)
        self.gallery.add_image(image)
        tags = {"golden-image-rebuild": tag} if tag else {}
        body = {"identity": {"type": "UserAssigned", "userAssignedIdentities": {IDENTITY: {}}}, "tags": tags}
        self.imagebuilder.add_template(
            ImageTemplate(
                TemplateId(f"{TEMPLATES}/providers/Microsoft.VirtualMachineImages/imageTemplates/{name}"),
                SUB,
                "rg-templates",
                name,
                Region("westeurope"),
                Source(SourceKind.PLATFORM_IMAGE, UBUNTU, "latest"),
                tags,
                (Distribution("SharedImage", name, image, (Region("westeurope"),)),),
                definition=TemplateDefinition.from_body(body),
            )
        )

    def diagnose(self) -> Diagnosis:
        subject = Subject(
            scopes=(Scope(SUB, "rg-templates"),),
            settings="valid: 1 scope(s)",
            arm_audience=ARM,
            ledger="'rebuilder*' at account devstoreaccount1",
            events_topic=self.events_topic,
            events_audience=GRID,
        )
        return examine(
            subject, imagebuilder=self.imagebuilder, access=self.access, ledger_storage=self.storage
        )


def image_id(name: str) -> GalleryImageId:
    return GalleryImageId(f"{GALLERY_RG}/providers/Microsoft.Compute/galleries/g/images/{name}")


def checks(diagnosis: Diagnosis) -> list[tuple[str, str, bool]]:
    return [(c.kind.value, c.subject, c.ok) for c in diagnosis.checks]


def test_on_a_sound_estate_every_check_passes_and_says_what_it_found() -> None:
    diagnosis = Estate().diagnose()
    assert diagnosis.ok
    assert checks(diagnosis) == [
        ("settings", "environment", True),
        ("ARM token", ARM, True),
        ("templates", TEMPLATES, True),
        ("permissions", TEMPLATES, True),
        ("permissions", GALLERY_RG, True),
        ("gallery image", image_id("ubuntu"), True),
        ("gallery image", image_id("app"), True),  # the untagged template's is not looked at
        ("AIB identity", IDENTITY, True),
        ("ledger", "'rebuilder*' at account devstoreaccount1", True),
        ("events topic", "REBUILDER_EVENTS_TOPIC", True),
    ]
    by_kind = {(c.kind, c.subject): c.detail for c in diagnosis.checks}
    assert by_kind[CheckKind.TEMPLATES, TEMPLATES] == "3 listed, 2 managed (tagged golden-image-rebuild)"
    assert by_kind[CheckKind.PERMISSIONS, TEMPLATES] == (
        "allow the 7 actions of 'rebuilder template operator' and 'rebuilder marketplace reader'"
    )
    assert (
        by_kind[CheckKind.PERMISSIONS, GALLERY_RG] == "allow the 4 actions of 'rebuilder gallery replicator'"
    )
    assert "used by 2 managed template(s)" in by_kind[CheckKind.AIB_IDENTITY, IDENTITY]
    assert "Not checked" in by_kind[CheckKind.AIB_IDENTITY, IDENTITY]  # honest about what it cannot see


def test_a_scope_without_run_names_the_action_and_the_role_that_grants_it() -> None:
    estate = Estate()
    estate.access.set_permissions(TEMPLATES, ["*"], [RUN])
    diagnosis = estate.diagnose()
    assert not diagnosis.ok
    [failed] = diagnosis.failed
    assert (failed.kind, failed.subject, failed.detail) == (
        CheckKind.PERMISSIONS,
        TEMPLATES,
        f"missing {RUN}",
    )
    assert [(m.action, m.role.name) for m in failed.missing] == [(RUN, "rebuilder template operator")]
    assert failed.fix == (
        "assign the custom role 'rebuilder template operator' (deployed as '<prefix> rebuilder template "
        "operator') of infra/modules/roles.bicep at this scope"
    )


def test_a_gallery_resource_group_without_write_names_the_gallery_replicator() -> None:
    estate = Estate()
    estate.access.set_permissions(GALLERY_RG, ["*/read"])
    [failed] = estate.diagnose().failed
    assert failed.subject == GALLERY_RG
    assert failed.detail == "missing Microsoft.Compute/galleries/images/versions/write"
    assert "'rebuilder gallery replicator'" in failed.fix and "at this resource group" in failed.fix


def test_no_arm_token_stops_the_azure_checks_and_says_so() -> None:
    estate = Estate()
    estate.access.refused.add(ARM)
    diagnosis = estate.diagnose()
    assert checks(diagnosis) == [
        ("settings", "environment", True),
        ("ARM token", ARM, False),
        ("ledger", "'rebuilder*' at account devstoreaccount1", True),
        ("events topic", "REBUILDER_EVENTS_TOPIC", True),
    ]
    assert "no Azure check was run" in diagnosis.failed[0].detail
    assert "managed identity" in diagnosis.failed[0].fix


def test_a_missing_identity_or_image_definition_is_named() -> None:
    estate = Estate()
    estate.access.identities.clear()
    estate.gallery.images.pop(image_id("app").lower())
    failed = {(c.kind, c.subject): c for c in estate.diagnose().failed}
    assert set(failed) == {(CheckKind.AIB_IDENTITY, IDENTITY), (CheckKind.GALLERY_IMAGE, image_id("app"))}
    assert "used by 2 managed template(s)" in failed[CheckKind.AIB_IDENTITY, IDENTITY].detail
    assert "AIB_IDENTITY_ID" in failed[CheckKind.AIB_IDENTITY, IDENTITY].fix
    assert "create the image definition" in failed[CheckKind.GALLERY_IMAGE, image_id("app")].fix


def test_missing_ledger_tables_are_named_and_the_fix_is_the_deployment() -> None:
    estate = Estate()
    estate.storage = InMemoryLedgerStorage(missing=["history"])
    [failed] = estate.diagnose().failed
    assert failed.kind is CheckKind.LEDGER
    assert failed.detail == "reachable; 1 of its 3 tables missing: history"
    assert "infra/modules/storage.bicep" in failed.fix and "REBUILDER_TABLE_PREFIX" in failed.fix


def test_the_events_topic_is_checked_for_a_token_and_says_what_was_not_proven() -> None:
    estate = Estate()
    estate.events_topic = "https://topic.westeurope-1.eventgrid.azure.net/api/events"
    [events] = [c for c in estate.diagnose().checks if c.kind is CheckKind.EVENTS_TOPIC]
    assert events.ok and "nothing was sent" in events.detail and "not proven" in events.detail
    estate.access.refused.add(GRID)
    [events] = estate.diagnose().failed
    assert events.subject == estate.events_topic and "EventGrid Data Sender" in events.fix


def test_invalid_settings_are_the_one_failed_check() -> None:
    diagnosis = settings_invalid(
        ["REBUILDER_SCOPES: required, not set", "REBUILDER_LEDGER: required, not set"]
    )
    [check] = diagnosis.checks
    assert not diagnosis.ok and check.kind is CheckKind.SETTINGS
    assert (
        check.detail == "2 invalid: REBUILDER_SCOPES: required, not set; REBUILDER_LEDGER: required, not set"
    )


# -- the report ----------------------------------------------------------------------------------------
def test_the_report_is_one_line_a_check_each_failure_with_its_fix() -> None:
    estate = Estate()
    estate.access.set_permissions(TEMPLATES, ["*"], [RUN])
    lines = views.text(estate.diagnose()).splitlines()
    assert lines[0] == "✅ settings environment: valid: 1 scope(s)"
    [failed] = [line for line in lines if line.startswith("❌")]
    assert failed == (
        f"❌ permissions {TEMPLATES}: missing {RUN} — assign the custom role 'rebuilder template operator' "
        "(deployed as '<prefix> rebuilder template operator') of infra/modules/roles.bicep at this scope"
    )
    assert lines[-1] == "1 of 10 checks fail: each ❌ says what to do"
    assert views.text(Estate().diagnose()).splitlines()[-1] == "all 10 checks pass"


def test_the_document_carries_every_check_and_each_missing_action_with_its_role() -> None:
    estate = Estate()
    estate.access.set_permissions(TEMPLATES, ["*"], [RUN])
    document: dict[str, Any] = views.document(estate.diagnose())
    assert (document["ok"], document["passed"], document["failed"]) == (False, 9, 1)
    [failed] = [c for c in document["checks"] if not c["ok"]]
    assert failed == {
        "check": "permissions",
        "subject": TEMPLATES,
        "ok": False,
        "detail": f"missing {RUN}",
        "fix": failed["fix"],
        "missing": [{"action": RUN, "role": "rebuilder template operator"}],
    }
    assert all(c["fix"] is None for c in document["checks"] if c["ok"])


@pytest.mark.parametrize(
    ("ledger", "said"),
    [
        ("https://ledger.table.core.windows.net", "https://ledger.table.core.windows.net"),
        (
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net",
            "account acct",
        ),
        (
            "AccountName=devstoreaccount1;AccountKey=c2VjcmV0;TableEndpoint=http://127.0.0.1:10002/devstoreaccount1/",
            "http://127.0.0.1:10002/devstoreaccount1",
        ),
        ("UseDevelopmentStorage=true", "the local development storage (UseDevelopmentStorage=true)"),
    ],
)
def test_the_ledger_is_named_by_its_account_never_its_key(ledger: str, said: str) -> None:
    settings = Settings.from_env({"REBUILDER_SCOPES": f"/subscriptions/{SUB}", "REBUILDER_LEDGER": ledger})
    assert settings.ledger.where == said
    assert "c2VjcmV0" not in views.subject_of(settings).settings
