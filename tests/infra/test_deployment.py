"""What a deployment with azd needs of the Bicep, read from the parsed tree: a Flex Consumption site
that ARM accepts, Event Grid let through Easy Auth, role assignments made after the roles they
assign, names that two environments in one subscription do not share, storage and endpoints of any
cloud, an API that users can get tokens for, and the README saying what deploying takes and what
`azd down` leaves behind."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.infra.test_bicep import BICEP, INFRA, ROOT, body, resources, tree

AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"  # the Azure CLI's well-known client id


def walk(node: Any) -> list[str]:
    """Every key of a parsed Bicep object, at any depth."""
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in (key, *walk(value))]
    if isinstance(node, list):
        return [k for item in node for k in walk(item)]
    return []


def accessor(node: Any) -> tuple[str, ...]:
    """`a.b.c` as ('a', 'b', 'c'), from pycep's nested property accessors."""
    if isinstance(node, str):
        return (node,)
    operands = node["operator"]["operands"]
    assert node["operator"]["type"] == "property_accessor", node
    return (*accessor(operands["operand_1"]), *accessor(operands["operand_2"]))


def code(path: Path) -> str:
    """A Bicep file without its comments."""
    return "\n".join(line.split("//", 1)[0] for line in path.read_text().splitlines())


# -- 1. Flex Consumption ----------------------------------------------------------------------------
# Microsoft Learn, "App settings reference for Azure Functions", section "Flex Consumption plan
# deprecations" (https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations;
# read in MicrosoftDocs/azure-docs articles/azure-functions/functions-app-settings.md, ms.date 12/22/2025):
# "these site properties and application settings are deprecated and shouldn't be used when creating
# function app resources". ARM refuses some outright (siteConfig.ftpsState: 400, ExtendedCode 51021).
FLEX_DEPRECATED_SETTINGS = {
    "ENABLE_ORYX_BUILD",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_DNS_SERVER",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
    "WEBSITE_VNET_ROUTE_ALL",
}
# As the table writes them; several live under properties.siteConfig, so each is refused by its last
# segment anywhere in the site's properties.
FLEX_DEPRECATED_PROPERTIES = {
    "properties.alwaysOn",
    "properties.containerSize",
    "properties.dnsConfiguration",
    "properties.ftpsState",
    "properties.isReserved",
    "properties.IsXenon",
    "properties.javaVersion",
    "properties.LinuxFxVersion",
    "properties.netFrameworkVersion",
    "properties.powerShellVersion",
    "properties.siteConfig.functionAppScaleLimit",
    "properties.siteConfig.preWarmedInstanceCount",
    "properties.use32BitWorkerProcess",
    "properties.vnetBackupRestoreEnabled",
    "properties.vnetContentShareEnabled",
    "properties.vnetImagePullEnabled",
    "properties.vnetRouteAllEnabled",
    "properties.windowsFxVersion",
}
# ARM's own spelling of two of them on Microsoft.Web/sites (isReserved is `reserved`; isXenon goes with
# `hyperV`): refused too. The plan's `reserved: true` is the serverfarm's, which Flex requires.
ARM_SPELLINGS = {"reserved", "hyperV"}


def test_the_flex_site_sets_no_property_and_no_setting_flex_consumption_deprecates() -> None:
    refused = {p.rsplit(".", 1)[1].lower() for p in FLEX_DEPRECATED_PROPERTIES} | {
        p.lower() for p in ARM_SPELLINGS
    }
    sites = list(resources("Microsoft.Web/sites"))
    assert [name for _, name, _ in sites] == ["app"]
    for path, name, site in sites:
        found = {key for key in walk(site["properties"]) if key.lower() in refused}
        assert not found, (path.name, name, found)
    from tests.infra.test_consistency import app_settings

    assert not set(app_settings()) & FLEX_DEPRECATED_SETTINGS
    app = body(tree(INFRA / "modules" / "functionapp.bicep")["resources"]["app"])
    assert app["properties"]["siteConfig"]["appSettings"] == {
        "function": {"type": "concat", "parameters": {"arg_1": "baseSettings", "arg_2": "rebuilder"}}
    }  # nothing else reaches the app settings
    for path in BICEP:
        for setting in FLEX_DEPRECATED_SETTINGS:
            assert not re.search(rf"\b{setting}\b", code(path)), (path.name, setting)


# -- 2. Event Grid through Easy Auth ---------------------------------------------------------------
def test_easy_auth_lets_event_grid_deliver_to_its_path_in_either_casing() -> None:
    auth = body(tree(INFRA / "modules" / "functionapp.bicep")["resources"]["auth"])
    excluded = auth["properties"]["globalValidation"]["excludedPaths"]
    # Event Grid calls /runtime/webhooks/EventGrid?functionName=...&code=... (AZURE.md)
    assert {"/runtime/webhooks/EventGrid", "/runtime/webhooks/eventgrid"} <= set(excluded)
    assert set(excluded) == {"/api/health", "/runtime/webhooks/EventGrid", "/runtime/webhooks/eventgrid"}


# -- 4. roles before their assignments ---------------------------------------------------------------
ASSIGNMENT_MODULES = {
    "templateOperator": "templateOperatorId",
    "galleryReplicator": "galleryReplicatorId",
    "imageBuilder": "imageBuilderId",
    "identityAssigner": "identityAssignerId",
}


def test_every_assignment_refers_to_its_role_definition_resource_so_it_waits_for_it() -> None:
    roles = tree(INFRA / "modules" / "roles.bicep")
    definitions = {
        n for n, r in roles["resources"].items() if r["type"] == "Microsoft.Authorization/roleDefinitions"
    }
    # roles.bicep's outputs are the definitions' own ids (a reference, so a dependency), not a guid()
    for output, declaration in roles["outputs"].items():
        resource, prop = accessor(declaration["value"])
        assert resource in definitions and prop == "id" and output == f"{resource}Id", output
    marketplace = body(roles["resources"]["marketplace"])
    assert accessor(marketplace["properties"]["roleDefinitionId"]) == ("marketplaceReader", "id")
    for file in ("main.bicep", "access.bicep"):
        modules = tree(INFRA / file)["modules"]
        for name, output in ASSIGNMENT_MODULES.items():
            if name not in modules:
                continue
            role = body(modules[name])["params"]["roleDefinitionId"]
            assert accessor(role) == ("roles", "outputs", output), (file, name)
    for path in ("modules/assignment.bicep", "modules/identity-assignment.bicep"):
        [assignment] = [
            r for r in tree(INFRA / path)["resources"].values() if not r["existing"]
        ]  # the one assignment of the module, made with the definition id it is given
        assert body(assignment)["properties"]["roleDefinitionId"] == "roleDefinitionId"


def test_access_bicep_is_main_bicep_for_what_it_deploys_first() -> None:
    """The preprovision hook deploys access.bicep (retried while Azure replicates the new roles);
    main.bicep must then find the very same resource group, identities and roles."""
    main, access = tree(INFRA / "main.bicep"), tree(INFRA / "access.bicep")
    assert access["globals"]["scope"]["value"] == "subscription"
    assert body(access["resources"]["rg"]) == body(main["resources"]["rg"])
    for variable in ("prefix", "tags"):
        assert access["variables"][variable] == main["variables"][variable], variable
    assert set(access["modules"]) == {
        "identities",
        "roles",
        "templateOperator",
        "galleryReplicator",
        "imageBuilder",
    }
    for name, module in access["modules"].items():
        assert module["detail"] == main["modules"][name]["detail"], name
        assert body(module) == body(main["modules"][name]), name
    for parameter in ("environmentName", "location", "templateResourceGroups", "galleryResourceGroup"):
        assert access["parameters"][parameter] == main["parameters"][parameter], parameter


def test_under_azd_main_bicep_leaves_the_shared_groups_to_the_preprovision_hook() -> None:
    """azd down deletes every resource group azd's deployment holds a resource in: the template and
    gallery resource groups must hold none of it."""
    main = tree(INFRA / "main.bicep")
    assert main["parameters"]["assignInSharedGroups"]["default"] is True  # on its own, it does all
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["assignInSharedGroups"] == {"value": False}
    # deployed to a resource group by name (resourceGroup(...)), not to the environment's own `rg`
    shared = {n for n, m in main["modules"].items() if isinstance(body(m).get("scope"), dict)}
    assert shared == {"templateOperator", "galleryReplicator", "imageBuilder"}
    for name in shared:
        assert main["modules"][name]["config"]["condition"] == "assignInSharedGroups", name
    hook = (INFRA / "hooks" / "preprovision.sh").read_text()
    assert "access.bicep" in hook and "RoleDefinitionDoesNotExist" in hook and "PrincipalNotFound" in hook


# -- 5. names of one environment ---------------------------------------------------------------------
def test_every_deployment_and_event_subscription_name_is_the_environment_s() -> None:
    for path in (INFRA / "main.bicep", INFRA / "access.bicep", INFRA / "eventgrid-subscription.bicep"):
        for name, module in tree(path)["modules"].items():
            assert "${prefix}" in body(module)["name"], (path.name, name)
        assert tree(path)["variables"]["prefix"]["value"] == {
            "function": {"type": "to_lower", "parameters": {"string_to_change": "environmentName"}}
        }, path.name
    eventgrid = tree(INFRA / "eventgrid-subscription.bicep")
    [(_, _, writes)] = list(resources("Microsoft.EventGrid/systemTopics/eventSubscriptions"))
    assert writes["name"].startswith("${prefix}-")
    published = body(eventgrid["modules"]["published"])
    assert published["params"]["name"].startswith("${prefix}-")
    [notices] = [
        r
        for r in tree(INFRA / "modules" / "notices-subscription.bicep")["resources"].values()
        if not r["existing"]
    ]
    assert body(notices)["name"] == "name"
    assert "environmentName" not in {
        p for p, v in eventgrid["parameters"].items() if "default" in v and v["default"] is not None
    }


# -- 8. any cloud ----------------------------------------------------------------------------------
def test_host_storage_is_named_by_its_service_uris_from_primary_endpoints() -> None:
    from tests.infra.test_consistency import app_settings

    settings = app_settings()
    assert not [name for name in settings if name.lower().endswith("__accountname")]
    assert {name: settings[name] for name in settings if name.startswith("AzureWebJobsStorage__")} == {
        "AzureWebJobsStorage__blobServiceUri": "hostBlobEndpoint",
        "AzureWebJobsStorage__queueServiceUri": "hostQueueEndpoint",
        "AzureWebJobsStorage__tableServiceUri": "hostTableEndpoint",
        "AzureWebJobsStorage__credential": "managedidentity",  # the user-assigned identity:
        "AzureWebJobsStorage__clientId": "appClientId",  # this one
    }
    app = body(tree(INFRA / "main.bicep")["modules"]["app"])["params"]
    storage = tree(INFRA / "modules" / "storage.bicep")["outputs"]
    for service in ("Blob", "Queue", "Table"):
        output = f"host{service}Endpoint"
        assert accessor(app[output]) == ("storage", "outputs", output)
        assert accessor(storage[output]["value"]) == (
            "host",
            "properties",
            "primaryEndpoints",
            service.lower(),
        )


# A host name of one cloud (a name like Microsoft.Compute is no host: nothing may follow the suffix).
CLOUD_SUFFIXES = re.compile(
    r"(windows\.net|azure\.com|microsoft\.com|azurewebsites\.net|usgovcloudapi\.net|chinacloudapi\.cn"
    r"|azure\.us|microsoftonline\.\w+|microsoft\.us)(?![\w-])",
    re.IGNORECASE,
)


def test_no_endpoint_of_one_cloud_is_written_into_infra() -> None:
    files = [*BICEP, *(INFRA / "hooks").glob("*.sh"), *INFRA.rglob("*.json")]
    for path in files:
        text = path.read_text()
        if path.suffix == ".json":  # a parameters file's $schema is a document's address, not an endpoint
            text = re.sub(r'"\$schema": "[^"]*"', "", text)
        for number, line in enumerate(text.splitlines(), 1):
            written = line.split("//", 1)[0] if path.suffix == ".bicep" else line
            if path.suffix == ".sh" and written.lstrip().startswith("#"):
                continue
            assert not CLOUD_SUFFIXES.search(written), f"{path.relative_to(ROOT)}:{number}: {line.strip()}"


def test_rebuilder_cloud_is_the_cloud_deployed_to() -> None:
    cloud = tree(INFRA / "main.bicep")["parameters"]["cloud"]
    assert cloud["default"] == {"function": {"type": "environment", "property_name": "name"}}
    [allowed] = [d["argument"] for d in cloud["decorators"] if d["type"] == "allowed"]
    assert allowed == ["AzureCloud", "AzureUSGovernment", "AzureChinaCloud"]
    settings = tree(INFRA / "main.bicep")["variables"]["rebuilderSettings"]["value"]
    assert settings["REBUILDER_CLOUD"] == "cloud"


# -- 7. an API people can get tokens for ---------------------------------------------------------------
def test_the_app_registration_exposes_user_impersonation_with_the_azure_cli_preauthorised() -> None:
    api = json.loads((INFRA / "app-api.json").read_text())["api"]
    assert api["requestedAccessTokenVersion"] == 2  # App Service Authentication checks the v2 issuer
    [scope] = api["oauth2PermissionScopes"]
    assert scope["value"] == "user_impersonation" and scope["isEnabled"] is True and scope["type"] == "User"
    for text in ("adminConsentDisplayName", "adminConsentDescription", "userConsentDisplayName"):
        assert len(scope[text].split()) >= 3, text
    assert api["preAuthorizedApplications"] == [{"appId": AZURE_CLI, "delegatedPermissionIds": [scope["id"]]}]
    roles = {r["id"] for r in json.loads((INFRA / "app-roles.json").read_text())}
    assert scope["id"] not in roles  # one id space for an application's roles and scopes


# -- 9. the README's deployment section --------------------------------------------------------------
def deploy_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## Deploy to Azure\n")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def test_the_readme_says_what_deploying_takes_and_what_azd_down_leaves() -> None:
    section = deploy_section()
    for needed in (
        "Microsoft.Authorization/roleDefinitions/write",
        "Microsoft.Authorization/roleAssignments/write",
        "Owner",
        "Contributor",
        "User Access Administrator",
        "Application Developer",
        "Rebuild.Admin",
        "AZURE_SUBSCRIPTION_ID",
    ):
        assert needed in section, needed
    # User Access Administrator alone creates no resource: never offered as enough by itself
    assert "Owner or User Access Administrator *for the deployer*" not in section
    assert "**Contributor** together with **User Access Administrator**" in section
    assert "not enough alone" in section
    for command in (
        "az ad app delete",
        "az role definition delete",
        "az role assignment delete",
        "az eventgrid system-topic event-subscription delete",
        "az deployment sub delete",
        "az group delete",
    ):
        assert command in section, command
    assert "azd down" in section and "user_impersonation" in section
    assert re.search(r'az account get-access-token --resource "?api://', section)  # a user's token
    assert ".default" in section and "appRoleAssignedTo" in section  # an application's token
