"""The composition root: settings, clients and services, built lazily and in one place.

`function_app.py`, the CLI and tests all come through here; tests pass fakes in. Nothing is built at
import time: a bad setting fails the invocation that needs it, with every problem named.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from rebuilder.domain.ports import (
    Access,
    Clock,
    Gallery,
    ImageBuilder,
    Ledger,
    LedgerStorage,
    MarketplaceCatalog,
    Notifier,
)
from rebuilder.domain.runs import Policy
from rebuilder.services.ports import Ports
from rebuilder.settings import Settings


@dataclass
class Services:
    settings: Settings
    clock: Clock
    marketplace: MarketplaceCatalog
    imagebuilder: ImageBuilder
    gallery: Gallery
    ledger: Ledger
    access: Access  # the doctor's read-only probes of what the service's identity can reach
    ledger_storage: LedgerStorage | None  # None when a ledger was passed in without its storage
    notifier: Notifier | None = None  # when REBUILDER_EVENTS_TOPIC is set
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def detection(self) -> Ports:
        return Ports(self.imagebuilder, self.marketplace, self.gallery, self.ledger)

    def policy(self) -> Policy:
        s = self.settings
        return Policy(
            max_attempts=s.max_run_attempts,
            retry_backoff=timedelta(seconds=s.retry_backoff_seconds),
            run_timeout=timedelta(minutes=s.run_timeout_minutes),
            repair_limit=s.repair_limit,
            disable_after=s.disable_after_failures,
            max_concurrent_runs=s.max_concurrent_runs,
            temporary_refusals=s.max_temporary_refusals,
            defaults=s.rebuild_defaults,
        )

    def close(self) -> None:
        for close in self._closers:
            close()


def bootstrap(
    env: Mapping[str, str] | None = None,
    *,
    clock: Clock | None = None,
    marketplace: MarketplaceCatalog | None = None,
    imagebuilder: ImageBuilder | None = None,
    gallery: Gallery | None = None,
    ledger: Ledger | None = None,
    notifier: Notifier | None = None,
    access: Access | None = None,
    ledger_storage: LedgerStorage | None = None,
) -> Services:
    """Build the services from `env` (default: the process environment); anything passed in wins."""
    settings = Settings.from_env(os.environ if env is None else env)
    from rebuilder.adapters.access import SdkAccess
    from rebuilder.adapters.azure_clients import AzureClients  # builds nothing until a client is asked for
    from rebuilder.adapters.clock import SystemClock
    from rebuilder.adapters.gallery import SdkGallery
    from rebuilder.adapters.imagebuilder import SdkImageBuilder
    from rebuilder.adapters.marketplace import SdkMarketplaceCatalog

    clients = AzureClients(settings)
    closers = [clients.close]
    if ledger is None:
        from rebuilder.adapters.ledger_tables import TableLedger

        tables = TableLedger.from_connection(
            prefix=settings.table_prefix,
            connection_string=settings.ledger.connection_string,
            endpoint=settings.ledger.endpoint,
        )
        closers.append(tables.close)
        ledger = tables
        ledger_storage = ledger_storage or tables
    if notifier is None and settings.events_topic:
        from rebuilder.adapters.eventgrid import EventGridNotifier

        grid = EventGridNotifier(settings.events_topic, clients.credential, source="/rebuilder")
        closers.append(grid.close)
        notifier = grid
    return Services(
        settings=settings,
        clock=clock or SystemClock(),
        marketplace=marketplace or SdkMarketplaceCatalog(clients),
        imagebuilder=imagebuilder or SdkImageBuilder(clients),
        gallery=gallery or SdkGallery(clients),
        ledger=ledger,
        access=access or SdkAccess(clients),
        ledger_storage=ledger_storage,
        notifier=notifier,
        _closers=closers,
    )


_lock = threading.Lock()
_services: Services | None = None


def services() -> Services:
    """The process-wide services for the Functions host, built on first use and kept once valid."""
    global _services  # noqa: PLW0603 - one composition per worker process, by design
    with _lock:
        if _services is None:
            _services = bootstrap()
        return _services
