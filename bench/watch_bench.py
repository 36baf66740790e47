"""Watch benchmark (DESIGN §7): 1,000 templates over 20 distinct sources in 30 regions, on the ARM
simulator with 100 ms injected latency on every call, and the ledger on Azurite.

Prints, side by side in one run: Marketplace list calls per pass for rebuilder's watch (one per
distinct location/publisher/offer/sku) and for a naive per-template watcher on the same simulator, and
the wall time of a watch+plan pass (target < 10 s).

    .venv/bin/python bench/watch_bench.py [--templates 1000] [--latency-ms 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.armsim import ArmSimulator, SimControl
from devstack.armsim.regions import DISPLAY_NAMES
from devstack.azurite import running_azurite
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.bootstrap import bootstrap
from rebuilder.domain.model import PlatformImage
from rebuilder.domain.regions import Region
from rebuilder.services.detection import compute_plan, watch_pass

SUB = "5b1e7c3a-0000-4000-8000-00000000be4c"
RG = "rg-templates"
IMAGES = [
    ("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2"),
    ("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-g2"),
    ("RedHat", "RHEL", "8-lvm-gen2"),
    ("Debian", "debian-12", "12-gen2"),
]
REGIONS = list(DISPLAY_NAMES)[:30]
LOCATIONS = REGIONS[:5]  # 4 images × 5 locations = 20 distinct sources
GALLERY_IMAGE = (
    f"/subscriptions/{SUB}/resourceGroups/rg-images/providers/Microsoft.Compute/galleries/g/images/golden"
)


def template_body(i: int) -> dict[str, Any]:
    publisher, offer, sku = IMAGES[i % len(IMAGES)]
    return {
        "location": LOCATIONS[(i // len(IMAGES)) % len(LOCATIONS)],
        "tags": {"golden-image-rebuild": "auto"},
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {f"/subscriptions/{SUB}/x/aib": {}}},
        "properties": {
            "source": {
                "type": "PlatformImage",
                "publisher": publisher,
                "offer": offer,
                "sku": sku,
                "version": "latest",
            },
            "customize": [{"type": "Shell", "name": "baseline", "inline": ["true"]}],
            "distribute": [
                {
                    "type": "SharedImage",
                    "galleryImageId": GALLERY_IMAGE,
                    "runOutputName": f"golden-{i}",
                    "targetRegions": [{"name": r, "replicaCount": 1} for r in REGIONS],
                }
            ],
        },
    }


def seed(clients: AzureClients, control: SimControl, templates: int) -> None:
    for publisher, offer, sku in IMAGES:
        for k in range(10):
            control.publish(publisher, offer, sku, f"1.{k * 97}.{20250101 + k}", REGIONS)
    api = clients.imagebuilder(SUB).virtual_machine_image_templates
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: api.begin_create_or_update(RG, f"golden-{i:04d}", template_body(i)).result(),
                range(templates),
            )
        )


def naive_watch(services: Any, concurrency: int) -> dict[str, str]:
    """The community pattern: list the source versions once per template."""
    templates = list(services.imagebuilder.list_templates(services.settings.scopes[0]))

    def newest(t: Any) -> tuple[str, str]:
        image: PlatformImage = t.source.image
        versions = services.marketplace.list_versions(t.subscription_id, Region(t.location), image)
        return t.id, max(versions, key=lambda v: [int(p) for p in v.split(".")])

    with ThreadPoolExecutor(concurrency) as pool:
        return dict(pool.map(newest, templates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, default=100)
    args = parser.parse_args()
    with ArmSimulator() as sim, running_azurite() as azurite:
        os.environ["REQUESTS_CA_BUNDLE"] = str(sim.ca_path)
        control = SimControl(sim.endpoint, str(sim.ca_path))
        env = {
            "REBUILDER_SCOPES": f"/subscriptions/{SUB}",
            "REBUILDER_LEDGER": azurite.connection_string,
            "REBUILDER_TABLE_PREFIX": f"bench{uuid.uuid4().hex[:8]}",
            "REBUILDER_ARM_ENDPOINT": sim.endpoint,
            "REBUILDER_ARM_TOKEN": sim.token,
            "REBUILDER_ARM_POLLING_INTERVAL_SECONDS": "0",
        }
        services = bootstrap(env)
        print(
            f"Seeding the simulator: {args.templates:,} templates,"
            f" {len(IMAGES) * len(LOCATIONS)} sources, {len(REGIONS)} regions …"
        )
        started = time.perf_counter()
        seed(AzureClients(services.settings), control, args.templates)
        print(
            f"  done in {time.perf_counter() - started:.1f} s;"
            f" injecting {args.latency_ms} ms latency on every ARM call\n"
        )
        control.inject("*", latency_ms=args.latency_ms, times=None)
        ports, scopes, workers = (
            services.detection(),
            services.settings.scopes,
            services.settings.watch_concurrency,
        )

        rows = []
        for label, run in (
            (
                "rebuilder watch+plan (first sight)",
                lambda: compute_plan(ports, scopes, now=services.clock.now(), concurrency=workers),
            ),
            (
                "rebuilder watch+plan (steady)",
                lambda: compute_plan(ports, scopes, now=services.clock.now(), concurrency=workers),
            ),
            (
                "rebuilder full pass (plan, record, request)",
                lambda: watch_pass(
                    ports, scopes, now=services.clock.now(), trigger="bench", concurrency=workers
                ),
            ),
            ("naive per-template watcher", lambda: naive_watch(services, workers)),
        ):
            control.reset_counters()
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
            rows.append((label, control.counters().get("marketplace.list_versions", 0), elapsed))
        services.close()

    sources = len(IMAGES) * len(LOCATIONS)
    print(f"{'pass':<46}{'list calls':>11}{'wall time':>12}")
    for label, calls, elapsed in rows:
        print(f"{label:<46}{calls:>11}{elapsed:>10.2f} s")
    ours, naive = rows[1], rows[-1]
    print(
        f"\nlist calls: {ours[1]} = distinct sources ({sources}): {'ok' if ours[1] == sources else 'MISSED'};"
        f" naive makes {naive[1]} ({naive[1] / max(ours[1], 1):.0f}×)"
    )
    print(
        f"watch+plan pass: {ours[2]:.2f} s (target < 10 s: {'ok' if ours[2] < 10 else 'MISSED'});"
        f" naive watcher {naive[2]:.2f} s ({naive[2] / ours[2]:.1f}× slower)"
    )


if __name__ == "__main__":
    main()
