"""Real ARM bodies are messy; translating them into domain records must never crash a pass."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rebuilder.adapters import shapes
from rebuilder.domain import resource_ids
from rebuilder.domain.model import ReplicationState, RunState, RunSubState, SourceKind

TEMPLATE_ID = (
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourcegroups/RG-Templates/providers/"
    "Microsoft.VirtualMachineImages/imageTemplates/ubuntu"
)


@pytest.mark.parametrize(
    ("status", "state", "sub_state", "ended"),
    [
        (
            {
                "runState": "Running",
                "runSubState": "Customizing",
                "startTime": "2026-11-10T06:00:00Z",
                "endTime": "0001-01-01T00:00:00Z",
            },
            RunState.RUNNING,
            RunSubState.CUSTOMIZING,
            None,
        ),
        (
            {
                "runState": "Running",
                "runSubState": "Queued",
                "startTime": "2026-11-10T06:00:00Z",
                "endTime": "2026-11-10T06:00:00Z",
            },
            RunState.RUNNING,
            RunSubState.QUEUED,
            None,
        ),
        (
            {
                "runState": "succeeded",
                "startTime": "2026-11-10T06:00:00.1234567Z",
                "endTime": "2026-11-10T07:00:00.0000000Z",
            },
            RunState.SUCCEEDED,
            None,
            datetime(2026, 11, 10, 7, tzinfo=UTC),
        ),
        (
            {
                "runState": "PartiallySucceeded",
                "runSubState": None,
                "startTime": "2026-11-10T06:00:00",
                "endTime": "2026-11-10T08:00:00",
            },
            RunState.PARTIALLY_SUCCEEDED,
            None,
            datetime(2026, 11, 10, 8, tzinfo=UTC),
        ),
        ({"runState": "Canceling", "runSubState": "SomethingNew"}, RunState.CANCELING, None, None),
        (
            {"runState": "Failed", "startTime": "garbage", "endTime": "2026-11-10T08:00:00Z"},
            RunState.FAILED,
            None,
            None,
        ),
    ],
)
def test_last_run_status_as_aib_really_reports_it(
    status: dict[str, Any], state: RunState, sub_state: RunSubState | None, ended: datetime | None
) -> None:
    run = shapes.last_run(status)
    assert run is not None
    assert (run.state, run.sub_state, run.ended_at) == (state, sub_state, ended)


@pytest.mark.parametrize("status", [None, {}, {"runState": None}, {"runState": "Exploded"}, "text", 7])
def test_no_usable_last_run_status_means_never_run(status: Any) -> None:
    assert shapes.last_run(status) is None


@pytest.mark.parametrize(
    "body",
    [
        {"id": TEMPLATE_ID},
        {"id": TEMPLATE_ID, "name": None, "location": None, "tags": None, "properties": None},
        {"id": TEMPLATE_ID, "properties": {"source": None, "distribute": None, "lastRunStatus": None}},
        {
            "id": TEMPLATE_ID,
            "properties": {
                "source": {"type": "PlatformImage", "publisher": "Canonical"},
                "distribute": [None, {"type": "SharedImage", "galleryImageId": "junk"}],
            },
        },
        {"id": TEMPLATE_ID, "properties": {"source": {"type": "ISO", "sourceUri": "https://x"}}},
    ],
)
def test_templates_with_missing_or_null_fields_still_translate(body: dict[str, Any]) -> None:
    template = shapes.template(body)
    assert template.name == "ubuntu"
    assert template.resource_group == "RG-Templates"
    assert template.id.startswith("/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/")


def test_sources_of_every_kind() -> None:
    platform = shapes.source(
        {
            "type": "platformimage",
            "publisher": "Canonical",
            "offer": "o",
            "sku": "s",
            "version": "latest",
            "exactVersion": "22.04.1",
        }
    )
    assert (platform.kind, str(platform.image), platform.exact_version) == (
        SourceKind.PLATFORM_IMAGE,
        "Canonical:o:s",
        "22.04.1",
    )
    gallery = shapes.source({"type": "SharedImageVersion", "imageVersionId": "/x/versions/latest"})
    assert (gallery.kind, gallery.image_version_id) == (SourceKind.SHARED_IMAGE_VERSION, "/x/versions/latest")
    assert shapes.source({"type": "ManagedImage", "imageId": "/x"}).kind is SourceKind.MANAGED_IMAGE
    unknown = shapes.source({"type": "ISO"})
    assert (unknown.kind, unknown.raw_type) == (SourceKind.UNKNOWN, "ISO")


def test_gallery_versions_with_display_names_and_odd_ids() -> None:
    body = {
        "id": (
            "/subscriptions/S/resourceGroups/rg/providers/Microsoft.Compute/locations/westus/Galleries/g/"
            "Images/i/Versions/1.0.0"
        ),
        "name": "1.0.0",
        "properties": {
            "publishingProfile": {
                "targetRegions": [{"name": "East US 2"}, {"name": None}, "junk"],
                "publishedDate": "2026-11-10T06:00:00Z",
            },
            "provisioningState": "Creating",
            "replicationStatus": {
                "aggregatedState": "InProgress",
                "summary": [
                    {"region": "East US 2", "state": "Replicating", "progress": 40, "details": None},
                    {"region": "West Europe", "state": "Queued?", "progress": None},
                ],
            },
        },
    }
    version = shapes.gallery_version(body)
    assert (
        version.id
        == "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/i/versions/"
        "1.0.0"
    )
    assert version.target_regions == ("eastus2",)
    assert [(r.region, r.state, r.progress) for r in version.replication] == [
        ("eastus2", ReplicationState.REPLICATING, 40),
        ("westeurope", ReplicationState.UNKNOWN, 0),
    ]


def test_run_output_artifact_ids_say_imageversions() -> None:
    artifact = (
        "/subscriptions/S/resourceGroups/rg/providers/Microsoft.Compute/galleries/G/images/I/"
        "imageversions/1.2.3"
    )
    assert resource_ids.gallery_version_id(artifact).endswith("/galleries/G/images/I/versions/1.2.3")


_VALUE = st.one_of(st.none(), st.text(max_size=8), st.integers(), st.lists(st.none(), max_size=3))
_PROPERTY = st.sampled_from(
    ["source", "distribute", "lastRunStatus", "provisioningState", "runState", "type", "startTime", "endTime"]
)


@given(
    st.dictionaries(
        st.sampled_from(["name", "location", "tags", "properties", "identity"]),
        st.one_of(
            _VALUE,
            st.dictionaries(
                _PROPERTY, st.one_of(_VALUE, st.dictionaries(_PROPERTY, _VALUE, max_size=3)), max_size=4
            ),
        ),
        max_size=5,
    )
)
def test_no_body_crashes_translation_beyond_a_clear_invalid_id(body: dict[str, Any]) -> None:
    body = {**body, "id": TEMPLATE_ID}
    assert shapes.template(body).id.endswith("/imageTemplates/ubuntu")


@pytest.mark.parametrize(
    "bad", ["", "/subscriptions/x", "/subscriptions/x/resourceGroups/rg/providers/P/t", "not an id"]
)
def test_invalid_resource_ids_are_refused_clearly(bad: str) -> None:
    with pytest.raises(resource_ids.InvalidResourceId, match="not an ARM resource id"):
        resource_ids.parse(bad)


GALLERY_IMAGE = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/u"


@pytest.mark.parametrize(("flag", "gated"), [(True, True), (False, False), (None, False), ("true", False)])
def test_a_gallery_distributor_excluding_from_latest_publishes_candidates(flag: Any, gated: bool) -> None:
    body = {
        "id": TEMPLATE_ID,
        "properties": {
            "distribute": [
                {
                    "type": "SharedImage",
                    "runOutputName": "golden",
                    "galleryImageId": GALLERY_IMAGE,
                    "excludeFromLatest": flag,
                }
            ]
        },
    }
    [distribution] = shapes.template(body).distributions
    assert distribution.excluded_from_latest is gated  # only a JSON true gates
