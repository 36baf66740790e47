"""`python -m rebuilder COMMAND`: the command-line interface (the demo is the dev-only local stack's
own command, `python -m devstack demo`: this package never names that one)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from rebuilder.entrypoints.cli import main as cli

    return cli(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
