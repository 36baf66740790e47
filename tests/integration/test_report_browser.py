"""The security report's alarms in a real browser: a failed region and a disabled template must be
unmistakable — in colour, in words, and at the top of the page. Served through GET /api/report, with
the route's own headers (its Content-Security-Policy must let the page's styles apply)."""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rebuilder.entrypoints.http.messages import HttpResult
from tests.browser import browser_page
from tests.http_world import NEU, NEW, UBUNTU, WEU, HttpWorld, gallery_image, template_id

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output"
FAILED_CELLS = """JSON.stringify([...document.querySelectorAll('td.cell.failed')].map(td => ({
  template: td.closest('tr').dataset.template, region: td.dataset.region, text: td.innerText,
  background: getComputedStyle(td).backgroundColor, outline: getComputedStyle(td).outlineColor})))"""


def troubled_estate() -> HttpResult:
    world = HttpWorld()
    world.watch()
    world.clock.advance(hours=1)
    world.marketplace.publish(WEU, UBUNTU, NEW)
    world.watch()
    parent = world.finish("ubuntu-golden", exact=NEW)
    world.reconcile()
    world.clock.advance(minutes=15)
    world.watch()
    world.finish("app-ubuntu", exact=f"{gallery_image('ubuntu')}/versions/{parent}", failed=(NEU,))
    world.reconcile()
    stored = world.ledger.get_template_state(template_id("manual-golden"))
    assert stored is not None
    disabled = dataclasses.replace(
        stored.record, disabled=True, disabled_reason="3 consecutive failed builds"
    )
    world.ledger.save_template_state(disabled, etag=stored.etag)
    return world.call("get_report")


@pytest.fixture
def served() -> Iterator[str]:
    report = troubled_estate()
    assert report.status == 200

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(report.status)
            for name, value in report.all_headers().items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(report.body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/report"
    server.shutdown()


def test_failed_regions_and_disabled_templates_stand_out(served: str) -> None:
    with browser_page() as page:
        page.open(served)
        failed = json.loads(page.evaluate(FAILED_CELLS))
        alerts = page.evaluate("document.querySelector('#alerts').innerText")
        replicated = page.evaluate(
            "(c => c.dataset.state + ' ' + c.innerText)("
            'document.querySelector(\'tr[data-template="app-ubuntu"] td[data-region="westeurope"]\'))'
        )
        alert_box = page.evaluate("JSON.stringify(document.querySelector('#alerts').getBoundingClientRect())")
        disabled_row = page.evaluate(
            "getComputedStyle(document.querySelector('tr.disabled > th')).backgroundColor"
        )
        page.screenshot(SCREENSHOTS / "security-report-alarms.png")
    assert {(c["template"], c["region"]) for c in failed} == {("app-ubuntu", "northeurope")}
    [cell] = failed
    assert "replication failed" in cell["text"]
    assert (cell["background"], cell["outline"]) == ("rgb(255, 215, 213)", "rgb(207, 34, 46)")
    assert "manual-golden is disabled: 3 consecutive failed builds" in alerts
    assert "Replication of app-ubuntu to northeurope failed" in alerts
    assert json.loads(alert_box)["top"] < 200  # above the fold, before the waves and the matrix
    assert disabled_row == "rgb(255, 215, 213)"
    # the build is still repairing northeurope, but westeurope has its image already
    assert replicated.startswith("ok 1.0.2") and f"from {NEW}" in replicated
