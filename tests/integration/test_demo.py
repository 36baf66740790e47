"""`make demo` end to end: the local stack starts, a patch day runs on simulated time until every
template is published in every region (one region repaired), the ledger is printed, all stops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_runs_a_patch_day_to_the_end() -> None:
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
    lines = out.splitlines()
    ledger = lines[next(i for i, line in enumerate(lines) if line.startswith("The ledger: builds")) :]
    builds = {r[1]: r for r in (line.split() for line in ledger[3:7])}
    assert {n: (r[2], r[3]) for n, r in builds.items()} == {
        "app-ubuntu2204": ("parent-published", "Published"),
        "rhel8-golden": ("source-update", "Published"),
        "ubuntu2204-golden": ("source-update", "Published"),
        "winserver2022-golden": ("source-update", "Published"),
    }
    assert builds["winserver2022-golden"][4] == "20348.2966.241205"
    regions = [line.split() for line in ledger if line.split()[:1] and line.split()[0] in builds]
    replication = {(r[0], r[1]): r for r in regions if len(r) >= 6 and r[2] in ("Completed", "Failed")}
    assert len(replication) == 16 and all(r[2] == "Completed" for r in replication.values())
    repaired = [key for key, r in replication.items() if r[4] != "0"]
    assert repaired == [("ubuntu2204-golden", "northeurope")]
    assert "replication to northeurope failed; target regions re-applied (no rebuild)" in out
    windows = [r for r in regions if len(r) >= 8 and r[-1] == "h"]
    assert len(windows) == 16  # every managed template × region, each closed
    assert "pinned template recreated with the new version" in out
