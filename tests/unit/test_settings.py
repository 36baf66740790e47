"""Settings: read once, validated, every problem named at once."""

from __future__ import annotations

import pytest

from rebuilder.domain.model import Scope
from rebuilder.settings import Cloud, LedgerConnection, Settings, SettingsError

SUB = "11111111-2222-3333-4444-555555555555"
VALID = {"REBUILDER_SCOPES": f"/subscriptions/{SUB}", "REBUILDER_LEDGER": "UseDevelopmentStorage=true"}


def problems(env: dict[str, str]) -> tuple[str, ...]:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    return raised.value.problems


def test_defaults_with_only_the_required_settings() -> None:
    settings = Settings.from_env(VALID)
    assert settings.scopes == (Scope(SUB),)
    assert settings.ledger == LedgerConnection(connection_string="UseDevelopmentStorage=true")
    assert (settings.table_prefix, settings.cloud) == ("rebuilder", Cloud.AZURE)
    assert settings.arm_endpoint == "https://management.azure.com"
    assert settings.arm_credential_scope == "https://management.azure.com/.default"
    assert settings.arm_token is None
    assert settings.watch_schedule == "0 */15 * * * *"


def test_nothing_set_names_both_required_settings() -> None:
    assert problems({}) == ("REBUILDER_SCOPES: required, not set", "REBUILDER_LEDGER: required, not set")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("REBUILDER_SCOPES", "/subscriptions/not-a-guid", "is not /subscriptions/<subscription id>"),
        ("REBUILDER_SCOPES", f"/subscriptions/{SUB}/resourceGroups/bad name", "is not /subscriptions"),
        ("REBUILDER_SCOPES", f"/subscriptions/{SUB},", "'' is not"),
        ("REBUILDER_LEDGER", "http://account.table.core.windows.net", "must use https"),
        ("REBUILDER_LEDGER", "not a connection string", "not a Table endpoint URL"),
        ("REBUILDER_LEDGER", "DefaultEndpointsProtocol=https;AccountKey=abc", "names no AccountName"),
        ("REBUILDER_TABLE_PREFIX", "1abc", "must be 1-40 letters or digits"),
        ("REBUILDER_TABLE_PREFIX", "re-builder", "must be 1-40 letters or digits"),
        ("REBUILDER_CLOUD", "AzureGermanCloud", "is not one of AzureCloud"),
        ("REBUILDER_ARM_ENDPOINT", "http://127.0.0.1:8443", "is not an https:// URL"),
        ("REBUILDER_WATCH_SCHEDULE", "*/15 * * * *", "six-field NCRONTAB"),
        ("REBUILDER_RECONCILE_SCHEDULE", "every five minutes", "six-field NCRONTAB"),
        ("REBUILDER_ARM_RETRY_TOTAL", "many", "is not a whole number"),
        ("REBUILDER_ARM_RETRY_TOTAL", "99", "is not between 0 and 20"),
        ("REBUILDER_ARM_RETRY_BACKOFF_SECONDS", "-1", "is not between 0 and 120"),
        ("REBUILDER_ARM_POLLING_INTERVAL_SECONDS", "soon", "is not a number"),
        ("REBUILDER_ARM_TIMEOUT_SECONDS", "0", "is not between 1 and 600"),
    ],
)
def test_each_invalid_value_is_named(name: str, value: str, expected: str) -> None:
    found = problems({**VALID, name: value})
    assert len(found) == 1
    assert found[0].startswith(f"{name}: ") and expected in found[0]


def test_every_problem_is_listed_at_once() -> None:
    found = problems(
        {
            "REBUILDER_SCOPES": "/subscriptions/x",
            "REBUILDER_CLOUD": "Mars",
            "REBUILDER_TABLE_PREFIX": "_",
            "REBUILDER_WATCH_SCHEDULE": "daily",
            "REBUILDER_ARM_TOKEN": "secret-token-value",
        }
    )
    names = [p.split(":", 1)[0] for p in found]
    assert names == [
        "REBUILDER_SCOPES",
        "REBUILDER_LEDGER",
        "REBUILDER_CLOUD",
        "REBUILDER_ARM_TOKEN",
        "REBUILDER_TABLE_PREFIX",
        "REBUILDER_WATCH_SCHEDULE",
    ]
    assert all("secret-token-value" not in p for p in found)  # never echo a token
    with pytest.raises(SettingsError, match="6 invalid setting"):
        Settings.from_env(
            {
                "REBUILDER_SCOPES": "/subscriptions/x",
                "REBUILDER_CLOUD": "Mars",
                "REBUILDER_TABLE_PREFIX": "_",
                "REBUILDER_WATCH_SCHEDULE": "daily",
                "REBUILDER_ARM_TOKEN": "t",
            }
        )


def test_a_ledger_connection_string_is_never_echoed() -> None:
    found = problems({**VALID, "REBUILDER_LEDGER": "AccountKey=c2VjcmV0;DefaultEndpointsProtocol=https"})
    assert "c2VjcmV0" not in found[0]


def test_scopes_mix_subscriptions_and_resource_groups_and_are_deduplicated() -> None:
    other = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    settings = Settings.from_env(
        {
            **VALID,
            "REBUILDER_SCOPES": (
                f" /subscriptions/{SUB.upper()} , /subscriptions/{other}/resourceGroups/rg-images.(eu)-1 ,"
                f"/subscriptions/{SUB}"
            ),
        }
    )
    assert settings.scopes == (Scope(SUB), Scope(other, "rg-images.(eu)-1"))
    assert settings.subscription_ids == (SUB, other)


@pytest.mark.parametrize(
    ("cloud", "endpoint", "authority"),
    [
        ("AzureCloud", "https://management.azure.com", "login.microsoftonline.com"),
        ("azureusgovernment", "https://management.usgovcloudapi.net", "login.microsoftonline.us"),
        ("AzureChinaCloud", "https://management.chinacloudapi.cn", "login.chinacloudapi.cn"),
    ],
)
def test_sovereign_clouds_choose_their_endpoints(cloud: str, endpoint: str, authority: str) -> None:
    settings = Settings.from_env({**VALID, "REBUILDER_CLOUD": cloud})
    assert (settings.arm_endpoint, settings.authority_host) == (endpoint, authority)
    assert settings.arm_credential_scope == f"{endpoint}/.default"


def test_an_explicit_endpoint_wins_for_azure_stack_hub_and_the_simulator() -> None:
    settings = Settings.from_env(
        {
            **VALID,
            "REBUILDER_ARM_ENDPOINT": "https://management.local.azurestack.external/",
            "REBUILDER_ARM_TOKEN": "tok-3f9a",
        }
    )
    assert settings.arm_endpoint == "https://management.local.azurestack.external"
    assert settings.arm_token == "tok-3f9a"
    assert "tok-3f9a" not in repr(settings)  # the token is kept out of logs


def test_ledger_endpoints_for_managed_identity() -> None:
    settings = Settings.from_env({**VALID, "REBUILDER_LEDGER": "https://acct.table.core.windows.net/"})
    assert settings.ledger == LedgerConnection(endpoint="https://acct.table.core.windows.net")
    local = Settings.from_env({**VALID, "REBUILDER_LEDGER": "http://127.0.0.1:10002/devstoreaccount1"})
    assert local.ledger.endpoint == "http://127.0.0.1:10002/devstoreaccount1"
