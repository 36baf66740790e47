"""Notices out: CloudEvents 1.0 to an Event Grid topic with azure-eventgrid, authenticated by the
app's identity (Entra ID; the identity needs "EventGrid Data Sender" on the topic), never by a key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rebuilder.adapters.errors import translated
from rebuilder.domain.notices import Notice

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

BATCH = 50  # well under Event Grid's 1 MB per request


class EventGridNotifier:
    def __init__(self, endpoint: str, credential: TokenCredential, *, source: str) -> None:
        from azure.eventgrid import EventGridPublisherClient

        self._client: Any = EventGridPublisherClient(endpoint, credential)
        self._source = source

    def publish(self, notices: Sequence[Notice]) -> None:
        from azure.core.messaging import CloudEvent

        events = [
            CloudEvent(
                source=self._source,
                type=n.cloud_type,
                subject=n.subject,
                data=n.data,
                id=n.id or None,
            )
            for n in notices
        ]
        for start in range(0, len(events), BATCH):
            with translated("publish notices to the Event Grid topic"):
                self._client.send(events[start : start + BATCH])

    def close(self) -> None:
        self._client.close()
