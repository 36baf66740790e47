"""The OpenAPI 3.1 document against what is really registered and answered: every function the host
indexes is documented with its method, every documented route exists, and every answer the handlers
give — successes and problems — validates against the documented schema (JSON Schema 2020-12)."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from rebuilder.entrypoints.http.messages import HttpResult
from rebuilder.entrypoints.http.openapi import ALSO, ANSWERS, document
from tests.http_world import ADMIN, REQUEST, UBUNTU, WEU, HttpWorld, template_id
from tests.unit.test_function_app import registered


def http_functions() -> dict[str, tuple[str, tuple[str, ...]]]:
    found = {}
    for name, function in registered().items():
        trigger = function.get_trigger().get_dict_repr()
        if trigger["type"] == "httpTrigger":
            methods = tuple(str(getattr(m, "value", m)) for m in trigger["methods"])
            found[name] = (f"/api/{trigger['route']}", methods)
    return found


def test_every_registered_route_is_documented_and_every_documented_route_exists() -> None:
    paths = document()["paths"]
    documented = {
        (path, method.upper(), op["operationId"]) for path, ops in paths.items() for method, op in ops.items()
    }
    served = {
        (path, method, name) for name, (path, methods) in http_functions().items() for method in methods
    }
    assert documented == served


def test_the_document_is_openapi_3_1_with_schemas_for_every_answer() -> None:
    spec = document()
    assert spec["openapi"] == "3.1.0"
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            assert operation["responses"], path
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert "application/problem+json" in response["content"], (path, status)
            if operation["operationId"] != "health":
                assert {"401", "403", "400", "500"} <= set(operation["responses"]), path
                assert operation["x-required-role"] in ("read", "request", "admin")


def _validator(name: str) -> Draft202012Validator:
    spec = document()
    resource = Resource(contents={"components": spec["components"]}, specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:openapi", resource)
    schema = {
        "$ref": f"urn:openapi#/components/schemas/{name}",
        "$schema": "https://json-schema.org/draft/2020-12/schema",
    }
    return Draft202012Validator(schema, registry=registry)


def check(result: HttpResult, route: str) -> None:
    status, schema = ANSWERS[route]
    if result.status >= 400:
        _validator("Problem").validate(result.json())
        documented = document()["paths"]
        assert any(
            str(result.status) in op["responses"]
            for ops in documented.values()
            for op in ops.values()
            if op["operationId"] == route
        ), (route, result.status)
        return
    assert result.status == status or result.status in ALSO.get(route, {}), (route, result.status)
    if schema.startswith("text/"):
        assert result.content_type == schema
        return
    if result.content_type == "application/json":
        _validator(schema).validate(result.json())


@pytest.fixture(scope="module")
def world() -> HttpWorld:
    w = HttpWorld()
    w.patch_day()
    return w


def test_every_answer_matches_its_schema(world: HttpWorld) -> None:
    [golden] = world.ledger.list_builds(template_id("ubuntu-golden")).items
    calls: list[tuple[str, dict[str, Any]]] = [
        ("list_templates", {}),
        ("get_template", {"route": {"name": "app-ubuntu"}}),
        ("get_template", {"route": {"name": "missing"}}),
        ("get_rebuild", {"route": {"build_id": golden.id}}),
        ("get_rebuild", {"route": {"build_id": "bad"}}),
        ("list_builds", {"params": {"limit": "1"}}),
        ("list_builds", {"params": {"limit": "0"}}),
        ("get_plan", {}),
        ("get_report", {}),
        ("get_openapi", {}),
        ("get_doctor", {"roles": (ADMIN,)}),
        ("request_rebuild", {"method": "POST", "body": {"template": "manual-golden"}, "roles": (REQUEST,)}),
        ("request_rebuild", {"method": "POST", "body": {"template": "sandbox"}, "roles": (REQUEST,)}),
        ("request_rebuild", {"method": "POST", "body": b"x" * 20_000, "roles": (REQUEST,)}),
        ("enable_template", {"method": "POST", "route": {"name": "ubuntu-golden"}, "roles": (ADMIN,)}),
        ("promote_template", {"method": "POST", "route": {"name": "ubuntu-golden"}, "roles": (ADMIN,)}),
        ("rollback_template", {"method": "POST", "route": {"name": "ubuntu-golden"}, "roles": (ADMIN,)}),
        (
            "rollback_template",
            {
                "method": "POST",
                "route": {"name": "ubuntu-golden"},
                "body": {"reason": "x"},
                "roles": (ADMIN,),
            },
        ),
        ("list_templates", {"auth": False}),
        ("list_templates", {"roles": ("Nobody",)}),
    ]
    for route, args in calls:
        check(world.call(route, **args), route)


def test_release_answers_match_their_schemas() -> None:
    from tests.unit.test_http_routes import gated_release

    world = HttpWorld()
    name, _ = gated_release(world)
    check(world.call("list_templates"), "list_templates")
    check(world.call("get_template", route={"name": name}), "get_template")
    promoted = world.call("promote_template", method="POST", route={"name": name}, roles=(ADMIN,))
    assert promoted.status == 200
    check(promoted, "promote_template")
    world.reconcile()
    world.patch_day()
    world.clock.advance(days=1)
    world.marketplace.publish(WEU, UBUNTU, "22.04.202502110")
    world.watch()
    world.finish("ubuntu-golden", exact="22.04.202502110")
    world.reconcile()
    world.reconcile()
    rolled = world.call(
        "rollback_template",
        method="POST",
        route={"name": "ubuntu-golden"},
        body={"reason": "x"},
        roles=(ADMIN,),
    )
    assert rolled.status == 200
    check(rolled, "rollback_template")
    check(world.call("list_templates"), "list_templates")
