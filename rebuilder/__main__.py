"""`python -m rebuilder COMMAND`: the command-line interface.

`demo` runs on the dev-only local stack (rebuilder.devstack), which the deployed app does not ship.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["demo"]:
        try:
            from rebuilder.devstack.demo import main as demo
        except ImportError as error:  # the deployed app ships without the local stack
            print(f"demo needs the development install (make demo): {error}", file=sys.stderr)
            return 2
        return demo(args[1:])
    from rebuilder.entrypoints.cli import main as cli

    return cli(args)


if __name__ == "__main__":
    sys.exit(main())
