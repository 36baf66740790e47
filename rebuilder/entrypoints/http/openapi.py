"""GET /api/openapi.json: the OpenAPI 3.1 document of every route, built from the route table and
the schemas (schemas.py, JSON Schema 2020-12). tests/unit/test_http_openapi.py checks every registered
function against it and every answer of the handlers against its schema."""

from __future__ import annotations

from rebuilder.domain.builds import BuildReason, BuildState
from rebuilder.domain.casing import fold
from rebuilder.services.build_history import MAX_PAGE

from .inputs import MAX_BODY, MAX_KEY
from .messages import CSV, HTML, JSON, JSONL, PROBLEM_JSON
from .routes import HEALTH_PATH, ROUTES, Route
from .schemas import INT, SCHEMAS, STR, TIME, S, ref

# route name → (answer status, schema name or media type of a non-JSON answer)
ANSWERS: dict[str, tuple[int, str]] = {
    "request_rebuild": (202, "RebuildAccepted"),
    "get_rebuild": (200, "BuildDetail"),
    "list_templates": (200, "TemplateList"),
    "get_template": (200, "TemplateDetail"),
    "enable_template": (200, "EnableResult"),
    "promote_template": (200, "PromoteResult"),
    "rollback_template": (200, "RollbackResult"),
    "list_builds": (200, "BuildPage"),
    "get_plan": (200, "Plan"),
    "get_report": (200, HTML),
    "get_doctor": (200, "Doctor"),
    "get_openapi": (200, "OpenApi"),
}
# route name → other success statuses answered with the same schema
ALSO: dict[str, dict[int, str]] = {
    "rollback_template": {
        202: "The demotion is sent and the gallery does not show it in effect yet: the build is Revoked "
        "by the next reconcile pass once it does (`done` false)",
    },
}
BODIES = {
    "request_rebuild": "RebuildRequest",
    "enable_template": "EnableRequest",
    "promote_template": "PromoteRequest",
    "rollback_template": "RollbackRequest",
}
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
    "promote_template": {
        "404": "The ledger knows no such template, or no candidate (of that version) awaits promotion",
        "409": "The candidate changed meanwhile; ask again",
        "413": f"The body is larger than {MAX_BODY} bytes",
        "415": "The body is not application/json",
    },
    "rollback_template": {
        "404": "The ledger knows no such template",
        "409": "No earlier version to fall back to, or a rollback of this template is under way",
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
    "subscription": _param(
        "subscription", "query", STR, "the subscription id: tells apart templates of the same name"
    ),
    "template": _param("template", "query", STR, "a template name or resource id"),
    "state": _param("state", "query", STR, "comma-separated: " + ", ".join(BuildState)),
    "reason": _param("reason", "query", STR, "comma-separated: " + ", ".join(BuildReason)),
    "since": _param("since", "query", TIME, "created at or after (ISO-8601 with an offset)"),
    "until": _param("until", "query", TIME, "created before"),
    "at": _param("at", "query", TIME, "plan as it would be at this time (ISO-8601 with an offset)"),
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
    for other, why in ALSO.get(route.name, {}).items():
        responses[str(other)] = {"description": why, "content": content}
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
        paths.setdefault(f"/api/{route.path}", {})[fold(route.method)] = _operation(route)
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
