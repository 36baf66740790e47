"""What the reconcile decision works on and what it returns (domain/reconcile.py, domain/starts.py):
what the shell gathered for one template, and the typed actions the shell applies in order. Pure
records; every action carries the reason a person reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .builds import Build, BuildId, RegionStatus, Transition
from .definition import TemplateDefinition
from .model import GalleryImageVersion, GalleryVersionId, ImageTemplate, LastRun
from .regions import Region
from .standing import TemplateState


# -- what was gathered --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Distribution:
    """What was read for the build being distributed: its run outputs and the gallery versions they
    name (with replication), and the region rows the ledger already has."""

    build_id: BuildId
    outputs: tuple[str, ...]
    versions: tuple[GalleryImageVersion, ...]
    rows: tuple[RegionStatus, ...]


@dataclass(frozen=True)
class Gathered:
    state: TemplateState
    builds: tuple[Build, ...]  # the template's open builds as stored, oldest first
    template: ImageTemplate | None  # None: Azure says there is no such template
    distributions: Mapping[BuildId, Distribution] = field(default_factory=dict)  # by the build read for


# -- actions --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Save:
    """Write `after` over the stored `before` (with its transition when the state moves)."""

    before: Build
    after: Build
    transition: Transition | None = None
    rows: tuple[RegionStatus, ...] = ()
    trace_lineage: bool = False  # the resolved source version changed: find the parent build again

    def describe(self) -> tuple[str, str]:
        if self.transition is None:
            return f"record {self.after.id}", "what Azure reports now (no change of state)"
        state = self.after.state.value + (f"/{self.after.sub_state.value}" if self.after.sub_state else "")
        return f"move {self.after.id} to {state}", self.transition.why


@dataclass(frozen=True)
class Settle:
    """Bring the template's row up to date from a finished build."""

    build: Build

    def describe(self) -> tuple[str, str]:
        return (
            f"bring the template's row up to date from {self.build.id}",
            f"it ended {self.build.state.value}",
        )


@dataclass(frozen=True)
class Account:
    """The template's row accounts for the run AIB started at `started_at` (it is not somebody else's)."""

    started_at: datetime

    def describe(self) -> tuple[str, str]:
        return (
            "account for the run",
            f"AIB started it at {self.started_at:%Y-%m-%d %H:%M:%S} UTC for rebuilder",
        )


@dataclass(frozen=True)
class Adopt:
    """Record a run somebody else started as a build (reason `external`)."""

    run: LastRun
    why: str
    template: ImageTemplate  # as read this pass: the build records it (no second read)

    def describe(self) -> tuple[str, str]:
        return "record a run started elsewhere", self.why


@dataclass(frozen=True)
class Cancel:
    build: Build  # its record once the cancel is asked for (cancel_requested_at set)
    why: str

    def describe(self) -> tuple[str, str]:
        return f"cancel the run of {self.build.id}", self.why


@dataclass(frozen=True)
class Repair:
    build: BuildId
    version: GalleryVersionId
    regions: tuple[Region, ...]  # the version's target regions, re-applied
    failed: tuple[Region, ...]  # the regions that failed

    def describe(self) -> tuple[str, str]:
        return (
            f"re-apply the target regions of {self.version.rsplit('/', 1)[-1]}",
            f"{', '.join(self.failed)} failed",
        )


@dataclass(frozen=True)
class Delete:
    why: str

    def describe(self) -> tuple[str, str]:
        return "delete the template", self.why


@dataclass(frozen=True)
class Create:
    definition: TemplateDefinition
    why: str

    def describe(self) -> tuple[str, str]:
        return "create the template", self.why


@dataclass(frozen=True)
class Wait:
    why: str

    def describe(self) -> tuple[str, str]:
        return "wait", self.why


@dataclass(frozen=True)
class Promote:
    """Let `latest` see a candidate's gallery versions in every region (excludeFromLatest false on the
    profile and on each target region); the build is written Promoted once a later read shows it."""

    build: BuildId
    versions: tuple[GalleryVersionId, ...]
    why: str

    def describe(self) -> tuple[str, str]:
        names = ", ".join(v.rsplit("/", 1)[-1] for v in self.versions)
        return f"promote {names} into latest", self.why


@dataclass(frozen=True)
class Demote:
    """Take a build's gallery versions out of `latest` in every region (excludeFromLatest true on the
    profile and on each target region): a rejected build's image must never stay there."""

    build: BuildId
    versions: tuple[GalleryVersionId, ...]
    why: str

    def describe(self) -> tuple[str, str]:
        names = ", ".join(v.rsplit("/", 1)[-1] for v in self.versions)
        return f"demote {names} from latest in every region", self.why


@dataclass(frozen=True)
class Tag:
    """A gallery version's tags with the build's provenance merged in (the build's end is written once
    a later read shows them: a crash in between tags it again)."""

    build: BuildId
    version: GalleryVersionId
    tags: Mapping[str, str]  # the whole set: what the version had, and the provenance

    def describe(self) -> tuple[str, str]:
        return f"tag {self.version.rsplit('/', 1)[-1]} with its provenance", f"build {self.build}"


Action = Save | Settle | Account | Adopt | Cancel | Repair | Delete | Create | Wait | Promote | Demote | Tag


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    read_distributions: tuple[BuildId, ...] = ()  # gather these builds' outputs and replication, decide again
    runnable: Build | None = None  # the queued build that may start once it has a run slot


def move(before: Build, after: Build, why: str, now: datetime, by: str) -> Save:
    """A save that the trail records: the transition row says what changed and why."""
    moved = dataclasses.replace(after, updated_at=now)
    return Save(before, moved, before.becomes(moved, why=why, by=by))
