"""The CLI's service commands. Each parses its arguments, calls one service, prints the result.

Exit codes: 0 done, 1 the request failed (named on stderr), 2 bad settings or arguments; `doctor`: 0
when every check passes, 1 otherwise (bad settings included: they are its first check).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from rebuilder.settings import SettingsError

if TYPE_CHECKING:
    from rebuilder.bootstrap import Services
    from rebuilder.domain.ports import Clock
    from rebuilder.services.build_history import HistoryQuery
    from rebuilder.services.records import Caller

_T = TypeVar("_T")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m rebuilder", description="Keep golden VM images patched (Azure VM Image Builder)."
    )
    commands = root.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("check-settings", help="validate the settings in the environment and exit")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--output", choices=("table", "json"), default="table")
    commands.add_parser(
        "doctor",
        parents=[output],
        help="check settings, tokens, permissions, gallery images, identities, ledger and topic (read only);"
        " exit 0 when every check passes, 1 otherwise",
    )
    plan = commands.add_parser(
        "plan", parents=[output], help="what a watch pass would do now, and why (changes nothing in Azure)"
    )
    plan.add_argument(
        "--at",
        default=None,
        help="plan as it would be at this time, from what Azure and the ledger say now"
        " (ISO-8601 with an offset, e.g. 2026-12-10T03:00:00Z)",
    )
    commands.add_parser("watch", parents=[output], help="one watch pass: detect, record, start due builds")
    reconcile = commands.add_parser(
        "reconcile", parents=[output], help="one reconcile pass: follow and advance open builds"
    )
    reconcile.add_argument(
        "--dry-run", action="store_true", help="print what the pass would do and why; change nothing"
    )
    rebuild = commands.add_parser(
        "rebuild", parents=[output], help="request an on-demand rebuild of a template"
    )
    rebuild.add_argument("template", help="template name (in the configured scopes) or resource id")
    rebuild.add_argument("--key", default="", help="idempotency key: the same key gives the same build")
    rebuild.add_argument("--reason", default="", help="why you ask (recorded with the build)")
    commands.add_parser("templates", parents=[output], help="where every template stands")
    ranged = argparse.ArgumentParser(add_help=False)
    ranged.add_argument("--template", default="", help="one template (name or id); default: every template")
    ranged.add_argument(
        "--since", default=None, help="created at or after (ISO-8601, e.g. 2026-12-01T00:00Z)"
    )
    ranged.add_argument("--until", default=None, help="created before (ISO-8601)")
    ranged.add_argument("--state", default=None, help="comma-separated build states")
    ranged.add_argument("--reason", default=None, help="comma-separated build reasons")
    builds = commands.add_parser(
        "builds", parents=[output, ranged], help="history of builds, newest first (GET /api/builds)"
    )
    builds.add_argument("--limit", type=int, default=50, help="builds to show (1-200, default 50)")
    show = commands.add_parser("show", parents=[output], help="one build with its regions and transitions")
    show.add_argument("build", help="build id")
    promote = commands.add_parser(
        "promote", parents=[output], help="approve a gated template's candidate; promoted once baked"
    )
    promote.add_argument("template", help="template name or resource id")
    promote.add_argument(
        "--version", default="", help="the candidate's gallery version (default: the open one)"
    )
    promote.add_argument("--reason", default="", help="why (recorded with the approval)")
    back = commands.add_parser(
        "rollback", parents=[output], help="demote a template's current image so the previous one is latest"
    )
    back.add_argument("template", help="template name or resource id")
    back.add_argument("--reason", required=True, help="why (recorded with the revocation)")
    back.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would be demoted and what is latest again; change nothing",
    )
    enable = commands.add_parser("enable", parents=[output], help="re-enable an auto-disabled template")
    enable.add_argument("template", help="template name or resource id")
    enable.add_argument("--reason", default="", help="why (recorded in the template's audit trail)")
    report = commands.add_parser("report", parents=[output], help="write the security report (HTML)")
    report.add_argument("--html", required=True, metavar="FILE", help="where to write the page")
    export = commands.add_parser(
        "export", parents=[ranged], help="every build and transition in a range, for auditors"
    )
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export.add_argument("--file", default="-", help="where to write (default: standard output)")
    return root


def main(argv: list[str], *, clock: Clock | None = None) -> int:
    """`clock`: the local stack's simulated time (devstack.simcli); the system clock if None."""
    args = parser().parse_args(argv)
    if args.command == "check-settings":
        return _check_settings()
    if args.command == "doctor":
        return _doctor(args, clock)
    commands: dict[str, Callable[[Services, argparse.Namespace], Any]] = {
        "plan": _plan,
        "watch": _watch,
        "reconcile": _reconcile,
        "rebuild": _rebuild,
        "templates": _templates,
        "builds": _builds,
        "show": _show,
        "enable": _enable,
        "promote": _promote,
        "rollback": _rollback,
        "report": _report,
        "export": _export,
    }
    return _run(commands[args.command], args, clock)


def _check_settings() -> int:
    import os

    from rebuilder.settings import Settings

    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"settings are valid: {len(settings.scopes)} scope(s), ARM endpoint {settings.arm_endpoint}")
    return 0


def _doctor(args: argparse.Namespace, clock: Clock | None) -> int:
    """Bad settings are a failed check here, not a refusal: the report says which, and exits 1."""
    from rebuilder.bootstrap import bootstrap
    from rebuilder.domain.diagnosis import settings_invalid

    from . import doctor
    from .output import to_json

    try:
        services = bootstrap(clock=clock)
    except SettingsError as error:
        diagnosis = settings_invalid(error.problems)
    else:
        try:
            _progress("doctor: checking as the identity this process runs as (reads only) …")
            diagnosis = doctor.diagnose(services)
        finally:
            services.close()
    print(to_json(doctor.document(diagnosis)) if args.output == "json" else doctor.text(diagnosis))
    return 0 if diagnosis.ok else 1


def _run(
    command: Callable[[Services, argparse.Namespace], Any], args: argparse.Namespace, clock: Clock | None
) -> int:
    from rebuilder.bootstrap import bootstrap
    from rebuilder.domain.errors import RebuilderError

    from .output import to_json

    try:
        services = bootstrap(clock=clock)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        result = command(services, args)
    except RebuilderError as error:
        print(f"{args.command} failed: {error}", file=sys.stderr)
        return 1
    finally:
        services.close()
    document, text = result
    if text is not None:
        print(to_json(document) if getattr(args, "output", "table") == "json" else text)
    return 0


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _plan(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from rebuilder.services.detection import compute_plan

    from . import detection
    from .http import inputs
    from .output import table

    at = _checked(lambda: inputs.moment({"at": args.at} if args.at else {}, "at"))
    _progress(
        f"discovering templates in {len(services.settings.scopes)} scope(s) and watching their sources …"
        + (f" (planning for {at:%Y-%m-%d %H:%M} UTC)" if at else "")
    )
    report = compute_plan(
        services.detection(),
        services.settings.scopes,
        now=services.clock.now(),
        concurrency=services.settings.watch_concurrency,
        defaults=services.settings.rebuild_defaults,
        at=at,
    )
    for problem in report.problems:
        _progress(f"problem: {problem}")
    return detection.plan_document(report), table(detection.PLAN_HEADERS, detection.plan_rows(report))


def _act_text(summary: dict[str, Any]) -> str:
    lines = [f"started: {b}" for b in summary["started"]]
    lines += [f"{t['build']} → {t['to']}: {t['why']}" for t in summary["transitions"]]
    lines += [f"repaired {r['region']} for {r['build']}" for r in summary["repaired"]]
    lines += [f"recorded a run started elsewhere: {b}" for b in summary["external"]]
    lines += [f"recreated {t}" for t in summary["recreated"]]
    lines += [f"waiting: {w}" for w in summary["waiting"]]
    lines += [f"problem: {p}" for p in summary.get("act_problems", []) + summary.get("problems", [])]
    return "\n".join(lines) or "nothing to do"


def _watch(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from .detection import PLAN_HEADERS, plan_rows
    from .output import table
    from .triggers import watch_once

    _progress("watch pass: discover, watch sources, plan, start due builds …")
    report, summary = watch_once(services, trigger="cli")
    return summary, table(PLAN_HEADERS, plan_rows(report)) + "\n\n" + _act_text(summary)


def _reconcile(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from .triggers import reconcile_once

    if args.dry_run:
        _progress("reconcile dry run: what the next pass would do (nothing is changed) …")
        summary = reconcile_once(services, by="cli", dry_run=True)
        return summary, "\n".join(summary["planned"]) or "nothing to do"
    _progress("reconcile pass: following every open build …")
    summary = reconcile_once(services, by="cli")
    return summary, _act_text(summary)


def _caller() -> Caller:
    """Who asks from the command line: the signed-in user of this machine."""
    import getpass

    from rebuilder.services.records import Caller

    return Caller("cli", getpass.getuser())


def _rebuild(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from rebuilder.services.requests import find_template, request_rebuild

    from .detection import act_summary
    from .http.inputs import note
    from .triggers import announce
    from .views import build_document

    template = find_template(services.detection(), services.settings.scopes, args.template)
    opened, acted = request_rebuild(
        services.detection(),
        template,
        services.policy(),
        now=services.clock.now(),
        caller=_caller(),
        note=_checked(lambda: note(args.reason)),
        idempotency_key=args.key,
    )
    announce(services, acted.events)
    build = services.ledger.get_build(opened.build.id).record
    document = {
        "build": build_document(build),
        "created": opened.created,
        "joined": opened.joined,
        "replayed": opened.replayed,
    }
    verb = "joined open build" if opened.joined else ("requested" if opened.created else "already requested")
    verb = f"replayed: {verb}" if opened.replayed else verb
    text = f"{verb} {build.id}: {build.template_name} {build.state.value}\n{_act_text(act_summary(acted))}"
    return document, text


def _checked(check: Callable[[], _T]) -> _T:
    """Arguments checked as the HTTP API checks them, refused with the same words."""
    from rebuilder.domain.errors import PermanentError

    from .http.problems import ApiError

    try:
        return check()
    except ApiError as error:
        raise PermanentError(error.detail) from None


def _templates(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from rebuilder.services.estate import survey

    from .estate_views import summary_document
    from .output import table
    from .views import TEMPLATE_HEADERS, template_row

    summaries = survey(services.ledger, now=services.clock.now(), defaults=services.settings.rebuild_defaults)
    return (
        {"templates": [summary_document(s) for s in summaries]},
        table(TEMPLATE_HEADERS, [template_row(s) for s in summaries]),
    )


def _history(services: Services, args: argparse.Namespace) -> HistoryQuery:
    from .http.handlers import history_query

    params = {
        k: v
        for k, v in {
            "template": args.template or None,
            "since": args.since,
            "until": args.until,
            "state": args.state,
            "reason": args.reason,
        }.items()
        if v is not None
    }
    return _checked(lambda: history_query(services, params))


def _builds(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from rebuilder.domain.errors import PermanentError
    from rebuilder.services.build_history import MAX_PAGE, list_history

    from .output import table
    from .views import BUILD_HEADERS, build_document, build_row

    if not 1 <= args.limit <= MAX_PAGE:
        raise PermanentError(f"--limit {args.limit} is not between 1 and {MAX_PAGE}")
    page = list_history(services.ledger, _history(services, args), limit=args.limit)
    more = "\n(more: narrow with --since/--until or raise --limit)" if page.next else ""
    return {"builds": [build_document(b) for b in page.builds]}, table(
        BUILD_HEADERS, [build_row(b) for b in page.builds]
    ) + more


def _export(services: Services, args: argparse.Namespace) -> tuple[Any, None]:
    from rebuilder.services.build_history import every_build

    from . import export

    query = _history(services, args)
    out = sys.stdout if args.file == "-" else open(args.file, "w", encoding="utf-8", newline="")  # noqa: SIM115
    written = 0
    try:
        for chunk in export.render(services.ledger, every_build(services.ledger, query), args.format):
            out.write(chunk)
            written += 1
            if written % 100 == 0:
                _progress(f"exported {written} builds …")
    finally:
        if out is not sys.stdout:
            out.close()
    _progress(f"exported {written - (args.format == 'csv')} builds")
    return None, None


def _report(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from pathlib import Path

    from .http.handlers import report_page

    _progress("reading the ledger for the security report …")
    page = report_page(services)
    target = Path(args.html)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(target)  # a reader never sees half a report
    return {
        "report": str(target.resolve()),
        "bytes": len(page.encode()),
    }, f"security report: {target.resolve()}"


def _show(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from .output import table
    from .views import BUILD_HEADERS, REGION_HEADERS, build_document, build_row, region_row

    build = services.ledger.get_build(args.build).record
    regions = services.ledger.list_regions(build.id)
    transitions = services.ledger.list_transitions(build.id)
    text = "\n\n".join(
        [
            table(BUILD_HEADERS, [build_row(build)]),
            table(REGION_HEADERS, [region_row(r) for r in regions]) if regions else "no region rows yet",
            table(
                ["at", "from", "to", "why"],
                [
                    [
                        f"{t.at:%Y-%m-%d %H:%M:%S}",
                        t.from_state or "-",
                        t.to_state + (f"/{t.to_sub_state}" if t.to_sub_state else ""),
                        t.why,
                    ]
                    for t in transitions
                ],
            ),
        ]
    )
    return build_document(build, regions, transitions), text


def _promote(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from rebuilder.services.requests import promote

    from .http.inputs import note
    from .triggers import announce
    from .views import build_document

    why = _checked(lambda: note(args.reason))
    _progress(f"approving the candidate of {args.template} …")
    build, acted = promote(
        services.detection(),
        args.template,
        services.policy(),
        now=services.clock.now(),
        caller=_caller(),
        version=args.version,
        note=why,
    )
    announce(services, acted.events)
    text = f"{build.template_name}: {build.id} is {build.state.value}" + (
        f" (approved by {build.approved_by})" if build.approved_by else ""
    )
    return build_document(build), text


def _rollback(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from rebuilder.domain.notices import revoked as revoked_notice
    from rebuilder.services.requests import roll_back

    from .http.inputs import note
    from .triggers import announce
    from .views import rollback_document, rollback_text

    why = _checked(lambda: note(args.reason))
    outcome = roll_back(
        services.detection(),
        args.template,
        now=services.clock.now(),
        caller=_caller(),
        reason=why,
        dry_run=args.dry_run,
    )
    if outcome.done:
        announce(services, [revoked_notice(outcome.build, outcome.fallbacks)])
    shown = {"done": outcome.done, "dry_run": args.dry_run}
    return (
        rollback_document(outcome.build, outcome.decided, **shown),
        rollback_text(outcome.build, outcome.decided, **shown),
    )


def _enable(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from rebuilder.services.requests import enable

    from .http.inputs import note
    from .views import template_document

    why = _checked(lambda: note(args.reason))
    state, was = enable(
        services.detection(), args.template, now=services.clock.now(), caller=_caller(), note=why
    )
    text = f"{state.name} re-enabled" if was else f"{state.name} was not disabled"
    return {"template": template_document(state), "was_disabled": was}, text
