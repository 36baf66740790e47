"""Service settings: read from the environment once, validated, every problem reported at once.

Pure: no Azure SDK import. `Settings.from_env` is called by the composition root on the first
invocation that needs it, never at import time, so a bad setting fails that invocation with a
message naming the setting instead of hiding every function from the Functions host.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar
from urllib.parse import urlsplit

from rebuilder.domain import policies
from rebuilder.domain.casing import fold
from rebuilder.domain.model import Scope
from rebuilder.domain.runs import Policy

_T = TypeVar("_T")

_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# Resource group names: 1-90 of letters, digits, '_', '-', '.', '(' and ')'; not ending with '.'.
_SCOPE = re.compile(rf"^/subscriptions/({_GUID})(?:/resourceGroups/([\w\-.()]{{0,89}}[\w\-()]))?/?$", re.I)
_TABLE_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,39}$")
# NCRONTAB as the Functions timer trigger reads it: six fields, seconds first.
_NCRONTAB_FIELD = re.compile(r"^[0-9A-Za-z*/,\-]+$")
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# App role values as Microsoft Entra ID allows them: no spaces; letters, digits and . _ -
_ROLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")


class Cloud(StrEnum):
    AZURE = "AzureCloud"
    US_GOVERNMENT = "AzureUSGovernment"
    CHINA = "AzureChinaCloud"


# The audience azure-eventgrid asks tokens for when publishing (its DEFAULT_EVENTGRID_SCOPE; the notifier
# uses the default).
EVENTGRID_CREDENTIAL_SCOPE = "https://eventgrid.azure.net/.default"
ARM_ENDPOINTS: Mapping[Cloud, str] = {
    Cloud.AZURE: "https://management.azure.com",
    Cloud.US_GOVERNMENT: "https://management.usgovcloudapi.net",
    Cloud.CHINA: "https://management.chinacloudapi.cn",
}
AUTHORITY_HOSTS: Mapping[Cloud, str] = {
    Cloud.AZURE: "login.microsoftonline.com",
    Cloud.US_GOVERNMENT: "login.microsoftonline.us",
    Cloud.CHINA: "login.chinacloudapi.cn",
}


@dataclass(frozen=True)
class LedgerConnection:
    """Where the ledger lives: a connection string (Azurite, keys) or an endpoint used with identity."""

    connection_string: str | None = None
    endpoint: str | None = None

    @property
    def where(self) -> str:
        """The account, said without its key: the endpoint, the connection string's TableEndpoint or
        AccountName, or the development storage."""
        if self.endpoint:
            return self.endpoint
        pairs = (p.partition("=") for p in (self.connection_string or "").split(";"))
        parts = {fold(k.strip()): v.strip() for k, _, v in pairs}
        if parts.get("tableendpoint"):
            return parts["tableendpoint"].rstrip("/")
        if parts.get("accountname"):
            return f"account {parts['accountname']}"
        return "the local development storage (UseDevelopmentStorage=true)"


class SettingsError(ValueError):
    """Every problem found in the settings, each naming the setting it is about."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} invalid setting(s):\n{listed}")


@dataclass(frozen=True)
class Settings:
    scopes: tuple[Scope, ...]
    ledger: LedgerConnection
    table_prefix: str = "rebuilder"
    cloud: Cloud = Cloud.AZURE
    arm_endpoint: str = ARM_ENDPOINTS[Cloud.AZURE]
    arm_token: str | None = field(default=None, repr=False)
    watch_schedule: str = "0 */15 * * * *"
    reconcile_schedule: str = "0 */5 * * * *"
    arm_retry_total: int = 6
    arm_retry_backoff_seconds: float = 2.0
    arm_polling_interval_seconds: float = 15.0
    arm_timeout_seconds: int = 60
    watch_concurrency: int = 8
    # The rebuild policy's defaults are the domain's (rebuilder/domain/runs.py Policy): stated once.
    max_concurrent_runs: int = Policy.max_concurrent_runs
    max_run_attempts: int = Policy.max_attempts
    retry_backoff_seconds: int = int(Policy.retry_backoff.total_seconds())
    run_timeout_minutes: int = int(Policy.run_timeout.total_seconds() // 60)
    repair_limit: int = Policy.repair_limit
    disable_after_failures: int = Policy.disable_after
    max_temporary_refusals: int = Policy.temporary_refusals
    events_topic: str | None = None  # an Event Grid topic endpoint (…/api/events) for CloudEvents out
    read_role: str = "Ledger.Read"  # app roles the HTTP API asks of the App Service principal
    request_role: str = "Rebuild.Request"
    admin_role: str = "Rebuild.Admin"
    # App Service sets WEBSITE_AUTH_ENABLED when App Service Authentication fronts the app: only then
    # is X-MS-CLIENT-PRINCIPAL the platform's word (it strips what clients send), not the caller's.
    app_service_auth: bool = False
    # Rebuild policies every template has unless its tags say otherwise (REBUILDER_DEFAULT_<TAG>, the
    # tag's own grammar; rebuilder/domain/policies.py). None by default: source updates only.
    rebuild_defaults: policies.Rules = field(default_factory=policies.Rules)

    @property
    def arm_credential_scope(self) -> str:
        return self.arm_endpoint.rstrip("/") + "/.default"

    @property
    def authority_host(self) -> str:
        return AUTHORITY_HOSTS[self.cloud]

    @property
    def subscription_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.subscription_id for s in self.scopes))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        reader = _Reader(env)
        scopes = reader.required("REBUILDER_SCOPES", _parse_scopes)
        ledger = reader.required("REBUILDER_LEDGER", _parse_ledger)
        cloud = reader.optional("REBUILDER_CLOUD", _parse_cloud, Cloud.AZURE)
        arm_endpoint = reader.optional("REBUILDER_ARM_ENDPOINT", _parse_https_url, None)
        arm_token = env.get("REBUILDER_ARM_TOKEN", "").strip() or None
        if arm_token and not arm_endpoint:
            reader.problem(
                "REBUILDER_ARM_TOKEN: a static token is for the local simulator and tests only; "
                "it needs REBUILDER_ARM_ENDPOINT to be set too"
            )
        settings = cls(
            scopes=scopes or (),
            ledger=ledger or LedgerConnection(),
            table_prefix=reader.optional("REBUILDER_TABLE_PREFIX", _parse_table_prefix, cls.table_prefix),
            cloud=cloud,
            arm_endpoint=arm_endpoint or ARM_ENDPOINTS[cloud],
            arm_token=arm_token,
            watch_schedule=reader.optional("REBUILDER_WATCH_SCHEDULE", _parse_ncrontab, cls.watch_schedule),
            reconcile_schedule=reader.optional(
                "REBUILDER_RECONCILE_SCHEDULE", _parse_ncrontab, cls.reconcile_schedule
            ),
            arm_retry_total=reader.optional(
                "REBUILDER_ARM_RETRY_TOTAL", _int_between(0, 20), cls.arm_retry_total
            ),
            arm_retry_backoff_seconds=reader.optional(
                "REBUILDER_ARM_RETRY_BACKOFF_SECONDS",
                _float_between(0.0, 120.0),
                cls.arm_retry_backoff_seconds,
            ),
            arm_polling_interval_seconds=reader.optional(
                "REBUILDER_ARM_POLLING_INTERVAL_SECONDS",
                _float_between(0.0, 300.0),
                cls.arm_polling_interval_seconds,
            ),
            arm_timeout_seconds=reader.optional(
                "REBUILDER_ARM_TIMEOUT_SECONDS", _int_between(1, 600), cls.arm_timeout_seconds
            ),
            watch_concurrency=reader.optional(
                "REBUILDER_WATCH_CONCURRENCY", _int_between(1, 64), cls.watch_concurrency
            ),
            max_concurrent_runs=reader.optional(
                "REBUILDER_MAX_CONCURRENT_RUNS", _int_between(1, 1000), cls.max_concurrent_runs
            ),
            max_run_attempts=reader.optional(
                "REBUILDER_MAX_RUN_ATTEMPTS", _int_between(1, 10), cls.max_run_attempts
            ),
            retry_backoff_seconds=reader.optional(
                "REBUILDER_RETRY_BACKOFF_SECONDS", _int_between(1, 86_400), cls.retry_backoff_seconds
            ),
            run_timeout_minutes=reader.optional(
                "REBUILDER_RUN_TIMEOUT_MINUTES", _int_between(10, 2_880), cls.run_timeout_minutes
            ),
            repair_limit=reader.optional("REBUILDER_REPAIR_LIMIT", _int_between(0, 10), cls.repair_limit),
            disable_after_failures=reader.optional(
                "REBUILDER_DISABLE_AFTER_FAILURES", _int_between(1, 100), cls.disable_after_failures
            ),
            max_temporary_refusals=reader.optional(
                "REBUILDER_MAX_TEMPORARY_REFUSALS", _int_between(0, 100), cls.max_temporary_refusals
            ),
            events_topic=reader.optional("REBUILDER_EVENTS_TOPIC", _parse_https_url, None),
            read_role=reader.optional("REBUILDER_READ_ROLE", _parse_role, cls.read_role),
            request_role=reader.optional("REBUILDER_REQUEST_ROLE", _parse_role, cls.request_role),
            admin_role=reader.optional("REBUILDER_ADMIN_ROLE", _parse_role, cls.admin_role),
            app_service_auth=fold(env.get("WEBSITE_AUTH_ENABLED", "").strip()) in ("true", "1"),
            rebuild_defaults=_rebuild_defaults(reader),
        )
        if reader.problems:
            raise SettingsError(reader.problems)
        return settings


def _rebuild_defaults(reader: _Reader) -> policies.Rules:
    rules = policies.Rules()
    for tag in policies.TAGS:
        name = policies.SETTINGS[tag]
        raw = reader.env.get(name, "").strip()
        if raw:
            try:
                rules = policies.with_value(rules, tag, raw)
            except ValueError as error:
                reader.problem(f"{name}: {error}")
    return rules


class _Reader:
    """Collects problems instead of stopping at the first one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def required(self, name: str, parse: Callable[[str], _T]) -> _T | None:
        raw = self.env.get(name, "").strip()
        if not raw:
            self.problem(f"{name}: required, not set")
            return None
        return self._parse(name, raw, parse)

    def optional(self, name: str, parse: Callable[[str], _T], default: _T) -> _T:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        parsed = self._parse(name, raw, parse)
        return default if parsed is None else parsed

    def _parse(self, name: str, raw: str, parse: Callable[[str], _T]) -> _T | None:
        try:
            return parse(raw)
        except ValueError as error:
            self.problem(f"{name}: {error}")
            return None


def _parse_scopes(raw: str) -> tuple[Scope, ...]:
    scopes: list[Scope] = []
    bad: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        match = _SCOPE.match(item)
        if not match:
            bad.append(repr(item))
            continue
        scopes.append(Scope(fold(match.group(1)), match.group(2)))
    if bad:
        raise ValueError(
            f"{', '.join(bad)} is not /subscriptions/<subscription id> "
            "or /subscriptions/<subscription id>/resourceGroups/<name>"
        )
    return tuple(dict.fromkeys(scopes))


def _parse_ledger(raw: str) -> LedgerConnection:
    if fold(raw).startswith(("http://", "https://")):
        url = urlsplit(raw)
        if url.scheme == "http" and url.hostname not in _LOOPBACK_HOSTS:
            raise ValueError("an endpoint URL must use https (http only for a loopback emulator)")
        if not url.hostname:
            raise ValueError("the endpoint URL has no host")
        return LedgerConnection(endpoint=raw.rstrip("/"))
    if fold(raw.replace(" ", "")) == "usedevelopmentstorage=true":
        return LedgerConnection(connection_string="UseDevelopmentStorage=true")
    parts = {}
    for segment in filter(None, raw.split(";")):
        key, sep, value = segment.partition("=")
        if not sep:
            raise ValueError("not a Table endpoint URL nor a connection string of key=value; pairs")
        parts[fold(key.strip())] = value
    if "accountname" not in parts and "tableendpoint" not in parts:
        raise ValueError("the connection string names no AccountName nor TableEndpoint")
    return LedgerConnection(connection_string=raw)


def _parse_cloud(raw: str) -> Cloud:
    for cloud in Cloud:
        if fold(raw) == fold(cloud.value):
            return cloud
    raise ValueError(f"{raw!r} is not one of {', '.join(c.value for c in Cloud)}")


def _parse_https_url(raw: str) -> str:
    url = urlsplit(raw)
    if url.scheme != "https" or not url.hostname:
        raise ValueError(f"{raw!r} is not an https:// URL")
    return raw.rstrip("/")


def _parse_table_prefix(raw: str) -> str:
    if not _TABLE_PREFIX.match(raw):
        raise ValueError(f"{raw!r} must be 1-40 letters or digits, starting with a letter")
    return raw


def _parse_role(raw: str) -> str:
    if not _ROLE.match(raw):
        raise ValueError(f"{raw!r} is not an app role value (1-120 letters, digits, '.', '_' or '-')")
    return raw


def _parse_ncrontab(raw: str) -> str:
    fields = raw.split()
    if len(fields) != 6 or not all(_NCRONTAB_FIELD.match(f) for f in fields):
        raise ValueError(
            f"{raw!r} is not a six-field NCRONTAB expression (second minute hour day month weekday)"
        )
    return raw


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is not between {low} and {high}")
        return value

    return parse


def _float_between(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
        if not low <= value <= high:
            raise ValueError(f"{value:g} is not between {low:g} and {high:g}")
        return value

    return parse
