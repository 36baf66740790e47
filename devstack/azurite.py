"""Azurite, the local Azure Table storage, for tests and the demo (dev-only, never deployed).

The binary comes from ``node_modules`` (pinned in ``package.json`` / ``package-lock.json``, installed by
``npm ci``). Every instance listens on a fresh loopback port, keeps its data in memory and writes its
output to a temporary directory, so nothing lands in the repository and instances never collide.

    with running_azurite() as azurite:
        service = TableServiceClient.from_connection_string(azurite.connection_string)

``python -m devstack.azurite`` starts one, prints its connection string and runs until Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

__all__ = ["ACCOUNT_KEY", "ACCOUNT_NAME", "Azurite", "AzuriteNotInstalled", "main", "running_azurite"]

# The well-known development account every Azurite accepts (public, documented by Microsoft; not a secret).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_HOST = "127.0.0.1"
_BINARY = Path("node_modules", ".bin", "azurite-table")
_FLAGS = (
    "--inMemoryPersistence",  # no __azurite_db_table__.json; data dies with the process
    "--skipApiVersionCheck",  # newer SDKs send API versions this Azurite does not know yet
    "--disableProductStyleUrl",  # account name from the path, whatever the host is called
    "--loose",  # ignore headers and parameters Azurite does not implement
    "--disableTelemetry",  # 3.35.0 otherwise phones home (and there may be no internet)
)
_STARTED = "successfully started"  # Azurite's stdout once it listens
_PORT_ATTEMPTS = 5
_STOP_TIMEOUT = 5.0


class AzuriteNotInstalled(RuntimeError):
    """node_modules/.bin/azurite-table is missing: the npm dev dependencies are not installed."""

    def __init__(self, binary: Path) -> None:
        super().__init__(
            f"Azurite is not installed ({binary} is missing). Run `npm ci` in the repository root "
            "(or `make test` / `make demo`, which run it for you)."
        )
        self.binary = binary


@dataclass(frozen=True)
class Azurite:
    """A running Azurite Table service."""

    host: str
    port: int

    @property
    def table_endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};"
            f"TableEndpoint={self.table_endpoint};"
        )


def _default_root() -> Path:
    return Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return ""


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate, wait up to five seconds, then kill; a second Ctrl-C while waiting still kills it."""
    if process.poll() is not None:
        return
    try:
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise


class _PortTaken(Exception):
    """Someone else bound the port between picking it and Azurite listening on it."""


def _start(binary: Path, workdir: Path, port: int, deadline: float) -> subprocess.Popen[bytes]:
    """Start Azurite on ``port`` and return once it serves; never leaves the process behind on failure."""
    out, err = workdir / f"azurite-{port}.out", workdir / f"azurite-{port}.err"
    command = [str(binary), "--tableHost", _HOST, "--tablePort", str(port), *_FLAGS]
    # A custom account list would make the well-known key above useless.
    env = {name: value for name, value in os.environ.items() if name != "AZURITE_ACCOUNTS"}
    process: subprocess.Popen[bytes] | None = None
    try:
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
            )
        while True:
            if process.poll() is not None:
                errors, output = _read(err), _read(out)
                if "EADDRINUSE" in errors:
                    raise _PortTaken(port)
                raise RuntimeError(
                    f"Azurite exited with code {process.returncode} while starting on port {port}.\n"
                    f"stderr:\n{errors or '(empty)'}\nstdout:\n{output or '(empty)'}"
                )
            if _STARTED in _read(out) and _accepts(port):
                return process
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Azurite did not start on port {port} in time.\n"
                    f"stderr:\n{_read(err) or '(empty)'}\nstdout:\n{_read(out) or '(empty)'}"
                )
            time.sleep(0.05)
    except BaseException:
        if process is not None:
            _stop(process)
        raise


def _start_on_a_free_port(
    binary: Path, workdir: Path, deadline: float
) -> tuple[subprocess.Popen[bytes], int]:
    """Pick a free port and start there; if another process grabs it first, pick another one."""
    for _ in range(_PORT_ATTEMPTS):
        port = _free_port()
        try:
            return _start(binary, workdir, port, deadline), port
        except _PortTaken:
            continue
    raise RuntimeError(f"Azurite lost the race for a free loopback port {_PORT_ATTEMPTS} times in a row")


@contextmanager
def running_azurite(*, root: Path | None = None, startup_timeout: float = 30.0) -> Iterator[Azurite]:
    """Run an in-memory Azurite Table service on a free loopback port for the duration of the block.

    Raises AzuriteNotInstalled when ``npm ci`` has not been run, RuntimeError when Azurite does not come
    up within ``startup_timeout`` seconds or exits while starting (its stderr is in the message).
    """
    binary = (root if root is not None else _default_root()) / _BINARY
    if not binary.exists():
        raise AzuriteNotInstalled(binary)
    deadline = time.monotonic() + startup_timeout
    with tempfile.TemporaryDirectory(prefix="rebuilder-azurite-") as tmp:
        process, port = _start_on_a_free_port(binary, Path(tmp), deadline)
        try:
            yield Azurite(host=_HOST, port=port)
        finally:
            _stop(process)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """Run Azurite in the foreground until Ctrl-C (or SIGTERM), printing its connection string."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so the finally clauses stop Azurite
    try:
        with running_azurite() as azurite:
            print(azurite.connection_string, flush=True)  # stdout: just the connection string
            print(
                f"Azurite Table service on {azurite.table_endpoint}; Ctrl-C to stop.",
                file=sys.stderr,
                flush=True,
            )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("Azurite stopped.", file=sys.stderr)
    except AzuriteNotInstalled as error:
        sys.exit(str(error))


if __name__ == "__main__":
    main()
