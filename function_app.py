"""Azure Functions entry point (Python v2 programming model): thin triggers over rebuilder's services.

Importing this module builds nothing and imports no Azure management SDK: settings are read and
clients built on the first invocation that needs them (rebuilder.bootstrap.services).
"""

from __future__ import annotations

import azure.functions as func

from rebuilder import bootstrap
from rebuilder.entrypoints import http_api

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
