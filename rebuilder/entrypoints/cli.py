"""The CLI's service commands. Each parses its arguments, calls one service, prints the result.

Exit codes: 0 done, 1 the request failed (named on stderr), 2 bad settings or arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rebuilder.settings import SettingsError

if TYPE_CHECKING:
    from rebuilder.bootstrap import Services
    from rebuilder.domain.ports import Clock


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m rebuilder", description="Keep golden VM images patched (Azure VM Image Builder)."
    )
    commands = root.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("demo", help="a patch day on the local stack (Azurite + ARM simulator)")
    commands.add_parser("check-settings", help="validate the settings in the environment and exit")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--output", choices=("table", "json"), default="table")
    commands.add_parser(
        "plan", parents=[output], help="what a watch pass would do now, and why (changes nothing in Azure)"
    )
    commands.add_parser("watch", parents=[output], help="one watch pass: detect, record, start due builds")
    commands.add_parser(
        "reconcile", parents=[output], help="one reconcile pass: follow and advance open builds"
    )
    rebuild = commands.add_parser(
        "rebuild", parents=[output], help="request an on-demand rebuild of a template"
    )
    rebuild.add_argument("template", help="template name (in the configured scopes) or resource id")
    rebuild.add_argument("--key", default="", help="idempotency key: the same key gives the same build")
    commands.add_parser("templates", parents=[output], help="where every template stands")
    builds = commands.add_parser("builds", parents=[output], help="history of builds, newest first")
    builds.add_argument("--template", default="", help="one template (name or id); default: every template")
    builds.add_argument("--limit", type=int, default=20, help="builds per template (default 20)")
    show = commands.add_parser("show", parents=[output], help="one build with its regions and transitions")
    show.add_argument("build", help="build id")
    enable = commands.add_parser("enable", parents=[output], help="re-enable an auto-disabled template")
    enable.add_argument("template", help="template name or resource id")
    return root


def main(argv: list[str], *, clock: Clock | None = None) -> int:
    """`clock`: the local stack's simulated time (rebuilder.devstack.simcli); the system clock if None."""
    args = parser().parse_args(argv)
    if args.command == "check-settings":
        return _check_settings()
    commands: dict[str, Callable[[Services, argparse.Namespace], Any]] = {
        "plan": _plan,
        "watch": _watch,
        "reconcile": _reconcile,
        "rebuild": _rebuild,
        "templates": _templates,
        "builds": _builds,
        "show": _show,
        "enable": _enable,
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
    print(to_json(document) if args.output == "json" else text)
    return 0


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _plan(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from rebuilder.services.detection import compute_plan

    from . import detection
    from .output import table

    _progress(
        f"discovering templates in {len(services.settings.scopes)} scope(s) and watching their sources …"
    )
    report = compute_plan(
        services.detection(),
        services.settings.scopes,
        now=services.clock.now(),
        concurrency=services.settings.watch_concurrency,
    )
    for problem in report.problems:
        _progress(f"problem: {problem}")
    headers = ["template", "location", "baseline", "candidate", "action", "reason"]
    return detection.plan_document(report), table(headers, detection.plan_rows(report))


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
    from .detection import plan_rows
    from .output import table
    from .triggers import watch_once

    _progress("watch pass: discover, watch sources, plan, start due builds …")
    report, summary = watch_once(services, trigger="cli")
    headers = ["template", "location", "baseline", "candidate", "action", "reason"]
    return summary, table(headers, plan_rows(report)) + "\n\n" + _act_text(summary)


def _reconcile(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from .triggers import reconcile_once

    _progress("reconcile pass: following every open build …")
    summary = reconcile_once(services, by="cli")
    return summary, _act_text(summary)


def _rebuild(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    import getpass

    from rebuilder.services.requests import find_template, request_rebuild

    from .detection import act_summary
    from .triggers import announce
    from .views import build_document

    template = find_template(services.detection(), services.settings.scopes, args.template)
    opened, acted = request_rebuild(
        services.detection(),
        template,
        services.policy(),
        now=services.clock.now(),
        trigger="cli",
        caller=getpass.getuser(),
        idempotency_key=args.key,
    )
    announce(services, acted.events)
    build = services.ledger.get_build(opened.build.id).record
    document = {"build": build_document(build), "created": opened.created, "joined": opened.joined}
    verb = "joined open build" if opened.joined else ("requested" if opened.created else "already requested")
    text = f"{verb} {build.id}: {build.template_name} {build.state.value}\n{_act_text(act_summary(acted))}"
    return document, text


def _templates(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from rebuilder.services.history import where_we_stand

    from .output import table
    from .views import TEMPLATE_HEADERS, template_document, template_row

    states = sorted(where_we_stand(services.ledger), key=lambda s: s.name.lower())
    return (
        {"templates": [template_document(s) for s in states]},
        table(TEMPLATE_HEADERS, [template_row(s) for s in states]),
    )


def _builds(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from rebuilder.domain.errors import PermanentError
    from rebuilder.services.history import where_we_stand
    from rebuilder.services.requests import find_state

    from .output import table
    from .views import BUILD_HEADERS, build_document, build_row

    if not 1 <= args.limit <= 1000:
        raise PermanentError(f"--limit {args.limit} is not between 1 and 1000")
    states = where_we_stand(services.ledger)
    if args.template:
        states = [find_state(states, args.template)]
    builds = [b for s in states for b in services.ledger.list_builds(s.template_id, limit=args.limit).items]
    builds.sort(key=lambda b: b.created_at, reverse=True)
    return {"builds": [build_document(b) for b in builds]}, table(
        BUILD_HEADERS, [build_row(b) for b in builds]
    )


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


def _enable(services: Services, args: argparse.Namespace) -> tuple[Any, str]:
    from rebuilder.services.requests import enable

    from .views import template_document

    state, was = enable(services.detection(), args.template, now=services.clock.now())
    text = f"{state.name} re-enabled" if was else f"{state.name} was not disabled"
    return {"template": template_document(state), "was_disabled": was}, text
