"""Every HTTP route over the in-memory ports, through the same pipeline the Functions host calls:
success, each error status, and authorisation (no principal, wrong role, right role)."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from rebuilder.domain.builds import BuildReason, BuildState
from rebuilder.domain.model import Source, SourceKind
from rebuilder.entrypoints.http.messages import HttpResult
from rebuilder.entrypoints.http.routes import ROUTES
from rebuilder.services.records import open_build
from tests.http_world import (
    ADMIN,
    NEW,
    OBJECT_ID,
    READ,
    REQUEST,
    UBUNTU,
    WEU,
    HttpWorld,
    gallery_image,
    principal,
    template_id,
)
from tests.records import build

PROBLEM = "application/problem+json"
ARABIC_DIGITS = "\u0662\u0660\u0662\u0666\u0661\u0661\u0661\u0660"  # 20261110, in Arabic-Indic digits


@pytest.fixture
def world() -> HttpWorld:
    return HttpWorld()


def problem(result: HttpResult, status: int) -> dict[str, object]:
    assert result.status == status, result.body
    assert result.content_type == PROBLEM
    body = result.json()
    assert body["status"] == status and body["correlation_id"] == "corr-test-1"
    assert "Traceback" not in result.body.decode()
    return body  # type: ignore[no-any-return]


def route_args(name: str) -> dict[str, object]:
    """A valid call of each route."""
    return {
        "request_rebuild": {"method": "POST", "body": {"template": "ubuntu-golden"}},
        "get_rebuild": {"route": {"build_id": "20261110T060000Z-0123456789abcdef-0123456789"}},
        "get_template": {"route": {"name": "ubuntu-golden"}},
        "enable_template": {"method": "POST", "route": {"name": "ubuntu-golden"}},
        "promote_template": {"method": "POST", "route": {"name": "ubuntu-golden"}},
        "rollback_template": {"method": "POST", "route": {"name": "ubuntu-golden"}, "body": {"reason": "x"}},
    }.get(name, {})


ROLE_OF = {"read": READ, "request": REQUEST, "admin": ADMIN}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_every_route_needs_a_principal_and_its_role(world: HttpWorld, route: object) -> None:
    name = route.name  # type: ignore[attr-defined]
    needed = ROLE_OF[route.role]  # type: ignore[attr-defined]
    world.watch()
    writes = world.ledger.writes
    anonymous = world.call(name, auth=False, **route_args(name))  # type: ignore[arg-type]
    assert problem(anonymous, 401)["title"] == "Unauthorized"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    others = tuple(r for r in (READ, REQUEST, ADMIN) if r != needed)
    refused = world.call(name, roles=others, **route_args(name))  # type: ignore[arg-type]
    assert needed in str(problem(refused, 403)["detail"])
    assert world.ledger.writes == writes  # nothing written for a refused request
    allowed = world.call(name, roles=(needed,), **route_args(name))  # type: ignore[arg-type]
    assert allowed.status not in (401, 403), allowed.body


def test_role_names_come_from_settings(world: HttpWorld) -> None:
    custom = HttpWorld(REBUILDER_READ_ROLE="Auditors")
    assert custom.call("list_templates", roles=(READ,)).status == 403
    assert custom.call("list_templates", roles=("Auditors",)).status == 200


def test_roles_may_arrive_as_the_role_typ_claim_type(world: HttpWorld) -> None:
    role_typ = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
    header = {"X-MS-CLIENT-PRINCIPAL": principal(READ, role_typ=role_typ)}
    assert world.call("list_templates", headers=header).status == 200


@pytest.mark.parametrize(
    "header",
    [
        "not base64 at all!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b"[]").decode(),
        base64.b64encode(json.dumps({"claims": "roles"}).encode()).decode(),
        base64.b64encode(json.dumps({"claims": [{"typ": 1, "val": "x"}]}).encode()).decode(),
        base64.b64encode(json.dumps({"claims": []}).encode()).decode(),
        "A" * 20_000,
    ],
)
def test_an_unreadable_principal_is_unauthorized(world: HttpWorld, header: str) -> None:
    problem(world.call("list_templates", headers={"X-MS-CLIENT-PRINCIPAL": header}), 401)


# -- POST /api/rebuilds ----------------------------------------------------------------------------------
def test_a_rebuild_request_is_accepted_with_the_build_and_its_location(world: HttpWorld) -> None:
    world.watch()
    answer = world.call(
        "request_rebuild",
        method="POST",
        body={"template": "ubuntu-golden", "reason": "CVE-2026-0001 hotfix"},
        headers={"Idempotency-Key": "chg-42"},
        roles=(REQUEST, READ),
    )
    assert answer.status == 202
    document = answer.json()
    build_id = document["build"]["id"]
    assert answer.headers["Location"] == f"https://rebuilder.example.net/api/rebuilds/{build_id}"
    assert (document["created"], document["joined"], document["replayed"]) == (True, False, False)
    stored = world.ledger.get_build(build_id).record
    assert stored.reason is BuildReason.ON_DEMAND and stored.state is BuildState.RUNNING
    assert (stored.provenance.caller, stored.provenance.caller_id) == ("ana@contoso.com", OBJECT_ID)
    assert stored.provenance.note == "CVE-2026-0001 hotfix"
    assert (stored.provenance.trigger, stored.provenance.correlation_id) == ("http", "corr-test-1")
    assert (
        "requested by ana@contoso.com: CVE-2026-0001 hotfix" in world.ledger.list_transitions(build_id)[0].why
    )


def test_the_same_idempotency_key_replays_the_same_build_and_writes_only_its_trace(world: HttpWorld) -> None:
    world.watch()
    call = {"method": "POST", "body": {"template": "ubuntu-golden"}, "headers": {"Idempotency-Key": "k-1"}}
    first = world.call("request_rebuild", roles=(REQUEST,), **call).json()  # type: ignore[arg-type]
    writes = world.ledger.writes
    again = world.call("request_rebuild", roles=(REQUEST,), **call)  # type: ignore[arg-type]
    assert again.status == 202
    assert again.json()["build"]["id"] == first["build"]["id"]
    assert again.json()["replayed"] is True and again.json()["created"] is False
    assert world.ledger.writes == writes + 1  # the replay's audit row (issue 22, API 5), nothing else
    trail = {a.action: a for a in world.ledger.list_actions(template_id("ubuntu-golden")).items}
    replayed = trail["rebuild-replayed"]
    assert (replayed.by_id, replayed.correlation_id) == (OBJECT_ID, "corr-test-1")
    assert first["build"]["id"] in replayed.changed
    assert world.imagebuilder.runs_started == {world.imagebuilder._key(template_id("ubuntu-golden")): 1}


def test_a_request_while_a_build_is_open_joins_it_and_a_replay_answers_with_that_build(
    world: HttpWorld,
) -> None:
    world.watch()
    first = world.call("request_rebuild", method="POST", body={"template": "ubuntu-golden"}, roles=(REQUEST,))
    joined = world.call(
        "request_rebuild",
        method="POST",
        body={"template": "ubuntu-golden"},
        headers={"Idempotency-Key": "late"},
        roles=(REQUEST,),
    )
    assert joined.status == 202 and joined.json()["joined"] is True
    assert joined.json()["build"]["id"] == first.json()["build"]["id"]
    # the build joined may be somebody else's: without the read role, who asked and why stay hidden
    assert "provenance" not in joined.json()["build"] and joined.json()["build"]["state"] == "Running"
    replay = world.call(
        "request_rebuild",
        method="POST",
        body={"template": "ubuntu-golden"},
        headers={"Idempotency-Key": "late"},
        roles=(REQUEST,),
    )
    assert replay.json()["build"]["id"] == first.json()["build"]["id"] and replay.json()["replayed"]
    # the join is recorded on the build it joined, not as a build of its own (issue 22, API 9)
    assert len(world.ledger.list_builds(template_id("ubuntu-golden")).items) == 1
    actions = sorted(a.action for a in world.ledger.list_actions(template_id("ubuntu-golden")).items)
    assert actions == ["rebuild-joined", "rebuild-replayed", "rebuild-requested"]


def test_a_request_an_open_build_cannot_take_is_refused_with_that_build(world: HttpWorld) -> None:
    world.watch()
    pinned = dataclasses.replace(
        world.imagebuilder.get_template(template_id("ubuntu-golden")),
        source=Source(SourceKind.PLATFORM_IMAGE, UBUNTU, NEW),
    )
    world.imagebuilder.add_template(pinned)  # the template now pins a newer version than the open build
    older = build("ubuntu-golden", key="source-update:old", version="22.04.202411190", template_id=pinned.id)
    open_build(
        world.ledger,
        dataclasses.replace(older, created_at=world.clock.now()),
        why="x",
        by="t",
        now=world.clock.now(),
    )
    writes = world.ledger.writes
    refused = world.call(
        "request_rebuild", method="POST", body={"template": "ubuntu-golden"}, roles=(REQUEST,)
    )
    body = problem(refused, 409)
    assert body["build"]["id"] == older.id  # type: ignore[index]
    assert "provenance" not in body["build"]  # type: ignore[operator]
    assert world.ledger.writes == writes


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        ({"template": "no-such-template"}, {}, 404, "no image template named"),
        ({"template": "sandbox"}, {}, 422, "not managed"),
        ({"template": "ubuntu golden"}, {}, 400, "image template name"),
        ({"template": "x", "extra": 1}, {}, 400, "unknown field"),
        ({}, {}, 400, "missing field"),
        ({"template": 7}, {}, 400, "must be a str"),
        ({"template": "ubuntu-golden", "reason": "line\nbreak"}, {}, 400, "printable"),
        ({"template": "ubuntu-golden", "reason": "x" * 501}, {}, 400, "at most 500"),
        ({"template": "ubuntu-golden"}, {"Idempotency-Key": "has space"}, 400, "Idempotency-Key"),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400, "JSON object"),
        (b'{"template": "a", "template": "b"}', {"Content-Type": "application/json"}, 400, "appears twice"),
        (b'{"template": NaN}', {"Content-Type": "application/json"}, 400, "not valid JSON"),
        (b"\xff\xfe", {"Content-Type": "application/json"}, 400, "not valid JSON"),
        (b'{"template": "ubuntu-golden"}', {"Content-Type": "text/plain"}, 415, "application/json"),
        (b"{" + b" " * 17_000 + b"}", {"Content-Type": "application/json"}, 413, "larger than"),
        (
            {"template": "/subscriptions/99999999-2222-3333-4444-555555555555/resourceGroups/rg/providers/"
             "Microsoft.VirtualMachineImages/imageTemplates/elsewhere"},
            {},
            404,
            "configured scopes",
        ),
    ],
)  # fmt: skip
def test_a_bad_rebuild_request_is_refused_and_writes_nothing(
    world: HttpWorld, body: object, headers: dict[str, str], status: int, says: str
) -> None:
    world.watch()
    writes = world.ledger.writes
    refused = world.call("request_rebuild", method="POST", body=body, headers=headers, roles=(REQUEST,))  # type: ignore[arg-type]
    assert says in str(problem(refused, status)["detail"])
    assert world.ledger.writes == writes


def test_a_rebuild_by_resource_id_and_of_a_manual_template(world: HttpWorld) -> None:
    world.watch()
    by_id = world.call(
        "request_rebuild", method="POST", body={"template": template_id("manual-golden")}, roles=(REQUEST,)
    )
    assert (
        by_id.status == 202 and by_id.json()["build"]["template"] == "manual-golden"
    )  # on demand is what manual is for


# -- GET /api/rebuilds/{build_id} -------------------------------------------------------------------------
def test_one_build_with_its_regions_and_transitions(world: HttpWorld) -> None:
    world.patch_day()
    [golden] = world.ledger.list_builds(template_id("ubuntu-golden")).items
    shown = world.call("get_rebuild", route={"build_id": golden.id})
    assert shown.status == 200
    document = shown.json()
    assert document["state"] == "Published" and document["root_version"] == NEW
    assert [r["region"] for r in document["regions"]] == ["northeurope", "westeurope"]
    assert document["transitions"][0]["to"] == "Queued"
    assert problem(world.call("get_rebuild", route={"build_id": "nope"}), 400)["title"] == "Not a build id"
    missing = "20991231T000000Z-0123456789abcdef-0123456789"
    problem(world.call("get_rebuild", route={"build_id": missing}), 404)


# -- GET /api/templates, /api/templates/{name} ----------------------------------------------------------
def test_templates_show_each_region_with_versions_lineage_and_exposure(world: HttpWorld) -> None:
    world.patch_day()
    listed = world.call("list_templates")
    assert listed.status == 200
    templates = {t["name"]: t for t in listed.json()["templates"]}
    child = templates["app-ubuntu"]
    assert child["child"] is True and child["parents"] == ["ubuntu-golden"]
    assert child["last_build"]["lineage"]["root_version"] == NEW
    cells = {c["region"]: c for c in child["regions"]}
    assert set(cells) == {"westeurope", "northeurope"}
    weu = cells["westeurope"]
    assert (weu["image_version"], weu["root_version"], weu["stale"]) == ("1.0.2", NEW, False)
    assert weu["exposure"]["basis"] == "root" and weu["direct_exposure"]["basis"] == "direct"
    # measured from the root Ubuntu version's first sighting, so longer than the direct window
    assert weu["exposure"]["hours"] > weu["direct_exposure"]["hours"]
    [wave] = listed.json()["waves"]
    assert wave["summary"].startswith(f"{NEW}: 2/2 templates (1 child), 4/4 regions")


def test_one_template_with_builds_windows_and_audit_trail(world: HttpWorld) -> None:
    world.patch_day()
    shown = world.call("get_template", route={"name": "app-ubuntu"})
    assert shown.status == 200
    document = shown.json()
    assert [b["template"] for b in document["builds"]] == ["app-ubuntu"]
    assert {w["basis"] for w in document["windows"]} == {"direct", "root"}
    assert document["actions"] == []
    problem(world.call("get_template", route={"name": "nothing-here"}), 404)
    problem(world.call("get_template", route={"name": "bad name!"}), 400)
    problem(world.call("get_template", route={"name": "app-ubuntu"}, params={"x": "1"}), 400)


# -- POST /api/templates/{name}/enable --------------------------------------------------------------------
def test_enabling_a_disabled_template_is_recorded_with_who(world: HttpWorld) -> None:
    world.watch()
    stored = world.ledger.get_template_state(template_id("ubuntu-golden"))
    assert stored is not None
    disabled = dataclasses.replace(
        stored.record, disabled=True, disabled_reason="3 failures", consecutive_failures=3
    )
    world.ledger.save_template_state(disabled, etag=stored.etag)
    answer = world.call(
        "enable_template",
        method="POST",
        route={"name": "ubuntu-golden"},
        body={"reason": "fixed"},
        roles=(ADMIN, READ),
    )
    assert answer.status == 200 and answer.json()["was_disabled"] is True
    assert answer.json()["template"]["disabled"] is False
    [action] = world.ledger.list_actions(template_id("ubuntu-golden")).items
    assert (action.action, action.by, action.by_id) == ("enabled", "ana@contoso.com", OBJECT_ID)
    assert action.why.endswith(": fixed")
    again = world.call("enable_template", method="POST", route={"name": "ubuntu-golden"}, roles=(ADMIN, READ))
    assert again.json()["was_disabled"] is False
    assert len(world.ledger.list_actions(template_id("ubuntu-golden")).items) == 1
    shown = world.call("get_template", route={"name": "ubuntu-golden"}).json()
    assert shown["actions"][0]["by"] == "ana@contoso.com"
    problem(world.call("enable_template", method="POST", route={"name": "ghost"}, roles=(ADMIN, READ)), 404)
    bad = world.call(
        "enable_template",
        method="POST",
        route={"name": "ubuntu-golden"},
        body={"why": "x"},
        roles=(ADMIN, READ),
    )
    problem(bad, 400)


# -- POST /api/templates/{name}/promote and /rollback ----------------------------------------------------
def gated_release(world: HttpWorld) -> tuple[str, str]:
    """A manually promoted gated template with one candidate: (the template, the candidate's version)."""
    ubuntu = Source(SourceKind.PLATFORM_IMAGE, UBUNTU, "latest", exact_version="22.04.202411190")
    world.add("ubuntu-gated", ubuntu, "gated", mode="auto", gated=True, **{"rebuild-promote": "manual"})
    world.watch()
    world.clock.advance(hours=1)
    world.marketplace.publish(WEU, UBUNTU, NEW)
    world.watch()
    version = world.finish("ubuntu-gated", exact=NEW)
    world.reconcile()  # replicated: provenance tags sent
    world.reconcile()  # read back: a candidate
    return "ubuntu-gated", version


def test_promoting_a_candidate_is_recorded_with_who_and_changes_latest(world: HttpWorld) -> None:
    name, version = gated_release(world)
    [candidate] = world.ledger.list_builds(template_id(name)).items
    assert candidate.state is BuildState.CANDIDATE
    version_id = f"{gallery_image('gated')}/versions/{version}"
    assert world.gallery.get_version(version_id, with_replication=False).excluded_from_latest
    wrong = world.call(
        "promote_template",
        method="POST",
        route={"name": name},
        body={"version": "9.9.9"},
        roles=(ADMIN, READ),
    )
    assert "no candidate 9.9.9 of ubuntu-gated awaits promotion" in str(problem(wrong, 404)["detail"])
    bad = world.call(
        "promote_template",
        method="POST",
        route={"name": name},
        body={"version": "latest"},
        roles=(ADMIN, READ),
    )
    assert "Major.Minor.Patch" in str(problem(bad, 400)["detail"])
    answer = world.call(
        "promote_template",
        method="POST",
        route={"name": name},
        body={"version": version, "reason": "smoke tests green"},
        roles=(ADMIN, READ),
    )
    assert answer.status == 200, answer.body
    shown = answer.json()
    assert (shown["promoted"], shown["build"]["state"]) == (False, "Candidate")  # sent, not read back
    assert any("Promoted once a read shows it" in w for w in shown["waiting"])
    assert shown["build"]["approved_by"] == "ana@contoso.com"
    assert world.gallery.get_version(version_id, with_replication=False).excluded_everywhere(False)
    world.reconcile()  # the next pass reads the promotion back
    [promoted] = world.ledger.list_builds(template_id(name)).items
    assert promoted.state is BuildState.PROMOTED and promoted.claim == ""
    [notice] = [n for n in world.notifier.published if n.type == "ImagePromoted"]
    assert notice.data["approvedBy"] == "ana@contoso.com" and notice.data["buildId"] == shown["build"]["id"]
    [action] = world.ledger.list_actions(template_id(name)).items
    assert (action.action, action.by, action.by_id) == ("promotion-approved", "ana@contoso.com", OBJECT_ID)
    assert "smoke tests green" in action.why
    again = world.call("promote_template", method="POST", route={"name": name}, roles=(ADMIN, READ))
    assert "awaits promotion" in str(problem(again, 404)["detail"])


def test_a_promotion_approved_while_baking_waits_and_says_until_when(world: HttpWorld) -> None:
    ubuntu = Source(SourceKind.PLATFORM_IMAGE, UBUNTU, "latest", exact_version="22.04.202411190")
    tags = {"rebuild-promote": "manual", "rebuild-bake-hours": "12"}
    world.add("ubuntu-gated", ubuntu, "gated", mode="auto", gated=True, **tags)
    world.watch()
    world.marketplace.publish(WEU, UBUNTU, NEW)
    world.watch()
    world.finish("ubuntu-gated", exact=NEW)
    world.reconcile()
    world.reconcile()
    answer = world.call(
        "promote_template", method="POST", route={"name": "ubuntu-gated"}, roles=(ADMIN, READ)
    )
    shown = answer.json()
    assert answer.status == 200 and shown["promoted"] is False and shown["build"]["state"] == "Candidate"
    assert shown["build"]["approved_by"] == "ana@contoso.com"
    assert "baking until" in shown["waiting"][0]
    world.clock.advance(hours=12)
    world.reconcile()  # approved and baked: the pass promotes it
    world.reconcile()  # and reads it back
    [promoted] = world.ledger.list_builds(template_id("ubuntu-gated")).items
    assert promoted.state is BuildState.PROMOTED


def test_a_rollback_revokes_the_current_image_and_says_which_is_latest_again(world: HttpWorld) -> None:
    world.patch_day()  # ubuntu-golden: the first-sight baseline was adopted; its patch-day build published
    builds = world.ledger.list_builds(template_id("ubuntu-golden")).items
    published = [b for b in builds if b.state is BuildState.PUBLISHED]
    assert "no earlier version to fall back to" in str(
        problem(
            world.call(
                "rollback_template",
                method="POST",
                route={"name": "ubuntu-golden"},
                body={"reason": "boot loop"},
                roles=(ADMIN, READ),
            ),
            409,
        )["detail"]
    )
    assert len(published) == 1
    for body in ({}, {"reason": "   "}, {"reason": "x", "version": "1.0.1"}):
        refused = world.call(
            "rollback_template",
            method="POST",
            route={"name": "ubuntu-golden"},
            body=body,
            roles=(ADMIN, READ),
        )
        problem(refused, 400)
    assert world.ledger.list_actions(template_id("ubuntu-golden")).items == []


def test_a_rollback_over_http_demotes_the_version_and_records_who_and_why(world: HttpWorld) -> None:
    name, first = gated_release(world)
    world.call("promote_template", method="POST", route={"name": name}, roles=(ADMIN, READ))
    world.reconcile()  # the promotion read back
    world.clock.advance(days=1)
    world.marketplace.publish(WEU, UBUNTU, "22.04.202502110")
    world.watch()
    second = world.finish(name, exact="22.04.202502110")
    world.reconcile()
    world.reconcile()
    world.call("promote_template", method="POST", route={"name": name}, roles=(ADMIN, READ))
    world.reconcile()
    answer = world.call(
        "rollback_template",
        method="POST",
        route={"name": name},
        body={"reason": "kernel panic on v5 hosts"},
        roles=(ADMIN, READ),
    )
    assert answer.status == 200, answer.body
    shown = answer.json()
    assert shown["revoked"]["state"] == "Revoked" and shown["revoked"]["outputs"][0].endswith(second)
    assert shown["latest"]["outputs"][0].endswith(first)
    assert shown["revoked"]["message"] == "revoked by ana@contoso.com: kernel panic on v5 hosts"
    image = gallery_image("gated")

    def excluded(version: str) -> bool:
        read = world.gallery.get_version(f"{image}/versions/{version}", with_replication=False)
        return read.excluded_from_latest

    assert excluded(second) and not excluded(first)
    [notice] = [n for n in world.notifier.published if n.type == "ImageRevoked"]
    assert notice.data["resourceUri"].endswith(f"/versions/{second}")
    assert notice.data["fallbackResourceUri"].endswith(f"/versions/{first}")
    assert notice.data["message"] == "revoked by ana@contoso.com: kernel panic on v5 hosts"
    actions = [a.action for a in world.ledger.list_actions(template_id(name)).items]
    assert actions.count("rolled-back") == 1
    state = world.ledger.get_template_state(template_id(name))
    assert state is not None and state.record.revoked[-1] == (shown["revoked"]["id"], second)


# -- GET /api/builds ----------------------------------------------------------------------------------
def seed_history(world: HttpWorld, count: int) -> list[str]:
    """`count` builds over two templates, an hour apart, newest last (after the first watch pass,
    so the templates have their rows, as the `template` filter needs)."""
    world.watch()
    made = []
    for i in range(count):
        name = ("ubuntu-golden", "app-ubuntu")[i % 2]
        at = world.clock.now() + timedelta(hours=i)
        reason = BuildReason.ON_DEMAND if i % 3 == 0 else BuildReason.SOURCE_UPDATE
        b = build(name, key=f"k{i}", at=at, template_id=template_id(name), reason=reason)
        made.append(world.ledger.claim_build(b, why="seeded", by="test").build.record.id)
    return made


def follow(world: HttpWorld, params: dict[str, str]) -> tuple[list[str], int]:
    seen, pages = [], 0
    while True:
        page = world.call("list_builds", params=params)
        assert page.status == 200, page.body
        pages += 1
        seen += [b["id"] for b in page.json()["builds"]]
        link = page.json()["next"]
        if link is None:
            assert "Link" not in page.headers
            return seen, pages
        assert page.headers["Link"] == f'<{link}>; rel="next"'
        params = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}


def test_history_pages_through_every_build_newest_first(world: HttpWorld) -> None:
    made = seed_history(world, 11)
    seen, pages = follow(world, {"limit": "4"})
    assert seen == list(reversed(made)) and pages == 3


def test_history_filters_by_template_reason_state_and_time(world: HttpWorld) -> None:
    made = seed_history(world, 12)
    start = world.clock.now()
    seen, _ = follow(world, {"template": "app-ubuntu", "limit": "2"})
    assert seen == [b for i, b in reversed(list(enumerate(made))) if i % 2 == 1]
    on_demand, _ = follow(world, {"reason": "on-demand", "limit": "3"})
    assert on_demand == [b for i, b in reversed(list(enumerate(made))) if i % 3 == 0]
    ranged, _ = follow(
        world,
        {
            "since": (start + timedelta(hours=3)).isoformat(),
            "until": (start + timedelta(hours=6)).isoformat(),
        },
    )
    assert ranged == [made[5], made[4], made[3]]
    assert follow(world, {"state": "Published"})[0] == []
    assert len(follow(world, {"state": "queued,Running"})[0]) == 12


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"state": "Exploded"}, "state"),
        ({"reason": "whim"}, "reason"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-11-10T06:00:00"}, "offset"),
        ({"since": "2026-11-11T00:00:00Z", "until": "2026-11-10T00:00:00Z"}, "before"),
        ({"format": "xml"}, "format"),
        ({"template": "x'; DROP TABLE--"}, "template"),
        ({"continuation": "forged"}, "continuation"),
        ({"page": "2"}, "unknown query parameter"),
    ],
)
def test_bad_history_queries_are_refused(world: HttpWorld, params: dict[str, str], says: str) -> None:
    seed_history(world, 2)
    assert says in str(problem(world.call("list_builds", params=params), 400)["detail"])


def test_a_continuation_token_is_bound_to_its_query(world: HttpWorld) -> None:
    seed_history(world, 6)
    first = world.call("list_builds", params={"limit": "2"}).json()
    token = parse_qs(urlsplit(first["next"]).query)["continuation"][0]
    other = world.call("list_builds", params={"limit": "2", "reason": "on-demand", "continuation": token})
    assert "another query" in str(problem(other, 400)["detail"])


def test_history_as_csv_and_jsonl(world: HttpWorld) -> None:
    world.patch_day()
    csv = world.call("list_builds", params={"format": "csv"})
    assert csv.status == 200 and csv.content_type == "text/csv"
    lines = csv.body.decode().splitlines()
    assert lines[0].startswith('"build_id","template","template_id","reason","trigger","caller"')
    assert any("app-ubuntu" in line and NEW in line for line in lines[1:])
    jsonl = world.call("list_builds", params={"format": "jsonl"})
    documents = [json.loads(line) for line in jsonl.body.decode().splitlines()]
    assert {d["template"] for d in documents} == {"ubuntu-golden", "app-ubuntu"}
    assert all(d["transitions"] and d["regions"] for d in documents)


# -- GET /api/plan, /api/report, /api/openapi.json ------------------------------------------------------
def test_the_plan_is_the_cli_plan(world: HttpWorld) -> None:
    world.watch()
    world.marketplace.publish(WEU, UBUNTU, NEW)
    plan = world.call("get_plan").json()
    actions = {t["name"]: t["action"] for t in plan["templates"]}
    assert actions["ubuntu-golden"] == "rebuild" and actions["manual-golden"] == "none"
    assert plan["ignored"][0]["id"].endswith("/sandbox")


def test_the_report_is_html_under_a_strict_content_security_policy(world: HttpWorld) -> None:
    world.patch_day()
    report = world.call("get_report")
    assert report.status == 200 and report.content_type == "text/html"
    assert report.headers["Content-Security-Policy"].startswith("default-src 'none'")
    page = report.body.decode()
    assert "22.04.202501150: 2/2 templates (1 child)" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page and "<link" not in page


def test_the_health_route_tells_only_the_status(world: HttpWorld) -> None:
    from rebuilder.entrypoints.http.messages import ApiRequest
    from rebuilder.entrypoints.http.routes import serve_health

    ok = serve_health(ApiRequest("GET", "https://x/api/health"), lambda: world.services)
    assert (ok.status, ok.json()) == (200, {"status": "ok"})


def test_what_people_wrote_reaches_the_report_escaped(world: HttpWorld) -> None:
    world.watch()
    hostile = '<img src=x onerror="alert(1)"> & <script>alert(2)</script>'
    asked = world.call(
        "request_rebuild",
        method="POST",
        body={"template": "ubuntu-golden", "reason": hostile},
        roles=(REQUEST,),
    )
    assert asked.status == 202
    page = world.call("get_report").body.decode()
    assert (
        "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; &lt;script&gt;alert(2)&lt;/script&gt;" in page
    )
    assert "<img" not in page and "<script" not in page


def test_hostile_values_reach_the_log_escaped(world: HttpWorld, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="rebuilder.http")
    forged = "ghost\r\n2026-11-10 INFO rebuilder.http enable_template answered 200"
    refused = world.call("request_rebuild", method="POST", body={"template": forged}, roles=(REQUEST,))
    problem(refused, 400)
    world.call("get_template", route={"name": "x"}, params={forged: "1"})
    lines = [r.getMessage() for r in caplog.records if r.name == "rebuilder.http"]
    assert lines and all("\n" not in line and "\r" not in line for line in lines)
    assert any("\\x0d\\x0a" in line or "\\r\\n" in line for line in lines)


def test_a_function_key_sent_as_code_is_the_hosts_and_stays_out_of_links(world: HttpWorld) -> None:
    seed_history(world, 3)
    page = world.call("list_builds", params={"code": "secret-key", "limit": "1"})
    assert page.status == 200
    assert "secret-key" not in page.json()["next"] and "secret-key" not in page.headers["Link"]


def test_a_resource_group_tells_apart_templates_of_the_same_name(world: HttpWorld) -> None:
    world.watch()
    shown = world.call(
        "get_template", route={"name": "ubuntu-golden"}, params={"resource_group": "RG-IMAGES"}
    )
    assert shown.status == 200 and shown.json()["id"] == template_id("ubuntu-golden")
    elsewhere = world.call(
        "get_template", route={"name": "ubuntu-golden"}, params={"resource_group": "rg-other"}
    )
    problem(elsewhere, 404)
    problem(
        world.call("get_template", route={"name": "ubuntu-golden"}, params={"resource_group": "a/b"}), 400
    )


@pytest.mark.parametrize(
    ("route", "args", "status"),
    [
        ("get_rebuild", {"route": {"build_id": "20261340T070000Z-0123456789abcdef-0123456789"}}, 400),
        ("get_rebuild", {"route": {"build_id": "00001110T070000Z-0123456789abcdef-0123456789"}}, 400),
        (
            "get_rebuild",
            {"route": {"build_id": ARABIC_DIGITS + "T070000Z-0123456789abcdef-0123456789"}},
            400,
        ),
        ("get_rebuild", {"route": {"build_id": "20261110T070000Z-0123456789abcdef-0123456789\n"}}, 400),
        ("get_template", {"route": {"name": "ubuntu-golden\n"}}, 400),
        ("list_builds", {"params": {"since": "0001-01-01T00:00:00+01:00"}}, 400),
        ("list_builds", {"params": {"until": "9999-12-31T23:59:59-01:00"}}, 400),
        ("list_builds", {"params": {"until": "1960-01-01T00:00:00Z"}}, 400),
        ("list_builds", {"params": {"limit": "9" * 5000}}, 400),
        ("list_templates", {"headers": {"X-MS-CLIENT-PRINCIPAL": ""}}, 401),
    ],
)
def test_edge_values_are_refused_not_failed(
    world: HttpWorld, route: str, args: dict[str, object], status: int
) -> None:
    world.watch()
    problem(world.call(route, **args), status)  # type: ignore[arg-type]


def test_a_deeply_nested_principal_is_unauthorized(world: HttpWorld) -> None:
    nested = base64.b64encode(("[" * 100_000 + "]" * 100_000).encode()).decode()[:16_000]
    deep = base64.b64encode(b'{"claims": ' + b"[" * 5000 + b"]" * 5000 + b"}").decode()
    for header in (nested, deep):
        problem(world.call("list_templates", headers={"X-MS-CLIENT-PRINCIPAL": header}), 401)


def test_without_app_service_authentication_no_principal_is_trusted() -> None:
    unprotected = HttpWorld(WEBSITE_AUTH_ENABLED="False")
    refused = unprotected.call("list_templates", roles=(READ, REQUEST, ADMIN))
    assert "App Service Authentication" in str(problem(refused, 503)["detail"])


def test_an_unreadable_retry_hint_from_azure_still_answers_503() -> None:
    from rebuilder.domain.errors import TemporaryError
    from rebuilder.entrypoints.http.problems import from_error

    for delay in (float("nan"), float("inf"), -5.0, 1e12):
        answer = from_error(TemporaryError("throttled", delay=delay), "corr")
        assert answer.status == 503 and 1 <= int(answer.headers["Retry-After"]) <= 3600


def test_the_plan_at_another_time_and_the_next_due_time_of_every_template() -> None:
    world = HttpWorld(REBUILDER_DEFAULT_PATCH_DAY="+2")  # November 2026: Thursday the 12th
    world.watch()
    ahead = world.call("get_plan", params={"at": "2026-12-10T03:00:00Z"}).json()
    assert ahead["at"] == "2026-12-10T03:00:00+00:00"
    ubuntu = {t["name"]: t for t in ahead["templates"]}["ubuntu-golden"]
    assert (ubuntu["action"], ubuntu["due"]) == ("rebuild", "patch-day")
    assert "patch day 2026-12 (Patch Tuesday +2: 2026-12-10)" in ubuntu["reason"]
    assert ubuntu["policies"] == "patch day +2"
    today = {t["name"]: t for t in world.call("get_plan").json()["templates"]}["ubuntu-golden"]
    assert (today["action"], today["next_due_at"]) == ("none", "2026-11-12T00:00:00+00:00")
    assert world.ledger.list_builds(template_id("ubuntu-golden")).items == []  # a what-if claims nothing
    listed = {t["name"]: t for t in world.call("list_templates").json()["templates"]}
    assert listed["ubuntu-golden"]["next_due_at"] == "2026-11-12T00:00:00+00:00"
    assert listed["ubuntu-golden"]["next_due_why"] == "patch day 2026-11 (Patch Tuesday +2)"
    assert listed["manual-golden"]["next_due_why"] == "manual: rebuilt on request only"
    assert "next due 2026-11-12 00:00: patch day 2026-11" in world.call("get_report").body.decode()


@pytest.mark.parametrize("at", ["tomorrow", "2026-12-10T03:00:00", "1969-12-31T00:00:00Z"])
def test_a_bad_plan_time_is_refused(world: HttpWorld, at: str) -> None:
    assert "at" in str(problem(world.call("get_plan", params={"at": at}), 400)["detail"])


def test_the_views_show_candidates_promotions_revocations_and_what_was_built_on_them(
    world: HttpWorld,
) -> None:
    name, version = gated_release(world)

    def regions(template: str) -> list[dict[str, object]]:
        listed = world.call("list_templates").json()["templates"]
        [found] = [t for t in listed if t["name"] == template]
        return found["regions"]  # type: ignore[no-any-return]

    listed = world.call("get_template", route={"name": name}).json()
    assert listed["awaiting_promotion"]["version"] == version
    assert {c["candidate_version"] for c in regions(name)} == {version}
    assert {c["image_version"] for c in regions(name)} == {None}  # a candidate is nobody's image yet
    world.call("promote_template", method="POST", route={"name": name}, roles=(ADMIN, READ))
    world.reconcile()  # the promotion read back
    assert {(c["image_version"], c["promoted"], c["candidate_version"]) for c in regions(name)} == {
        (version, True, None)
    }
    # an ungated parent rolled back: its regions stand on the previous image; its child is flagged
    world.patch_day()
    world.clock.advance(days=1)
    world.marketplace.publish(WEU, UBUNTU, "22.04.202502110")
    world.watch()
    bad = world.finish("ubuntu-golden", exact="22.04.202502110")
    world.reconcile()
    world.reconcile()
    world.clock.advance(minutes=15)
    world.watch()
    world.finish("app-ubuntu", exact=f"{gallery_image('ubuntu')}/versions/{bad}")
    world.reconcile()
    world.reconcile()
    answer = world.call(
        "rollback_template",
        method="POST",
        route={"name": "ubuntu-golden"},
        body={"reason": "panic"},
        roles=(ADMIN, READ),
    )
    assert answer.status == 200, answer.body
    back = answer.json()["latest"]["outputs"][0].rsplit("/", 1)[-1]
    cells = regions("ubuntu-golden")
    assert {(c["image_version"], c["revoked_version"]) for c in cells} == {(back, bad)}
    state = world.ledger.get_template_state(template_id("ubuntu-golden"))
    assert state is not None and {r.image_version.rsplit("/", 1)[-1] for r in state.record.regions} == {back}
    assert state.record.baseline_version == "22.04.202502110"  # not rebuilt from the same source by itself
    listed = world.call("list_templates").json()["templates"]
    [child] = [t for t in listed if t["name"] == "app-ubuntu"]
    assert child["built_on_revoked"] == f"built on revoked ubuntu-golden {bad}"
    page = world.call("get_report").body.decode()
    assert (
        f"revoked {bad}: rolled back" in page
        and f"app-ubuntu is built on revoked ubuntu-golden {bad}" in page
    )
