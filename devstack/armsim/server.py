"""The ARM simulator's HTTPS server: its own certificate authority, ARM routes, and a control API.

Requests to `/_sim/...` drive the simulation (clock, Marketplace publications, faults, counters);
every other path is an ARM route and needs `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import json
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import trustme

from . import control, topics
from .casing import fold
from .contract import DELIBERATE, Operation, Violation, ViolationLog, kept
from .errors import ArmError
from .faults import now_monotonic
from .routes import Request, Response, Route, check_request, match
from .world import World


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], ssl_context: ssl.SSLContext, sim: ArmSimulator) -> None:
        super().__init__(address, _Handler)
        self.ssl_context = ssl_context
        self.sim = sim

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the request's own thread, not in the accept loop.
        try:
            request = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        arrived = now_monotonic()
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        sim = self.server.sim
        if url.path.startswith("/_sim"):
            self._send(control.handle(sim, method, url.path, query, raw))
            return
        topic = topics.TOPIC_PATH.match(url.path)
        if topic and method == "POST":
            self._send(self._topic(topic["name"], query, raw))
            return
        found = match(method, url.path)
        route_name = found[0].name if found else "unknown"
        response = self._arm(found, method, url.path, query, raw)
        sim.world.faults.record(route_name, method, url.path, response.status, arrived)
        self._send(response)

    def _arm(
        self,
        found: tuple[Route, dict[str, str]] | None,
        method: str,
        path: str,
        query: dict[str, str],
        raw: bytes,
    ) -> Response:
        """The answer, held to the REST contract (contract.py): a request outside it is refused 400,
        an answer outside it is replaced by a 500, and either is recorded for the test to fail on."""
        if found is None or found[0].name in DELIBERATE:
            return self._answer(found, method, path, query, raw)
        sim = self.server.sim
        route = found[0].name
        problems: list[str] = []
        try:
            body = json.loads(raw) if raw else None
        except ValueError:  # answered 400 below, as not JSON
            operation = sim.contract.operation_of(method, path)
        else:
            operation, problems = sim.contract.check_request(method, path, query, body)
        refusal = None
        if problems:
            seen = Violation("request", route, _named(operation), method, path, None, tuple(problems))
            sim.violations.record(seen)
            refusal = ArmError(400, "InvalidRequestContent", f"armsim: outside the REST contract: {seen}")
        answer = self._answer(found, method, path, query, raw, refusal)
        if operation is None:
            return answer
        problems = sim.contract.check_response(
            operation, answer.status, answer.body, query.get("api-version")
        )
        if not problems:
            return answer
        seen = Violation("response", route, operation.id, method, path, answer.status, tuple(problems))
        sim.violations.record(seen)
        error = ArmError(
            500, "SimulatorContractViolation", f"armsim answered outside the REST contract: {seen}"
        )
        return Response(error.status, error.body())

    def _answer(
        self,
        found: tuple[Route, dict[str, str]] | None,
        method: str,
        path: str,
        query: dict[str, str],
        raw: bytes,
        refusal: ArmError | None = None,
    ) -> Response:
        sim = self.server.sim
        world = sim.world
        try:
            if found is None:
                raise ArmError(404, "NotFound", f"No HTTP resource was found that matches {method} {path}.")
            route, params = found
            latency, injected = world.faults.before(route.name)
            if latency:
                time.sleep(latency)
            if injected is not None:
                raise injected
            self._authorise(sim.token)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                raise ArmError(
                    400, "InvalidRequestContent", "The request content is not valid JSON."
                ) from None
            if refusal is not None:
                raise refusal
            request = Request(method, params, query, body, f"https://{self.headers.get('Host')}", path)
            check_request(route, request)
            with world.lock:
                world.tick()
                return route.handler(world, request)
        except ArmError as error:
            return Response(error.status, error.body(), dict(error.headers))

    def _topic(self, name: str, query: dict[str, str], raw: bytes) -> Response:
        sim = self.server.sim
        try:
            self._authorise(sim.token)
        except ArmError as error:
            return Response(error.status, error.body())
        with sim.world.lock:
            content_type = self.headers.get("Content-Type") or ""
            return topics.receive(sim.world.topics, name, content_type, query, raw)

    def _authorise(self, token: str) -> None:
        header = self.headers.get("Authorization")
        if not header:
            raise ArmError(
                401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        scheme, _, value = header.partition(" ")
        if fold(scheme) != "bearer" or value != token:
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.")

    def _send(self, response: Response) -> None:
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if payload:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-ms-request-id", f"sim-{time.monotonic_ns()}")
        self.end_headers()
        if payload:
            self.wfile.write(payload)


def _named(operation: Operation | None) -> str:
    return operation.id if operation is not None else "no kept operation"


@dataclass
class _Tls:
    ca_path: Path
    context: ssl.SSLContext


def _tls(directory: Path) -> _Tls:
    authority = trustme.CA(organization_name="rebuilder ARM simulator")
    certificate = authority.issue_cert("127.0.0.1", "localhost", "::1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certificate.configure_cert(context)
    ca_path = directory / "armsim-ca.pem"
    authority.cert_pem.write_to_path(str(ca_path))
    return _Tls(ca_path, context)


class ArmSimulator:
    """Start with `with ArmSimulator() as sim:`; point SDK clients at `sim.endpoint`, trust `sim.ca_path`."""

    def __init__(
        self,
        *,
        token: str = "sim-token",
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path | None = None,
    ) -> None:
        self.token = token
        self.world = World()
        self.contract = kept()  # the REST contract every ARM request and answer is held to
        self.violations = ViolationLog()  # what was outside it; tests fail on anything here
        self._tmp = tempfile.TemporaryDirectory(prefix="armsim-") if state_dir is None else None
        directory = state_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        tls = _tls(directory)
        self.ca_path = tls.ca_path
        self._server = _Server((host, port), tls.context, self)
        address = self._server.server_address
        self.host, self.port = str(address[0]), int(address[1])
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"https://{self.host}:{self.port}"

    def reset(self) -> None:
        self.world = World()

    def start(self) -> ArmSimulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="armsim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> ArmSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
