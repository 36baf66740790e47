"""An image template's definition as AIB accepts it back: what recreating a pinned template sends.

Pure. AIB templates are immutable, so a pinned template (PlatformImage with an explicit version, or a
gallery source naming one version) is rebuilt from a new version by deleting it and creating it again
with that version and nothing else changed. The definition is kept as canonical JSON so its hash is
stable: the ledger records the hash before and after, and the new definition itself, so a crash
between the delete and the create can be healed from the ledger alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_READ_ONLY = frozenset(
    {"provisioningState", "provisioningError", "lastRunStatus", "exactStagingResourceGroup"}
)


@dataclass(frozen=True)
class TemplateDefinition:
    text: str  # canonical JSON: {"identity", "location", "properties", "tags"}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> TemplateDefinition:
        """The writable part of a template as ARM returns it: read-only fields, the resolved source
        version and the identities' generated ids left out; tags and identity kept."""
        properties = {k: v for k, v in _object(body.get("properties")).items() if k not in _READ_ONLY}
        source = {k: v for k, v in _object(properties.get("source")).items() if k != "exactVersion"}
        properties["source"] = source
        identity = _object(body.get("identity"))
        document: dict[str, Any] = {
            "location": body.get("location"),
            "tags": _object(body.get("tags")),
            "identity": {
                "type": identity.get("type"),
                "userAssignedIdentities": {
                    str(k): {} for k in _object(identity.get("userAssignedIdentities"))
                },
            },
            "properties": properties,
        }
        return cls(json.dumps(document, sort_keys=True, separators=(",", ":"), default=str))

    @property
    def body(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.text)
        return document

    @property
    def hash(self) -> str:
        return "sha256:" + hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def identity_ids(self) -> tuple[str, ...]:
        """The user-assigned identities the template runs as (AIB's identity)."""
        return tuple(_object(_object(self.body.get("identity")).get("userAssignedIdentities")))

    @property
    def source_version(self) -> str:
        source = self.body["properties"].get("source") or {}
        if source.get("type") == "SharedImageVersion":
            return str(source.get("imageVersionId") or "").rstrip("/").rsplit("/", 1)[-1]
        return str(source.get("version") or "")

    def with_source_version(self, version: str) -> TemplateDefinition:
        """The same definition building from `version` (a Marketplace version, or a gallery version
        name for a gallery source)."""
        document = self.body
        source = document["properties"]["source"]
        if source.get("type") == "SharedImageVersion":
            image = str(source.get("imageVersionId") or "").rstrip("/").rsplit("/versions/", 1)[0]
            source["imageVersionId"] = f"{image}/versions/{version}"
        else:
            source["version"] = version
        return TemplateDefinition(json.dumps(document, sort_keys=True, separators=(",", ":"), default=str))


def _object(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}
