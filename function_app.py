"""Azure Functions entry point (Python v2 programming model): thin triggers over rebuilder's services.

Importing this module builds nothing and imports no Azure management SDK: settings are read and
clients built on the first invocation that needs them (rebuilder.bootstrap.services). The HTTP routes
are a blueprint (rebuilder/entrypoints/http_functions.py), served through one route table.
"""

from __future__ import annotations

import azure.functions as func

from rebuilder import bootstrap
from rebuilder.entrypoints import triggers
from rebuilder.entrypoints.http_functions import bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(bp)


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
