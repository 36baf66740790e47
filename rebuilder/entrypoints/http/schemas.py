"""The JSON Schemas (2020-12) of what the API takes and answers: the components of the OpenAPI
document (openapi.py). Data only."""

from __future__ import annotations

from typing import Any

from rebuilder.domain.builds import BuildReason, BuildState
from rebuilder.domain.diagnosis import CheckKind

S = dict[str, Any]
STR: S = {"type": "string"}
INT: S = {"type": "integer"}
NUM: S = {"type": "number"}
BOOL: S = {"type": "boolean"}
TIME: S = {"type": "string", "format": "date-time"}


def maybe(schema: S) -> S:
    return {"oneOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, S], *, extra: bool = False) -> S:
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": extra,
    }


def ref(name: str) -> S:
    return {"$ref": f"#/components/schemas/{name}"}


def array(items: S) -> S:
    return {"type": "array", "items": items}


_REGION_ROW = obj(
    {
        "region": STR,
        "state": STR,
        "progress": INT,
        "repairs": INT,
        "completed_at": maybe(TIME),
        "details": maybe(STR),
    }
)
_TRANSITION = obj({"at": TIME, "from": maybe(STR), "to": STR, "sub_state": maybe(STR), "why": STR, "by": STR})
_BUILD_PROPS: dict[str, S] = {
    "id": STR,
    "template": STR,
    "template_id": STR,
    "reason": {"enum": [r.value for r in BuildReason]},
    "state": {"enum": [s.value for s in BuildState]},
    "sub_state": maybe(STR),
    "source_version": maybe(STR),
    "root_version": maybe(STR),
    "previous_baseline": maybe(STR),
    "lineage": maybe(
        obj(
            {
                "parent_build_id": STR,
                "parent_template": STR,
                "root_version": STR,
                "root_source": STR,
                "previous_root_version": maybe(STR),
            }
        )
    ),
    "superseded_by": maybe(STR),
    "attempts": INT,
    "next_attempt_at": maybe(TIME),
    "created_at": TIME,
    "updated_at": TIME,
    "run_started_at": maybe(TIME),
    "run_ended_at": maybe(TIME),
    "outputs": array(STR),
    "message": maybe(STR),
    "definition_hash_before": maybe(STR),
    "definition_hash_after": maybe(STR),
    "run_outcome": maybe(STR),
    "candidate_at": maybe(TIME),
    "approved_by": maybe(STR),
    "approved_by_id": maybe(STR),
    "promoted_at": maybe(TIME),
    "provenance": obj(
        {
            "trigger": STR,
            "caller": maybe(STR),
            "caller_object_id": maybe(STR),
            "note": maybe(STR),
            "bypassed": maybe(STR),
            "correlation_id": maybe(STR),
            "idempotency_key": STR,
        }
    ),
}
_EXPOSURE = maybe(
    obj(
        {
            "basis": {"enum": ["direct", "root"]},
            "version": STR,
            "first_seen_at": TIME,
            "hours": NUM,
            "open": BOOL,
        }
    )
)
_STATE_PROPS: dict[str, S] = {
    "id": STR,
    "name": STR,
    "location": STR,
    "mode": STR,
    "baseline_version": maybe(STR),
    "baseline_build_id": maybe(STR),
    "last_build_id": maybe(STR),
    "last_build_state": maybe(STR),
    "open_builds": array(STR),
    "consecutive_failures": INT,
    "disabled": BOOL,
    "disabled_reason": maybe(STR),
    "disabled_at": maybe(TIME),
    "awaiting_promotion": maybe(obj({"build_id": STR, "version": maybe(STR)})),
    "revoked": array(obj({"build_id": STR, "version": STR})),
    "latest_drift": array(obj({"region": STR, "version": STR, "ledger_in_latest": BOOL, "why": STR})),
    "regions": array(
        obj(
            {
                "region": STR,
                "build_id": STR,
                "source_version": STR,
                "image_version": STR,
                "state": STR,
                "completed_at": maybe(TIME),
            }
        )
    ),
}
_SUMMARY_PROPS: dict[str, S] = {
    **_STATE_PROPS,
    "child": BOOL,
    "parents": array(STR),
    "source": maybe(STR),
    "root_source": maybe(STR),
    "candidate_version": maybe(STR),
    "newest_root_version": maybe(STR),
    "policies": STR,
    "next_due_at": maybe(TIME),
    "next_due_why": maybe(STR),
    "built_on_revoked": maybe(STR),
    "last_build": maybe(ref("Build")),
    "open_builds": array(obj({"id": STR, "state": maybe(STR)})),
    "failing": BOOL,
    "regions": array(
        obj(
            {
                "region": STR,
                "build_id": maybe(STR),
                "image_version": maybe(STR),
                "image_version_id": maybe(STR),
                "source_version": maybe(STR),
                "root_version": maybe(STR),
                "replication": maybe(STR),
                "failed": BOOL,
                "stale": BOOL,
                "newer_source_version": maybe(STR),
                "exposure": _EXPOSURE,
                "direct_exposure": _EXPOSURE,
                "promoted": BOOL,
                "candidate_version": maybe(STR),
                "revoked_version": maybe(STR),
                "latest_drift": maybe(STR),
            }
        )
    ),
}
_WINDOW = obj(
    {
        "basis": {"enum": ["direct", "root"]},
        "region": STR,
        "version": STR,
        "first_seen_at": TIME,
        "replicated_at": maybe(TIME),
        "closed_by": maybe(STR),
        "closed_by_version": maybe(STR),
        "hours": NUM,
        "open": BOOL,
    }
)
_ACTION = obj(
    {
        "at": TIME,
        "action": STR,
        "by": STR,
        "by_object_id": maybe(STR),
        "why": maybe(STR),
        "correlation_id": maybe(STR),
        "changed": maybe(STR),
    }
)
_BUILD_OR_SUMMARY: S = {"oneOf": [ref("Build"), ref("BuildSummary")]}
_WAVE = obj(
    {
        "image": STR,
        "version": STR,
        "first_seen_at": TIME,
        "templates": array(STR),
        "templates_done": INT,
        "children": INT,
        "regions": INT,
        "regions_done": INT,
        "worst_hours": NUM,
        "median_hours": NUM,
        "summary": STR,
    }
)
_PLAN_ITEM = obj(
    {
        "id": STR,
        "name": STR,
        "location": STR,
        "mode": STR,
        "source": STR,
        "baseline_version": maybe(STR),
        "baseline_adopted": BOOL,
        "candidate_version": maybe(STR),
        "action": {"enum": ["rebuild", "none", "skip", "blocked"]},
        "reason": STR,
        "flags": array(STR),
        "due": maybe({"enum": [r.value for r in BuildReason]}),
        "policies": STR,
        "next_due_at": maybe(TIME),
        "next_due_why": maybe(STR),
        "policy_problems": array(STR),
    }
)

SCHEMAS: dict[str, S] = {
    "Problem": obj(
        {"type": STR, "title": STR, "status": INT, "detail": STR, "correlation_id": STR},
        extra=True,  # a 409 carries the open build; a 400 may list the allowed fields or parameters
    ),
    "Health": obj({"status": {"const": "ok"}}),
    "RebuildRequest": {
        **obj({"template": {**STR, "minLength": 1, "maxLength": 400}, "reason": {**STR, "maxLength": 500}}),
        "required": ["template"],
    },
    "EnableRequest": {**obj({"reason": {**STR, "maxLength": 500}}), "required": []},
    "PromoteRequest": {
        **obj({"version": {**STR, "maxLength": 64}, "reason": {**STR, "maxLength": 500}}),
        "required": [],
    },
    "RollbackRequest": {
        **obj({"reason": {**STR, "minLength": 1, "maxLength": 500}, "dryRun": BOOL}),
        "required": ["reason"],
    },
    "Build": obj(_BUILD_PROPS),
    "BuildDetail": obj({**_BUILD_PROPS, "regions": array(_REGION_ROW), "transitions": array(_TRANSITION)}),
    "BuildSummary": obj(
        {
            "id": STR,
            "template": STR,
            "template_id": STR,
            "reason": {"enum": [r.value for r in BuildReason]},
            "state": {"enum": [s.value for s in BuildState]},
            "source_version": maybe(STR),
            "created_at": TIME,
        }
    ),
    # The whole build for a caller who may read the ledger; its summary otherwise (a joined build may
    # be somebody else's request).
    "RebuildAccepted": obj(
        {
            "build": {"oneOf": [ref("Build"), ref("BuildSummary")]},
            "created": BOOL,
            "joined": BOOL,
            "replayed": BOOL,
        }
    ),
    "TemplateState": obj(_STATE_PROPS),
    "TemplateSummary": obj(_SUMMARY_PROPS),
    "TemplateDetail": obj(
        {
            **_SUMMARY_PROPS,
            "builds": array(ref("Build")),
            "windows": array(_WINDOW),
            "actions": array(_ACTION),
        }
    ),
    "TemplateList": obj(
        {"generated_at": TIME, "templates": array(ref("TemplateSummary")), "waves": array(_WAVE)}
    ),
    "EnableResult": obj({"template": ref("TemplateState"), "was_disabled": BOOL}),
    # Admin answers, like RebuildAccepted: the whole build for a caller who may read the ledger.
    "PromoteResult": obj({"build": _BUILD_OR_SUMMARY, "promoted": BOOL, "waiting": array(STR)}),
    "RollbackResult": obj(
        {
            "revoked": _BUILD_OR_SUMMARY,
            "latest": maybe(_BUILD_OR_SUMMARY),
            "done": BOOL,
            "dry_run": BOOL,
            "fallback": array(
                obj(
                    {
                        "region": STR,
                        "version": STR,
                        "build": maybe(STR),
                        "expected": maybe(STR),
                        "differs": BOOL,
                    }
                )
            ),
            "summary": STR,
        }
    ),
    "BuildPage": obj({"builds": array(ref("Build")), "next": maybe(STR), "count": INT}),
    "Plan": obj(
        {
            "at": maybe(TIME),
            "templates": array(_PLAN_ITEM),
            "ignored": array(obj({"id": STR, "reason": STR})),
            "problems": array(STR),
            "list_calls": INT,
            "new_versions": INT,
        }
    ),
    "Doctor": obj(
        {
            "ok": BOOL,
            "passed": INT,
            "failed": INT,
            "checks": array(
                obj(
                    {
                        "check": {"enum": [k.value for k in CheckKind]},
                        "subject": STR,
                        "ok": BOOL,
                        "detail": STR,
                        "fix": maybe(STR),
                        "missing": array(obj({"action": STR, "role": STR})),
                    }
                )
            ),
        }
    ),
    "OpenApi": {"type": "object"},
}
