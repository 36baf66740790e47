"""The simulator's control API (`/_sim/...`) and a small client for tests and the demo.

Control calls are not ARM calls: they need no token and are not counted.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.error import HTTPError

from .casing import fold
from .clock import iso
from .errors import ArmError
from .faults import FaultRule
from .imagebuilder import BuildFailure, ProvisioningFailure
from .marketplace import MarketplaceVersion
from .routes import Response

if TYPE_CHECKING:
    from .server import ArmSimulator


def handle(sim: ArmSimulator, method: str, path: str, query: dict[str, str], raw: bytes) -> Response:
    try:
        body = json.loads(raw) if raw else {}
        if not isinstance(body, dict):
            raise ArmError(400, "BadControlRequest", "A JSON object is expected.")
        route = (method, path.rstrip("/"))
        return _access(sim, route, body) or _dispatch(sim, *route, body)
    except ArmError as error:
        return Response(error.status, error.body())
    except (KeyError, TypeError, ValueError) as error:
        return Response(
            400, {"error": {"code": "BadControlRequest", "message": f"{type(error).__name__}: {error}"}}
        )


def _dispatch(sim: ArmSimulator, method: str, path: str, body: dict[str, Any]) -> Response:
    world = sim.world
    route = (method, path)
    if route == ("POST", "/_sim/reset"):
        sim.reset()
        return Response(200, {"reset": True})
    with world.lock:
        if route == ("GET", "/_sim/clock"):
            return Response(200, {"now": iso(world.clock.now()), "speed": world.clock.speed})
        if route == ("POST", "/_sim/clock"):
            if "speed" in body:
                world.clock.set_speed(float(body["speed"]))
            if "advance_seconds" in body:
                world.clock.advance(float(body["advance_seconds"]))
            world.tick()
            return Response(200, {"now": iso(world.clock.now()), "speed": world.clock.speed})
        if route == ("POST", "/_sim/marketplace"):
            return Response(200, _publish(sim, body))
        if route == ("POST", "/_sim/marketplace/state"):
            for location in body["locations"]:
                world.marketplace.set_state(
                    location,
                    body["publisher"],
                    body["offer"],
                    body["sku"],
                    body["version"],
                    body["image_state"],
                    body.get("scheduled_deprecation_time"),
                )
            return Response(200, {"updated": len(body["locations"])})
        if route == ("POST", "/_sim/faults"):
            world.faults.add(FaultRule(**body))
            return Response(200, {"rules": len(world.faults.rules)})
        if route == ("DELETE", "/_sim/faults"):
            world.faults.clear()
            world.gallery.region_failures.clear()
            world.imagebuilder.build_failures.clear()
            world.imagebuilder.provisioning_failures.clear()
            world.imagebuilder.always_failing.clear()
            return Response(200, {"rules": 0})
        if route == ("POST", "/_sim/faults/build"):
            fates = world.imagebuilder.build_failures.setdefault(fold(str(body["template"])), [])
            for _ in range(int(body.get("times", 1))):
                fates.append(
                    BuildFailure(
                        str(body.get("sub_state", "Customizing")),
                        str(body.get("message", "Customization script failed (exit code 1).")),
                    )
                )
            return Response(200, {"pending": len(fates)})
        if route == ("POST", "/_sim/faults/provisioning"):
            name = fold(str(body["template"]))
            failure = ProvisioningFailure(
                str(body.get("code", "ServerError")),
                str(body.get("message", "An internal error occurred while provisioning the template.")),
            )
            if body.get("times") == "always":
                world.imagebuilder.always_failing[name] = failure
            else:
                queued = world.imagebuilder.provisioning_failures.setdefault(name, [])
                queued.extend(failure for _ in range(int(body.get("times", 1))))
            return Response(200, {"template": name})
        if route == ("POST", "/_sim/faults/region"):
            region = fold("".join(str(body["region"]).split()))
            world.gallery.region_failures[region] = world.gallery.region_failures.get(region, 0) + int(
                body.get("times", 1)
            )
            return Response(200, {"pending": world.gallery.region_failures[region]})
        if method == "GET" and path.startswith("/_sim/topics/"):
            return Response(200, {"events": list(world.topics.get(path.rsplit("/", 1)[-1], []))})
        if route == ("GET", "/_sim/counters"):
            return Response(200, world.faults.snapshot() | {"runs": dict(world.imagebuilder.runs_started)})
        if route == ("DELETE", "/_sim/counters"):
            world.faults.reset_counters()
            return Response(200, {"counters": {}})
        if route == ("POST", "/_sim/latest"):  # what `latest` resolves to, per region (not an ARM route)
            world.tick()
            found = world.gallery.find_image_by_id(str(body.get("image", "")))
            if found is None:
                raise ArmError(404, "NotFound", f"No gallery image {body.get('image')!r}.")
            latest = {r: world.gallery.latest(*found, r) for r in body.get("regions") or []}
            return Response(200, {r: (v.name if v else None) for r, v in latest.items()})
        if route == ("POST", "/_sim/config"):
            _configure(sim, body)
            return Response(200, {"configured": sorted(body)})
    raise ArmError(404, "NoSuchControlRoute", f"{method} {path} is not a control route.")


def _access(sim: ArmSimulator, route: tuple[str, str], body: dict[str, Any]) -> Response | None:
    """Who may do what, and which identities exist (authorization.py, identities.py); None: another
    control route."""
    world = sim.world
    with world.lock:
        if route == ("POST", "/_sim/permissions"):  # what the caller holds at a scope and below
            world.authorization.set(str(body["scope"]), list(body["permissions"]))
            return Response(200, {"scope": body["scope"]})
        if route == ("POST", "/_sim/identities"):
            world.identities.create(str(body["id"]), str(body.get("location", "westeurope")))
            return Response(200, {"created": body["id"]})
        if route == ("DELETE", "/_sim/identities"):
            return Response(200, {"deleted": world.identities.delete(str(body["id"]))})
    return None


def _publish(sim: ArmSimulator, body: dict[str, Any]) -> dict[str, Any]:
    world = sim.world
    published_at = world.clock.now()
    for location in body["locations"]:
        world.marketplace.publish(
            MarketplaceVersion(
                location=location,
                publisher=body["publisher"],
                offer=body["offer"],
                sku=body["sku"],
                version=body["version"],
                published_at=published_at,
                image_state=body.get("image_state", "Active"),
                scheduled_deprecation_time=body.get("scheduled_deprecation_time"),
                hyper_v_generation=body.get("hyper_v_generation", "V2"),
                operating_system=body.get("os", "Linux"),
            )
        )
    return {"published": body["version"], "locations": body["locations"], "at": iso(published_at)}


def _configure(sim: ArmSimulator, body: dict[str, Any]) -> None:
    world = sim.world
    if "page_size" in body:
        world.config.page_size = max(1, int(body["page_size"]))
    for name, seconds in (body.get("run_timing") or {}).items():
        if not hasattr(world.imagebuilder.timing, name):
            raise ArmError(400, "BadControlRequest", f"Unknown run phase {name!r}.")
        setattr(world.imagebuilder.timing, name, float(seconds))
    if "replication_seconds" in body:
        world.gallery.timing.replication_seconds = float(body["replication_seconds"])
    if "region_stagger_seconds" in body:
        world.gallery.timing.region_stagger_seconds = float(body["region_stagger_seconds"])
    if "update_looks" in body:  # reads of a version that still show an accepted update as Updating
        world.gallery.update_looks = max(0, int(body["update_looks"]))


class SimControl:
    """Drives a running simulator over its control API (what tests and the demo use)."""

    def __init__(self, endpoint: str, ca_path: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._context = ssl.create_default_context(cafile=ca_path)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.endpoint}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except HTTPError as error:
            raise RuntimeError(
                f"simulator control {method} {path}: {error.code} {error.read().decode()}"
            ) from None

    def now(self) -> datetime:
        return datetime.fromisoformat(self.call("GET", "/_sim/clock")["now"])

    def advance(self, seconds: float) -> datetime:
        return datetime.fromisoformat(self.call("POST", "/_sim/clock", {"advance_seconds": seconds})["now"])

    def set_speed(self, speed: float) -> None:
        self.call("POST", "/_sim/clock", {"speed": speed})

    def publish(
        self, publisher: str, offer: str, sku: str, version: str, locations: list[str], **extra: Any
    ) -> None:
        self.call(
            "POST",
            "/_sim/marketplace",
            {
                "publisher": publisher,
                "offer": offer,
                "sku": sku,
                "version": version,
                "locations": locations,
                **extra,
            },
        )

    def set_image_state(
        self,
        publisher: str,
        offer: str,
        sku: str,
        version: str,
        locations: list[str],
        image_state: str,
        scheduled_deprecation_time: str | None = None,
    ) -> None:
        self.call(
            "POST",
            "/_sim/marketplace/state",
            {
                "publisher": publisher,
                "offer": offer,
                "sku": sku,
                "version": version,
                "locations": locations,
                "image_state": image_state,
                "scheduled_deprecation_time": scheduled_deprecation_time,
            },
        )

    def inject(
        self,
        route: str = "*",
        *,
        status: int | None = None,
        times: int | None = 1,
        retry_after: float | None = None,
        latency_ms: int = 0,
    ) -> None:
        self.call(
            "POST",
            "/_sim/faults",
            {
                "route": route,
                "status": status,
                "times": times,
                "retry_after": retry_after,
                "latency_ms": latency_ms,
            },
        )

    def fail_build(
        self, template: str, *, sub_state: str = "Customizing", message: str | None = None, times: int = 1
    ) -> None:
        body: dict[str, Any] = {"template": template, "sub_state": sub_state, "times": times}
        if message:
            body["message"] = message
        self.call("POST", "/_sim/faults/build", body)

    def fail_provisioning(
        self, template: str, *, code: str = "ServerError", message: str = "", times: int | str = 1
    ) -> None:
        """The template's next `times` provisionings (or every one: times="always") fail with `code`."""
        body: dict[str, Any] = {"template": template, "code": code, "times": times}
        if message:
            body["message"] = message
        self.call("POST", "/_sim/faults/provisioning", body)

    def fail_region(self, region: str, *, times: int = 1) -> None:
        self.call("POST", "/_sim/faults/region", {"region": region, "times": times})

    def clear_faults(self) -> None:
        self.call("DELETE", "/_sim/faults")

    def counters(self) -> dict[str, int]:
        return dict(self.call("GET", "/_sim/counters")["counters"])

    def requests(self, route: str | None = None) -> list[dict[str, Any]]:
        records = self.call("GET", "/_sim/counters")["requests"]
        return [r for r in records if route is None or r["route"] == route]

    def runs_started(self) -> dict[str, int]:
        return dict(self.call("GET", "/_sim/counters")["runs"])

    def reset_counters(self) -> None:
        self.call("DELETE", "/_sim/counters")

    def configure(self, **settings: Any) -> None:
        self.call("POST", "/_sim/config", settings)

    def reset(self) -> None:
        self.call("POST", "/_sim/reset")

    def latest(self, image_id: str, regions: list[str]) -> dict[str, str | None]:
        """The version name `latest` of gallery image `image_id` resolves to in each region (None: none)."""
        return dict(self.call("POST", "/_sim/latest", {"image": image_id, "regions": regions}))

    def set_permissions(self, scope: str, actions: list[str], not_actions: list[str] | None = None) -> None:
        """At `scope` and every scope below it, the caller holds one role: these actions, less
        `not_actions` (wildcards as Azure RBAC reads them). Until then: every role of roles.bicep."""
        permission = {"actions": actions, "notActions": not_actions or []}
        self.call("POST", "/_sim/permissions", {"scope": scope, "permissions": [permission]})

    def create_identity(self, identity_id: str, location: str = "westeurope") -> None:
        """A user-assigned managed identity, as a platform team's deployment creates it."""
        self.call("POST", "/_sim/identities", {"id": identity_id, "location": location})

    def delete_identity(self, identity_id: str) -> bool:
        return bool(self.call("DELETE", "/_sim/identities", {"id": identity_id})["deleted"])

    def topic_events(self, name: str) -> list[dict[str, Any]]:
        """The CloudEvents a simulated Event Grid topic received, in order."""
        return list(self.call("GET", f"/_sim/topics/{name}")["events"])

    def topic_endpoint(self, name: str) -> str:
        return f"{self.endpoint}/_topics/{name}/api/events"
