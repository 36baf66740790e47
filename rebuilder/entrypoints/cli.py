"""The CLI's service commands. Each parses its arguments, calls one service, prints the result."""

from __future__ import annotations

import argparse
import sys

from rebuilder.settings import SettingsError


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m rebuilder", description="Keep golden VM images patched (Azure VM Image Builder)."
    )
    commands = root.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("demo", help="a patch day on the local stack (Azurite + ARM simulator)")
    commands.add_parser("check-settings", help="validate the settings in the environment and exit")
    plan = commands.add_parser(
        "plan", help="what a watch pass would do now, and why (changes nothing in Azure)"
    )
    plan.add_argument("--output", choices=("table", "json"), default="table")
    return root


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.command == "check-settings":
        import os

        from rebuilder.settings import Settings

        try:
            settings = Settings.from_env(os.environ)
        except SettingsError as error:
            print(error, file=sys.stderr)
            return 2
        print(f"settings are valid: {len(settings.scopes)} scope(s), ARM endpoint {settings.arm_endpoint}")
        return 0
    if args.command == "plan":
        return _plan(args.output)
    print(f"unknown command {args.command}", file=sys.stderr)
    return 2


def _plan(output: str) -> int:
    from rebuilder.bootstrap import bootstrap
    from rebuilder.domain.errors import RebuilderError
    from rebuilder.services.detection import compute_plan

    from . import detection
    from .output import table, to_json

    try:
        services = bootstrap()
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        print(
            f"discovering templates in {len(services.settings.scopes)} scope(s) and watching their sources …",
            file=sys.stderr,
        )
        report = compute_plan(
            services.detection(),
            services.settings.scopes,
            now=services.clock.now(),
            concurrency=services.settings.watch_concurrency,
        )
    except RebuilderError as error:
        print(f"plan failed: {error}", file=sys.stderr)
        return 1
    finally:
        services.close()
    if output == "json":
        print(to_json(detection.plan_document(report)))
    else:
        headers = ["template", "location", "baseline", "candidate", "action", "reason"]
        print(table(headers, detection.plan_rows(report)))
        for problem in report.problems:
            print(f"problem: {problem}", file=sys.stderr)
    return 0
