"""ARM resource ids, parsed case-insensitively: Azure hands back `resourcegroups`, `Images`,
`imageversions` and display-cased names where the request said otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from .casing import fold
from .model import GalleryImageId, GalleryVersionId, TemplateId


class InvalidResourceId(ValueError):
    pass


@dataclass(frozen=True)
class ResourceId:
    subscription_id: str
    resource_group: str
    provider: str
    # (type, name) pairs after the provider, e.g. (("galleries", "g"), ("images", "i"))
    segments: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        return self.segments[-1][1]

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(fold(t) for t, _ in self.segments)

    def key(self) -> str:
        """A case-insensitive identity for comparing two spellings of the same resource."""
        return fold(self.path())

    def path(self) -> str:
        tail = "/".join(f"{t}/{n}" for t, n in self.segments)
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/"
            f"{self.provider}/{tail}"
        )


def parse(resource_id: str) -> ResourceId:
    parts = [p for p in resource_id.strip().split("/") if p]
    if (
        len(parts) < 8
        or len(parts) % 2
        or fold(parts[0]) != "subscriptions"
        or fold(parts[2]) != "resourcegroups"
        or fold(parts[4]) != "providers"
    ):
        raise InvalidResourceId(f"not an ARM resource id: {resource_id!r}")
    pairs = tuple((parts[i], parts[i + 1]) for i in range(6, len(parts), 2))
    return ResourceId(fold(parts[1]), parts[3], parts[5], pairs)


def template_id(subscription_id: str, resource_group: str, name: str) -> TemplateId:
    return TemplateId(
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/"
        f"Microsoft.VirtualMachineImages/imageTemplates/{name}"
    )


def gallery_image_id(resource_id: str) -> GalleryImageId:
    """The gallery image (definition) an id names or belongs to, spelt canonically."""
    parsed = _without_locations(parse(resource_id))
    if fold(parsed.provider) != "microsoft.compute" or parsed.types[:2] != ("galleries", "images"):
        raise InvalidResourceId(f"not a Compute Gallery image id: {resource_id!r}")
    (_, gallery), (_, image) = parsed.segments[:2]
    return GalleryImageId(
        f"/subscriptions/{parsed.subscription_id}/resourceGroups/{parsed.resource_group}/providers/"
        f"Microsoft.Compute/galleries/{gallery}/images/{image}"
    )


def gallery_version_id(resource_id: str) -> GalleryVersionId:
    """A gallery image version id, spelt canonically; accepts AIB's `imageversions` spelling."""
    parsed = _without_locations(parse(resource_id))
    if parsed.types not in (("galleries", "images", "versions"), ("galleries", "images", "imageversions")):
        raise InvalidResourceId(f"not a Compute Gallery image version id: {resource_id!r}")
    return GalleryVersionId(f"{gallery_image_id(resource_id)}/versions/{parsed.name}")


def _without_locations(parsed: ResourceId) -> ResourceId:
    """Some gallery answers put `locations/<region>/` before `Galleries/...`; it names nothing."""
    segments = tuple(s for s in parsed.segments if fold(s[0]) != "locations")
    return ResourceId(parsed.subscription_id, parsed.resource_group, parsed.provider, segments)


def version_name(exact: str | None) -> str:
    """AIB reports a gallery source's exact version as a resource id: the version is its name (a
    Marketplace version comes back as it is)."""
    return (exact or "").rstrip("/").rsplit("/", 1)[-1]


def maybe_gallery_version_id(artifact: str) -> GalleryVersionId | None:
    """The gallery image version a run output names, if it names one (VHDs and managed images don't)."""
    try:
        return gallery_version_id(artifact)
    except ValueError:
        return None
