"""One handler per route: check the input, call one service, shape the answer. The pipeline in
`routes` has already authenticated and authorised the caller and refused unknown query parameters;
anything raised here becomes problem+json there."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from rebuilder.domain.builds import Build, BuildReason, BuildState, parse_build_id
from rebuilder.domain.casing import fold
from rebuilder.domain.model import TemplateId
from rebuilder.domain.notices import revoked as revoked_notice
from rebuilder.domain.standing import TemplateState
from rebuilder.domain.waves import waves
from rebuilder.services.build_history import HistoryQuery, Position, list_history
from rebuilder.services.detection import compute_plan
from rebuilder.services.estate import summary_of, survey
from rebuilder.services.history import where_we_stand
from rebuilder.services.records import Caller
from rebuilder.services.requests import (
    Ambiguous,
    enable,
    find_state,
    find_template,
    promote,
    request_rebuild,
    roll_back,
)
from rebuilder.settings import SettingsError

from .. import doctor, export, report_html
from ..detection import plan_document
from ..estate_views import action_document, summary_document, wave_document, window_document
from ..triggers import announce
from ..views import build_document, build_summary, rollback_document, template_document
from . import inputs
from .auth import Principal
from .messages import CSV, HTML, JSONL, ApiRequest, HttpResult, json_result
from .problems import BadRequest, log, loggable, problem

if TYPE_CHECKING:
    from rebuilder.bootstrap import Services

RECENT_BUILDS = 20
# Builds one GET /api/builds reads at most: a filter that matches few answers a short (even empty) page
# with its `next` link rather than reading the whole history in one request.
SCAN_PER_REQUEST = 500


def health(get_services: Callable[[], Services]) -> HttpResult:
    """Anonymous: says whether the service can work, and nothing else."""
    try:
        get_services()
    except SettingsError as error:
        log.warning(
            "health: %d invalid setting(s): %s", len(error.problems), loggable("; ".join(error.problems))
        )
        return problem(503, "Service unavailable", "the service cannot work yet", "")
    return json_result(200, {"status": "ok"})


def _caller(principal: Principal, request: ApiRequest) -> Caller:
    return Caller("http", principal.name, principal.object_id, request.correlation_id)


def _shown(services: Services, principal: Principal) -> Callable[[Build], dict[str, Any]]:
    """How a build is shown to the caller: whole to one who may read the ledger, else its summary
    (who asked and why are the ledger's to tell)."""
    return build_document if services.settings.read_role in principal.roles else build_summary


def post_rebuild(services: Services, request: ApiRequest, principal: Principal) -> HttpResult:
    body = inputs.json_body(request, {"template": str, "reason": str}, required=("template",))
    ref = inputs.template_ref(body["template"])
    note = inputs.note(body.get("reason", ""))
    key = inputs.idempotency_key(request)
    ports = services.detection()
    template = find_template(ports, services.settings.scopes, ref)
    opened, acted = request_rebuild(
        ports,
        template,
        services.policy(),
        now=services.clock.now(),
        caller=_caller(principal, request),
        note=note,
        idempotency_key=key,
    )
    announce(services, acted.events)
    build = services.ledger.get_build(opened.build.id).record
    document = {
        "build": _shown(services, principal)(build),  # a joined build may be someone else's
        "created": opened.created,
        "joined": opened.joined,
        "replayed": opened.replayed,
    }
    location = f"{request.base}/api/rebuilds/{quote(build.id)}"
    return json_result(202, document, headers={"Location": location})


def get_rebuild(services: Services, request: ApiRequest, principal: Principal) -> HttpResult:
    build_id = request.route_params.get("build_id", "")
    parse_build_id(build_id)  # InvalidBuildId: 400 before any read
    build = services.ledger.get_build(build_id).record
    regions = services.ledger.list_regions(build.id)
    transitions = services.ledger.list_transitions(build.id)
    return json_result(200, build_document(build, regions, transitions))


def list_templates(services: Services, request: ApiRequest, principal: Principal) -> HttpResult:
    now = services.clock.now()
    summaries = survey(
        services.ledger,
        now=now,
        concurrency=services.settings.watch_concurrency,
        defaults=services.settings.rebuild_defaults,
    )
    document = {
        "generated_at": now,
        "templates": [summary_document(s) for s in summaries],
        "waves": [wave_document(w) for w in waves(summaries, now=now)],
    }
    return json_result(200, document)


def _state(services: Services, request: ApiRequest) -> TemplateState:
    """The template a route names (`subscription` and `resource_group` tell apart templates of the
    same name: the route's name cannot carry a resource id)."""
    name = inputs.template_name(request.route_params.get("name", ""))
    group, subscription = request.params.get("resource_group"), request.params.get("subscription")
    if group is not None:
        inputs.resource_group(group)
    if subscription is not None:
        inputs.subscription(subscription)
    states = where_we_stand(services.ledger)
    if subscription is not None:
        prefix = f"/subscriptions/{fold(subscription)}/"
        states = [s for s in states if fold(s.template_id).startswith(prefix)]
    if group is not None:
        states = [s for s in states if f"/resourcegroups/{fold(group)}/" in fold(s.template_id)]
    try:
        return find_state(states, name)
    except Ambiguous as error:
        raise Ambiguous(f"{error} (over HTTP: ?subscription=<id>&resource_group=<group>)") from error


def get_template(services: Services, request: ApiRequest, principal: Principal) -> HttpResult:
    state = _state(services, request)
    now = services.clock.now()
    summary = summary_of(services.ledger, state, now=now, defaults=services.settings.rebuild_defaults)
    document = summary_document(summary)
    document["builds"] = [build_document(b) for b in summary.builds[:RECENT_BUILDS]]
    document["windows"] = [window_document(w, now) for w in summary.windows]
    document["actions"] = [
        action_document(a) for a in services.ledger.list_actions(state.template_id, limit=50).items
    ]
    return json_result(200, document)


def post_enable(services: Services, request: ApiRequest, principal: Principal) -> HttpResult:
    body = inputs.json_body(request, {"reason": str})
    note = inputs.note(body.get("reason", ""))
    state = _state(services, request)
    updated, was = enable(
        services.detection(),
        state.template_id,
        now=services.clock.now(),
        caller=_caller(principal, request),
        note=note,
    )
    return json_result(200, {"template": template_document(updated), "was_disabled": was})


def post_promote(services: Services, request: ApiRequest, principal: Principal) -> HttpResult:
    """Approve the template's candidate (or the one named by `version`); promoted at once when baked."""
    body = inputs.json_body(request, {"version": str, "reason": str})
    version = inputs.version_name(body.get("version", ""))
    note = inputs.note(body.get("reason", ""))
    state = _state(services, request)
    build, acted = promote(
        services.detection(),
        state.template_id,
        services.policy(),
        now=services.clock.now(),
        caller=_caller(principal, request),
        version=version,
        note=note,
    )
    announce(services, acted.events)
    waiting = [w for w in acted.waiting if w.startswith(f"{build.id}:")]
    return json_result(
        200,
        {
            "build": _shown(services, principal)(build),
            "promoted": build.state is BuildState.PROMOTED,
            "waiting": [w.removeprefix(f"{build.id}: ") for w in waiting],
        },
    )


def post_rollback(services: Services, request: ApiRequest, principal: Principal) -> HttpResult:
    """Demote the template's current image so the previous one is latest again; revoke its build."""
    body = inputs.json_body(request, {"reason": str, "dryRun": bool}, required=("reason",))
    note = inputs.note(body["reason"])
    if not note.strip():
        raise BadRequest("a rollback needs a reason: say why the image is revoked")
    dry_run = bool(body.get("dryRun", False))
    state = _state(services, request)
    outcome = roll_back(
        services.detection(),
        state.template_id,
        now=services.clock.now(),
        caller=_caller(principal, request),
        reason=note,
        dry_run=dry_run,
    )
    if outcome.done:
        announce(services, [revoked_notice(outcome.build, outcome.fallbacks)])
    shown = rollback_document(
        outcome.build, outcome.decided, done=outcome.done, dry_run=dry_run, show=_shown(services, principal)
    )
    return json_result(200 if outcome.done or dry_run else 202, shown)


_STATES = {s.value: s for s in BuildState}
_REASONS = {r.value: r for r in BuildReason}
_FORMATS = ("json", "csv", "jsonl")


def history_query(services: Services, params: Mapping[str, str]) -> HistoryQuery:
    """The history query a request asks for: every parameter checked before the ledger is read."""
    ref = inputs.template_ref(params["template"]) if "template" in params else None
    since, until = inputs.moment(params, "since"), inputs.moment(params, "until")
    if since and until and since >= until:
        raise BadRequest("since must be before until")
    states, reasons = inputs.choices(params, "state", _STATES), inputs.choices(params, "reason", _REASONS)
    templates = None  # every template: the history index
    if ref is not None:
        templates = (TemplateId(find_state(where_we_stand(services.ledger), ref).template_id),)
    return HistoryQuery(templates, states, reasons, since, until)


def list_builds(services: Services, request: ApiRequest, principal: Principal) -> HttpResult:
    params = request.params
    kind = inputs.one_of(params, "format", _FORMATS, default="json")
    limit = inputs.whole(params, "limit", default=50, low=1, high=200)
    query = history_query(services, params)
    token = params.get("continuation")
    after = Position.parse(token, query) if token is not None else None
    page = list_history(services.ledger, query, after=after, limit=limit, scan_limit=SCAN_PER_REQUEST)
    headers: dict[str, str] = {}
    next_link = None
    if page.next is not None:  # the function key stays out of links: callers add their own
        following = {k: v for k, v in params.items() if k not in ("continuation", "code")}
        following["continuation"] = page.next.token(query)
        next_link = f"{request.base}/api/builds?{urlencode(following)}"
        headers["Link"] = f'<{next_link}>; rel="next"'
    if kind == "json":
        document = {
            "builds": [build_document(b) for b in page.builds],
            "next": next_link,
            "count": len(page.builds),
        }
        return json_result(200, document, headers=headers)
    body = "".join(export.render(services.ledger, page.builds, kind)).encode()
    headers["Content-Disposition"] = f'attachment; filename="rebuilder-builds.{kind}"'
    return HttpResult(200, body, CSV if kind == "csv" else JSONL, headers)


def get_plan(services: Services, request: ApiRequest, principal: Principal) -> HttpResult:
    report = compute_plan(
        services.detection(),
        services.settings.scopes,
        now=services.clock.now(),
        concurrency=services.settings.watch_concurrency,
        defaults=services.settings.rebuild_defaults,
        at=inputs.moment(request.params, "at"),
    )
    return json_result(200, plan_document(report))


def get_report(services: Services, request: ApiRequest, principal: Principal) -> HttpResult:
    html = report_page(services)
    return HttpResult(200, html.encode(), HTML, {"Content-Security-Policy": report_html.REPORT_CSP})


def report_page(services: Services) -> str:
    now = services.clock.now()
    summaries = survey(
        services.ledger,
        now=now,
        concurrency=services.settings.watch_concurrency,
        defaults=services.settings.rebuild_defaults,
    )
    return report_html.render(
        summaries, waves(summaries, now=now), now=now, scopes=[s.id for s in services.settings.scopes]
    )


def get_doctor(services: Services, request: ApiRequest, principal: Principal) -> HttpResult:
    """Every check as the deployed app's own identity: 200 with the diagnosis, passing or not (its
    `ok` says which; the checks failing say what to do)."""
    return json_result(200, doctor.document(doctor.diagnose(services)))


def get_openapi(services: Services, request: ApiRequest, principal: Principal) -> HttpResult:
    from .openapi import document

    return json_result(200, document())
