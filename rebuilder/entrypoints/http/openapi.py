"""GET /api/openapi.json: the OpenAPI 3.1 document of every route, built from the route table and
the schemas below (JSON Schema 2020-12). tests/unit/test_http_openapi.py checks every registered
function against it and every answer of the handlers against its schema."""

from __future__ import annotations

from typing import Any

from rebuilder.domain.builds import BuildReason, BuildState
from rebuilder.services.build_history import MAX_PAGE

from .inputs import MAX_BODY, MAX_KEY
from .messages import CSV, HTML, JSON, JSONL, PROBLEM_JSON
from .routes import HEALTH_PATH, ROUTES, Route

S = dict[str, Any]
STR: S = {"type": "string"}
INT: S = {"type": "integer"}
NUM: S = {"type": "number"}
BOOL: S = {"type": "boolean"}
TIME: S = {"type": "string", "format": "date-time"}


def maybe(schema: S) -> S:
    return {"oneOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, S], *, extra: bool = False) -> S:
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": extra,
    }


def ref(name: str) -> S:
    return {"$ref": f"#/components/schemas/{name}"}


def array(items: S) -> S:
    return {"type": "array", "items": items}


_REGION_ROW = obj(
    {
        "region": STR,
        "state": STR,
        "progress": INT,
        "repairs": INT,
        "completed_at": maybe(TIME),
        "details": maybe(STR),
    }
)
_TRANSITION = obj({"at": TIME, "from": maybe(STR), "to": STR, "sub_state": maybe(STR), "why": STR, "by": STR})
_BUILD_PROPS: dict[str, S] = {
    "id": STR,
    "template": STR,
    "template_id": STR,
    "reason": {"enum": [r.value for r in BuildReason]},
    "state": {"enum": [s.value for s in BuildState]},
    "sub_state": maybe(STR),
    "source_version": maybe(STR),
    "root_version": maybe(STR),
    "previous_baseline": maybe(STR),
    "lineage": maybe(
        obj(
            {
                "parent_build_id": STR,
                "parent_template": STR,
                "root_version": STR,
                "root_source": STR,
                "previous_root_version": maybe(STR),
            }
        )
    ),
    "superseded_by": maybe(STR),
    "attempts": INT,
    "next_attempt_at": maybe(TIME),
    "created_at": TIME,
    "updated_at": TIME,
    "run_started_at": maybe(TIME),
    "run_ended_at": maybe(TIME),
    "outputs": array(STR),
    "message": maybe(STR),
    "definition_hash_before": maybe(STR),
    "definition_hash_after": maybe(STR),
    "provenance": obj(
        {
            "trigger": STR,
            "caller": maybe(STR),
            "caller_object_id": maybe(STR),
            "note": maybe(STR),
            "correlation_id": maybe(STR),
            "idempotency_key": STR,
        }
    ),
}
_EXPOSURE = maybe(
    obj(
        {
            "basis": {"enum": ["direct", "root"]},
            "version": STR,
            "first_seen_at": TIME,
            "hours": NUM,
            "open": BOOL,
        }
    )
)
_STATE_PROPS: dict[str, S] = {
    "id": STR,
    "name": STR,
    "location": STR,
    "mode": STR,
    "baseline_version": maybe(STR),
    "baseline_build_id": maybe(STR),
    "last_build_id": maybe(STR),
    "last_build_state": maybe(STR),
    "open_builds": array(STR),
    "consecutive_failures": INT,
    "disabled": BOOL,
    "disabled_reason": maybe(STR),
    "disabled_at": maybe(TIME),
    "regions": array(
        obj(
            {
                "region": STR,
                "build_id": STR,
                "source_version": STR,
                "image_version": STR,
                "state": STR,
                "completed_at": maybe(TIME),
            }
        )
    ),
}
_SUMMARY_PROPS: dict[str, S] = {
    **_STATE_PROPS,
    "child": BOOL,
    "parents": array(STR),
    "source": maybe(STR),
    "root_source": maybe(STR),
    "candidate_version": maybe(STR),
    "newest_root_version": maybe(STR),
    "last_build": maybe(ref("Build")),
    "open_builds": array(obj({"id": STR, "state": maybe(STR)})),
    "failing": BOOL,
    "regions": array(
        obj(
            {
                "region": STR,
                "build_id": maybe(STR),
                "image_version": maybe(STR),
                "image_version_id": maybe(STR),
                "source_version": maybe(STR),
                "root_version": maybe(STR),
                "replication": maybe(STR),
                "failed": BOOL,
                "stale": BOOL,
                "newer_source_version": maybe(STR),
                "exposure": _EXPOSURE,
                "direct_exposure": _EXPOSURE,
            }
        )
    ),
}
_WINDOW = obj(
    {
        "basis": {"enum": ["direct", "root"]},
        "region": STR,
        "version": STR,
        "first_seen_at": TIME,
        "replicated_at": maybe(TIME),
        "closed_by": maybe(STR),
        "closed_by_version": maybe(STR),
        "hours": NUM,
        "open": BOOL,
    }
)
_ACTION = obj(
    {
        "at": TIME,
        "action": STR,
        "by": STR,
        "by_object_id": maybe(STR),
        "why": maybe(STR),
        "correlation_id": maybe(STR),
    }
)
_WAVE = obj(
    {
        "image": STR,
        "version": STR,
        "first_seen_at": TIME,
        "templates": array(STR),
        "templates_done": INT,
        "children": INT,
        "regions": INT,
        "regions_done": INT,
        "worst_hours": NUM,
        "median_hours": NUM,
        "summary": STR,
    }
)
_PLAN_ITEM = obj(
    {
        "id": STR,
        "name": STR,
        "location": STR,
        "mode": STR,
        "source": STR,
        "baseline_version": maybe(STR),
        "baseline_adopted": BOOL,
        "candidate_version": maybe(STR),
        "action": {"enum": ["rebuild", "none", "skip", "blocked"]},
        "reason": STR,
        "flags": array(STR),
    }
)

SCHEMAS: dict[str, S] = {
    "Problem": obj(
        {"type": STR, "title": STR, "status": INT, "detail": STR, "correlation_id": STR},
        extra=True,  # a 409 carries the open build; a 400 may list the allowed fields or parameters
    ),
    "Health": obj({"status": {"const": "ok"}}),
    "RebuildRequest": {
        **obj({"template": {**STR, "minLength": 1, "maxLength": 400}, "reason": {**STR, "maxLength": 500}}),
        "required": ["template"],
    },
    "EnableRequest": {**obj({"reason": {**STR, "maxLength": 500}}), "required": []},
    "Build": obj(_BUILD_PROPS),
    "BuildDetail": obj({**_BUILD_PROPS, "regions": array(_REGION_ROW), "transitions": array(_TRANSITION)}),
    "BuildSummary": obj(
        {
            "id": STR,
            "template": STR,
            "template_id": STR,
            "reason": {"enum": [r.value for r in BuildReason]},
            "state": {"enum": [s.value for s in BuildState]},
            "source_version": maybe(STR),
            "created_at": TIME,
        }
    ),
    # The whole build for a caller who may read the ledger; its summary otherwise (a joined build may
    # be somebody else's request).
    "RebuildAccepted": obj(
        {
            "build": {"oneOf": [ref("Build"), ref("BuildSummary")]},
            "created": BOOL,
            "joined": BOOL,
            "replayed": BOOL,
        }
    ),
    "TemplateState": obj(_STATE_PROPS),
    "TemplateSummary": obj(_SUMMARY_PROPS),
    "TemplateDetail": obj(
        {
            **_SUMMARY_PROPS,
            "builds": array(ref("Build")),
            "windows": array(_WINDOW),
            "actions": array(_ACTION),
        }
    ),
    "TemplateList": obj(
        {"generated_at": TIME, "templates": array(ref("TemplateSummary")), "waves": array(_WAVE)}
    ),
    "EnableResult": obj({"template": ref("TemplateState"), "was_disabled": BOOL}),
    "BuildPage": obj({"builds": array(ref("Build")), "next": maybe(STR), "count": INT}),
    "Plan": obj(
        {
            "templates": array(_PLAN_ITEM),
            "ignored": array(obj({"id": STR, "reason": STR})),
            "problems": array(STR),
            "list_calls": INT,
            "new_versions": INT,
        }
    ),
    "OpenApi": {"type": "object"},
}

# route name → (answer status, schema name or media type of a non-JSON answer)
ANSWERS: dict[str, tuple[int, str]] = {
    "request_rebuild": (202, "RebuildAccepted"),
    "get_rebuild": (200, "BuildDetail"),
    "list_templates": (200, "TemplateList"),
    "get_template": (200, "TemplateDetail"),
    "enable_template": (200, "EnableResult"),
    "list_builds": (200, "BuildPage"),
    "get_plan": (200, "Plan"),
    "get_report": (200, HTML),
    "get_openapi": (200, "OpenApi"),
}
BODIES = {"request_rebuild": "RebuildRequest", "enable_template": "EnableRequest"}
_ERRORS = {
    "400": "The request is malformed: body, parameter or header (the detail names it)",
    "401": "No App Service Authentication principal, or one that cannot be read",
    "403": "The caller lacks the route's app role",
    "500": "Unexpected failure (see the logs under the correlation id)",
    "502": "Azure refused a call this request needed",
    "503": "Azure or the ledger is unavailable, or the service is not configured; try again later",
}
_SPECIFIC = {
    "request_rebuild": {
        "404": "No such image template in the configured scopes",
        "409": "A build is open for the template and cannot take this request (its summary is in `build`)",
        "413": f"The body is larger than {MAX_BODY} bytes",
        "415": "The body is not application/json",
        "422": "The template is not managed by rebuilder",
    },
    "get_rebuild": {"404": "No such build"},
    "get_template": {"404": "The ledger knows no such template"},
    "list_builds": {"404": "The ledger knows no such template (the `template` filter)"},
    "enable_template": {
        "404": "The ledger knows no such template",
        "409": "The template's row kept changing; ask again",
        "413": f"The body is larger than {MAX_BODY} bytes",
        "415": "The body is not application/json",
    },
}


_HEADERS: dict[str, S] = {
    "request_rebuild": {"Location": {"description": "the build: /api/rebuilds/{build_id}", "schema": STR}},
    "list_builds": {"Link": {"description": 'the next page, rel="next", when there is one', "schema": STR}},
    "get_report": {"Content-Security-Policy": {"description": "nothing loads, nothing runs", "schema": STR}},
}


def _param(name: str, where: str, schema: S, description: str = "") -> S:
    found: S = {"name": name, "in": where, "schema": schema, "required": where == "path"}
    return {**found, "description": description} if description else found


_BUILD_ID = r"^\d{8}T\d{6}Z-[0-9a-f]{16}-[0-9a-f]{10}$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_PARAMETERS: dict[str, S] = {
    "build_id": _param("build_id", "path", {**STR, "pattern": _BUILD_ID}),
    "name": _param("name", "path", {**STR, "pattern": _NAME}),
    "resource_group": _param("resource_group", "query", STR, "tells apart templates of the same name"),
    "template": _param("template", "query", STR, "a template name or resource id"),
    "state": _param("state", "query", STR, "comma-separated: " + ", ".join(BuildState)),
    "reason": _param("reason", "query", STR, "comma-separated: " + ", ".join(BuildReason)),
    "since": _param("since", "query", TIME, "created at or after (ISO-8601 with an offset)"),
    "until": _param("until", "query", TIME, "created before"),
    "limit": _param("limit", "query", {**INT, "minimum": 1, "maximum": MAX_PAGE, "default": 50}),
    "continuation": _param("continuation", "query", STR, "the opaque token of the `next` link"),
    "format": _param("format", "query", {"enum": ["json", "csv", "jsonl"], "default": "json"}),
    "Idempotency-Key": _param(
        "Idempotency-Key",
        "header",
        {**STR, "maxLength": MAX_KEY},
        "the same key gives the same build; a replay answers with it and writes nothing",
    ),
}


def _operation(route: Route) -> S:
    status, answer = ANSWERS[route.name]
    if answer.startswith(("text/", "application/")):
        content = {answer: {"schema": STR}}
    elif route.name == "list_builds":
        content = {JSON: {"schema": ref(answer)}, CSV: {"schema": STR}, JSONL: {"schema": STR}}
    else:
        content = {JSON: {"schema": ref(answer)}}
    responses: S = {str(status): {"description": route.summary, "content": content}}
    if route.name in _HEADERS:
        responses[str(status)]["headers"] = _HEADERS[route.name]
    problem = {PROBLEM_JSON: {"schema": ref("Problem")}}
    for code, why in sorted({**_ERRORS, **_SPECIFIC.get(route.name, {})}.items()):
        responses[code] = {"description": why, "content": problem}
        if code == "503":
            responses[code]["headers"] = {"Retry-After": {"description": "seconds", "schema": INT}}
    names = [p.strip("{}") for p in route.path.split("/") if p.startswith("{")] + list(route.query)
    if route.name == "request_rebuild":
        names.append("Idempotency-Key")
    operation: S = {
        "operationId": route.name,
        "summary": route.summary,
        "security": [
            {"functionKey": [], "appServicePrincipal": []},
            {"functionKeyQuery": [], "appServicePrincipal": []},
        ],
        "x-required-role": route.role,
        "parameters": [_PARAMETERS[n] for n in names],
        "responses": responses,
    }
    if route.name in BODIES:
        operation["requestBody"] = {
            "required": route.name == "request_rebuild",
            "content": {JSON: {"schema": ref(BODIES[route.name])}},
        }
    return operation


def document() -> S:
    paths: dict[str, S] = {}
    for route in ROUTES:
        paths.setdefault(f"/api/{route.path}", {})[route.method.lower()] = _operation(route)
    paths[f"/api/{HEALTH_PATH}"] = {
        "get": {
            "operationId": "health",
            "summary": "Liveness: the status, nothing else (anonymous)",
            "security": [],
            "responses": {
                "200": {"description": "ok", "content": {JSON: {"schema": ref("Health")}}},
                "503": {"description": "unavailable", "content": {PROBLEM_JSON: {"schema": ref("Problem")}}},
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rebuilder",
            "version": "1",
            "description": "Golden image rebuilds, their ledger and the security report. Every route but "
            "health needs a function key (`x-functions-key` or `?code=`) and an App Service Authentication "
            "principal with the route's app role (`x-required-role`: read → Ledger.Read, request → "
            "Rebuild.Request, admin → Rebuild.Admin, role names configurable). Errors are problem+json.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
                "appServicePrincipal": {"type": "apiKey", "in": "header", "name": "X-MS-CLIENT-PRINCIPAL"},
            },
        },
    }
