"""Literal ledger records for tests: a build of a template, claimed at a given time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from rebuilder.domain.builds import Build, BuildReason, BuildSource, Provenance, new_build_id
from rebuilder.domain.model import SourceKind, SourceRef, TemplateId
from rebuilder.domain.regions import Region

T0 = datetime(2026, 11, 10, 6, 0, tzinfo=UTC)
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
UBUNTU = SourceRef(
    SourceKind.PLATFORM_IMAGE, "westeurope", "Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2"
)


def template_id(name: str, resource_group: str = "rg-images") -> TemplateId:
    return TemplateId(
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{resource_group}/providers/"
        f"Microsoft.VirtualMachineImages/imageTemplates/{name}"
    )


def build(
    name: str = "ubuntu2204",
    *,
    key: str = "source-update:22.04.202501150",
    at: datetime = T0,
    version: str = "22.04.202501150",
    **changes: Any,
) -> Build:
    tid = changes.pop("template_id", template_id(name))
    made = Build(
        id=new_build_id(tid, at, key),
        template_id=tid,
        template_name=name,
        location=Region("westeurope"),
        reason=BuildReason.SOURCE_UPDATE,
        provenance=Provenance("timer", "", "corr-1", key),
        source=BuildSource(
            SourceKind.PLATFORM_IMAGE,
            UBUNTU.publisher,
            UBUNTU.offer,
            UBUNTU.sku,
            declared_version="latest",
            resolved_version=version,
        ),
        created_at=at,
        updated_at=at,
        previous_baseline="22.04.202411190",
    )
    return dataclasses.replace(made, **changes)
