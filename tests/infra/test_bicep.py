"""infra/ checked offline (the Bicep CLI cannot be installed here): every .bicep file parses, and
policy tests read the parsed tree — least privilege, storage without keys, Event Grid filtered and
dead-lettered, custom roles exactly as documented — and hold the infra and the code to each other."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP = sorted(INFRA.rglob("*.bicep"))
# Built-in roles that grant far more than rebuilder needs, by definition id.
TOO_BROAD = {
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
}
GALLERY_WRITE = "Microsoft.Compute/galleries/images/versions/write"


@cache
def tree(path: Path) -> dict[str, Any]:
    return BicepParser().parse(file_path=path)  # type: ignore[no-any-return]


def body(declaration: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's own configuration, under any loop or condition."""
    config: dict[str, Any] = declaration["config"]
    while "config" in config and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config


def resources(kind: str | None = None) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    for path in BICEP:
        for name, declaration in tree(path).get("resources", {}).items():
            if (kind is None or declaration["type"] == kind) and not declaration["existing"]:
                yield path, name, body(declaration)


def test_there_is_bicep_and_every_file_parses() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in BICEP}
    assert {"main.bicep", "eventgrid-subscription.bicep", "examples/main.bicep"} <= names
    for path in BICEP:
        assert tree(path)["resources"] or tree(path)["modules"], path


def test_the_parser_refuses_broken_bicep(tmp_path: Path) -> None:
    broken = tmp_path / "broken.bicep"
    broken.write_text("resource x 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n")
    with pytest.raises(Exception):  # noqa: B017, PT011 - lark raises its own error types
        BicepParser().parse(file_path=broken)


def test_modules_are_local_files() -> None:
    for path in BICEP:
        for name, module in tree(path).get("modules", {}).items():
            assert module["type"] == "local", (path, name)
            assert (path.parent / module["detail"]["path"]).exists(), (path, name)


def test_no_contributor_owner_or_user_access_administrator_anywhere() -> None:
    text = "\n".join(p.read_text() for p in BICEP).lower()
    for definition, role in TOO_BROAD.items():
        assert definition not in text, role


def test_storage_has_no_shared_keys_and_tls_1_2() -> None:
    accounts = list(resources("Microsoft.Storage/storageAccounts"))
    assert len(accounts) == 2
    for path, name, account in accounts:
        p = account["properties"]
        assert (p["allowSharedKeyAccess"], p["minimumTlsVersion"]) == (False, "TLS1_2"), (path, name)
        assert p["supportsHttpsTrafficOnly"] is True and p["allowBlobPublicAccess"] is False
    assert "accountkey" not in "\n".join(p.read_text() for p in BICEP).lower()


def test_every_role_assignment_names_its_principal_type() -> None:
    found = list(resources("Microsoft.Authorization/roleAssignments"))
    assert len(found) >= 8
    for path, name, assignment in found:
        assert assignment["properties"]["principalType"] == "ServicePrincipal", (path, name)


def test_the_event_subscription_filters_on_the_gallery_operation_retries_and_dead_letters() -> None:
    [(_, _, subscription)] = list(resources("Microsoft.EventGrid/systemTopics/eventSubscriptions"))
    p = subscription["properties"]
    assert p["filter"]["includedEventTypes"] == ["Microsoft.Resources.ResourceWriteSuccess"]
    [advanced] = p["filter"]["advancedFilters"]
    assert (advanced["operatorType"], advanced["key"], advanced["values"]) == (
        "StringIn",
        "data.operationName",
        [GALLERY_WRITE],
    )
    assert p["destination"]["endpointType"] == "AzureFunction"
    variables = tree(INFRA / "eventgrid-subscription.bicep")["variables"]
    retry, dead = variables["retry"]["value"], variables["deadLetter"]["value"]
    assert p["retryPolicy"] == "retry" and p["deadLetterWithResourceIdentity"] == "deadLetter"
    assert int(retry["maxDeliveryAttempts"]) >= 10 and int(retry["eventTimeToLiveInMinutes"]) >= 60
    assert dead["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert dead["identity"]["type"] == "SystemAssigned"  # identity-based: the account has no keys


# -- custom roles -------------------------------------------------------------------------------------
def custom_roles() -> dict[str, list[str]]:
    roles = {}
    for _, name, role in resources("Microsoft.Authorization/roleDefinitions"):
        [permission] = role["properties"]["permissions"]
        assert permission["notActions"] == [] and permission["dataActions"] == []
        roles[name] = permission["actions"]
    return roles


def documented_roles() -> dict[str, list[str]]:
    """The role table of README "Deploy to Azure": role → actions."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| role | assigned to, at | actions |") :].split("\n\n", 1)[0]
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    return {row[0].strip("| "): re.findall(r"`([^`]+)`", row[2]) for row in rows}


NAMES = {
    "templateOperator": "template operator",
    "galleryReplicator": "gallery replicator",
    "marketplaceReader": "marketplace reader",
    "identityAssigner": "AIB identity assigner",
    "imageBuilder": "image builder",
}


def test_every_custom_role_is_the_documented_list_with_a_reason_per_action() -> None:
    roles, documented = custom_roles(), documented_roles()
    assert set(roles) == set(NAMES)
    source = (INFRA / "modules" / "roles.bicep").read_text().splitlines()
    for name, actions in roles.items():
        assert actions == documented[NAMES[name]], name
        for action in actions:
            assert "*" not in action, action  # no wildcard: no resource type here needs one
            [line] = [
                text for text in source if f"'{action}'" in text and name_of_block(source, text) == name
            ]
            reason = line.split("//", 1)[1].strip() if "//" in line else ""
            assert len(reason.split()) >= 3, f"{name}: {action} has no reason"


def name_of_block(source: list[str], line: str) -> str:
    index = source.index(line)
    for above in reversed(source[:index]):
        found = re.match(r"resource (\w+) 'Microsoft.Authorization/roleDefinitions", above)
        if found:
            return found.group(1)
    return ""


def test_only_the_marketplace_reader_is_assigned_at_subscription_scope() -> None:
    at_subscription = []
    for path in BICEP:
        scope = tree(path)["globals"].get("scope", {}).get("value", "resourceGroup")
        for name, declaration in tree(path)["resources"].items():
            assignment = declaration["type"] == "Microsoft.Authorization/roleAssignments"
            if assignment and scope == "subscription" and "scope" not in body(declaration):
                at_subscription.append((path.name, name))
    assert at_subscription == [("roles.bicep", "marketplace")]
    marketplace = body(tree(INFRA / "modules" / "roles.bicep")["resources"]["marketplace"])
    assert "marketplaceReader" in json.dumps(marketplace["properties"]["roleDefinitionId"])
    assert custom_roles()["marketplaceReader"] == [
        "Microsoft.Compute/locations/publishers/artifacttypes/offers/skus/versions/read"
    ]


def test_the_app_may_assign_the_aib_identity_and_no_other() -> None:
    module = body(tree(INFRA / "main.bicep")["modules"]["identityAssigner"])
    assert module["params"]["aibIdentityName"] == {
        "operator": {
            "type": "property_accessor",
            "operands": {
                "operand_1": "identities",
                "operand_2": {
                    "operator": {
                        "type": "property_accessor",
                        "operands": {"operand_1": "outputs", "operand_2": "aibIdentityName"},
                    }
                },
            },
        }
    }
    [(_, _, assignment)] = [
        (p, n, a)
        for p, n, a in resources("Microsoft.Authorization/roleAssignments")
        if p.name == "identity-assignment.bicep"
    ]
    assert assignment["scope"] == "aib"  # the identity resource, not its resource group


def test_checkov_suppressions_are_inline_and_give_a_reason() -> None:
    skips = [
        (path.name, line.strip())
        for path in BICEP
        for line in path.read_text().splitlines()
        if "checkov:skip" in line
    ]
    assert skips, "checkov runs with suppressions: they must be visible here"
    for where, line in skips:
        found = re.fullmatch(r"// checkov:skip=(CKV2?_AZURE_\d+): (.+)", line)
        assert found and len(found.group(2).split()) >= 5, (where, line)
    assert not (ROOT / ".checkov.yaml").exists() and not (ROOT / ".checkov.yml").exists()
