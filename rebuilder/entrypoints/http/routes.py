"""The routes: one table that the Functions blueprint, the request pipeline and the OpenAPI document
are all built from, so what is served, what is checked and what is documented cannot drift apart.

`serve` is the pipeline every route goes through: settings → principal → role → known query
parameters → handler, with every error turned into problem+json (problems.from_error) here, at the
outermost boundary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from . import handlers, inputs
from .auth import Principal, principal, require
from .messages import ApiRequest, HttpResult
from .problems import Unprotected, from_error, loggable

if TYPE_CHECKING:
    from rebuilder.bootstrap import Services
    from rebuilder.settings import Settings

log = logging.getLogger("rebuilder.http")
Role = Literal["read", "request", "admin"]
Handler = Callable[["Services", ApiRequest, Principal], HttpResult]


@dataclass(frozen=True)
class Route:
    name: str  # the Function's name (infra/ and callers refer to it)
    method: str
    path: str  # under /api
    role: Role
    handler: Handler
    summary: str
    query: tuple[str, ...] = ()


HOST_QUERY = ("code",)  # the function key, when a caller sends it as ?code= (the host checks it)
TEMPLATE_QUERY = ("resource_group", "subscription")
BUILDS_QUERY = ("template", "state", "reason", "since", "until", "limit", "continuation", "format")

ROUTES: tuple[Route, ...] = (
    Route(
        "request_rebuild",
        "POST",
        "rebuilds",
        "request",
        handlers.post_rebuild,
        "Request an on-demand rebuild",
    ),
    Route(
        "get_rebuild",
        "GET",
        "rebuilds/{build_id}",
        "read",
        handlers.get_rebuild,
        "One build, its regions and transitions",
    ),
    Route(
        "list_templates", "GET", "templates", "read", handlers.list_templates, "Where every template stands"
    ),
    Route(
        "get_template",
        "GET",
        "templates/{name}",
        "read",
        handlers.get_template,
        "One template with its recent builds, exposure windows and audit trail",
        TEMPLATE_QUERY,
    ),
    Route(
        "enable_template",
        "POST",
        "templates/{name}/enable",
        "admin",
        handlers.post_enable,
        "Re-enable an auto-disabled template",
        TEMPLATE_QUERY,
    ),
    Route(
        "promote_template",
        "POST",
        "templates/{name}/promote",
        "admin",
        handlers.post_promote,
        "Approve a gated template's candidate; promoted once baked",
        TEMPLATE_QUERY,
    ),
    Route(
        "rollback_template",
        "POST",
        "templates/{name}/rollback",
        "admin",
        handlers.post_rollback,
        "Demote the current image so the previous one is latest again; revoke its build",
        TEMPLATE_QUERY,
    ),
    Route(
        "list_builds",
        "GET",
        "builds",
        "read",
        handlers.list_builds,
        "Build history, filtered and paged",
        BUILDS_QUERY,
    ),
    Route(
        "get_plan",
        "GET",
        "plan",
        "read",
        handlers.get_plan,
        "The dry-run plan, now or as it would be at a given time",
        ("at",),
    ),
    Route("get_report", "GET", "report", "read", handlers.get_report, "The security report (HTML)"),
    Route(
        "get_doctor",
        "GET",
        "doctor",
        "admin",
        handlers.get_doctor,
        "The doctor, as the app's own identity: settings, tokens, permissions, images, identities, ledger",
    ),
    Route(
        "get_openapi", "GET", "openapi.json", "read", handlers.get_openapi, "This API's OpenAPI 3.1 document"
    ),
)
BY_NAME = {r.name: r for r in ROUTES}
HEALTH_PATH = "health"


def role_name(settings: Settings, role: Role) -> str:
    return {"read": settings.read_role, "request": settings.request_role, "admin": settings.admin_role}[role]


def serve(name: str, request: ApiRequest, get_services: Callable[[], Services]) -> HttpResult:
    """Answer one request to the route called `name`; never raises."""
    route = BY_NAME[name]
    who = "-"  # the caller's object id, once the principal is read: every access line names it
    try:
        services = get_services()
        if not services.settings.app_service_auth:
            raise Unprotected(
                "the API trusts the caller's identity only from App Service Authentication, which is "
                "not enabled for this app (WEBSITE_AUTH_ENABLED)"
            )
        caller = principal(request.headers)
        who = caller.object_id or "-"
        require(caller, role_name(services.settings, route.role))
        inputs.only(request.params, (*route.query, *HOST_QUERY))
        result = route.handler(services, request, caller)
    except Exception as error:  # the outermost boundary: every failure is answered, and logged there
        result = from_error(error, request.correlation_id)
        if result.status < 500:
            log.info(
                "%s %s refused %d (%s) caller %s: %s",
                route.method,
                route.path,
                result.status,
                request.correlation_id,
                loggable(who, 100),
                loggable(str(error), 300),
            )
        return result
    log.info(
        "%s %s answered %d (%s) caller %s",
        route.method,
        route.path,
        result.status,
        request.correlation_id,
        loggable(who, 100),
    )
    return result


def serve_health(request: ApiRequest, get_services: Callable[[], Services]) -> HttpResult:
    try:
        return handlers.health(get_services)
    except Exception as error:  # the outermost boundary
        return from_error(error, request.correlation_id)
