"""`make demo` end to end: the local stack starts, a patch day runs on simulated time until every
template is published in every region (one region repaired), the ledger is printed, a late source
version starts one more build, and the security report is written — then rendered in a real browser.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rebuilder.entrypoints.report_html import REPORT_CSP
from tests.browser import browser_page

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output"
UBUNTU_WAVE = "22.04.202501150: 2/2 templates (1 child), 8/8 regions"  # the patch day, as printed
REPORT_WAVE = "22.04.202501150: 4/4 templates (2 children), 16/16 regions"  # and the gated pair after it


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    report = tmp_path_factory.mktemp("demo") / "security-report.html"
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "demo", "--report", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, report


def section(out: str, title: str, *, skip: int = 1) -> list[list[str]]:
    """The rows printed under `title` up to the next blank line, without the table's rule and the
    first `skip` rows (the header)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return [r for r in rows if not set(r[0]) <= {"-"}][skip:]


def test_the_demo_runs_a_patch_day_to_the_end(demo: tuple[str, Path]) -> None:
    out, _ = demo
    for expected in (
        "Azurite ready at http://127.0.0.1:",
        "ARM simulator ready at https://127.0.0.1:",
        "20348.587.220303, 20348.2762.241009, 20348.2849.241106",
        "replication to northeurope failed; target regions re-applied (no rebuild)",
        "pinned template recreated with the new version",
        "local stack stopped",
    ):
        assert expected in out, expected
    builds = {r[1]: r for r in section(out, "The ledger: builds")}
    assert {n: (r[2], r[3]) for n, r in builds.items()} == {
        "app-ubuntu2204": ("parent-published", "Published"),
        "rhel8-golden": ("source-update", "Published"),
        "ubuntu2204-golden": ("source-update", "Published"),
        "winserver2022-golden": ("source-update", "Published"),
    }
    assert builds["winserver2022-golden"][4] == "20348.2966.241205"
    replication = section(out, "The ledger: replication per region")
    assert len(replication) == 16 and all(r[2] == "Completed" for r in replication)
    assert [(r[0], r[1]) for r in replication if r[4] != "0"] == [("ubuntu2204-golden", "northeurope")]
    direct = section(out, "Exposure windows")
    assert len(direct) == 16 and all(r[-1] == "h" for r in direct)  # every template × region, closed


def test_the_childs_exposure_runs_from_the_root_versions_first_sighting(demo: tuple[str, Path]) -> None:
    out, _ = demo
    direct = {(r[0], r[1]): r for r in section(out, "Exposure windows")}
    ubuntu_first_seen = direct[("ubuntu2204-golden", "westeurope")][3:5]
    root = section(out, "Root exposure of children", skip=0)
    lineage, windows = root[0], root[2:]  # the lineage, then the table under its header
    assert lineage[:3] == ["app-ubuntu2204", "←", "ubuntu2204-golden"]
    assert len(windows) == 4
    for row in windows:
        assert row[0] == "app-ubuntu2204" and row[2] == "22.04.202501150"
        assert row[3:5] == ubuntu_first_seen  # from the root Ubuntu version's first sighting
        child_direct = direct[("app-ubuntu2204", row[1])]
        assert float(row[-2]) > float(child_direct[-2])  # longer than the window from the parent's image
    assert UBUNTU_WAVE in out  # the roll-up counts the child under the Ubuntu wave
    assert "Later: RedHat:RHEL:8-lvm-gen2 8.10.2025012011 is published" in out


def test_the_gated_template_is_a_candidate_bakes_is_promoted_then_its_child_builds(
    demo: tuple[str, Path],
) -> None:
    out, _ = demo
    gated = out[out.index("A gated release:") : out.index("Later:")].splitlines()

    def at(words: str) -> str:
        [line] = [line for line in gated if words in line]
        return line.split()[0]  # HH:MM, simulated

    candidate = at("ubuntu2204-gated: Candidate — 1.0.1 replicated everywhere as a candidate")
    baking = at("ubuntu2204-gated: 1.0.1 is baking until")
    promoted = at("ubuntu2204-gated: Promoted — 1.0.1 promoted into latest after 2 h of bake")
    child = at("app-gated: run started")
    assert candidate < baking < promoted <= child  # the child builds only once its parent is promoted
    minutes = [int(t[:2]) * 60 + int(t[3:]) for t in (candidate, promoted)]
    assert minutes[1] - minutes[0] >= 120
    assert any("app-gated: Published" in line for line in gated)


class _ReportServer(http.server.BaseHTTPRequestHandler):
    page = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Security-Policy", REPORT_CSP)  # as GET /api/report sends it
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def served(demo: tuple[str, Path]) -> Iterator[str]:
    _ReportServer.page = demo[1].read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ReportServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/report"
    server.shutdown()


CELLS = """JSON.stringify([...document.querySelectorAll('td.cell')].map(td => {
  const box = td.getBoundingClientRect(); const tr = td.closest('tr');
  return {template: tr.dataset.template, region: td.dataset.region || '', kind: td.dataset.state || 'empty',
          text: td.innerText, background: getComputedStyle(td).backgroundColor,
          visible: box.width > 0 && box.height > 0 && getComputedStyle(td).visibility === 'visible'};
}))"""


def test_the_report_renders_in_a_real_browser(served: str) -> None:
    import json

    with browser_page() as page:
        page.open(served)
        assert page.evaluate("document.title") == "rebuilder — security report"
        assert page.evaluate("document.scripts.length") == 0
        cells = json.loads(page.evaluate(CELLS))
        waves = page.evaluate(
            "[...document.querySelectorAll('#waves td.wave-summary')].map(td => td.innerText)"
        )
        header = page.evaluate("document.querySelector('#generated').innerText")
        shot = page.screenshot(SCREENSHOTS / "security-report.png")
    print(f"screenshot: {shot}")
    assert "7 templates · 4 regions" in header
    assert all(c["visible"] for c in cells)
    built = [c for c in cells if c["kind"] != "empty"]
    assert len(built) == 24  # six managed templates × four regions; the manual legacy one has none
    stale = {(c["template"], c["region"]) for c in built if c["kind"] == "stale"}
    assert stale == {("rhel8-golden", r) for r in ("eastus2", "northeurope", "swedencentral", "westeurope")}
    colours = {c["kind"]: c["background"] for c in built}
    assert (
        colours["stale"] == "rgb(255, 241, 194)" and colours["ok"] == "rgb(230, 244, 234)"
    )  # styles applied
    rhel = next(c for c in built if c["template"] == "rhel8-golden")
    assert "newer source 8.10.2025012011" in rhel["text"] and "open" in rhel["text"]
    child = next(c for c in built if c["template"] == "app-ubuntu2204")
    assert "from 22.04.202501150" in child["text"] and "root 22.04.202501150" in child["text"]
    gated = [c for c in built if c["template"] == "ubuntu2204-gated"]
    assert len(gated) == 4 and all("promoted" in c["text"] and c["kind"] == "ok" for c in gated)
    assert any(w.startswith(REPORT_WAVE) for w in waves)
    assert len(waves) == 4  # Ubuntu, Windows, both RHEL: a new template's first build opens no old waves
    assert any(w.startswith("8.10.2025012011: 0/1 templates, 0/4 regions") for w in waves)
    assert shot.stat().st_size > 20_000
