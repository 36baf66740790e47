"""`make demo` / `python -m devstack demo`: the service on the local Azure stack.

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
from pathlib import Path

from devstack import estate
from devstack.armsim import ArmSimulator, SimControl
from devstack.azurite import Azurite, running_azurite
from rebuilder.bootstrap import Services, bootstrap
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


WATCH_EVERY = 3  # reconcile every 5 simulated minutes, watch every 15, as the default schedules do
TICK_SECONDS = 300
MANAGED = ("ubuntu2204-golden", "winserver2022-golden", "rhel8-golden", "app-ubuntu2204")
FAILING_REGION = "northeurope"
DEFAULT_REPORT = Path(".devstack") / "demo" / "security-report.html"


def patch_day(services: Services, control: SimControl, progress: Progress) -> int:
    """The timers' passes on simulated time until every managed template is rebuilt and published."""
    from rebuilder.services.reconciler import Reconciler
    from rebuilder.services.watch_and_act import watch_and_act

    ports, policy, scopes = services.detection(), services.policy(), services.settings.scopes
    for tick in range(1, 200):
        control.advance(TICK_SECONDS)
        now = services.clock.now()
        acts = []
        if tick % WATCH_EVERY == 1:
            report, acted = watch_and_act(ports, scopes, policy, now=now, trigger="timer")
            acts.append(acted)
            for seen in report.new_versions:
                _say(now, f"first seen {seen.version} ({seen.source})")
        acts.append(Reconciler(ports, policy, now=now).run())
        for acted in acts:
            _narrate(services, now, acted)
        if _all_published(services):
            return tick
    raise RuntimeError("the patch day did not end within 200 ticks")


def _say(now: object, text: str) -> None:
    print(f"  {now:%H:%M} {text}", flush=True)


_NARRATED = (
    "Replicating",
    "Published",
    "PartiallyPublished",
    "Failed",
    "Queued",
    "Canceled",
    "Candidate",
    "Promoted",
    "Rejected",
)


def _narrate(services: Services, now: object, acted: object) -> None:
    from rebuilder.services.reconciler import ReconcileReport

    assert isinstance(acted, ReconcileReport)
    names: dict[str, str] = {}

    def name(build_id: str) -> str:
        if build_id not in names:
            names[build_id] = services.ledger.get_build(build_id).record.template_name
        return names[build_id]

    for template in acted.recreated:
        _say(now, f"{template.rsplit('/', 1)[-1]}: pinned template recreated with the new version")
    for build_id in acted.started:
        _say(now, f"{name(build_id)}: run started ({build_id})")
    for build_id, state, why in acted.moved:
        if state.value in _NARRATED:
            _say(now, f"{name(build_id)}: {state.value} — {why}")
    for build_id, where in acted.repaired:
        _say(now, f"{name(build_id)}: replication to {where} failed; target regions re-applied (no rebuild)")
    for problem in acted.problems:
        _say(now, f"problem: {problem}")


def _all_published(services: Services) -> bool:
    from rebuilder.domain.builds import BuildState
    from rebuilder.services.history import where_we_stand

    states = {s.name: s for s in where_we_stand(services.ledger)}
    return all(
        n in states and not states[n].open_builds and states[n].last_build_state is BuildState.PUBLISHED
        for n in MANAGED
    )


def show_ledger(services: Services) -> None:
    from rebuilder.domain.waves import waves
    from rebuilder.entrypoints.views import (
        BUILD_HEADERS,
        REGION_HEADERS,
        WINDOW_HEADERS,
        build_row,
        region_row,
        window_row,
    )
    from rebuilder.services.estate import survey
    from rebuilder.services.history import template_history, where_we_stand

    histories = [
        template_history(services.ledger, s.template_id, state=s)
        for s in sorted(where_we_stand(services.ledger), key=lambda s: s.name)
    ]
    builds = [b for h in histories for b, _ in h.builds]
    print("\nThe ledger: builds")
    print(table(BUILD_HEADERS, [build_row(b) for b in builds]))
    print("\nThe ledger: replication per region")
    rows = [[b.template_name, *region_row(r)] for h in histories for b, regions in h.builds for r in regions]
    print(table(["template", *REGION_HEADERS], rows))
    print("\nExposure windows (first seen → replicated in the region), direct: of each template's own source")
    print(
        table(
            WINDOW_HEADERS,
            [window_row(h.state.name if h.state else "?", w) for h in histories for w in h.windows],
        )
    )
    rooted = [h for h in histories if any(b.lineage for b, _ in h.builds)]
    print("\nRoot exposure of children (from the first sighting of the root Marketplace version)")
    for h in rooted:
        lineage = next(b.lineage for b, _ in h.builds if b.lineage)
        print(f"  {h.state.name if h.state else '?'} ← {lineage.parent_template} ← {lineage.root_source}")
    print(
        table(
            WINDOW_HEADERS,
            [window_row(h.state.name if h.state else "?", w) for h in rooted for w in h.root_windows],
        )
    )
    now = services.clock.now()
    print("\nPatch waves (per root source version)")
    for wave in waves(survey(services.ledger, now=now), now=now):
        print(f"  {wave.image} {wave.describe()}")


GATED_BAKE_HOURS = 2


def gated_release(services: Services, control: SimControl) -> int:
    """A gated template (its distributor publishes with excludeFromLatest): its image is a candidate,
    bakes, is promoted into latest, and only then is its child built on it. Returns the ticks taken."""
    from rebuilder.adapters.azure_clients import AzureClients
    from rebuilder.services.reconciler import Reconciler
    from rebuilder.services.watch_and_act import watch_and_act

    print(
        f"\nA gated release: {estate.GATED} publishes candidates (excludeFromLatest: true, "
        f"rebuild-bake-hours: {GATED_BAKE_HOURS}); {estate.GATED_CHILD} builds on its latest"
    )
    clients = AzureClients(services.settings)
    try:
        estate.create_gated(clients, {"rebuild-bake-hours": str(GATED_BAKE_HOURS)})
    finally:
        clients.close()
    ports, policy, scopes = services.detection(), services.policy(), services.settings.scopes
    said: set[str] = set()
    for tick in range(1, 200):
        control.advance(TICK_SECONDS)
        now = services.clock.now()
        acts = [Reconciler(ports, policy, now=now).run()]
        if tick % WATCH_EVERY == 1:
            acts.append(watch_and_act(ports, scopes, policy, now=now, trigger="timer")[1])
        for acted in acts:
            _narrate(services, now, acted)
            for why in acted.waiting:
                text = why.split(": ", 1)[-1]
                if ("baking until" in text or "promotion" in text) and text not in said:
                    said.add(text)
                    _say(now, f"{estate.GATED}: {text}")
        if _published(services, estate.GATED_CHILD):
            return tick
    raise RuntimeError("the gated release did not end within 200 ticks")


def _published(services: Services, name: str) -> bool:
    from rebuilder.domain.builds import BuildState
    from rebuilder.services.history import where_we_stand

    state = next((s for s in where_we_stand(services.ledger) if s.name == name), None)
    return state is not None and not state.open_builds and state.last_build_state is BuildState.PUBLISHED


def late_day(services: Services, control: SimControl) -> None:
    """A newer source version arrives late: the report is written while its build is under way, so the
    templates built from it show as stale, with their exposure window still open."""
    from rebuilder.services.reconciler import Reconciler
    from rebuilder.services.watch_and_act import watch_and_act

    image, version = estate.LATE
    control.advance(3 * TICK_SECONDS)
    control.publish(*image, version, list(estate.REGIONS))
    print(f"\nLater: {':'.join(image)} {version} is published in {len(estate.REGIONS)} regions")
    ports, policy, scopes = services.detection(), services.policy(), services.settings.scopes
    acted = watch_and_act(ports, scopes, policy, now=services.clock.now(), trigger="timer")
    _narrate(services, services.clock.now(), acted[1])
    control.advance(4 * TICK_SECONDS)
    _narrate(services, services.clock.now(), Reconciler(ports, policy, now=services.clock.now()).run())


def write_report(services: Services, path: Path) -> Path:
    """The security report from the demo's ledger, as `python -m rebuilder report --html` writes it."""
    from rebuilder.entrypoints.http.handlers import report_page

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_page(services), encoding="utf-8")
    return path.resolve()


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
    from devstack.simclock import SimulatorClock
    from rebuilder.services.watch_and_act import watch_and_act

    arguments = argparse.ArgumentParser(prog="python -m devstack demo", description=__doc__)
    arguments.add_argument(
        "--report", default=str(DEFAULT_REPORT), help=f"where to write the security report ({DEFAULT_REPORT})"
    )
    args = arguments.parse_args(argv)
    progress = Progress()
    print("rebuilder demo: a patch day on the local Azure stack, through the real Azure SDK clients\n")
    with local_stack(progress) as (sim, azurite):
        control = SimControl(sim.endpoint, str(sim.ca_path))
        services = bootstrap(local_env(sim, azurite), clock=SimulatorClock(control))
        try:
            progress.step("publishing Marketplace versions (Ubuntu, Windows Server, RHEL) in 4 regions")
            estate.publish_marketplace(control)
            estate.create_identity(control)
            progress.step("creating the gallery, image definitions and 6 image templates via the SDK")
            from rebuilder.adapters.azure_clients import AzureClients

            seeding = AzureClients(services.settings)
            estate.create(seeding)
            progress.step("building the baselines on simulated time (6 simulated hours)")
            estate.build_baselines(seeding, control)
            seeding.close()
            progress.step(f"simulated clock now {control.now():%Y-%m-%d %H:%M} UTC")
            show_estate(services)
            progress.step("the service's first watch pass: templates found, baselines adopted, nothing to do")
            watch_and_act(
                services.detection(),
                services.settings.scopes,
                services.policy(),
                now=services.clock.now(),
                trigger="timer",
            )
            print(f"\nPatch day, {control.now():%Y-%m-%d} (simulated time; timers every 5 and 15 minutes)")
            for image, version in estate.PATCH_DAY.items():
                control.publish(
                    *image,
                    version,
                    list(estate.REGIONS),
                    os="Windows" if image == estate.WINDOWS else "Linux",
                )
                print(f"  published {':'.join(image)} {version} in {len(estate.REGIONS)} regions")
            control.fail_region(FAILING_REGION)
            print(f"  (fault injected: the next replication to {FAILING_REGION} fails)")
            ticks = patch_day(services, control, progress)
            progress.step(f"everything published after {ticks * TICK_SECONDS / 3600:.1f} simulated hours")
            show_ledger(services)
            calls = control.counters()
            print(f"\nARM calls served by the simulator: {sum(calls.values())} over {len(calls)} routes")
            ticks = gated_release(services, control)
            progress.step(f"the gated release ended after {ticks * TICK_SECONDS / 3600:.1f} simulated hours")
            late_day(services, control)
            report = write_report(services, Path(args.report))
            print(f"\nSecurity report: {report}")
        finally:
            services.close()
    progress.step("local stack stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
