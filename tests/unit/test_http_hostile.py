"""Hostile requests at every handler (DESIGN §7): generated bodies, headers, query strings, route
parameters and principals — well over 10,000 of them across the tests below. Whatever arrives, the
answer is never a 5xx, every refusal is problem+json, and a refused request writes nothing to the
ledger (counted on the in-memory ledger, which records every write)."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rebuilder.entrypoints.http.messages import ApiRequest, HttpResult
from rebuilder.entrypoints.http.routes import ROUTES, serve
from tests.http_world import ADMIN, READ, REQUEST, HttpWorld, principal, template_id

WORLD = HttpWorld()
WORLD.patch_day()
BUILD_ID = WORLD.ledger.list_builds(template_id("ubuntu-golden")).items[0].id
EXAMPLES = 2_100  # × 5 tests: 10,500 requests
FAST = settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow], deadline=None)

NASTY = st.sampled_from(
    [
        "",
        " ",
        "'",
        "''",
        '"',
        "x' or PartitionKey ne '",
        "PartitionKey eq 'template'",
        "ubuntu-golden' or '1' eq '1",
        "ubuntu-golden",
        "app-ubuntu",
        "manual-golden",
        "sandbox",
        "../../etc/passwd",
        "%00",
        "\x00",
        "\r\nX-Injected: 1",
        "<script>alert(1)</script>",
        "=cmd|' /C calc'!A0",
        "😀" * 3,
        "a" * 300,
        "ü" * 70,
        "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-images/providers/"
        "Microsoft.VirtualMachineImages/imageTemplates/ubuntu-golden",
        "/subscriptions/x/resourceGroups/y",
        BUILD_ID,
        BUILD_ID.upper(),
        "20261110T060000Z-0123456789abcdef-0123456789",
        "20261340T070000Z-0123456789abcdef-0123456789",
        "00001110T070000Z-0123456789abcdef-0123456789",
        BUILD_ID + "\n",
        "ubuntu-golden\n",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "1960-01-01T00:00:00Z",
        "9" * 5000,
        "2026-11-10T06:00:00Z",
        "2026-13-45T99:99:99Z",
        "-1",
        "0",
        "200",
        "1e9",
        "Published,Failed",
        "on-demand",
        "csv",
        "jsonl",
        # issue 22: subscriptions, ASCII-only folding, keys reused
        "11111111-2222-3333-4444-555555555555",
        "99999999-8888-7777-6666-555555555555",
        "11111111-2222-3333-4444-55555555555G",
        "rg-\u212a",
        "RG-IMAGES",
        "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-\u212a/providers/"
        "Microsoft.VirtualMachineImages/imageTemplates/ubuntu-golden",
        "chg-4711",
        "request:chg-4711#2",
    ]
)
TEXT = st.one_of(NASTY, st.text(max_size=80))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def _encoded(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


PRINCIPALS = st.one_of(
    st.none(),
    st.lists(st.sampled_from([READ, REQUEST, ADMIN, "Ledger.read", "Admin", ""]), max_size=3).map(
        lambda roles: principal(*roles)
    ),
    st.just(principal(READ, REQUEST, ADMIN)),
    TEXT,
    JSON_VALUES.map(_encoded),
    st.lists(st.fixed_dictionaries({"typ": TEXT, "val": TEXT}), max_size=5).map(
        lambda claims: _encoded({"claims": claims, "role_typ": "roles"})
    ),
    st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
    # the same roles from another caller (a key reused) or from another identity provider
    st.sampled_from(["aad", "google", "AAD", "", "github"]).map(
        lambda provider: _encoded(
            {**json.loads(base64.b64decode(principal(READ, REQUEST, ADMIN, oid="eve"))), "auth_typ": provider}
        )
    ),
)
BODIES = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"template": JSON_VALUES}, optional={"reason": JSON_VALUES, "extra": JSON_VALUES}
    ).map(lambda d: json.dumps(d).encode()),
    st.fixed_dictionaries({"template": TEXT}, optional={"reason": TEXT}).map(
        lambda d: json.dumps(d).encode()
    ),
    st.integers(16_000, 20_000).map(lambda n: b'{"template": "' + b"a" * n + b'"}'),
    st.fixed_dictionaries({}, optional={"version": TEXT, "reason": TEXT, "dryRun": JSON_VALUES}).map(
        lambda d: json.dumps(d).encode()
    ),
)
AUTHORISED = st.just(principal(READ, REQUEST, ADMIN))
# Half the callers get past authorisation, so the handlers behind it meet the hostile input too.
CALLERS = st.booleans().flatmap(lambda signed_in: AUTHORISED if signed_in else PRINCIPALS)
KNOWN_PARAMS = [
    "template",
    "state",
    "reason",
    "since",
    "until",
    "limit",
    "continuation",
    "format",
    "resource_group",
    "subscription",
    "at",
]
PARAMS = st.one_of(
    st.just({}),
    st.dictionaries(st.sampled_from(KNOWN_PARAMS), TEXT, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(KNOWN_PARAMS), TEXT), TEXT, max_size=4),
)
HEADERS = st.dictionaries(
    st.sampled_from(["idempotency-key", "content-type", "content-length", "x-forwarded-for", "accept"]),
    st.one_of(
        TEXT,
        st.sampled_from(
            ["application/json", "application/json; charset=utf-8", "text/plain", "chg-4711", "k-1"]
        ),
    ),
    max_size=4,
)

JSON_HEADERS = st.booleans().flatmap(
    lambda declared: HEADERS.map(lambda h: {**h, "content-type": "application/json"}) if declared else HEADERS
)


def request(route: str, route_params: dict[str, str], params: dict[str, str], headers: dict[str, str],
            body: bytes, caller: str | None) -> HttpResult:  # fmt: skip
    sent = {k.lower(): v for k, v in headers.items()}
    if caller is not None:
        sent["x-ms-client-principal"] = caller
    method = next(r.method for r in ROUTES if r.name == route)
    api = ApiRequest(method, f"https://h/api/{route}", route_params, params, sent, body, "corr-hostile")
    writes = WORLD.ledger.writes
    result = serve(route, api, lambda: WORLD.services)
    assert result.status < 500, (route, result.body)
    if result.status >= 400:
        assert result.content_type == "application/problem+json", result.body
        problem = result.json()
        assert problem["status"] == result.status and problem["correlation_id"] == "corr-hostile"
        assert WORLD.ledger.writes == writes, (route, result.body)  # a refusal writes nothing
    else:
        assert result.status in (200, 202)
    return result


@FAST
@given(BODIES, JSON_HEADERS, CALLERS, PARAMS)
def test_rebuild_requests(
    body: bytes, headers: dict[str, str], caller: str | None, params: dict[str, str]
) -> None:
    request("request_rebuild", {}, params, headers, body, caller)


@FAST
@given(st.one_of(TEXT, st.just("ubuntu-golden")), BODIES, JSON_HEADERS, CALLERS, PARAMS)
def test_enable(
    name: str, body: bytes, headers: dict[str, str], caller: str | None, params: dict[str, str]
) -> None:
    request("enable_template", {"name": name}, params, headers, body, caller)


@FAST
@given(st.sampled_from(["get_rebuild", "get_template"]), TEXT, PARAMS, HEADERS, CALLERS)
def test_reads_by_route_parameter(
    route: str, value: str, params: dict[str, str], headers: dict[str, str], caller: str | None
) -> None:
    key = "build_id" if route == "get_rebuild" else "name"
    request(route, {key: value}, params, headers, b"", caller)


@FAST
@given(
    st.sampled_from(["list_builds", "list_templates", "get_plan", "get_report", "get_openapi"]),
    PARAMS,
    HEADERS,
    CALLERS,
)
def test_reads_by_query(
    route: str, params: dict[str, str], headers: dict[str, str], caller: str | None
) -> None:
    result = request(route, {}, params, headers, b"", caller)
    if route == "get_report" and result.status == 200:
        assert "<script" not in result.body.decode()


@FAST
@given(
    st.sampled_from(["promote_template", "rollback_template"]),
    st.one_of(TEXT, st.sampled_from(["ubuntu-golden", "app-ubuntu"])),
    BODIES,
    JSON_HEADERS,
    CALLERS,
    PARAMS,
)
def test_admin_changes(
    route: str, name: str, body: bytes, headers: dict[str, str], caller: str | None, params: dict[str, str]
) -> None:
    request(route, {"name": name}, params, headers, body, caller)
