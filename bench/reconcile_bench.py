"""Reconcile benchmark (DESIGN §7): the cost of a reconcile pass in ARM calls, on the simulator with the
ledger on Azurite, for N templates building at once, side by side with a naive reconciler that reads
every template, its run outputs and its gallery versions on every pass.

Targets: at most one template GET per unfinished build plus one gallery-version GET per distributing
build; an idle pass makes no ARM call. Columns: open builds before the pass; builds distributing before or
after it; rebuilder's ARM calls (template GETs, gallery-version GETs) and time; the naive reconciler's.

    .venv/bin/python bench/reconcile_bench.py [--templates 200] [--regions 10] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.armsim import ArmSimulator, SimControl
from devstack.armsim.regions import DISPLAY_NAMES
from devstack.azurite import running_azurite
from devstack.simclock import SimulatorClock
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.bootstrap import Services, bootstrap
from rebuilder.domain import resource_ids
from rebuilder.domain.builds import Build, BuildState
from rebuilder.domain.model import RunSubState
from rebuilder.services.history import where_we_stand
from rebuilder.services.reconciler import Reconciler
from rebuilder.services.watch_and_act import watch_and_act

SUB = "5b1e7c3a-0000-4000-8000-00000000be4c"
RG = "rg-templates"
IMAGE = ("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2")


def gallery_image(i: int) -> str:
    gallery = f"/subscriptions/{SUB}/resourceGroups/rg-images/providers/Microsoft.Compute/galleries/g"
    return f"{gallery}/images/img{i:04d}"


def seed(services: Services, control: SimControl, templates: int, building: int, regions: list[str]) -> None:
    control.publish(*IMAGE, "22.04.202501150", regions)
    clients = AzureClients(services.settings)
    compute: Any = clients.compute(SUB)
    compute.galleries.begin_create_or_update("rg-images", "g", {"location": regions[0]}).result()
    api = clients.imagebuilder(SUB).virtual_machine_image_templates

    def one(i: int) -> None:
        compute.gallery_images.begin_create_or_update(
            "rg-images",
            "g",
            f"img{i:04d}",
            {
                "location": regions[0],
                "properties": {
                    "osType": "Linux",
                    "osState": "Generalized",
                    "identifier": {"publisher": "bench", "offer": "golden", "sku": f"img{i:04d}"},
                },
            },
        ).result()
        body = {
            "location": regions[0],
            "tags": {"golden-image-rebuild": "auto" if i < building else "manual"},
            "identity": {
                "type": "UserAssigned",
                "userAssignedIdentities": {f"/subscriptions/{SUB}/x/aib": {}},
            },
            "properties": {
                "source": {
                    "type": "PlatformImage",
                    "publisher": IMAGE[0],
                    "offer": IMAGE[1],
                    "sku": IMAGE[2],
                    "version": "latest",
                },
                "distribute": [
                    {
                        "type": "SharedImage",
                        "galleryImageId": gallery_image(i),
                        "runOutputName": f"golden-{i}",
                        "targetRegions": [{"name": r} for r in regions],
                        "versioning": {"scheme": "Latest", "major": 1},
                    }
                ],
            },
        }
        api.begin_create_or_update(RG, f"golden-{i:04d}", body).result()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(templates)))
    clients.close()


def naive_reconcile(services: Services) -> None:
    """Reads everything every pass: each template, its run outputs, and each gallery version they name."""
    for template in services.imagebuilder.list_templates(services.settings.scopes[0]):
        services.imagebuilder.get_template(template.id)
        for output in services.imagebuilder.list_run_outputs(template.id):
            if output.artifact_id:
                services.gallery.get_version(resource_ids.gallery_version_id(output.artifact_id))


def _open(services: Services) -> list[Build]:
    ledger = services.ledger
    return [ledger.get_build(b).record for s in where_we_stand(ledger) for b in s.open_builds]


def _distributing(build: Build) -> bool:
    return build.state is BuildState.REPLICATING or build.sub_state is RunSubState.DISTRIBUTING


def measure(control: SimControl, run: Callable[[], object]) -> tuple[dict[str, int], float]:
    control.reset_counters()
    started = time.perf_counter()
    run()
    return control.counters(), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=200)
    parser.add_argument("--building", type=int, default=20, help="templates with a build going (auto)")
    parser.add_argument("--regions", type=int, default=10)
    parser.add_argument("--latency-ms", type=int, default=20)
    args = parser.parse_args()
    regions = list(DISPLAY_NAMES)[: args.regions]
    with ArmSimulator() as sim, running_azurite() as azurite:
        os.environ["REQUESTS_CA_BUNDLE"] = str(sim.ca_path)
        control = SimControl(sim.endpoint, str(sim.ca_path))
        env = {
            "REBUILDER_SCOPES": f"/subscriptions/{SUB}/resourceGroups/{RG}",
            "REBUILDER_LEDGER": azurite.connection_string,
            "REBUILDER_TABLE_PREFIX": f"bench{uuid.uuid4().hex[:8]}",
            "REBUILDER_ARM_ENDPOINT": sim.endpoint,
            "REBUILDER_ARM_TOKEN": sim.token,
            "REBUILDER_ARM_POLLING_INTERVAL_SECONDS": "0",
            "REBUILDER_MAX_CONCURRENT_RUNS": "1000",
        }
        services = bootstrap(env, clock=SimulatorClock(control))
        print(
            f"Seeding: {args.templates} managed templates ({args.building} auto, the rest manual),"
            f" each distributing to {len(regions)} regions …"
        )
        seed(services, control, args.templates, args.building, regions)
        now = services.clock.now()
        _, started = watch_and_act(
            services.detection(), services.settings.scopes, services.policy(), now=now, trigger="bench"
        )
        print(f"  one watch pass claimed and started {len(started.started)} builds\n")
        control.inject("*", latency_ms=args.latency_ms, times=None)
        print(
            f"{'moment':<34}{'open':>6}{'distr.':>8}{'ours: calls':>13}{'tpl GET':>9}{'ver GET':>9}"
            f"{'time':>9}{'naive: calls':>14}{'time':>9}{'ratio':>8}"
        )
        for label, advance in (
            ("runs customizing", 600),
            ("runs entering distribution", 1200),
            ("replicating", 1500),
            ("finishing", 6 * 3600),
            ("idle", 0),
        ):
            control.advance(advance)
            before = _open(services)
            reconciler = Reconciler(
                services.detection(), services.policy(), now=services.clock.now(), by="bench"
            )
            ours, ours_time = measure(control, reconciler.run)
            distributing = {b.id for b in before + _open(services) if _distributing(b)}
            distributing |= set(reconciler.report.finished)
            naive, naive_time = measure(control, lambda: naive_reconcile(services))
            total, naive_total = sum(ours.values()), sum(naive.values())
            ratio = f"{naive_total / total:.0f}×" if total else "∞"
            gets = (ours.get("image_templates.get", 0), ours.get("gallery_image_versions.get", 0))
            within = gets[0] <= len(before) and gets[1] <= len(distributing)
            print(
                f"{label:<34}{len(before):>6}{len(distributing):>8}{total:>13}{gets[0]:>9}{gets[1]:>9}"
                f"{ours_time:>8.2f}s{naive_total:>14}{naive_time:>8.2f}s{ratio:>8}"
                + ("" if within else "  MISSED")
            )
        services.close()


if __name__ == "__main__":
    main()
