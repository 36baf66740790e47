"""`make demo` end to end: the local stack starts, the estate is read back, everything stops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_reads_the_simulated_estate_through_the_sdk_clients() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rebuilder", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in (
        "Azurite ready at http://127.0.0.1:",
        "ARM simulator ready at https://127.0.0.1:",
        "ubuntu2204-golden",
        "winserver2022-golden",
        "rhel8-golden",
        "app-ubuntu2204",
        "20348.587.220303, 20348.2762.241009, 20348.2849.241106",
        "local stack stopped",
    ):
        assert expected in out, expected
    rows = [line.split() for line in out.splitlines()]
    plan = {r[0]: r[4] for r in rows if len(r) > 5 and r[4] in ("rebuild", "none", "skip", "blocked")}
    assert plan == {
        "app-ubuntu2204": "none",
        "legacy-managed": "skip",
        "rhel8-golden": "none",
        "ubuntu2204-golden": "rebuild",
        "winserver2022-golden": "none",
    }
    assert "list calls this pass: 4 (one per distinct source)" in out
    assert "ubuntu2204-golden from 22.04.202501150, Queued" in out
    replication = [line for line in out.splitlines() if line.startswith("ubuntu-22.04-gen2 ")]
    assert len(replication) == 4 and all("Completed" in line for line in replication)
