"""The Azure REST contract the simulator answers from: the kept swagger definitions, enforced.

`tests/reference/specs/` keeps subsets of the azure-rest-api-specs swagger (OpenAPI 2.0) files for the
api-versions the pinned SDK clients send (tests/reference/README.md names them). Each ARM request the
simulator serves is matched to its operation there by method and path template. The request's path
and query parameters and its body are checked against the operation's parameters. The answer is
checked against the response declared for its status code (`default`, CloudError or ErrorResponse, for
error answers). A success status the operation does not declare is a violation, and so is a body where
no schema is declared, or no body where one is.

The swagger schemas are turned into JSON Schema (Draft 4, which swagger 2.0's schema objects are a
subset of) and checked with jsonschema:
- `allOf` inheritance is flattened, so an object's undeclared properties can be refused
  (`additionalProperties: false` wherever a definition declares properties and nothing else);
- a `discriminator` base dispatches on the discriminator's value to the subtype whose
  `x-ms-discriminator-value` (or definition name) it is, which is checked with the base it extends. An
  unknown value is a violation;
- `readOnly` properties are refused in requests and are not `required` there;
- `x-nullable: true` admits null, and nothing else does;
- enums are closed whatever `x-ms-enum.modelAsString` says. An open enum lets clients accept values
  added later, but what the service sends and what the simulator answers must be a listed value;
- the date-time (RFC 3339), int32/int64 (range) and uri (absolute) formats are checked. Patterns are
  ECMA-262 ones, matched in ASCII mode.

Routes with no definition here are listed in `DELIBERATE`, with the reason.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from jsonschema import Draft4Validator, FormatChecker, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend
from referencing import Registry
from referencing.jsonschema import DRAFT4

from .casing import fold

SPECS = Path(__file__).resolve().parents[2] / "tests" / "reference" / "specs"
_ROOT = "file:///azure-rest-api-specs/"
# `../../common-types/v1/common.json` from Compute's stable/<version>/ directory resolves literally to
# .../Microsoft.Compute/Compute/common-types/v1/common.json; the kept copy is the one a level up
# (tests/reference/specs/GALLERY-NOTES.md).
_ALIASES = {
    "specification/compute/resource-manager/Microsoft.Compute/Compute/common-types/v1/common.json": (
        "specification/compute/resource-manager/Microsoft.Compute/common-types/v1/common.json"
    ),
}
DELIBERATE: Mapping[str, str] = {
    "operations.compute": (
        "Polls an Azure-AsyncOperation URL (capsOperations). The status resource is ARM's async-operation "
        "protocol (resource provider contract), not an operation in GalleryRP.json"
    ),
    "operations.imagebuilder": (
        "Polls an Azure-AsyncOperation URL (operations). The status resource is ARM's async-operation "
        "protocol, not an operation in imagebuilder.json"
    ),
}
_SCHEMA_KEYWORDS = (
    "type",
    "format",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "multipleOf",
    "minProperties",
    "maxProperties",
)
_PARAMETER_KEYWORDS = (*_SCHEMA_KEYWORDS, "pattern", "items", "x-nullable")
_HTTP_METHODS = ("get", "put", "post", "patch", "delete", "head")


class ContractError(Exception):
    """The kept definitions themselves cannot be read (an unresolvable $ref, say)."""


# -- formats and custom keywords -----------------------------------------------------------------
_FORMATS = FormatChecker(formats=())
_RFC3339 = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?"
    r"([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)


def _date_time(instance: object) -> bool:
    return not isinstance(instance, str) or bool(_RFC3339.match(instance))


def _int32(instance: object) -> bool:
    return not isinstance(instance, int) or -(2**31) <= instance < 2**31


def _int64(instance: object) -> bool:
    return not isinstance(instance, int) or -(2**63) <= instance < 2**63


def _uri(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    parts = urlsplit(instance)
    return bool(parts.scheme and parts.netloc)


def _read_only(validator: Validator, value: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if value:
        yield ValidationError("is read-only: a request must not send it")


def _discriminator(validator: Validator, value: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not isinstance(instance, dict):
        return
    name, mapping = value["property"], value["mapping"]
    if name not in instance:
        yield ValidationError(f"{name!r} is a required property (the discriminator)")
        return
    kind = instance[name]
    if not isinstance(kind, str) or kind not in mapping:
        yield ValidationError(f"{kind!r} is not one of the known values {sorted(mapping)}", path=[name])
        return
    yield from validator.descend(instance, {"$ref": mapping[kind]})


for _format, _check in (("date-time", _date_time), ("int32", _int32), ("int64", _int64), ("uri", _uri)):
    _FORMATS.checks(_format)(_check)

_Checker = extend(Draft4Validator, {"x-read-only": _read_only, "x-discriminator": _discriminator})


# -- the kept files --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Doc:
    uri: str  # canonical: _ROOT + its _source.path
    file: str
    raw: dict[str, Any]


def _load(directory: Path) -> dict[str, _Doc]:
    docs: dict[str, _Doc] = {}
    for path in sorted(directory.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        uri = _ROOT + raw["_source"]["path"]
        docs[uri] = _Doc(uri, path.name, raw)
    for alias, target in _ALIASES.items():
        docs[_ROOT + alias] = docs[_ROOT + target]
    return docs


def _pointer(document: Any, fragment: str) -> Any:
    node = document
    for part in fragment.lstrip("/").split("/") if fragment.strip("/") else []:
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _ecma(pattern: str) -> str:
    """An ECMA-262 pattern as Python's `re` reads it: ASCII classes, and a `-` next to a class escape
    inside brackets is a literal hyphen (`[\\w-._]`)."""
    escaped = re.sub(r"(\\[wWdDsS])-(?!\])", r"\1\\-", pattern)
    return "(?a)" + escaped


class _Converter:
    """Swagger schema objects -> JSON Schema documents, one per kept file, for requests or answers."""

    def __init__(self, docs: Mapping[str, _Doc], *, request: bool) -> None:
        self.docs = docs
        self.request = request
        self.out: dict[str, dict[str, dict[str, Any]]] = {}
        self._subtypes = self._index_subtypes()

    def _resolve(self, base: str, ref: str) -> tuple[str, str, Any]:
        """(canonical document uri, fragment, node) of a $ref written in the document at `base`."""
        uri, fragment = urldefrag(urljoin(base, ref))
        doc = self.docs.get(uri)
        if doc is None:
            raise ContractError(f"$ref {ref!r} (from {base}) names no kept file: {uri}")
        try:
            return doc.uri, fragment, _pointer(doc.raw, fragment)
        except (KeyError, IndexError, TypeError):
            raise ContractError(f"$ref {ref!r} (from {base}) is not in {doc.file}") from None

    def _index_subtypes(self) -> dict[tuple[str, str], dict[str, str]]:
        """(base uri, base name) -> {discriminator value: subtype's schema uri}."""
        index: dict[tuple[str, str], dict[str, str]] = {}
        seen = {doc.uri for doc in self.docs.values()}
        for uri in sorted(seen):
            for name, definition in self.docs[uri].raw.get("definitions", {}).items():
                for parent in definition.get("allOf", []):
                    if "$ref" not in parent:
                        continue
                    parent_uri, fragment, node = self._resolve(uri, parent["$ref"])
                    if isinstance(node, dict) and "discriminator" in node:
                        value = definition.get("x-ms-discriminator-value", name)
                        index.setdefault((parent_uri, fragment.rsplit("/", 1)[-1]), {})[value] = (
                            f"{uri}#/definitions/{name}"
                        )
        return index

    def _define(self, uri: str, name: str) -> str:
        """Converts definition `name` of `uri` (once) and answers the $ref to use for it."""
        document = self.out.setdefault(uri, {"definitions": {}, "polymorphic": {}})
        raw = self.docs[uri].raw["definitions"][name]
        if name not in document["definitions"]:
            document["definitions"][name] = {}  # a placeholder: definitions may refer to themselves
            document["definitions"][name] = self._schema(raw, uri, top=True)
        if "discriminator" not in raw:
            return f"{uri}#/definitions/{name}"
        if name not in document["polymorphic"]:
            mapping = self._subtypes.get((uri, name), {})
            for target in mapping.values():
                target_uri, _, target_name = target.partition("#/definitions/")
                self._define(target_uri, target_name)
            document["polymorphic"][name] = {
                "type": "object",
                "x-discriminator": {"property": raw["discriminator"], "mapping": dict(mapping)},
            }
        return f"{uri}#/polymorphic/{name}"

    def _ref(self, ref: str, base: str) -> str:
        uri, fragment, _ = self._resolve(base, ref)
        parts = fragment.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "definitions":
            raise ContractError(f"a schema $ref must name a definition: {ref!r} (from {base})")
        return self._define(uri, parts[1])

    def read_only(self, node: Any, base: str) -> bool:
        if not isinstance(node, dict):
            return False
        if node.get("readOnly") is True:
            return True
        if "$ref" in node:
            _, _, target = self._resolve(base, node["$ref"])
            return isinstance(target, dict) and target.get("readOnly") is True
        return False

    def schema(self, node: Any, base: str) -> dict[str, Any]:
        return self._schema(node, base, top=False)

    def _schema(self, node: Any, base: str, *, top: bool) -> dict[str, Any]:
        if not isinstance(node, dict):
            return {}
        if self.request and not top and self.read_only(node, base):
            return {"x-read-only": True}
        core = {"$ref": self._ref(node["$ref"], base)} if "$ref" in node else self._plain(node, base)
        if node.get("x-nullable") is True:
            return {"anyOf": [core, {"type": "null"}]}
        return core

    def _plain(self, node: dict[str, Any], base: str) -> dict[str, Any]:
        out: dict[str, Any] = {key: node[key] for key in _SCHEMA_KEYWORDS if key in node}
        if out.get("type") == "file":
            del out["type"]
        if "pattern" in node:
            out["pattern"] = _ecma(node["pattern"])
        if "enum" in out and node.get("x-nullable") is True:
            out["enum"] = [*out["enum"], None]
        if "items" in node:
            out["items"] = self.schema(node["items"], base)
        members = _Members()
        self._collect(node, base, members)
        if members.typed_object and "type" not in out:
            out["type"] = "object"
        if members.properties:
            out["properties"] = {
                name: self.schema(raw, where) for name, (raw, where) in members.properties.items()
            }
        required = [
            name
            for name in members.required
            if not (self.request and name in members.properties and self.read_only(*members.properties[name]))
        ]
        if required:
            out["required"] = required
        if members.additional is not None:
            raw, where = members.additional
            if isinstance(raw, dict):
                out["additionalProperties"] = self.schema(raw, where)
            elif raw is False:
                out["additionalProperties"] = False
        elif members.properties:
            out["additionalProperties"] = False
        return out

    def _collect(self, node: dict[str, Any], base: str, members: _Members) -> None:
        """Properties, required names and additionalProperties of `node`, its allOf parents first."""
        for parent in node.get("allOf", []):
            if "$ref" in parent:
                uri, _, target = self._resolve(base, parent["$ref"])
                self._collect(target, uri, members)
            else:
                self._collect(parent, base, members)
        if node.get("type") == "object" or "properties" in node:
            members.typed_object = True
        for name, raw in node.get("properties", {}).items():
            members.properties[name] = (raw, base)
        for name in node.get("required", []):
            if name not in members.required:
                members.required.append(name)
        if "additionalProperties" in node:
            members.additional = (node["additionalProperties"], base)


@dataclass
class _Members:
    properties: dict[str, tuple[Any, str]] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    additional: tuple[Any, str] | None = None
    typed_object: bool = False


# -- operations ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # path | query
    required: bool
    schema: dict[str, Any]


@dataclass(frozen=True)
class Operation:
    id: str
    method: str
    template: str
    api_version: str
    file: str
    pattern: re.Pattern[str]
    path_names: tuple[str, ...]
    parameters: tuple[Parameter, ...]
    body: dict[str, Any] | None  # the request body's schema (request mode), when it has one
    body_required: bool
    responses: Mapping[str, dict[str, Any] | None]  # status or "default" -> schema, None: no body

    def sample_path(self) -> str:
        """The template with every path parameter filled in (for mapping routes to operations)."""
        return re.sub(r"\{[^}]+\}", "x1", self.template)


def _template_pattern(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    names: list[str] = []
    pieces: list[str] = []
    for literal, name in re.findall(r"([^{]*)(?:\{([^}]+)\})?", template):
        pieces.append(re.escape(literal))
        if name:
            pieces.append(f"(?P<p{len(names)}>[^/]+)")
            names.append(name)
    return re.compile("^" + "".join(pieces) + "/?$", re.IGNORECASE), tuple(names)


@dataclass
class Violation:
    """A request or an answer outside the contract, as the simulator saw it."""

    kind: str  # request | response
    route: str
    operation: str
    method: str
    path: str
    status: int | None
    problems: tuple[str, ...]

    def __str__(self) -> str:
        answered = f" answered {self.status}" if self.status is not None else ""
        return (
            f"{self.kind} of {self.method} {self.path} (route {self.route}, {self.operation}){answered}: "
            + "; ".join(self.problems)
        )


class Contract:
    """The kept operations, ready to check requests and answers."""

    def __init__(self, directory: Path = SPECS) -> None:
        docs = _load(directory)
        self._requests = _Converter(docs, request=True)
        self._answers = _Converter(docs, request=False)
        operations: list[Operation] = []
        for uri in sorted({doc.uri for doc in docs.values()}):
            doc = docs[uri]
            version = str(doc.raw.get("info", {}).get("version", ""))
            for template, item in doc.raw.get("paths", {}).items():
                for method in _HTTP_METHODS:
                    if method in item:
                        operations.append(self._operation(doc, version, template, item, method))
        self.operations: tuple[Operation, ...] = tuple(operations)
        self._request_registry = _registry(self._requests.out)
        self._answer_registry = _registry(self._answers.out)

    def _operation(
        self, doc: _Doc, version: str, template: str, item: dict[str, Any], method: str
    ) -> Operation:
        raw = item[method]
        parameters: list[Parameter] = []
        body: dict[str, Any] | None = None
        body_required = False
        for given in [*item.get("parameters", []), *raw.get("parameters", [])]:
            where, param = doc.uri, given
            if "$ref" in given:
                where, _, param = self._requests._resolve(doc.uri, given["$ref"])
            if param["in"] == "body":
                body = self._requests.schema(param["schema"], where)
                body_required = bool(param.get("required"))
            elif param["in"] in ("path", "query"):
                parameters.append(
                    Parameter(
                        param["name"],
                        param["in"],
                        bool(param.get("required")),
                        self._requests.schema(
                            {k: v for k, v in param.items() if k in _PARAMETER_KEYWORDS}, where
                        ),
                    )
                )
        responses: dict[str, dict[str, Any] | None] = {}
        for status, declared in raw.get("responses", {}).items():
            schema = declared.get("schema")
            responses[status] = None if schema is None else self._answers.schema(schema, doc.uri)
        pattern, names = _template_pattern(template)
        return Operation(
            id=raw["operationId"],
            method=method.upper(),
            template=template,
            api_version=version,
            file=doc.file,
            pattern=pattern,
            path_names=names,
            parameters=tuple(parameters),
            body=body,
            body_required=body_required,
            responses=responses,
        )

    # -- lookups -----------------------------------------------------------------------------------
    def operation(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        for operation in self.operations:
            if operation.method != method:
                continue
            found = operation.pattern.match(path)
            if found:
                values = {name: unquote(found[f"p{i}"]) for i, name in enumerate(operation.path_names)}
                return operation, values
        return None

    def operation_of(self, method: str, path: str) -> Operation | None:
        found = self.operation(method, path)
        return found[0] if found else None

    def served(self, routes: Iterable[Any]) -> dict[str, Operation]:
        """Route name -> the kept operation it serves, for routes with `method` and `pattern`."""
        served: dict[str, Operation] = {}
        for route in routes:
            for operation in self.operations:
                if operation.method == route.method and route.pattern.match(operation.sample_path()):
                    served[route.name] = operation
        return served

    # -- checks ------------------------------------------------------------------------------------
    def check_request(
        self, method: str, path: str, query: Mapping[str, str], body: Any
    ) -> tuple[Operation | None, list[str]]:
        """The operation `method path` is, and what is wrong with the request (nothing: [])."""
        found = self.operation(method, path)
        if found is None:
            return None, [f"no kept definition has an operation {method} {path}"]
        operation, values = found
        if query.get("api-version") != operation.api_version:
            return operation, []  # no kept definition: the simulator refuses it (check_response sees to it)
        problems: list[str] = []
        for parameter in operation.parameters:
            given = values.get(parameter.name) if parameter.location == "path" else query.get(parameter.name)
            if given is None:
                if parameter.required:
                    problems.append(f"{parameter.location} parameter {parameter.name!r} is required")
                continue
            problems += [
                f"{parameter.location} parameter {parameter.name!r}: {message}"
                for message in _parameter_problems(parameter.schema, given)
            ]
        if operation.body is None:
            if body is not None:
                problems.append(f"{operation.id} takes no request body")
        elif body is None:
            if operation.body_required:
                problems.append(f"{operation.id} requires a request body")
        else:
            problems += _problems(
                _Checker(operation.body, registry=self._request_registry, format_checker=_FORMATS),
                body,
                "body",
            )
        return operation, problems

    def check_response(
        self, operation: Operation, status: int, body: Any, api_version: str | None
    ) -> list[str]:
        """What is wrong with an answer to a request of `operation` (nothing: [])."""
        if status < 400 and api_version != operation.api_version:
            return [
                f"answered api-version {api_version!r}, which has no kept definition "
                f"({operation.id} is kept for {operation.api_version})"
            ]
        key = str(status)
        if key not in operation.responses:
            if status < 400 or "default" not in operation.responses:
                declared = ", ".join(operation.responses)
                return [f"status {status} is not a response of {operation.id} (it declares {declared})"]
            key = "default"
        schema = operation.responses[key]
        if schema is None:
            return [] if body is None else [f"{operation.id} declares no body for {key}, one was sent"]
        if body is None:
            return [f"{operation.id} declares a body for {key}, none was sent"]
        return _problems(
            _Checker(schema, registry=self._answer_registry, format_checker=_FORMATS), body, "body"
        )

    def summary(self, routes: Iterable[Any]) -> dict[str, int]:
        """How much of the contract the simulator's routes are checked against."""
        served = list({op.id: op for op in self.served(routes).values()}.values())
        return {
            "operations": len(served),
            "request_shapes": sum(1 for op in served if op.body is not None),
            "parameter_sets": sum(1 for op in served if op.parameters),
            "response_shapes": sum(len(op.responses) for op in served),
            "response_bodies": sum(1 for op in served for s in op.responses.values() if s is not None),
            "definitions": sum(len(d["definitions"]) for d in self._answers.out.values()),
        }


def _registry(documents: Mapping[str, dict[str, Any]]) -> Registry[Any]:
    return Registry().with_resources(
        (uri, DRAFT4.create_resource(document)) for uri, document in documents.items()
    )


def _problems(checker: Validator, instance: Any, root: str) -> list[str]:
    found: list[str] = []
    for error in sorted(checker.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        found.append(f"{_where(root, error)}: {_message(error)}")
    return found


def _where(root: str, error: ValidationError) -> str:
    where = root
    for part in error.absolute_path:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    return where


def _message(error: ValidationError) -> str:
    if error.validator in ("anyOf", "oneOf") and error.context:
        return "; ".join(sorted({_message(e) for e in error.context}))
    message = str(error.message)
    if error.validator == "additionalProperties" and error.validator_value is False:
        return message.replace("were unexpected", "are not in the definition").replace(
            "was unexpected", "is not in the definition"
        )
    return message


def _parameter_problems(schema: dict[str, Any], given: str) -> list[str]:
    value: Any = given
    kind = schema.get("type")
    if kind == "integer":
        try:
            value = int(given)
        except ValueError:
            return [f"{given!r} is not an integer"]
    elif kind == "number":
        try:
            value = float(given)
        except ValueError:
            return [f"{given!r} is not a number"]
    elif kind == "boolean":
        if fold(given) not in ("true", "false"):
            return [f"{given!r} is not a boolean"]
        value = fold(given) == "true"
    return [e.message for e in _Checker(schema, format_checker=_FORMATS).iter_errors(value)]


@cache
def kept() -> Contract:
    """The contract of tests/reference/specs, read once per process."""
    return Contract()


class ViolationLog:
    """What a simulator saw outside the contract; tests take it and fail on anything in it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[Violation] = []

    def record(self, violation: Violation) -> None:
        with self._lock:
            self._seen.append(violation)

    def take(self) -> list[Violation]:
        with self._lock:
            taken, self._seen = self._seen, []
            return taken


def main() -> None:
    """`python -m devstack.armsim.contract`: what the simulator is checked against (for the README)."""
    from .routes import ROUTES

    contract = kept()
    served = contract.served(ROUTES)
    for route in ROUTES:
        operation = served.get(route.name)
        where = f"{operation.id} {operation.api_version} ({operation.file})" if operation else "-"
        print(f"{route.name:45} {where if operation else 'deliberate: ' + DELIBERATE.get(route.name, '?')}")
    print(json.dumps(contract.summary(ROUTES), indent=2))


if __name__ == "__main__":
    main()
