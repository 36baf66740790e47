"""Azure Functions entry point (Python v2 programming model): thin triggers over rebuilder's services.

Importing this module builds nothing and imports no Azure management SDK: settings are read and
clients built on the first invocation that needs them (rebuilder.bootstrap.services).
"""

from __future__ import annotations

import azure.functions as func

from rebuilder import bootstrap
from rebuilder.entrypoints import http_api, triggers

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _respond(result: http_api.HttpResult) -> func.HttpResponse:
    headers = dict(result.headers)
    mimetype = headers.pop("Content-Type", "application/json")
    return func.HttpResponse(
        result.json(), status_code=result.status, headers=headers, mimetype=mimetype, charset="utf-8"
    )


@app.function_name("health")
@app.route(route="health", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.FUNCTION)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(http_api.health(bootstrap.services))


@app.function_name("watch_sources")
@app.timer_trigger(
    schedule="%REBUILDER_WATCH_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
def watch_sources(timer: func.TimerRequest, context: func.Context) -> None:
    triggers.watch_sources(bootstrap.services, correlation_id=context.invocation_id)


@app.function_name("reconcile_builds")
@app.timer_trigger(
    schedule="%REBUILDER_RECONCILE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
def reconcile_builds(timer: func.TimerRequest, context: func.Context) -> None:
    triggers.reconcile_builds(bootstrap.services, correlation_id=context.invocation_id)


@app.function_name("on_resource_event")
@app.event_grid_trigger(arg_name="event")
def on_resource_event(event: func.EventGridEvent, context: func.Context) -> None:
    triggers.resource_event(
        bootstrap.services, triggers.event_fields(event), correlation_id=context.invocation_id
    )
