"""Simulated Event Grid topics: `POST /_topics/<name>/api/events?api-version=2018-01-01` accepts a batch
of CloudEvents 1.0 (as azure-eventgrid's EventGridPublisherClient sends them) with a bearer token, and
keeps them for tests to read back through `GET /_sim/topics/<name>`."""

from __future__ import annotations

import json
import re
from typing import Any

from .casing import fold
from .errors import ArmError
from .routes import Response

TOPIC_PATH = re.compile(r"^/_topics/(?P<name>[A-Za-z0-9-]{1,64})/api/events$")
API_VERSION = "2018-01-01"
_REQUIRED = ("id", "source", "type", "specversion")


def receive(
    topics: dict[str, list[dict[str, Any]]], name: str, content_type: str, query: dict[str, str], raw: bytes
) -> Response:
    try:
        if query.get("api-version") != API_VERSION:
            raise ArmError(400, "BadRequest", f"api-version must be {API_VERSION}.")
        if not fold(content_type).startswith("application/cloudevents-batch+json"):
            raise ArmError(400, "BadRequest", f"Content-Type {content_type!r} is not a CloudEvents batch.")
        try:
            events = json.loads(raw)
        except ValueError:
            raise ArmError(400, "BadRequest", "The request body is not valid JSON.") from None
        if not isinstance(events, list) or not events:
            raise ArmError(400, "BadRequest", "A non-empty JSON array of events is expected.")
        for event in events:
            missing = [k for k in _REQUIRED if not isinstance(event, dict) or not event.get(k)]
            if missing or event["specversion"] != "1.0":
                raise ArmError(
                    400,
                    "BadRequest",
                    f"Not a CloudEvent 1.0: missing {', '.join(missing) or 'specversion 1.0'}.",
                )
        topics.setdefault(name, []).extend(events)
        return Response(200, None)
    except ArmError as error:
        return Response(error.status, error.body())
