"""The HTTP triggers (Python v2 model), as a blueprint that function_app.py registers. Each function
is one line: translate the Functions request, serve it through the route table, translate back.

Every route needs a function key (auth level FUNCTION) and, in the pipeline, an App Service
Authentication principal with the route's app role; health alone is anonymous and tells only the
status. Function names are part of the contract: infra/ and callers refer to them.
"""

from __future__ import annotations

import azure.functions as func

from rebuilder import bootstrap
from rebuilder.domain.casing import fold

from .http.messages import ApiRequest, HttpResult
from .http.routes import serve, serve_health

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves it untyped
FUNCTION = func.AuthLevel.FUNCTION


def _request(req: func.HttpRequest, context: func.Context | None) -> ApiRequest:
    return ApiRequest(
        method=req.method,
        url=req.url,
        route_params=dict(req.route_params),
        params=dict(req.params),
        headers={fold(k): v for k, v in req.headers.items()},
        body=req.get_body() or b"",
        correlation_id=getattr(context, "invocation_id", "") or "",
    )


def _response(result: HttpResult) -> func.HttpResponse:
    headers = result.all_headers()
    return func.HttpResponse(
        result.body, status_code=result.status, headers=headers, mimetype=result.content_type, charset="utf-8"
    )


def _serve(name: str, req: func.HttpRequest, context: func.Context | None) -> func.HttpResponse:
    return _response(serve(name, _request(req, context), bootstrap.services))


@bp.function_name("health")
@bp.route(route="health", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return _response(serve_health(_request(req, None), bootstrap.services))


@bp.function_name("request_rebuild")
@bp.route(route="rebuilds", methods=[func.HttpMethod.POST], auth_level=FUNCTION)
def request_rebuild(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _serve("request_rebuild", req, context)


@bp.function_name("get_rebuild")
@bp.route(route="rebuilds/{build_id}", methods=[func.HttpMethod.GET], auth_level=FUNCTION)
def get_rebuild(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _serve("get_rebuild", req, context)


@bp.function_name("list_templates")
@bp.route(route="templates", methods=[func.HttpMethod.GET], auth_level=FUNCTION)
def list_templates(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _serve("list_templates", req, context)


@bp.function_name("get_template")
@bp.route(route="templates/{name}", methods=[func.HttpMethod.GET], auth_level=FUNCTION)
def get_template(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _serve("get_template", req, context)


@bp.function_name("enable_template")
@bp.route(route="templates/{name}/enable", methods=[func.HttpMethod.POST], auth_level=FUNCTION)
def enable_template(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _serve("enable_template", req, context)


@bp.function_name("promote_template")
@bp.route(route="templates/{name}/promote", methods=[func.HttpMethod.POST], auth_level=FUNCTION)
def promote_template(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _serve("promote_template", req, context)


@bp.function_name("rollback_template")
@bp.route(route="templates/{name}/rollback", methods=[func.HttpMethod.POST], auth_level=FUNCTION)
def rollback_template(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _serve("rollback_template", req, context)


@bp.function_name("list_builds")
@bp.route(route="builds", methods=[func.HttpMethod.GET], auth_level=FUNCTION)
def list_builds(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _serve("list_builds", req, context)


@bp.function_name("get_plan")
@bp.route(route="plan", methods=[func.HttpMethod.GET], auth_level=FUNCTION)
def get_plan(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _serve("get_plan", req, context)


@bp.function_name("get_report")
@bp.route(route="report", methods=[func.HttpMethod.GET], auth_level=FUNCTION)
def get_report(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _serve("get_report", req, context)


@bp.function_name("get_doctor")
@bp.route(route="doctor", methods=[func.HttpMethod.GET], auth_level=FUNCTION)
def get_doctor(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _serve("get_doctor", req, context)


@bp.function_name("get_openapi")
@bp.route(route="openapi.json", methods=[func.HttpMethod.GET], auth_level=FUNCTION)
def get_openapi(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _serve("get_openapi", req, context)
