"""Azure management clients, built in one place from `Settings`.

Credentials: a static bearer token when `REBUILDER_ARM_TOKEN` is set (local simulator and tests only),
otherwise `DefaultAzureCredential` for the configured cloud. The ARM endpoint and token audience come
from `REBUILDER_CLOUD` or `REBUILDER_ARM_ENDPOINT` (sovereign clouds, Azure Stack Hub, the simulator).
TLS trust follows `REQUESTS_CA_BUNDLE` (requests honours it). Transport retries are the SDK pipeline's,
configured here once; the service itself never sleeps to retry.
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from rebuilder.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, TokenCredential
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.imagebuilder import ImageBuilderClient


class StaticTokenCredential:
    """A TokenCredential that always returns one bearer token (for the local simulator)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo(self._token, int(time.time()) + 3600)


class AzureClients:
    """Lazily built, cached management clients; one per subscription where the API needs it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._compute: dict[str, ComputeManagementClient] = {}
        self._imagebuilder: dict[str, ImageBuilderClient] = {}

    @cached_property
    def credential(self) -> TokenCredential:
        if self._settings.arm_token:
            return StaticTokenCredential(self._settings.arm_token)
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(authority=self._settings.authority_host)

    def _options(self) -> dict[str, Any]:
        s = self._settings
        return {
            "base_url": s.arm_endpoint,
            "credential_scopes": [s.arm_credential_scope],
            "retry_total": s.arm_retry_total,
            "retry_backoff_factor": s.arm_retry_backoff_seconds,
            "retry_backoff_max": 60,
            "polling_interval": s.arm_polling_interval_seconds,
            "connection_timeout": 10,
            "read_timeout": s.arm_timeout_seconds,
            "user_agent": "rebuilder",
        }

    def compute(self, subscription_id: str) -> ComputeManagementClient:
        if subscription_id not in self._compute:
            from azure.mgmt.compute import ComputeManagementClient

            self._compute[subscription_id] = ComputeManagementClient(
                self.credential, subscription_id, **self._options()
            )
        return self._compute[subscription_id]

    def imagebuilder(self, subscription_id: str) -> ImageBuilderClient:
        if subscription_id not in self._imagebuilder:
            from azure.mgmt.imagebuilder import ImageBuilderClient

            self._imagebuilder[subscription_id] = ImageBuilderClient(
                self.credential, subscription_id, **self._options()
            )
        return self._imagebuilder[subscription_id]

    def close(self) -> None:
        for compute in self._compute.values():
            compute.close()
        for imagebuilder in self._imagebuilder.values():
            imagebuilder.close()
        self._compute.clear()
        self._imagebuilder.clear()
