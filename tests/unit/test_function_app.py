"""function_app as the Functions host sees it: cheap to import, every function and binding declared,
and invoked the way the host invokes it (real azure.functions request objects).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from rebuilder import bootstrap

ROOT = Path(__file__).resolve().parents[2]

# name -> (trigger type, route or schedule, methods, auth level)
EXPECTED = {
    "health": ("httpTrigger", "health", ["GET"], "anonymous"),
    "request_rebuild": ("httpTrigger", "rebuilds", ["POST"], "function"),
    "get_rebuild": ("httpTrigger", "rebuilds/{build_id}", ["GET"], "function"),
    "list_templates": ("httpTrigger", "templates", ["GET"], "function"),
    "get_template": ("httpTrigger", "templates/{name}", ["GET"], "function"),
    "enable_template": ("httpTrigger", "templates/{name}/enable", ["POST"], "function"),
    "promote_template": ("httpTrigger", "templates/{name}/promote", ["POST"], "function"),
    "rollback_template": ("httpTrigger", "templates/{name}/rollback", ["POST"], "function"),
    "list_builds": ("httpTrigger", "builds", ["GET"], "function"),
    "get_plan": ("httpTrigger", "plan", ["GET"], "function"),
    "get_report": ("httpTrigger", "report", ["GET"], "function"),
    "get_doctor": ("httpTrigger", "doctor", ["GET"], "function"),
    "get_openapi": ("httpTrigger", "openapi.json", ["GET"], "function"),
    "watch_sources": ("timerTrigger", "%REBUILDER_WATCH_SCHEDULE%", [], "None"),
    "reconcile_builds": ("timerTrigger", "%REBUILDER_RECONCILE_SCHEDULE%", [], "None"),
    "on_resource_event": ("eventGridTrigger", None, [], "None"),
}


def test_import_with_an_empty_environment_registers_everything_and_imports_no_management_sdk() -> None:
    probe = (
        "import json, sys, function_app\n"
        "fns = function_app.app.get_functions()\n"
        "print(json.dumps({'functions': sorted(f.get_function_name() for f in fns),\n"
        "  'modules': sorted(m for m in sys.modules if m.startswith(('azure.mgmt', 'azure.identity',\n"
        "      'azure.data', 'azure.eventgrid', 'azure.core.pipeline')))}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["functions"] == sorted(EXPECTED)
    assert report["modules"] == []


@functools.cache
def registered() -> dict[str, Any]:
    """The host indexes functions once; get_functions() refuses to be asked twice."""
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def test_bindings_match_what_infra_and_callers_rely_on() -> None:
    found = {}
    for function in registered().values():
        trigger = function.get_trigger().get_dict_repr()
        schedule_or_route = trigger.get("route") or trigger.get("schedule")
        methods = [str(getattr(m, "value", m)) for m in trigger.get("methods") or []]
        auth = str(getattr(trigger.get("authLevel"), "value", trigger.get("authLevel")))
        found[function.get_function_name()] = (trigger["type"], schedule_or_route, methods, auth)
        if trigger["type"] == "timerTrigger":  # schedules are app settings that infra declares
            assert str(schedule_or_route).startswith("%") and str(schedule_or_route).endswith("%")
        if trigger["type"] == "httpTrigger" and function.get_function_name() != "health":
            assert auth == "function", f"{function.get_function_name()} must need a function key"
    assert found == EXPECTED


def _invoke_health() -> func.HttpResponse:
    health = registered()["health"]
    request = func.HttpRequest(
        method="GET",
        url="https://app.azurewebsites.net/api/health",
        body=b"",
        headers={},
        params={},
        route_params={},
    )
    response = health.get_user_function()(request)
    assert isinstance(response, func.HttpResponse)
    return response


def test_health_is_anonymous_and_tells_only_the_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootstrap, "_services", None)
    monkeypatch.setenv("REBUILDER_SCOPES", "/subscriptions/not-a-guid")
    monkeypatch.setenv("REBUILDER_ARM_TOKEN", "secret-token-1234")
    monkeypatch.delenv("REBUILDER_LEDGER", raising=False)
    monkeypatch.delenv("REBUILDER_ARM_ENDPOINT", raising=False)
    response = _invoke_health()
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    body = json.loads(response.get_body())
    assert (body["status"], body["title"], body["detail"]) == (
        503,
        "Service unavailable",
        "the service cannot work yet",
    )
    assert "REBUILDER" not in response.get_body().decode()  # no setting names, no values


def test_health_is_ok_once_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootstrap, "_services", None)
    monkeypatch.setenv("REBUILDER_SCOPES", "/subscriptions/11111111-2222-3333-4444-555555555555")
    monkeypatch.setenv("REBUILDER_LEDGER", "UseDevelopmentStorage=true")
    monkeypatch.delenv("REBUILDER_ARM_TOKEN", raising=False)
    response = _invoke_health()
    assert response.status_code == 200
    assert json.loads(response.get_body()) == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"
    monkeypatch.setattr(bootstrap, "_services", None)


def _invoke(name: str, request: func.HttpRequest, invocation_id: str = "inv-1") -> func.HttpResponse:
    class Context:  # what the host passes: the invocation id becomes the correlation id
        def __init__(self) -> None:
            self.invocation_id = invocation_id

    response = registered()[name].get_user_function()(request, Context())
    assert isinstance(response, func.HttpResponse)
    return response


def test_http_functions_answer_as_the_host_calls_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.http_world import READ, REQUEST, HttpWorld, principal

    world = HttpWorld()
    world.watch()
    monkeypatch.setattr(bootstrap, "_services", world.services)
    accepted = _invoke(
        "request_rebuild",
        func.HttpRequest(
            method="POST",
            url="https://app.azurewebsites.net/api/rebuilds",
            body=json.dumps({"template": "ubuntu-golden", "reason": "hotfix"}).encode(),
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": "chg-1",
                "X-MS-CLIENT-PRINCIPAL": principal(REQUEST, READ),
            },
            params={},
            route_params={},
        ),
    )
    assert accepted.status_code == 202
    build = json.loads(accepted.get_body())["build"]
    assert accepted.headers["Location"] == f"https://app.azurewebsites.net/api/rebuilds/{build['id']}"
    assert build["provenance"]["correlation_id"] == "inv-1"
    listed = _invoke(
        "list_builds",
        func.HttpRequest(
            method="GET",
            url="https://app.azurewebsites.net/api/builds?format=csv",
            body=b"",
            headers={"X-MS-CLIENT-PRINCIPAL": principal(READ)},
            params={"format": "csv"},
            route_params={},
        ),
    )
    assert listed.status_code == 200 and listed.mimetype == "text/csv"
    assert build["id"] in listed.get_body().decode()
    refused = _invoke(
        "get_rebuild",
        func.HttpRequest(
            method="GET",
            url="https://app.azurewebsites.net/api/rebuilds/x",
            body=b"",
            headers={},
            params={},
            route_params={"build_id": "x"},
        ),
        invocation_id="inv-2",
    )
    assert refused.status_code == 401 and refused.mimetype == "application/problem+json"
    assert json.loads(refused.get_body())["correlation_id"] == "inv-2"
    assert refused.headers["X-Correlation-Id"] == "inv-2"
    monkeypatch.setattr(bootstrap, "_services", None)
