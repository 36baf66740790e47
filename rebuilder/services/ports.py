"""The ports every use case works with, in one value (the composition root builds it)."""

from __future__ import annotations

from dataclasses import dataclass

from rebuilder.domain.ports import Gallery, ImageBuilder, Ledger, MarketplaceCatalog


@dataclass(frozen=True)
class Ports:
    imagebuilder: ImageBuilder
    marketplace: MarketplaceCatalog
    gallery: Gallery
    ledger: Ledger
