"""The azd hooks run for real, by sh, with az, azd, curl and sleep stood in for (tests/infra/stubs.py):
azd's subscription selected first, the app registration's API as infra/app-api.json says, the access
deployment retried while Azure replicates new roles, the event subscription retried while Event Grid
cannot find the function yet, names that are the environment's, and the doctor asked after the
deployment, its failed checks failing the hook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.infra.stubs import CLIENT_ID, ROOT, SUBSCRIPTION, Stubs, error, ok

INFRA = ROOT / "infra"
HOOKS = ("preprovision.sh", "postdeploy.sh")
NOT_FOUND = (
    "ERROR: {'code': 'InvalidTemplateDeployment', 'message': 'Destination endpoint not found. Resource "
    "details: resourceId: .../functions/on_resource_event. Resource should pre-exist before attempting "
    "this operation.'}"
)


def doctor(*checks: dict[str, object]) -> str:
    """GET /api/doctor's answer (rebuilder/entrypoints/doctor.py document, as json_result dumps it)."""
    failed = sum(1 for c in checks if not c["ok"])
    document = {"ok": not failed, "passed": len(checks) - failed, "failed": failed, "checks": list(checks)}
    return json.dumps(document, sort_keys=True)


PASSING = {
    "check": "settings",
    "subject": "environment",
    "ok": True,
    "detail": "valid",
    "fix": None,
    "missing": [],
}
FAILING = {
    "check": "permissions",
    "subject": "/subscriptions/s/resourceGroups/rg-image-templates",
    "ok": False,
    "detail": "missing Microsoft.VirtualMachineImages/imageTemplates/run/action",
    "fix": "assign the custom role 'rebuilder template operator' at this scope",
    "missing": [],
}


@pytest.fixture
def stubs(tmp_path: Path) -> Stubs:
    stubs = Stubs(tmp_path)
    stubs.when("az", "cloud", "show", answers=[ok("https://graph.example.test/\n")])
    stubs.when("az", "ad", "app", "create", answers=[ok("new-app-id\n")])
    stubs.when("az", "group", "exists", answers=[ok("true\n")])
    stubs.when("az", "account", "get-access-token", answers=[ok("user-token\n")])
    stubs.when("az", "functionapp", "keys", "list", answers=[ok("function-key\n")])
    return stubs


def passing_doctor(stubs: Stubs) -> Stubs:
    return stubs.when("curl", answers=[{"stdout": "200", "body": doctor(PASSING)}])


# -- 3. azd's subscription, first ---------------------------------------------------------------------
@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_selects_azd_s_subscription_before_any_other_az_call(stubs: Stubs, hook: str) -> None:
    run = passing_doctor(stubs).run(hook)
    assert run.returncode == 0, run.stderr
    az = [c for c in run.calls if c.cmd == "az"]
    assert len(az) > 1
    assert az[0].args == ["account", "set", "--subscription", SUBSCRIPTION]
    assert not [c for c in az[1:] if c.starts("account", "set")]


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_refuses_to_run_without_azd_s_subscription(stubs: Stubs, hook: str) -> None:
    run = stubs.run(hook, AZURE_SUBSCRIPTION_ID=None)
    assert run.returncode != 0
    assert "AZURE_SUBSCRIPTION_ID is not set" in run.stderr
    assert not [c for c in run.calls if c.cmd == "az"]  # not even on the CLI's default subscription


# -- 4. the custom roles exist before main.bicep assigns them ---------------------------------------------
def test_preprovision_retries_the_access_deployment_while_new_roles_replicate(stubs: Stubs) -> None:
    stubs.when(
        "az",
        "deployment",
        "sub",
        answers=[
            error(
                "ERROR: RoleDefinitionDoesNotExist: The specified role definition with ID 'x' does not exist."
            ),
            error("ERROR: PrincipalNotFound: Principal y does not exist in the directory."),
            ok(),
        ],
    )
    run = stubs.run("preprovision.sh")
    assert run.returncode == 0, run.stderr
    deployments = run.of("az", "deployment", "sub", "create")
    assert len(deployments) == 3
    assert run.sleeps == [10, 20]
    assert "Azure to replicate the new custom role definitions" in run.stdout
    [first] = {Path(c.option("--template-file")).resolve() for c in deployments}
    assert first == INFRA / "access.bicep"
    parameters = deployments[0].args[deployments[0].args.index("--parameters") + 1 :]
    assert 'templateResourceGroups=["rg-image-templates"]' in parameters
    assert "galleryResourceGroup=rg-golden-images" in parameters


def test_preprovision_fails_at_once_on_another_error_and_after_the_bound_on_replication(stubs: Stubs) -> None:
    stubs.when(
        "az", "deployment", "sub", answers=[error("ERROR: AuthorizationFailed: no roleDefinitions/write")]
    )
    run = stubs.run("preprovision.sh")
    assert run.returncode != 0 and "AuthorizationFailed" in run.stderr
    assert len(run.of("az", "deployment", "sub", "create")) == 1 and run.sleeps == []

    stubs.rules[-1]["answers"] = [error("ERROR: RoleDefinitionDoesNotExist")]
    run = stubs.run("preprovision.sh")
    assert run.returncode != 0
    assert len(run.of("az", "deployment", "sub", "create")) == 6
    assert run.sleeps == [10, 20, 40, 60, 60]
    assert "gave up after 6 attempts waiting for Azure to replicate" in run.stderr


# -- 5. names of the environment ------------------------------------------------------------------------
def test_the_hooks_name_their_deployments_after_the_environment(stubs: Stubs) -> None:
    names = []
    for environment in ("blue", "green"):
        pre = stubs.run("preprovision.sh", AZURE_ENV_NAME=environment)
        post = passing_doctor(stubs).run("postdeploy.sh", AZURE_ENV_NAME=environment)
        assert pre.returncode == 0 and post.returncode == 0, pre.stderr + post.stderr
        for deployment in [
            *pre.of("az", "deployment", "sub", "create"),
            *post.of("az", "deployment", "group"),
        ]:
            assert environment in deployment.option("--name")
            assert f"environmentName={environment}" in deployment.args
            names.append(deployment.option("--name"))
    assert len(set(names)) == len(names) == 4


# -- 6. the event subscription, once the function can be found --------------------------------------
def test_postdeploy_waits_for_event_grid_to_find_the_function(stubs: Stubs) -> None:
    stubs.when("az", "deployment", "group", answers=[error(NOT_FOUND)] * 3 + [ok()])
    run = passing_doctor(stubs).run("postdeploy.sh")
    assert run.returncode == 0, run.stderr
    assert len(run.of("az", "deployment", "group", "create")) == 4
    assert run.sleeps == [10, 20, 40]
    assert run.stdout.count("waiting") == 3 and "find the function on_resource_event" in run.stdout


def test_postdeploy_gives_up_after_the_bound_with_what_it_waited_for(stubs: Stubs) -> None:
    stubs.when("az", "deployment", "group", answers=[error(NOT_FOUND)])
    run = passing_doctor(stubs).run("postdeploy.sh", REBUILDER_HOOK_BACKOFF_SECONDS="0")
    assert run.returncode != 0
    assert len(run.of("az", "deployment", "group", "create")) == 6
    assert run.sleeps == [0, 0, 0, 0, 0]  # the pause is the environment's to set
    assert (
        "gave up after 6 attempts waiting for Event Grid to find the function on_resource_event" in run.stderr
    )
    assert not run.of("curl")  # the doctor is not asked about a deployment that failed


def test_postdeploy_fails_at_once_when_the_deployment_fails_otherwise(stubs: Stubs) -> None:
    stubs.when("az", "deployment", "group", answers=[error("ERROR: InvalidTemplate: bad filter")])
    run = stubs.run("postdeploy.sh")
    assert run.returncode != 0 and "InvalidTemplate" in run.stderr and run.sleeps == []


# -- 7. the API's scope and its pre-authorised client -------------------------------------------------------
def test_preprovision_adds_the_scope_then_pre_authorises_the_azure_cli(stubs: Stubs) -> None:
    run = stubs.run("preprovision.sh", AUTH_CLIENT_ID=None)
    assert run.returncode == 0, run.stderr
    patches = run.of("az", "rest", "--method", "PATCH")
    assert [c.option("--url") for c in patches] == [
        "https://graph.example.test/v1.0/applications(appId='new-app-id')"
    ] * 2
    first, second = (c.option("--body") for c in patches)
    wanted = json.loads((INFRA / "app-api.json").read_text())
    assert json.loads(first) == {"api": {**wanted["api"], "preAuthorizedApplications": []}}
    assert Path(second.removeprefix("@")).resolve() == INFRA / "app-api.json"
    [create] = run.of("az", "ad", "app", "create")
    assert Path(create.option("--app-roles").removeprefix("@")).resolve() == INFRA / "app-roles.json"
    [uris] = run.of("az", "ad", "app", "update")
    assert uris.option("--identifier-uris") == "api://new-app-id"
    assert run.of("azd", "env", "set", "AUTH_CLIENT_ID", "new-app-id")


def test_preprovision_gives_an_existing_registration_of_its_own_the_scope_it_lacks(stubs: Stubs) -> None:
    stubs.when("az", "ad", "app", "show", answers=[ok("0\n")])
    stubs.when("az", "ad", "app", "show", "displayName", answers=[ok("rebuilder-rebuilder-test\n")])
    run = stubs.run("preprovision.sh")
    assert run.returncode == 0, run.stderr
    assert not run.of("az", "ad", "app", "create")
    patches = run.of("az", "rest", "--method", "PATCH")
    assert len(patches) == 2 and CLIENT_ID in patches[0].option("--url")


# -- 10. the doctor after the deployment ---------------------------------------------------------------
def test_postdeploy_asks_the_doctor_as_the_user_and_prints_its_table(stubs: Stubs) -> None:
    run = passing_doctor(stubs).run("postdeploy.sh")
    assert run.returncode == 0, run.stderr
    [token] = run.of("az", "account", "get-access-token")
    assert token.option("--resource") == f"api://{CLIENT_ID}"
    [curl] = run.of("curl")
    assert curl.args[-1] == "https://rebuilder-test-abc.example.test/api/doctor"
    [headers] = curl.headers
    assert "x-functions-key: function-key" in headers and "Authorization: Bearer user-token" in headers
    assert "user-token" not in " ".join(curl.args)  # the token is not on a command line
    assert "✅ settings environment: valid" in run.stdout and "1 passed, 0 failed" in run.stdout


def test_postdeploy_fails_on_a_failed_check_and_says_the_fix(stubs: Stubs) -> None:
    stubs.when("curl", answers=[{"stdout": "200", "body": doctor(PASSING, FAILING)}])
    run = stubs.run("postdeploy.sh")
    assert run.returncode != 0
    assert "❌ permissions /subscriptions/s/resourceGroups/rg-image-templates" in run.stdout
    assert "fix: assign the custom role 'rebuilder template operator' at this scope" in run.stdout
    assert "the doctor found failed checks" in run.stderr


def test_postdeploy_without_rebuild_admin_says_how_to_get_it_and_does_not_fail(stubs: Stubs) -> None:
    stubs.when("az", "ad", "sp", "show", answers=[ok("admin-role-id\n")])
    stubs.when("az", "ad", "sp", "show", "id", answers=[ok("sp-object-id\n")])
    stubs.when("az", "ad", "signed-in-user", "show", answers=[ok("my-object-id\n")])
    forbidden = {
        "status": 403,
        "title": "Forbidden",
        "detail": "this route needs the app role 'Rebuild.Admin', which the caller does not have",
    }
    stubs.when("curl", answers=[{"stdout": "403", "body": json.dumps(forbidden)}])
    run = stubs.run("postdeploy.sh")
    assert run.returncode == 0, run.stderr
    assert "needs the app role Rebuild.Admin" in run.stdout and "HTTP 403" in run.stdout
    assert "servicePrincipals/sp-object-id/appRoleAssignedTo" in run.stdout
    assert '"principalId": "my-object-id"' in run.stdout and '"appRoleId": "admin-role-id"' in run.stdout
    assert "azd hooks run postdeploy" in run.stdout
    assert len(run.of("curl")) == 1  # a 403 is an answer, not a warm-up


def test_postdeploy_waits_while_the_app_warms_up_then_gives_up(stubs: Stubs) -> None:
    stubs.when("az", "functionapp", "keys", "list", answers=[ok(""), ok("function-key\n")])
    stubs.when(
        "curl",
        answers=[{"stdout": "503"}, {"stdout": "404"}, {"stdout": "200", "body": doctor(PASSING)}],
    )
    run = stubs.run("postdeploy.sh")
    assert run.returncode == 0, run.stderr
    assert len(run.of("curl")) == 3 and run.sleeps == [10, 20, 40]  # no key yet, 503, 404, then 200
    assert "waiting 10s for the app to answer GET /api/doctor" in run.stdout

    stubs.rules[-2]["answers"] = [ok("function-key\n")]
    stubs.rules[-1]["answers"] = [{"stdout": "000", "rc": 7}]  # curl: could not connect
    run = stubs.run("postdeploy.sh")
    assert run.returncode != 0 and len(run.of("curl")) == 6
    assert (
        "the app did not answer GET https://rebuilder-test-abc.example.test/api/doctor after 6 attempts"
        in run.stderr
    )


def test_postdeploy_fails_when_easy_auth_refuses_the_token_or_the_platform_forbids(stubs: Stubs) -> None:
    run = stubs.when("curl", answers=[{"stdout": "401"}]).run("postdeploy.sh")
    assert run.returncode != 0 and "HTTP 401" in run.stderr and len(run.of("curl")) == 1
    stubs.rules[-1]["answers"] = [
        {"stdout": "403", "body": "<html>Error 403 - This web app is stopped.</html>"}
    ]
    run = stubs.run("postdeploy.sh")
    assert run.returncode != 0 and "HTTP 403, not from rebuilder" in run.stderr
