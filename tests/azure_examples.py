"""The official Azure REST examples kept in tests/reference/ (copied from Azure/azure-rest-api-specs and
the Microsoft Learn Event Grid pages; see tests/reference/README.md), and a shape comparison against
them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REFERENCE = Path(__file__).resolve().parent / "reference"


def example(name: str) -> dict[str, Any]:
    path = REFERENCE / name
    assert path.exists(), f"reference example missing: {path}"
    return json.loads(path.read_text())


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null"


def shape_differences(
    actual: Any, expected: Any, *, optional: frozenset[str] = frozenset(), path: str = ""
) -> list[str]:
    """Every key the example has must be in `actual` with the same JSON type, except `optional` paths.

    Paths are dotted; list items are `[]`. Keys the example lacks are allowed (Azure adds fields).
    """
    problems: list[str] = []
    if _kind(actual) != _kind(expected):
        return [f"{path or '<root>'}: {_kind(actual)} where the example has {_kind(expected)}"]
    if isinstance(expected, dict):
        for key, value in expected.items():
            where = f"{path}.{key}" if path else key
            if key not in actual:
                if where not in optional:
                    problems.append(f"{where}: missing")
                continue
            problems += shape_differences(actual[key], value, optional=optional, path=where)
    elif isinstance(expected, list) and expected and actual:
        for item in actual:
            problems += shape_differences(item, expected[0], optional=optional, path=f"{path}[]")
    return problems
