"""`python -m devstack demo`: the dev-only local stack's own entry point (`make demo` runs it). The
deployed package, `rebuilder`, never names this package, not even at run time."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["demo"]:
        print("usage: python -m devstack demo [--report FILE]", file=sys.stderr)
        return 2
    from devstack import demo

    return demo.main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
