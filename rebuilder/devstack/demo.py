"""`make demo` / `python -m rebuilder demo`: the service on the local Azure stack.

Starts Azurite and the ARM simulator, creates a realistic estate through the real SDK clients, builds
the baselines on simulated time, then reads the estate back through rebuilder's own adapters (the real
azure-mgmt-* clients over HTTPS) and prints it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rebuilder.bootstrap import Services, bootstrap
from rebuilder.devstack import estate
from rebuilder.devstack.armsim import ArmSimulator, SimControl
from rebuilder.devstack.azurite import Azurite, running_azurite
from rebuilder.domain import versions
from rebuilder.domain.model import PlatformImage, Scope, SourceKind
from rebuilder.domain.regions import region
from rebuilder.entrypoints.output import table


def local_env(sim: ArmSimulator, azurite: Azurite) -> dict[str, str]:
    """Settings that point the service at the local stack."""
    return {
        "REBUILDER_SCOPES": f"/subscriptions/{estate.SUBSCRIPTION}/resourceGroups/{estate.TEMPLATES_RG}",
        "REBUILDER_LEDGER": azurite.connection_string,
        "REBUILDER_TABLE_PREFIX": "rebuilder",
        "REBUILDER_ARM_ENDPOINT": sim.endpoint,
        "REBUILDER_ARM_TOKEN": sim.token,
        "REBUILDER_ARM_POLLING_INTERVAL_SECONDS": "0.05",
        "REBUILDER_ARM_RETRY_BACKOFF_SECONDS": "0.05",
    }


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def step(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", flush=True)


@contextmanager
def local_stack(progress: Progress) -> Iterator[tuple[ArmSimulator, Azurite]]:
    progress.step("starting Azurite (Table storage) on a free loopback port")
    with running_azurite() as azurite:
        progress.step(f"Azurite ready at {azurite.table_endpoint}")
        with ArmSimulator() as sim:
            os.environ["REQUESTS_CA_BUNDLE"] = str(sim.ca_path)
            progress.step(f"ARM simulator ready at {sim.endpoint} (its own CA: {sim.ca_path.name})")
            yield sim, azurite


def show_estate(services: Services) -> None:
    scope = services.settings.scopes[0]
    templates = sorted(services.imagebuilder.list_templates(scope), key=lambda t: t.name)
    print("\nImage templates (read through azure-mgmt-imagebuilder)")
    print(
        table(
            ["template", "location", "tag", "source", "last run", "built from"],
            [
                [
                    t.name,
                    t.location,
                    t.tags.get("golden-image-rebuild", "-"),
                    _describe(t.source.kind, t.source),
                    t.last_run.state if t.last_run else "never",
                    _short(t.source.exact_version),
                ]
                for t in templates
            ],
        )
    )
    sources = {
        (t.location, t.source.image.key): t.source.image
        for t in templates
        if t.source.kind is SourceKind.PLATFORM_IMAGE and t.source.image is not None
    }
    print("\nMarketplace versions per (location, publisher, offer, sku) (read through azure-mgmt-compute)")
    rows = []
    for (location, _), image in sorted(sources.items()):
        listed = services.marketplace.list_versions(scope.subscription_id, location, image)
        newest = versions.newest(listed)
        rows.append(
            [
                location,
                str(image),
                ", ".join(versions.ordered(listed)),
                newest,
                _state(services, scope, location, image, newest),
            ]
        )
    print(table(["location", "image", "versions (numeric order)", "newest", "status"], rows))
    print("\nGallery image versions and replication (read through azure-mgmt-compute)")
    rows = []
    for template in templates:
        for distribution in template.distributions:
            if distribution.gallery_image_id is None:
                continue
            for summary in services.gallery.list_versions(distribution.gallery_image_id):
                version = services.gallery.get_version(summary.id)
                rows.extend(
                    [
                        distribution.gallery_image_id.rsplit("/", 1)[-1],
                        version.name,
                        r.region,
                        r.state,
                        f"{r.progress}%",
                    ]
                    for r in version.replication
                )
    print(table(["gallery image", "version", "region", "replication", "progress"], rows))


NEW_UBUNTU = "22.04.202501150"


def show_pass(services: Services) -> None:
    from rebuilder.entrypoints.detection import plan_rows
    from rebuilder.services.detection import watch_pass

    report = watch_pass(
        services.detection(), services.settings.scopes, now=services.clock.now(), trigger="demo"
    )
    print(table(["template", "location", "baseline", "candidate", "action", "reason"], plan_rows(report)))
    print(f"\nMarketplace/gallery list calls this pass: {report.list_calls} (one per distinct source)")
    for build_id, _ in report.requested:
        build = services.ledger.get_build(build_id).record
        print(
            f"requested {build.id}: {build.template_name} from {build.source.resolved_version}, {build.state}"
        )


def _short(version: str | None) -> str:
    """A gallery version id as image/version; a Marketplace version as it is."""
    if not version:
        return "-"
    parts = version.split("/")
    return f"{parts[-3]}/{parts[-1]}" if len(parts) > 3 else version


def _describe(kind: SourceKind, source: object) -> str:
    image = getattr(source, "image", None)
    if kind is SourceKind.PLATFORM_IMAGE and image is not None:
        return f"{image}:{getattr(source, 'version', '')}"
    if kind is SourceKind.SHARED_IMAGE_VERSION:
        version_id = str(getattr(source, "image_version_id", ""))
        return "gallery:" + "/".join(version_id.split("/")[-3:])
    return kind.value


def _state(services: Services, scope: Scope, location: str, image: PlatformImage, version: str | None) -> str:
    if version is None:
        return "-"
    from rebuilder.domain.model import MarketplaceVersion

    return services.marketplace.get_version(
        scope.subscription_id, region(location), image, MarketplaceVersion(version)
    ).state.value


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="python -m rebuilder demo", description=__doc__).parse_args(argv)
    progress = Progress()
    print("rebuilder demo: the local Azure stack, read through the real Azure SDK clients\n")
    with local_stack(progress) as (sim, azurite):
        services = bootstrap(local_env(sim, azurite))
        control = SimControl(sim.endpoint, str(sim.ca_path))
        try:
            progress.step("publishing Marketplace versions (Ubuntu, Windows Server, RHEL) in 4 regions")
            estate.publish_marketplace(control)
            progress.step("creating the gallery, image definitions and 6 image templates via the SDK")
            from rebuilder.adapters.azure_clients import AzureClients

            seeding = AzureClients(services.settings)
            estate.create(seeding)
            progress.step("building the baselines on simulated time (6 simulated hours)")
            estate.build_baselines(seeding, control)
            seeding.close()
            progress.step(f"simulated clock now {control.now():%Y-%m-%d %H:%M} UTC")
            show_estate(services)
            progress.step(f"a new Ubuntu version appears: {NEW_UBUNTU} in every region")
            control.publish(*estate.UBUNTU, NEW_UBUNTU, list(estate.REGIONS))
            progress.step("one watch pass: discover, watch, plan; due builds are recorded in the ledger")
            show_pass(services)
            calls = control.counters()
            print(f"\nARM calls served by the simulator: {sum(calls.values())} over {len(calls)} routes")
        finally:
            services.close()
    progress.step("local stack stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
