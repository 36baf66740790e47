"""An estate on the in-memory ports, served through the HTTP pipeline as the Functions host would:
an Ubuntu golden template (`latest`) distributing to a gallery image in two regions, a child built on
that image, a manual template, and one without the tag. Callers carry App Service principals."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from devstack.fakes import (
    FixedClock,
    InMemoryGallery,
    InMemoryImageBuilder,
    InMemoryMarketplace,
    InMemoryNotifier,
)
from devstack.fakes.access import InMemoryAccess, InMemoryLedgerStorage
from devstack.fakes.ledger import InMemoryLedger
from rebuilder.bootstrap import Services, bootstrap
from rebuilder.domain.definition import TemplateDefinition
from rebuilder.domain.model import (
    Distribution,
    GalleryImageId,
    GalleryImageVersion,
    GalleryVersionId,
    GalleryVersionName,
    ImageTemplate,
    LastRun,
    PlatformImage,
    RegionReplication,
    ReplicationState,
    RunOutput,
    RunState,
    Source,
    SourceKind,
    TemplateId,
)
from rebuilder.domain.regions import Region
from rebuilder.entrypoints.http.messages import ApiRequest, HttpResult
from rebuilder.entrypoints.http.routes import serve
from rebuilder.entrypoints.triggers import announce
from rebuilder.services.reconciler import Reconciler
from rebuilder.services.watch_and_act import watch_and_act

SUB = "11111111-2222-3333-4444-555555555555"
RG = "rg-images"
WEU, NEU = Region("westeurope"), Region("northeurope")
UBUNTU = PlatformImage("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2")
OLD, NEW = "22.04.202411190", "22.04.202501150"
ENV = {
    "REBUILDER_SCOPES": f"/subscriptions/{SUB}/resourceGroups/{RG}",
    "REBUILDER_LEDGER": "UseDevelopmentStorage=true",
    "WEBSITE_AUTH_ENABLED": "True",  # App Service Authentication fronts the app, as infra/ deploys it
}
READ, REQUEST, ADMIN = "Ledger.Read", "Rebuild.Request", "Rebuild.Admin"
DAY = timedelta(days=1)
OBJECT_ID = "8e6f2a4c-1b3d-4f5e-9a7b-0c1d2e3f4a5b"


def gallery_image(name: str) -> GalleryImageId:
    return GalleryImageId(
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/galleries/g/images/{name}"
    )


def template_id(name: str) -> TemplateId:
    return TemplateId(
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.VirtualMachineImages/imageTemplates/{name}"
    )


def principal(
    *roles: str, name: str = "ana@contoso.com", oid: str = OBJECT_ID, role_typ: str = "roles"
) -> str:
    claims = [{"typ": role_typ, "val": r} for r in roles]
    if name:
        claims.append({"typ": "preferred_username", "val": name})
    if oid:
        claims.append({"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": oid})
    document = {"auth_typ": "aad", "claims": claims, "name_typ": "preferred_username", "role_typ": role_typ}
    return base64.b64encode(json.dumps(document).encode()).decode()


class HttpWorld:
    def __init__(self, **env: str) -> None:
        self.clock = FixedClock()
        self.marketplace = InMemoryMarketplace()
        self.imagebuilder = InMemoryImageBuilder(self.clock)
        self.gallery = InMemoryGallery()
        self.ledger = InMemoryLedger()
        self.notifier = InMemoryNotifier()
        self.access = InMemoryAccess(gallery=self.gallery, now=self.clock.now())
        self.services: Services = bootstrap(
            {**ENV, **env},
            clock=self.clock,
            marketplace=self.marketplace,
            imagebuilder=self.imagebuilder,
            gallery=self.gallery,
            ledger=self.ledger,
            notifier=self.notifier,
            access=self.access,
            ledger_storage=InMemoryLedgerStorage(),
        )
        self.versions = 0
        self.marketplace.publish(WEU, UBUNTU, OLD)
        ubuntu = Source(SourceKind.PLATFORM_IMAGE, UBUNTU, "latest", exact_version=OLD)
        self.add("ubuntu-golden", ubuntu, "ubuntu", mode="auto")
        child_source = Source(
            SourceKind.SHARED_IMAGE_VERSION,
            image_version_id=f"{gallery_image('ubuntu')}/versions/latest",
            exact_version=f"{gallery_image('ubuntu')}/versions/1.0.0",
        )
        self.add("app-ubuntu", child_source, "app", mode="auto")
        self.add("manual-golden", ubuntu, "manual", mode="manual")
        self.add("sandbox", ubuntu, "sandbox", mode=None)

    def add(
        self,
        name: str,
        source: Source,
        image: str,
        *,
        mode: str | None,
        gated: bool = False,
        **more_tags: str,
    ) -> ImageTemplate:
        """A template; `gated`: its distributor publishes candidates (excludeFromLatest)."""
        tags = {"golden-image-rebuild": mode, **more_tags} if mode else {}
        raw_source: dict[str, Any] = {"type": source.kind.value}
        if source.image is not None:
            raw_source.update(
                publisher=UBUNTU.publisher, offer=UBUNTU.offer, sku=UBUNTU.sku, version=source.version
            )
        else:
            raw_source["imageVersionId"] = source.image_version_id
        body = {
            "location": "westeurope",
            "tags": tags,
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {"/id": {}}},
            "properties": {"source": raw_source},
        }
        self.gallery.add_image(gallery_image(image))
        template = ImageTemplate(
            template_id(name),
            SUB,
            RG,
            name,
            WEU,
            source,
            tags,
            (Distribution("SharedImage", image, gallery_image(image), (WEU, NEU), gated),),
            "Succeeded",
            LastRun(RunState.SUCCEEDED, None, self.clock.now() - DAY, self.clock.now() - DAY / 2),
            definition=TemplateDefinition.from_body(body),
        )
        self.imagebuilder.add_template(template)
        return template

    # -- driving the service ---------------------------------------------------------------------------
    def watch(self) -> None:
        s = self.services
        watch_and_act(s.detection(), s.settings.scopes, s.policy(), now=self.clock.now(), trigger="timer")

    def reconcile(self) -> None:
        """A reconcile pass as the timer runs it, its notices announced."""
        acted = Reconciler(self.services.detection(), self.services.policy(), now=self.clock.now()).run()
        announce(self.services, acted.events)

    def finish(self, name: str, *, exact: str, failed: tuple[Region, ...] = ()) -> str:
        """The template's run, built from `exact`, succeeds and publishes a new gallery version (whose
        replication fails in `failed`); returns the version's name."""
        self.clock.advance(minutes=30)
        self.versions += 1
        template = self.imagebuilder.get_template(template_id(name))
        image = template.distributions[0].gallery_image_id
        gated = template.distributions[0].excluded_from_latest
        assert image is not None
        version_id = GalleryVersionId(f"{image}/versions/1.0.{self.versions}")
        self.imagebuilder.finish_run(
            template.id, RunState.SUCCEEDED, exact_version=exact, outputs=[RunOutput("o", version_id)]
        )
        self.gallery.add_version(
            GalleryImageVersion(
                version_id,
                GalleryVersionName(f"1.0.{self.versions}"),
                "Succeeded",
                target_regions=(WEU, NEU),
                excluded_from_latest=gated,
                replication=tuple(
                    RegionReplication(
                        r, ReplicationState.FAILED if r in failed else ReplicationState.COMPLETED, 100
                    )
                    for r in (WEU, NEU)
                ),
            )
        )
        return f"1.0.{self.versions}"

    def patch_day(self) -> None:
        """A new Ubuntu version: the golden template is rebuilt, then its child on the new image."""
        self.watch()  # first sight: baselines
        self.clock.advance(hours=1)
        self.marketplace.publish(WEU, UBUNTU, NEW)
        self.watch()
        parent = self.finish("ubuntu-golden", exact=NEW)
        self.reconcile()
        self.clock.advance(minutes=15)
        self.watch()  # the child sees its parent's image
        self.finish("app-ubuntu", exact=f"{gallery_image('ubuntu')}/versions/{parent}")
        self.reconcile()

    # -- calling the API -------------------------------------------------------------------------------
    def call(
        self,
        name: str,
        *,
        method: str = "GET",
        body: bytes | dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        route: Mapping[str, str] | None = None,
        roles: tuple[str, ...] = (READ,),
        auth: bool = True,
    ) -> HttpResult:
        sent = {k.lower(): v for k, v in (headers or {}).items()}
        if auth and "x-ms-client-principal" not in sent:
            sent["x-ms-client-principal"] = principal(*roles)
        raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        if isinstance(body, dict) or method == "POST":
            sent.setdefault("content-type", "application/json")
        request = ApiRequest(
            method,
            f"https://rebuilder.example.net/api/{name}",
            dict(route or {}),
            dict(params or {}),
            sent,
            raw,
            "corr-test-1",
        )
        return serve(name, request, lambda: self.services)
