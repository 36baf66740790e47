"""The infra and the code held to each other: every setting the code reads is set by the Bicep (but
the two that are for the local simulator only), every function the infra refers to exists with the
right trigger, the timers' schedule settings are defined, the app roles are the code's, and the
hooks read only outputs the deployment gives them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rebuilder.settings import Settings
from tests.infra.test_bicep import INFRA, ROOT, body, tree
from tests.unit.test_function_app import registered

LOCAL_ONLY = {
    "REBUILDER_ARM_ENDPOINT": "the local ARM simulator (Azure's endpoint comes from REBUILDER_CLOUD)",
    "REBUILDER_ARM_TOKEN": "a static token for the simulator and tests; never a secret in settings",
}


def settings_the_code_reads() -> set[str]:
    # settings.py reads them; the rebuild policies' defaults are named beside the tags they default
    source = "".join((ROOT / "rebuilder" / f).read_text() for f in ("settings.py", "domain/policies.py"))
    return set(re.findall(r'"(REBUILDER_[A-Z_]+)"', source))


def app_settings() -> dict[str, Any]:
    main = tree(INFRA / "main.bicep")
    names = dict(main["variables"]["rebuilderSettings"]["value"])
    for item in tree(INFRA / "modules" / "functionapp.bicep")["variables"]["baseSettings"]["value"]:
        names[item["name"]] = item["value"]
    return names


def test_every_setting_the_code_reads_is_set_by_the_bicep_but_the_local_ones() -> None:
    read, given = settings_the_code_reads(), app_settings()
    assert len(read) >= 20
    assert read - set(LOCAL_ONLY) == {n for n in given if n.startswith("REBUILDER_")}
    assert not set(LOCAL_ONLY) & set(given)
    assert given["AzureWebJobsStorage__credential"] == "managedidentity"
    assert "AzureWebJobsStorage" not in given  # no connection string: identity-based only


def test_every_function_the_infra_refers_to_exists_with_its_trigger() -> None:
    functions = registered()
    text = "\n".join(p.read_text() for p in INFRA.rglob("*.bicep"))
    referred = set(re.findall(r"/functions/(\w+)", text))
    assert referred == {"on_resource_event"}
    for name in referred:
        assert functions[name].get_trigger().get_dict_repr()["type"] == "eventGridTrigger"


def test_the_timers_schedule_settings_are_defined() -> None:
    given = app_settings()
    schedules = {
        trigger["schedule"].strip("%")
        for trigger in (f.get_trigger().get_dict_repr() for f in registered().values())
        if trigger["type"] == "timerTrigger"
    }
    assert schedules == {"REBUILDER_WATCH_SCHEDULE", "REBUILDER_RECONCILE_SCHEDULE"}
    for name in schedules:
        assert name in given
    defaults = {
        p: v["default"] for p, v in tree(INFRA / "main.bicep")["parameters"].items() if "default" in v
    }
    assert defaults["watchSchedule"] == Settings.watch_schedule
    assert defaults["reconcileSchedule"] == Settings.reconcile_schedule


def test_the_app_roles_are_the_ones_the_api_asks_for() -> None:
    roles = {r["value"] for r in json.loads((INFRA / "app-roles.json").read_text())}
    assert roles == {Settings.read_role, Settings.request_role, Settings.admin_role}
    defaults = {
        p: v["default"] for p, v in tree(INFRA / "main.bicep")["parameters"].items() if "default" in v
    }
    assert (defaults["readRole"], defaults["requestRole"], defaults["adminRole"]) == (
        Settings.read_role,
        Settings.request_role,
        Settings.admin_role,
    )


def test_the_function_app_is_flex_consumption_python_3_11_behind_app_service_authentication() -> None:
    module = tree(INFRA / "modules" / "functionapp.bicep")["resources"]
    plan, app, auth = body(module["plan"]), body(module["app"]), body(module["auth"])
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert app["identity"]["type"] == "UserAssigned" and app["properties"]["httpsOnly"] is True
    assert app["properties"]["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    assert app["properties"]["siteConfig"]["minTlsVersion"] == "1.2"
    storage = app["properties"]["functionAppConfig"]["deployment"]["storage"]["authentication"]
    assert storage["type"] == "UserAssignedIdentity"
    assert auth["name"] == "authsettingsV2" and auth["properties"]["platform"]["enabled"] is True
    validation = auth["properties"]["globalValidation"]
    assert validation["requireAuthentication"] is True
    # health is anonymous; Event Grid delivers without an Entra token (its system key guards the path),
    # to /runtime/webhooks/EventGrid: listed in both casings
    assert validation["excludedPaths"] == [
        "/api/health",
        "/runtime/webhooks/EventGrid",
        "/runtime/webhooks/eventgrid",
    ]
    assert auth["properties"]["identityProviders"]["azureActiveDirectory"]["enabled"] is True


# What the hooks may read besides the deployment's outputs: their own knobs (infra/hooks/common.sh),
# each documented in README "Deploy to Azure".
HOOK_KNOBS = {
    "REBUILDER_HOOK_ATTEMPTS",
    "REBUILDER_HOOK_BACKOFF_SECONDS",
    "REBUILDER_HOOK_BACKOFF_CAP_SECONDS",
}


def test_the_hooks_read_only_what_the_deployment_outputs() -> None:
    outputs = set(tree(INFRA / "main.bicep")["outputs"])
    parameters = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", (INFRA / "main.parameters.json").read_text()))
    # azd's own, and the environment the parameters read
    azd = {"AZURE_ENV_NAME", "AZURE_SUBSCRIPTION_ID"} | parameters
    for hook in (INFRA / "hooks").glob("*.sh"):
        used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", hook.read_text()))
        assert used <= outputs | azd | HOOK_KNOBS, (hook.name, used - outputs - azd - HOOK_KNOBS)
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Deploy to Azure\n") :].split("\n## ", 2)[1]
    for knob in HOOK_KNOBS:
        assert knob in section, knob
    azure_yaml = (ROOT / "azure.yaml").read_text()
    for hook in re.findall(r"run: (\S+)", azure_yaml):
        assert (ROOT / hook).exists(), hook
    assert "host: function" in azure_yaml and "language: python" in azure_yaml


def test_the_parameters_file_names_only_parameters_main_declares() -> None:
    declared = set(tree(INFRA / "main.bicep")["parameters"])
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= declared
    required = {p for p, v in tree(INFRA / "main.bicep")["parameters"].items() if "default" not in v}
    assert required <= set(given)


def test_the_example_estate_is_what_the_readme_promises() -> None:
    example = tree(INFRA / "examples" / "main.bicep")["resources"]
    templates = {
        name: body(r)
        for name, r in example.items()
        if r["type"] == "Microsoft.VirtualMachineImages/imageTemplates"
    }
    assert len(templates) == 3
    for template in templates.values():
        assert template["tags"] == "tagged"
        assert template["properties"]["distribute"][0]["targetRegions"] == "targets"
    variables = tree(INFRA / "examples" / "main.bicep")["variables"]
    tags = {k.strip("'"): v for k, v in variables["tagged"]["value"].items()}  # quoted keys keep quotes
    assert tags == {"golden-image-rebuild": "auto"}
    regions = tree(INFRA / "examples" / "main.bicep")["parameters"]["regions"]["default"]
    assert len(regions) == 3
    ubuntu, windows = (
        templates["ubuntu"]["properties"]["source"],
        templates["windows"]["properties"]["source"],
    )
    assert (ubuntu["sku"], ubuntu["version"]) == ("22_04-lts-gen2", "latest")
    assert windows["offer"] == "WindowsServer" and windows["version"] == "windowsVersion"  # pinned
    child = templates["child"]["properties"]["source"]
    assert child["type"] == "SharedImageVersion" and "ubuntuImage" in json.dumps(child)


def test_no_setting_or_parameter_carries_a_secret() -> None:
    text = "\n".join(p.read_text() for p in [*INFRA.rglob("*.bicep"), *INFRA.rglob("*.json")]).lower()
    for needle in ("accountkey=", "sharedaccesskey", "password", "clientsecret", "listkeys("):
        assert needle not in text, needle
    assert Path(INFRA / "main.parameters.json").exists()


def test_the_ledger_tables_are_the_ones_the_ledger_uses() -> None:
    from rebuilder.adapters import ledger_entities

    storage = tree(INFRA / "modules" / "storage.bicep")
    variables = storage["variables"]
    assert "".join(variables["shards"]["value"]) == ledger_entities.SHARDS
    adapter = (ROOT / "rebuilder" / "adapters" / "ledger_tables.py").read_text()
    [kinds] = re.findall(r"for kind in \(([^)]*)\)", adapter)
    assert set(variables["kinds"]["value"]) == set(re.findall(r'"(\w+)"', kinds))
    names = {body(r)["name"] for r in storage["resources"].values() if r["type"].endswith("/tables")}
    assert names == {"${tablePrefix}builds${shard}", "${tablePrefix}${kind}"}
