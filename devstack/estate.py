"""A realistic simulated estate for the demo and the tests, created through the real SDK clients.

One subscription; a Compute Gallery replicating to four regions; golden templates for Ubuntu 22.04
Gen2 (`latest`), Windows Server 2022 (pinned), RHEL 8 (`latest`); a child template built on the Ubuntu
golden image; plus a ManagedImage template (unsupported) and an untagged sandbox (ignored).
Marketplace versions are chosen so that text order and numeric order disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devstack.armsim import SimControl
from rebuilder.adapters.azure_clients import AzureClients

SUBSCRIPTION = "7f3c2a10-5b6e-4c1d-9a8e-2d4f6b8c0e12"
IMAGES_RG = "rg-golden-images"
TEMPLATES_RG = "rg-image-templates"
GALLERY = "acg_golden"
HOME = "westeurope"
REGIONS = ("westeurope", "northeurope", "eastus2", "swedencentral")
IDENTITY = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-identities/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/id-aib-builder"
)

UBUNTU = ("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2")
WINDOWS = ("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-azure-edition")
RHEL = ("RedHat", "RHEL", "8-lvm-gen2")

MARKETPLACE: dict[tuple[str, str, str], tuple[str, ...]] = {
    UBUNTU: ("22.04.202409100", "22.04.202410020", "22.04.202411190"),
    # Text order puts 20348.587 after 20348.2849; numerically it is far older.
    WINDOWS: ("20348.587.220303", "20348.2762.241009", "20348.2849.241106"),
    RHEL: ("8.9.2024021311", "8.10.2024070513", "8.10.2024101012"),
}


# Patch day: the versions the publishers ship (the demo publishes them in every region).
PATCH_DAY: dict[tuple[str, str, str], str] = {
    UBUNTU: "22.04.202501150",
    WINDOWS: "20348.2966.241205",
    RHEL: "8.10.2025011414",
}
# Late in the day Red Hat ships again: the demo's report is written while that build is under way.
LATE: tuple[tuple[str, str, str], str] = (RHEL, "8.10.2025012011")


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    image: str  # gallery image definition it distributes to
    source: dict[str, Any]
    tag: str | None = "auto"
    os_type: str = "Linux"


def _platform(image: tuple[str, str, str], version: str = "latest") -> dict[str, Any]:
    publisher, offer, sku = image
    return {"type": "PlatformImage", "publisher": publisher, "offer": offer, "sku": sku, "version": version}


def gallery_image_id(image: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{IMAGES_RG}/providers/Microsoft.Compute/galleries/"
        f"{GALLERY}/images/{image}"
    )


TEMPLATES = (
    TemplateSpec("ubuntu2204-golden", "ubuntu-22.04-gen2", _platform(UBUNTU)),
    TemplateSpec(
        "winserver2022-golden", "winserver-2022", _platform(WINDOWS, "20348.2849.241106"), os_type="Windows"
    ),
    TemplateSpec("rhel8-golden", "rhel-8", _platform(RHEL), tag="Auto"),
    TemplateSpec(
        "app-ubuntu2204",
        "app-ubuntu-22.04",
        {
            "type": "SharedImageVersion",
            "imageVersionId": gallery_image_id("ubuntu-22.04-gen2") + "/versions/latest",
        },
    ),
    TemplateSpec(
        "legacy-managed",
        "legacy",
        {
            "type": "ManagedImage",
            "imageId": (
                f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{IMAGES_RG}/providers/Microsoft.Compute/images/legacy"
            ),
        },
        tag="manual",
    ),
    TemplateSpec("sandbox-untagged", "sandbox", _platform(UBUNTU), tag=None),
)


def template_body(spec: TemplateSpec) -> dict[str, Any]:
    customize: list[dict[str, Any]] = (
        [{"type": "PowerShell", "name": "baseline", "inline": ["Install-WindowsFeature -Name Web-Server"]}]
        if spec.os_type == "Windows"
        else [
            {
                "type": "Shell",
                "name": "baseline",
                "inline": ["sudo apt-get update", "sudo apt-get -y upgrade"],
            }
        ]
    )
    body: dict[str, Any] = {
        "location": HOME,
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {IDENTITY: {}}},
        "properties": {
            "buildTimeoutInMinutes": 120,
            "source": spec.source,
            "customize": customize,
            "distribute": [
                {
                    "type": "SharedImage",
                    "galleryImageId": gallery_image_id(spec.image),
                    "runOutputName": spec.name,
                    "targetRegions": [
                        {"name": r, "replicaCount": 1, "storageAccountType": "Standard_ZRS"} for r in REGIONS
                    ],
                    "versioning": {"scheme": "Latest", "major": 1},
                }
            ],
            "vmProfile": {"vmSize": "Standard_D4s_v5", "osDiskSizeGB": 64},
        },
    }
    if spec.tag is not None:
        body["tags"] = {"golden-image-rebuild": spec.tag, "owner": "platform-team"}
    return body


def publish_marketplace(control: SimControl) -> None:
    for (publisher, offer, sku), versions in MARKETPLACE.items():
        for version in versions:
            control.publish(
                publisher,
                offer,
                sku,
                version,
                list(REGIONS),
                os="Windows" if publisher == WINDOWS[0] else "Linux",
            )


def create_identity(control: SimControl) -> None:
    """The user-assigned identity every template runs as, as the platform team's deployment creates it
    (a control call: rebuilder needs no identity client, so the simulator serves only the GET)."""
    control.create_identity(IDENTITY, HOME)


def create(clients: AzureClients) -> None:
    """Gallery, image definitions and templates, through the SDK clients (as a platform team would)."""
    compute: Any = clients.compute(SUBSCRIPTION)  # JSON bodies, as a platform team's scripts send them
    compute.galleries.begin_create_or_update(
        IMAGES_RG, GALLERY, {"location": HOME, "properties": {"description": "Golden images"}}
    ).result()
    for spec in TEMPLATES:
        compute.gallery_images.begin_create_or_update(
            IMAGES_RG,
            GALLERY,
            spec.image,
            {
                "location": HOME,
                "properties": {
                    "osType": spec.os_type,
                    "osState": "Generalized",
                    "hyperVGeneration": "V2",
                    "identifier": {"publisher": "contoso", "offer": "golden", "sku": spec.image},
                },
            },
        ).result()
    templates = clients.imagebuilder(SUBSCRIPTION).virtual_machine_image_templates
    for spec in TEMPLATES:
        templates.begin_create_or_update(TEMPLATES_RG, spec.name, template_body(spec)).result()


def build_baselines(clients: AzureClients, control: SimControl) -> None:
    """Run each golden template once, then the child, so the estate starts from published images."""
    templates = clients.imagebuilder(SUBSCRIPTION).virtual_machine_image_templates
    for name in ("ubuntu2204-golden", "winserver2022-golden", "rhel8-golden"):
        templates.begin_run(TEMPLATES_RG, name, polling=False)
    control.advance(3 * 3600)
    templates.begin_run(TEMPLATES_RG, "app-ubuntu2204", polling=False)
    control.advance(3 * 3600)


# A gated pair: the parent's distributor publishes candidates (excludeFromLatest), so its
# child — whose source is the parent image's `latest` — builds only once a candidate is promoted.
GATED, GATED_CHILD = "ubuntu2204-gated", "app-gated"


def create_gated(
    clients: AzureClients,
    tags: Mapping[str, str],
    *,
    validate: dict[str, Any] | None = None,
    gated: bool = True,
) -> tuple[TemplateSpec, TemplateSpec]:
    """The gated parent (with `tags`, and `validate` if given) and its child, with their image
    definitions, through the SDK clients (`gated=False`: the same parent, publishing into latest)."""
    compute: Any = clients.compute(SUBSCRIPTION)
    templates = clients.imagebuilder(SUBSCRIPTION).virtual_machine_image_templates
    specs = (
        TemplateSpec(GATED, "ubuntu-gated", _platform(UBUNTU)),
        TemplateSpec(
            GATED_CHILD,
            "app-gated",
            {
                "type": "SharedImageVersion",
                "imageVersionId": gallery_image_id("ubuntu-gated") + "/versions/latest",
            },
        ),
    )
    for spec in specs:
        compute.gallery_images.begin_create_or_update(
            IMAGES_RG,
            GALLERY,
            spec.image,
            {
                "location": HOME,
                "properties": {
                    "osType": "Linux",
                    "osState": "Generalized",
                    "hyperVGeneration": "V2",
                    "identifier": {"publisher": "contoso", "offer": "gated", "sku": spec.image},
                },
            },
        ).result()
        body = template_body(spec)
        if spec.name == GATED:
            body["properties"]["distribute"][0]["excludeFromLatest"] = gated
            body["tags"].update(tags)
            if validate is not None:
                body["properties"]["validate"] = validate
        templates.begin_create_or_update(TEMPLATES_RG, spec.name, body).result()
    return specs
