"""`python -m rebuilder COMMAND`: the command-line interface.

`demo` belongs to the dev-only local stack (the top-level `devstack` package, which the deployed app
does not ship): this package never imports it; the command looks for it at run time, by name.
"""

from __future__ import annotations

import importlib
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["demo"]:
        try:
            demo = importlib.import_module("devstack.demo")
        except ImportError as error:  # the deployed app ships without the local stack
            print(f"demo needs the development install (make demo): {error}", file=sys.stderr)
            return 2
        code: int = demo.main(args[1:])
        return code
    from rebuilder.entrypoints.cli import main as cli

    return cli(args)


if __name__ == "__main__":
    sys.exit(main())
