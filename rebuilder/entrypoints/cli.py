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
    print(f"unknown command {args.command}", file=sys.stderr)
    return 2
