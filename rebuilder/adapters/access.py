"""Access over the ARM pipeline the SDK clients already have: the doctor's read-only probes.

Microsoft.Authorization's Permissions API and Microsoft.ManagedIdentity have no pinned SDK here (and
need none for one GET each): the requests go through a management client's `send_request`, so they
carry the same credential, token audience, retry policy, timeouts and TLS trust as every other ARM
call. Paths and API versions: Permissions_ListForResourceGroup and Permissions_ListForResource
(Microsoft.Authorization 2022-04-01, tests/reference/specs/authorization-permissions-2022-04-01.json);
at a subscription (a REBUILDER_SCOPES entry may be one) the same
`{scope}/providers/Microsoft.Authorization/permissions`, which ARM answers although the published spec
lists only the resource-group and resource forms (Azure/azure-rest-api-specs#19473).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rebuilder.adapters import shapes
from rebuilder.adapters.azure_clients import AzureClients
from rebuilder.adapters.errors import translated
from rebuilder.domain import resource_ids
from rebuilder.domain.casing import fold
from rebuilder.domain.errors import PermanentError
from rebuilder.domain.model import GalleryImageDefinition, GalleryImageId, ManagedIdentity
from rebuilder.domain.permissions import Permission

if TYPE_CHECKING:
    from azure.core.rest import HttpResponse

AUTHORIZATION_API = "2022-04-01"
MANAGED_IDENTITY_API = "2023-01-31"
MAX_PAGES = 100  # a caller holds a handful of roles at a scope; a loop of nextLinks is a fault


class SdkAccess:
    def __init__(self, clients: AzureClients) -> None:
        self._clients = clients

    def get_token(self, audience: str) -> datetime:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            token = self._clients.credential.get_token(audience)
        except ClientAuthenticationError as error:
            first = str(error.message or error).strip().splitlines()[0]
            raise PermanentError(f"get a token for {audience}: {first}") from error
        return datetime.fromtimestamp(token.expires_on, UTC)

    def list_permissions(self, scope: str) -> list[Permission]:
        subscription_id = _subscription(scope)
        url: str | None = f"{scope.rstrip('/')}/providers/Microsoft.Authorization/permissions"
        url = f"{url}?api-version={AUTHORIZATION_API}"
        found: list[Permission] = []
        pages = 0
        while url and pages < MAX_PAGES:
            entries, url = shapes.permissions_page(
                self._get(subscription_id, url, f"read the caller's permissions at {scope}")
            )  # nextLink is absolute: the pipeline sends it as it is
            found += entries
            pages += 1
        return found

    def get_identity(self, identity_id: str) -> ManagedIdentity:
        parsed = resource_ids.parse(identity_id)
        url = f"{parsed.path()}?api-version={MANAGED_IDENTITY_API}"
        return shapes.managed_identity(self._get(parsed.subscription_id, url, f"get identity {parsed.name}"))

    def get_gallery_image(self, image_id: GalleryImageId) -> GalleryImageDefinition:
        parsed = resource_ids.parse(resource_ids.gallery_image_id(image_id))
        (_, gallery), (_, image) = parsed.segments
        with translated(f"get gallery image {gallery}/{image}"):
            found = self._clients.compute(parsed.subscription_id).gallery_images.get(
                parsed.resource_group, gallery, image
            )
            body: dict[str, Any] = found.as_dict()
        return shapes.gallery_image(body)

    def _get(self, subscription_id: str, url: str, action: str) -> dict[str, Any]:
        from azure.core.rest import HttpRequest

        with translated(action):
            response = self._clients.compute(subscription_id).send_request(HttpRequest("GET", url))
            _raise_for(response)
            body = response.json()
        return body if isinstance(body, dict) else {}


def _raise_for(response: HttpResponse) -> None:
    """The SDK's own error mapping for a non-200 ARM answer (as its generated operations do it)."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceNotFoundError,
        map_error,
    )
    from azure.mgmt.core.exceptions import ARMErrorFormat

    if response.status_code == 200:
        return
    error_map = {401: ClientAuthenticationError, 404: ResourceNotFoundError, 409: ResourceExistsError}
    map_error(status_code=response.status_code, response=response, error_map=error_map)
    raise HttpResponseError(response=response, error_format=ARMErrorFormat)


def _subscription(scope: str) -> str:
    parts = [p for p in scope.split("/") if p]
    if len(parts) < 2 or fold(parts[0]) != "subscriptions":
        raise PermanentError(f"read the caller's permissions at {scope}: not an ARM scope")
    return fold(parts[1])
