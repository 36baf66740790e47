"""The planner over literal inputs: one row per situation the watch can find a template in."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from rebuilder.domain.builds import BuildId
from rebuilder.domain.model import (
    Distribution,
    GalleryImageId,
    ImageTemplate,
    LastRun,
    PlatformImage,
    RunState,
    Source,
    SourceKind,
    TemplateId,
)
from rebuilder.domain.planner import Action, Candidate, Managed, Mode, PlanItem, mode_of, plan
from rebuilder.domain.regions import Region
from rebuilder.domain.standing import TemplateState

T0 = datetime(2026, 11, 10, 6, 0, tzinfo=UTC)
TID = TemplateId(
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/ubuntu"
)
JAMMY = PlatformImage("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2")
OLD, MID, NEW = "22.04.202411190", "22.04.202412010", "22.04.202501150"


def template(
    *,
    version: str = "latest",
    exact: str | None = None,
    run: RunState | None = None,
    source: Source | None = None,
) -> ImageTemplate:
    last = LastRun(run, None, T0, T0) if run else None
    src = source or Source(SourceKind.PLATFORM_IMAGE, JAMMY, version, exact_version=exact)
    return ImageTemplate(TID, "s", "rg", "ubuntu", Region("westeurope"), src, last_run=last)


def state(**fields: object) -> TemplateState:
    return dataclasses.replace(TemplateState(TID, "ubuntu", Region("westeurope"), T0), **fields)  # type: ignore[arg-type]


CASES = {
    # name: (template, mode, candidate, state, action, words in the reason, flags)
    "new version since the ledger's baseline": (
        template(),
        Mode.AUTO,
        Candidate(NEW, T0, (OLD, NEW)),
        state(baseline_version=OLD),
        Action.REBUILD,
        [f"{OLD} → {NEW} available in westeurope since 2026-11-10 06:00 UTC"],
        (),
    ),
    "several new versions coalesce into one rebuild to the newest": (
        template(),
        Mode.AUTO,
        Candidate(NEW, T0, (OLD, MID, NEW)),
        state(baseline_version=OLD),
        Action.REBUILD,
        [f"{OLD} → {NEW}", "2 new versions, one rebuild to the newest"],
        (),
    ),
    "up to date": (
        template(),
        Mode.AUTO,
        Candidate(OLD, T0, (OLD,)),
        state(baseline_version=OLD),
        Action.NONE,
        ["up to date"],
        (),
    ),
    "numeric order, not text order": (
        template(),
        Mode.AUTO,
        Candidate("20348.2849.241106", T0),
        state(baseline_version="20348.587.220303"),
        Action.REBUILD,
        ["20348.587.220303 → 20348.2849.241106"],
        (),
    ),
    "pinned template is recreated": (
        template(version=OLD),
        Mode.AUTO,
        Candidate(NEW, T0),
        state(baseline_version=OLD),
        Action.REBUILD,
        ["pinned and will be recreated"],
        (),
    ),
    "scheduled for deprecation: chosen and flagged": (
        template(),
        Mode.AUTO,
        Candidate(NEW, T0, scheduled_for_deprecation=True),
        state(baseline_version=OLD),
        Action.REBUILD,
        ["scheduled for deprecation"],
        ("scheduled-for-deprecation",),
    ),
    "nothing usable in the template's region": (
        template(),
        Mode.AUTO,
        Candidate(problem="no version of X is listed in westeurope"),
        state(baseline_version=OLD),
        Action.BLOCKED,
        ["no version of X is listed in westeurope"],
        (),
    ),
    "manual template is planned, never rebuilt automatically": (
        template(),
        Mode.MANUAL,
        Candidate(NEW, T0),
        state(baseline_version=OLD),
        Action.NONE,
        ["manual template", f"{OLD} → {NEW}", "rebuilt only on request"],
        ("manual",),
    ),
    "first sight, last run succeeded: its version is adopted": (
        template(exact=OLD, run=RunState.SUCCEEDED),
        Mode.AUTO,
        Candidate(OLD, T0),
        None,
        Action.NONE,
        ["up to date"],
        (),
    ),
    "first sight, adopted baseline is behind": (
        template(exact=OLD, run=RunState.SUCCEEDED),
        Mode.AUTO,
        Candidate(NEW, T0),
        None,
        Action.REBUILD,
        [f"{OLD} → {NEW}", "baseline adopted"],
        (),
    ),
    "first sight, last run failed: due": (
        template(exact=OLD, run=RunState.FAILED),
        Mode.AUTO,
        Candidate(NEW, T0),
        None,
        Action.REBUILD,
        ["no successful build known"],
        (),
    ),
    "first sight, never run: due": (
        template(),
        Mode.AUTO,
        Candidate(NEW, T0),
        None,
        Action.REBUILD,
        ["no successful build known", NEW],
        (),
    ),
    "gallery source with a newer replicated version": (
        template(
            source=Source(
                SourceKind.SHARED_IMAGE_VERSION, image_version_id="/s/g/images/base/versions/latest"
            )
        ),
        Mode.AUTO,
        Candidate("1.0.4", T0),
        state(baseline_version="1.0.3"),
        Action.REBUILD,
        ["1.0.3 → 1.0.4"],
        (),
    ),
    "first sight of a gallery child: AIB reports the exact version as a resource id": (
        template(
            source=Source(
                SourceKind.SHARED_IMAGE_VERSION,
                image_version_id="/s/g/images/base/versions/latest",
                exact_version="/s/g/images/base/versions/1.0.3",
            ),
            run=RunState.SUCCEEDED,
        ),
        Mode.AUTO,
        Candidate("1.0.4", T0),
        None,
        Action.REBUILD,
        ["1.0.3 → 1.0.4", "baseline adopted"],
        (),
    ),
    "managed image source is skipped": (
        template(source=Source(SourceKind.MANAGED_IMAGE, raw_type="ManagedImage")),
        Mode.AUTO,
        Candidate(),
        None,
        Action.SKIP,
        ["ManagedImage is not supported"],
        (),
    ),
    "unknown source type is skipped": (
        template(source=Source(SourceKind.UNKNOWN, raw_type="SomethingNew")),
        Mode.AUTO,
        Candidate(),
        None,
        Action.SKIP,
        ["SomethingNew is not supported"],
        (),
    ),
    "disabled template is blocked": (
        template(),
        Mode.AUTO,
        Candidate(NEW, T0),
        state(
            baseline_version=OLD, disabled=True, consecutive_failures=3, disabled_reason="customizer failed"
        ),
        Action.BLOCKED,
        ["disabled after 3", "customizer failed", "enable ubuntu"],
        (),
    ),
    "a build in progress": (
        template(),
        Mode.AUTO,
        Candidate(NEW, T0),
        state(baseline_version=OLD, open_builds=(BuildId("b1"),)),
        Action.NONE,
        ["build b1 is in progress"],
        (),
    ),
}


@pytest.mark.parametrize(
    ("tmpl", "mode", "candidate", "stored", "action", "words", "flags"), CASES.values(), ids=CASES
)
def test_plan(
    tmpl: ImageTemplate,
    mode: Mode,
    candidate: Candidate,
    stored: TemplateState | None,
    action: Action,
    words: list[str],
    flags: tuple[str, ...],
) -> None:
    states = {TemplateId(TID.lower()): stored} if stored else {}
    [item] = plan([Managed(tmpl, mode)], {TemplateId(TID.lower()): candidate}, states, now=T0)
    assert item.action is action, item.reason
    for word in words:
        assert word in item.reason
    assert item.flags == flags


@pytest.mark.parametrize(
    ("tags", "mode"),
    [
        ({"golden-image-rebuild": "auto"}, Mode.AUTO),
        ({"Golden-Image-Rebuild": "AUTO"}, Mode.AUTO),
        ({"golden-image-rebuild": " Manual "}, Mode.MANUAL),
        ({"golden-image-rebuild": "yes"}, None),
        ({"golden-image-rebuild": ""}, None),
        ({"other": "auto"}, None),
        ({}, None),
    ],
)
def test_the_tag_opts_templates_in(tags: dict[str, str], mode: Mode | None) -> None:
    found, why = mode_of(tags)
    assert found is mode
    assert bool(why) is (mode is None)


# -- parents and children ------------------------------------------------------------------------------
def _gallery_image(name: str) -> str:
    return f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/{name}"


def _family(name: str, builds_on: str | None, distributes_to: str) -> Managed:
    tid = TemplateId(
        f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/{name}"
    )
    source = (
        Source(
            SourceKind.SHARED_IMAGE_VERSION, image_version_id=_gallery_image(builds_on) + "/versions/latest"
        )
        if builds_on
        else Source(SourceKind.PLATFORM_IMAGE, JAMMY, "latest")
    )
    distribution = Distribution("SharedImage", name, GalleryImageId(_gallery_image(distributes_to)))
    return Managed(
        ImageTemplate(tid, "s", "rg", name, Region("westeurope"), source, distributions=(distribution,)),
        Mode.AUTO,
    )


def _plan_family(
    members: list[Managed], candidates: dict[str, Candidate], baselines: dict[str, str]
) -> dict[str, PlanItem]:
    ids = {m.template.name: TemplateId(m.template.id.lower()) for m in members}
    states = {
        ids[n]: TemplateState(ids[n], n, Region("westeurope"), T0, baseline_version=v)
        for n, v in baselines.items()
    }
    items = plan(members, {ids[n]: c for n, c in candidates.items()}, states, now=T0)
    return {i.template.name: i for i in items}


def test_a_child_waits_while_its_parent_is_due_then_builds_because_the_parent_published() -> None:
    family = [_family("golden", None, "golden-img"), _family("app", "golden-img", "app-img")]
    waiting = _plan_family(
        family, {"golden": Candidate(NEW, T0), "app": Candidate("1.0.2", T0)}, {"golden": OLD, "app": "1.0.1"}
    )
    assert waiting["golden"].action is Action.REBUILD
    assert waiting["app"].action is Action.NONE and "waiting for parent golden" in waiting["app"].reason
    after = _plan_family(
        family, {"golden": Candidate(NEW, T0), "app": Candidate("1.0.3", T0)}, {"golden": NEW, "app": "1.0.1"}
    )
    assert after["app"].action is Action.REBUILD and after["app"].parents == ("golden",)
    assert after["app"].reason.startswith("parent golden published")


def test_a_dependency_cycle_is_refused_naming_the_templates() -> None:
    family = [
        _family("a", "b-img", "a-img"),
        _family("b", "a-img", "b-img"),
        _family("c", "a-img", "c-img"),
    ]
    items = _plan_family(
        family,
        {n: Candidate("1.0.2", T0) for n in "abc"},
        dict.fromkeys("abc", "1.0.1"),
    )
    for name in "ab":
        assert items[name].action is Action.BLOCKED
        assert "dependency cycle" in items[name].reason and "a → b" in items[name].reason.replace(
            "b → a", "a → b"
        )
    assert items["c"].action is not Action.BLOCKED  # built on the cycle, not part of it


def test_a_template_built_on_its_own_image_is_a_cycle() -> None:
    items = _plan_family(
        [_family("self", "self-img", "self-img")], {"self": Candidate("1.0.2", T0)}, {"self": "1.0.1"}
    )
    item = items["self"]
    assert item.action is Action.BLOCKED and "self → self" in item.reason
