"""`python -m rebuilder doctor` and `GET /api/doctor` on the local stack: the demo estate with the
ledger's tables deployed passes every check (exit 0); a template scope lacking
`Microsoft.VirtualMachineImages/imageTemplates/run/action`, a deleted AIB identity, undeployed tables
or bad settings each fail their check, named with the fix (exit 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.data.tables import TableServiceClient

from devstack import estate
from devstack.armsim import ArmSimulator, SimControl
from devstack.azurite import Azurite
from rebuilder import bootstrap
from rebuilder.adapters import ledger_entities
from rebuilder.domain.permissions import Where, app_roles
from tests.http_world import ADMIN, READ, principal
from tests.integration.orchestration import ROOT, Driver, make_driver
from tests.integration.test_detection_on_stack import HostContext
from tests.unit.test_function_app import registered

RUN = "Microsoft.VirtualMachineImages/imageTemplates/run/action"
SCOPE = f"/subscriptions/{estate.SUBSCRIPTION}/resourceGroups/{estate.TEMPLATES_RG}"
GALLERY_RG = f"/subscriptions/{estate.SUBSCRIPTION}/resourceGroups/{estate.IMAGES_RG}"
TOPIC = "rebuilder-events"
# What the service needs where its templates are (the Marketplace reader's is inherited from above).
AT_TEMPLATE_SCOPES = [
    a for w in (Where.TEMPLATES, Where.SUBSCRIPTION) for r in app_roles(w) for a in r.actions
]


def deploy_ledger_tables(azurite: Azurite, prefix: str) -> None:
    """What infra/modules/storage.bicep deploys (tests/infra holds its names to the ledger's)."""
    kinds = [f"builds{shard}" for shard in ledger_entities.SHARDS] + ["templates", "sources", "history"]
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        for kind in kinds:
            service.create_table(f"{prefix}{kind}")


@pytest.fixture
def driver(armsim: ArmSimulator, sim: SimControl, azurite: Azurite) -> Iterator[Driver]:
    built = make_driver(armsim, sim, azurite, REBUILDER_EVENTS_TOPIC=sim.topic_endpoint(TOPIC))
    deploy_ledger_tables(azurite, built.env["REBUILDER_TABLE_PREFIX"])
    yield built
    built.services.close()


def doctor(env: dict[str, str], *args: str) -> tuple[int, str]:
    """The CLI's doctor on the stack's simulated time: its exit code and what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "devstack.simcli", "doctor", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, done.stdout


def report(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    code, out = doctor(env, "--output", "json")
    return code, json.loads(out)


def by_check(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["check"], c["subject"]): c for c in document["checks"]}


def test_on_the_demo_estate_every_check_passes_and_the_exit_is_0(driver: Driver, sim: SimControl) -> None:
    code, text = doctor(driver.env)
    assert code == 0, text
    lines = text.strip().splitlines()
    assert all(line.startswith("✅") for line in lines[:-2]), text
    assert lines[-1] == f"all {len(lines) - 2} checks pass"
    code, document = report(driver.env)
    assert code == 0 and document["ok"] and document["failed"] == 0
    checks = by_check(document)
    images = {subject for kind, subject in checks if kind == "gallery image"}
    assert images == {  # the managed templates' (the untagged sandbox's is not looked at)
        estate.gallery_image_id(image)
        for image in ("ubuntu-22.04-gen2", "winserver-2022", "rhel-8", "app-ubuntu-22.04", "legacy")
    }
    assert [kind for kind, _ in checks if kind not in ("gallery image",)] == [
        "settings",
        "ARM token",
        "templates",
        "permissions",
        "permissions",
        "AIB identity",
        "ledger",
        "events topic",
    ]
    assert checks["templates", SCOPE]["detail"] == "6 listed, 5 managed (tagged golden-image-rebuild)"
    assert {s for k, s in checks if k == "permissions"} == {SCOPE, GALLERY_RG}
    assert checks["ledger", f"'{driver.env['REBUILDER_TABLE_PREFIX']}*' at {_table_endpoint(driver)}"]["ok"]
    assert checks["events topic", sim.topic_endpoint(TOPIC)]["ok"]
    assert sim.topic_events(TOPIC) == []  # read only: nothing was published
    assert "principal" in checks["AIB identity", estate.IDENTITY]["detail"]


@pytest.mark.parametrize(
    ("actions", "not_actions"),
    [
        (["*"], [RUN]),  # an Owner-like role that takes run back
        (
            [
                a
                for w in (Where.TEMPLATES, Where.SUBSCRIPTION)
                for r in app_roles(w)
                for a in r.actions
                if a != RUN
            ],
            [],
        ),
    ],
    ids=["wildcard-less-run", "every-action-but-run"],
)
def test_a_scope_without_run_fails_naming_the_action_and_its_role(
    driver: Driver, sim: SimControl, actions: list[str], not_actions: list[str]
) -> None:
    sim.set_permissions(SCOPE, actions, not_actions)
    code, text = doctor(driver.env)
    assert code == 1
    [failed] = [line for line in text.splitlines() if line.startswith("❌")]
    assert failed.startswith(f"❌ permissions {SCOPE}: missing {RUN} — ")
    assert "'rebuilder template operator'" in failed and "infra/modules/roles.bicep" in failed
    code, document = report(driver.env)
    assert (code, document["ok"], document["failed"]) == (1, False, 1)
    assert by_check(document)["permissions", SCOPE]["missing"] == [
        {"action": RUN, "role": "rebuilder template operator"}
    ]
    assert by_check(document)["permissions", GALLERY_RG]["ok"]  # another scope, untouched


def test_permissions_are_read_page_by_page(driver: Driver, sim: SimControl) -> None:
    sim.configure(page_size=1)
    sim.reset_counters()
    code, document = report(driver.env)
    assert code == 0, document
    reads = [r for r in sim.requests("permissions.list_for_resource_group") if r["path"].startswith(SCOPE)]
    assert len(reads) == 5  # one role a page: every custom role of roles.bicep, by default


def test_a_deleted_aib_identity_fails_its_check(driver: Driver, sim: SimControl) -> None:
    assert sim.delete_identity(estate.IDENTITY)
    code, document = report(driver.env)
    assert code == 1
    [failed] = [c for c in document["checks"] if not c["ok"]]
    assert (failed["check"], failed["subject"]) == ("AIB identity", estate.IDENTITY)
    assert "ResourceNotFound" in failed["detail"] and "used by 5 managed template(s)" in failed["detail"]


def test_undeployed_ledger_tables_fail_the_ledger_check(driver: Driver) -> None:
    fresh = f"t{uuid.uuid4().hex[:12]}"  # a prefix no deployment created
    code, document = report({**driver.env, "REBUILDER_TABLE_PREFIX": fresh})
    assert code == 1
    [failed] = [c for c in document["checks"] if not c["ok"]]
    assert failed["check"] == "ledger"
    assert failed["detail"].startswith("reachable; 19 of its 19 tables missing: ")
    assert f"{fresh}history" in failed["detail"] and "infra/modules/storage.bicep" in failed["fix"]
    code, document = report({**driver.env, "REBUILDER_TABLE_PREFIX": fresh})
    assert code == 1  # the doctor created none of them


def test_bad_settings_are_the_failed_check_and_nothing_else_runs(driver: Driver) -> None:
    code, text = doctor({**driver.env, "REBUILDER_SCOPES": "/subscriptions/not-a-guid"})
    assert code == 1
    [line, _, summary] = text.strip().splitlines()
    assert line.startswith("❌ settings environment: 1 invalid: REBUILDER_SCOPES: ")
    assert summary == "1 of 1 checks fail: each ❌ says what to do"


def test_the_api_form_answers_the_admin_as_the_app_and_refuses_others(
    armsim: ArmSimulator, sim: SimControl, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = make_driver(armsim, sim, azurite, WEBSITE_AUTH_ENABLED="True")
    deploy_ledger_tables(azurite, built.env["REBUILDER_TABLE_PREFIX"])
    monkeypatch.setattr(bootstrap, "_services", built.services)
    sim.set_permissions(SCOPE, ["*"], [RUN])
    try:
        allowed = _get_doctor(principal(ADMIN))
        assert allowed.status_code == 200 and allowed.mimetype == "application/json"
        document = json.loads(allowed.get_body())
        assert document["ok"] is False
        assert by_check(document)["permissions", SCOPE]["missing"] == [
            {"action": RUN, "role": "rebuilder template operator"}
        ]
        refused = _get_doctor(principal(READ))
        assert refused.status_code == 403 and refused.mimetype == "application/problem+json"
        assert "Rebuild.Admin" in json.loads(refused.get_body())["detail"]
    finally:
        built.services.close()


def _get_doctor(header: str) -> func.HttpResponse:
    request = func.HttpRequest(
        method="GET",
        url="https://app.azurewebsites.net/api/doctor",
        body=b"",
        headers={"X-MS-CLIENT-PRINCIPAL": header},
        params={},
        route_params={},
    )
    response = registered()["get_doctor"].get_user_function()(request, HostContext())
    assert isinstance(response, func.HttpResponse)
    return response


def _table_endpoint(driver: Driver) -> str:
    return driver.services.settings.ledger.where
