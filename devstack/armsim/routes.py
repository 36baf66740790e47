"""The ARM routes the simulator serves, named as the SDK operations that call them.

Paths match case-insensitively, as ARM does. Each route accepts the one API version the pinned
azure-mgmt-compute or azure-mgmt-imagebuilder sends, the version whose REST definitions are kept in
tests/reference/specs (contract.py holds every request and answer to them); any other is refused, as
the simulator could only answer it from memory.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from .casing import fold
from .errors import ArmError
from .gallery import ImageVersion
from .imagebuilder import Template
from .world import World

MARKETPLACE_API = frozenset({"2026-04-01"})  # ComputeRP.json 2026-04-01, azure-mgmt-compute 39.0.0
GALLERY_API = frozenset({"2026-03-03"})  # GalleryRP.json 2026-03-03, azure-mgmt-compute 39.0.0
IMAGEBUILDER_API = frozenset({"2025-10-01"})  # imagebuilder.json 2025-10-01, azure-mgmt-imagebuilder 2.0.0
AUTHORIZATION_API = frozenset({"2022-04-01"})  # authorization-RoleDefinitionsCalls.json 2022-04-01
MANAGED_IDENTITY_API = frozenset({"2023-01-31"})  # ManagedIdentity.json 2023-01-31
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


@dataclass
class Request:
    method: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    base_url: str
    path: str

    @property
    def sub(self) -> str:
        return fold(self.params["sub"])


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[World, Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler
    api_versions: frozenset[str]


_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _SUB + r"/resourceGroups/(?P<rg>[^/]+)"
_MP = (
    _SUB + r"/providers/Microsoft\.Compute/locations/(?P<loc>[^/]+)/publishers/(?P<pub>[^/]+)"
    r"/artifacttypes/vmimage/offers/(?P<offer>[^/]+)/skus/(?P<sku>[^/]+)/versions"
)
_GAL = _RG + r"/providers/Microsoft\.Compute/galleries"
_IMG = _GAL + r"/(?P<gallery>[^/]+)/images"
_VER = _IMG + r"/(?P<image>[^/]+)/versions"
_AIB = _RG + r"/providers/Microsoft\.VirtualMachineImages/imageTemplates"
_TPL = _AIB + r"/(?P<name>[^/]+)"
_PERMISSIONS = r"/providers/Microsoft\.Authorization/permissions"
_IDENTITY = _RG + r"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/(?P<identity>[^/]+)"


# -- helpers -----------------------------------------------------------------------------------------
def _page(world: World, req: Request, items: list[dict[str, Any]]) -> Response:
    size = world.config.page_size
    try:
        start = int(req.query.get("$skipToken", "0"))
    except ValueError:
        raise ArmError(400, "InvalidSkipToken", "The $skipToken is not valid.") from None
    body: dict[str, Any] = {"value": items[start : start + size]}
    if start + size < len(items):
        query = {k: v for k, v in req.query.items() if k != "$skipToken"}
        query["$skipToken"] = str(start + size)
        body["nextLink"] = f"{req.base_url}{req.path}?{urlencode(query)}"
    return Response(200, body)


def _async(
    world: World,
    req: Request,
    status: int,
    body: Any,
    check: Any,
    *,
    provider: str,
    location: str,
    location_header: bool = False,
    min_polls: int = 1,
) -> Response:
    operation = world.new_operation(check, min_polls=min_polls)
    kind = "capsOperations" if provider == "Microsoft.Compute" else "operations"
    path = f"/subscriptions/{req.sub}/providers/{provider}/locations/{location}/{kind}/{operation.id}"
    url = f"{req.base_url}{path}?api-version={req.query['api-version']}"
    headers = {"Azure-AsyncOperation": url}
    if location_header:
        headers["Location"] = url
    return Response(status, body, headers)


def _done(ok: bool, error: dict[str, Any] | None = None) -> tuple[str, dict[str, Any] | None]:
    return ("Succeeded", None) if ok else ("Failed", error)


# -- Marketplace -------------------------------------------------------------------------------------
def marketplace_list(world: World, req: Request) -> Response:
    p = req.params
    top = req.query.get("$top")
    items = world.marketplace.list_versions(
        req.sub,
        p["loc"],
        p["pub"],
        p["offer"],
        p["sku"],
        top=int(top) if top and top.isdigit() else None,
        orderby=req.query.get("$orderby"),
    )
    return Response(200, items)


def marketplace_get(world: World, req: Request) -> Response:
    p = req.params
    return Response(
        200, world.marketplace.get_version(req.sub, p["loc"], p["pub"], p["offer"], p["sku"], p["version"])
    )


# -- Galleries ---------------------------------------------------------------------------------------
def gallery_put(world: World, req: Request) -> Response:
    status, resource = world.gallery.put_gallery(req.sub, req.params["rg"], req.params["gallery"], req.body)
    return _async(
        world,
        req,
        status,
        resource,
        lambda: _done(True),
        provider="Microsoft.Compute",
        location=str(req.body.get("location")),
    )


def gallery_get(world: World, req: Request) -> Response:
    return Response(200, world.gallery.get_gallery(req.sub, req.params["rg"], req.params["gallery"]))


def gallery_list_rg(world: World, req: Request) -> Response:
    return _page(world, req, world.gallery.list_galleries(req.sub, req.params["rg"]))


def gallery_list_sub(world: World, req: Request) -> Response:
    return _page(world, req, world.gallery.list_galleries(req.sub, None))


def image_put(world: World, req: Request) -> Response:
    p = req.params
    status, resource = world.gallery.put_image(req.sub, p["rg"], p["gallery"], p["image"], req.body)
    return _async(
        world,
        req,
        status,
        resource,
        lambda: _done(True),
        provider="Microsoft.Compute",
        location=str(req.body.get("location")),
    )


def image_get(world: World, req: Request) -> Response:
    p = req.params
    return Response(200, world.gallery.get_image(req.sub, p["rg"], p["gallery"], p["image"]))


def image_list(world: World, req: Request) -> Response:
    return _page(world, req, world.gallery.list_images(req.sub, req.params["rg"], req.params["gallery"]))


def _version_check(world: World, version: ImageVersion) -> Any:
    def check() -> tuple[str, dict[str, Any] | None]:
        world.gallery.look(version, world.clock.now())  # a poll of its operation is a look too
        if version.pending is not None or version.provisioning_state in ("Creating", "Updating"):
            return "InProgress", None
        failed = [r.details for r in version.replicas.values() if r.state == "Failed"]
        return _done(not failed, {"code": "ReplicationJobsNotCompleted", "message": " ".join(failed)})

    return check


def version_put(world: World, req: Request) -> Response:
    p = req.params
    status, version = world.gallery.put_version(
        req.sub, p["rg"], p["gallery"], p["image"], p["version"], req.body, world.clock.now()
    )
    return _async(
        world,
        req,
        status,
        version.body(expand_replication=False),
        _version_check(world, version),
        provider="Microsoft.Compute",
        location=version.location,
        min_polls=0,
    )


def version_patch(world: World, req: Request) -> Response:
    p = req.params
    version = world.gallery.update_version(
        req.sub, p["rg"], p["gallery"], p["image"], p["version"], req.body, world.clock.now()
    )
    return _async(
        world,
        req,
        200,
        version.body(expand_replication=False),
        _version_check(world, version),
        provider="Microsoft.Compute",
        location=version.location,
        location_header=True,
        min_polls=0,
    )


def version_get(world: World, req: Request) -> Response:
    p = req.params
    version = world.gallery.get_version(req.sub, p["rg"], p["gallery"], p["image"], p["version"])
    world.gallery.look(version, world.clock.now())
    expand = fold(req.query.get("$expand", "")) == "replicationstatus"
    return Response(200, version.body(expand_replication=expand))


def version_list(world: World, req: Request) -> Response:
    p = req.params
    versions = world.gallery.list_versions(req.sub, p["rg"], p["gallery"], p["image"])
    for version in versions:
        world.gallery.look(version, world.clock.now())
    return _page(world, req, [v.body(expand_replication=False) for v in versions])


def version_delete(world: World, req: Request) -> Response:
    p = req.params
    if not world.gallery.delete_version(req.sub, p["rg"], p["gallery"], p["image"], p["version"]):
        return Response(204)
    return _async(
        world,
        req,
        202,
        None,
        lambda: _done(True),
        provider="Microsoft.Compute",
        location="westus",
        location_header=True,
    )


# -- Image Builder -----------------------------------------------------------------------------------
def template_put(world: World, req: Request) -> Response:
    p = req.params
    status, template = world.imagebuilder.put(req.sub, p["rg"], p["name"], req.body, world.clock.now())

    def provisioned() -> tuple[str, dict[str, Any] | None]:
        if template.provisioning_state == "Creating":
            return "InProgress", None
        failure = template.provisioning_error
        error = {"code": failure.code, "message": failure.message} if failure else None
        return _done(template.provisioning_state == "Succeeded", error)

    return _async(
        world,
        req,
        status,
        template.body(),
        provisioned,
        provider="Microsoft.VirtualMachineImages",
        location=template.location,
    )


def template_patch(world: World, req: Request) -> Response:
    p = req.params
    return Response(200, world.imagebuilder.update_tags(req.sub, p["rg"], p["name"], req.body).body())


def template_get(world: World, req: Request) -> Response:
    p = req.params
    return Response(200, world.imagebuilder.get(req.sub, p["rg"], p["name"]).body())


def template_delete(world: World, req: Request) -> Response:
    p = req.params
    template = world.imagebuilder.delete(req.sub, p["rg"], p["name"], world.clock.now())
    if template is None:
        return Response(204)
    doomed = template
    return _async(
        world,
        req,
        202,
        None,
        lambda: _done(True) if world.imagebuilder.gone(doomed) else ("InProgress", None),
        provider="Microsoft.VirtualMachineImages",
        location="westus",
        location_header=True,
    )


def template_list_rg(world: World, req: Request) -> Response:
    return _page(world, req, [t.body() for t in world.imagebuilder.list(req.sub, req.params["rg"])])


def template_list_sub(world: World, req: Request) -> Response:
    return _page(world, req, [t.body() for t in world.imagebuilder.list(req.sub, None)])


def _run_check(template: Template) -> Any:
    run = template.run

    def check() -> tuple[str, dict[str, Any] | None]:
        assert run is not None
        if run.state in ("Running", "Canceling"):
            return "InProgress", None
        if run.state == "Canceled":
            return "Canceled", None
        return _done(run.state == "Succeeded", {"code": "ImageTemplateBuildFailed", "message": run.message})

    return check


def template_run(world: World, req: Request) -> Response:
    p = req.params
    template = world.imagebuilder.start_run(req.sub, p["rg"], p["name"], world.clock.now())
    return _async(
        world,
        req,
        202,
        None,
        _run_check(template),
        provider="Microsoft.VirtualMachineImages",
        location=template.location,
        location_header=True,
        min_polls=0,
    )


def template_cancel(world: World, req: Request) -> Response:
    p = req.params
    template = world.imagebuilder.cancel_run(req.sub, p["rg"], p["name"], world.clock.now())
    run = template.run

    def canceled() -> tuple[str, dict[str, Any] | None]:
        assert run is not None
        return ("InProgress", None) if run.state == "Canceling" else _done(True)

    return _async(
        world,
        req,
        202,
        None,
        canceled,
        provider="Microsoft.VirtualMachineImages",
        location=template.location,
        location_header=True,
        min_polls=0,
    )


def _outputs(req: Request, template: Template) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "type": "Microsoft.VirtualMachineImages/imageTemplates/runOutputs",
            "id": f"{template.id}/runOutputs/{name}",
            "properties": dict(props),
        }
        for name, props in template.outputs.items()
    ]


def run_outputs_list(world: World, req: Request) -> Response:
    p = req.params
    return _page(world, req, _outputs(req, world.imagebuilder.get(req.sub, p["rg"], p["name"])))


def run_output_get(world: World, req: Request) -> Response:
    p = req.params
    template = world.imagebuilder.get(req.sub, p["rg"], p["name"])
    for output in _outputs(req, template):
        if fold(output["name"]) == fold(p["output"]):
            return Response(200, output)
    raise ArmError(404, "ResourceNotFound", f"Run output '{p['output']}' was not found.")


# -- Authorization and identities (what the doctor reads) ---------------------------------------------
def permissions_list(world: World, req: Request) -> Response:
    scope = f"/subscriptions/{req.sub}/resourceGroups/{req.params['rg']}"
    return _page(world, req, world.authorization.permissions(scope))


def identity_get(world: World, req: Request) -> Response:
    return Response(200, world.identities.get(req.sub, req.params["rg"], req.params["identity"]))


# -- Async operations --------------------------------------------------------------------------------
def operation_get(world: World, req: Request) -> Response:
    operation = world.operations.get(req.params["op"])
    if operation is None:
        raise ArmError(404, "NotFound", "The operation was not found.")
    return Response(200, operation.body())


def _route(method: str, path: str, name: str, handler: Handler, api: frozenset[str]) -> Route:
    return Route(method, re.compile(f"^{path}/?$", re.IGNORECASE), name, handler, api)


ROUTES: tuple[Route, ...] = (
    _route("GET", _MP, "marketplace.list_versions", marketplace_list, MARKETPLACE_API),
    _route("GET", _MP + r"/(?P<version>[^/]+)", "marketplace.get_version", marketplace_get, MARKETPLACE_API),
    _route("PUT", _GAL + r"/(?P<gallery>[^/]+)", "galleries.create_or_update", gallery_put, GALLERY_API),
    _route("GET", _GAL + r"/(?P<gallery>[^/]+)", "galleries.get", gallery_get, GALLERY_API),
    _route("GET", _GAL, "galleries.list_by_resource_group", gallery_list_rg, GALLERY_API),
    _route(
        "GET",
        _SUB + r"/providers/Microsoft\.Compute/galleries",
        "galleries.list",
        gallery_list_sub,
        GALLERY_API,
    ),
    _route("PUT", _IMG + r"/(?P<image>[^/]+)", "gallery_images.create_or_update", image_put, GALLERY_API),
    _route("GET", _IMG + r"/(?P<image>[^/]+)", "gallery_images.get", image_get, GALLERY_API),
    _route("GET", _IMG, "gallery_images.list_by_gallery", image_list, GALLERY_API),
    _route(
        "PUT",
        _VER + r"/(?P<version>[^/]+)",
        "gallery_image_versions.create_or_update",
        version_put,
        GALLERY_API,
    ),
    _route(
        "PATCH", _VER + r"/(?P<version>[^/]+)", "gallery_image_versions.update", version_patch, GALLERY_API
    ),
    _route("GET", _VER + r"/(?P<version>[^/]+)", "gallery_image_versions.get", version_get, GALLERY_API),
    _route(
        "DELETE", _VER + r"/(?P<version>[^/]+)", "gallery_image_versions.delete", version_delete, GALLERY_API
    ),
    _route("GET", _VER, "gallery_image_versions.list_by_gallery_image", version_list, GALLERY_API),
    _route("PUT", _TPL, "image_templates.create_or_update", template_put, IMAGEBUILDER_API),
    _route("PATCH", _TPL, "image_templates.update", template_patch, IMAGEBUILDER_API),
    _route("GET", _TPL, "image_templates.get", template_get, IMAGEBUILDER_API),
    _route("DELETE", _TPL, "image_templates.delete", template_delete, IMAGEBUILDER_API),
    _route("GET", _AIB, "image_templates.list_by_resource_group", template_list_rg, IMAGEBUILDER_API),
    _route(
        "GET",
        _SUB + r"/providers/Microsoft\.VirtualMachineImages/imageTemplates",
        "image_templates.list",
        template_list_sub,
        IMAGEBUILDER_API,
    ),
    _route("POST", _TPL + r"/run", "image_templates.run", template_run, IMAGEBUILDER_API),
    _route("POST", _TPL + r"/cancel", "image_templates.cancel", template_cancel, IMAGEBUILDER_API),
    _route(
        "GET", _TPL + r"/runOutputs", "image_templates.list_run_outputs", run_outputs_list, IMAGEBUILDER_API
    ),
    _route(
        "GET",
        _TPL + r"/runOutputs/(?P<output>[^/]+)",
        "image_templates.get_run_output",
        run_output_get,
        IMAGEBUILDER_API,
    ),
    _route(
        "GET", _RG + _PERMISSIONS, "permissions.list_for_resource_group", permissions_list, AUTHORIZATION_API
    ),
    _route("GET", _IDENTITY, "user_assigned_identities.get", identity_get, MANAGED_IDENTITY_API),
    _route(
        "GET",
        _SUB + r"/providers/Microsoft\.Compute/locations/[^/]+/capsOperations/(?P<op>[^/]+)",
        "operations.compute",
        operation_get,
        GALLERY_API | MARKETPLACE_API,
    ),
    _route(
        "GET",
        _SUB + r"/providers/Microsoft\.VirtualMachineImages/locations/[^/]+/operations/(?P<op>[^/]+)",
        "operations.imagebuilder",
        operation_get,
        IMAGEBUILDER_API,
    ),
)


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        if route.method != method:
            continue
        found = route.pattern.match(path)
        if found:
            return route, found.groupdict()
    return None


def check_request(route: Route, req: Request) -> None:
    if "sub" in req.params and not _GUID.match(req.params["sub"]):
        raise ArmError(
            400,
            "InvalidSubscriptionId",
            f"The provided subscription identifier '{req.params['sub']}' is malformed or invalid.",
        )
    version = req.query.get("api-version")
    if not version:
        raise ArmError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if version not in route.api_versions:
        raise ArmError(
            400,
            "NoRegisteredProviderFound",
            f"No registered resource provider found for API version '{version}'. The supported "
            f"api-versions are '{', '.join(sorted(route.api_versions))}'.",
        )
    if req.method in ("PUT", "PATCH") and not isinstance(req.body, dict):
        raise ArmError(
            400,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: a JSON object is expected.",
        )
