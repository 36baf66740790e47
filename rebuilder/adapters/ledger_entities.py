"""Explicit mapping between ledger records and Table entities, and the key layout.

Key layout (why: each question the service and security teams ask is one partition range read):

  {prefix}builds0 … {prefix}buildsf
                     16 tables, by the first hex digit of the template key. Table storage would not
                     need them (a partition-keyed query never reads other partitions), but Azurite
                     evaluates every query against every row of a table; 16 tables keep one template's
                     history a fast read on the local stack too, at no cost in Azure.
                     PartitionKey = template key (16 hex of sha256 of the lower-cased template id:
                     ids are case-insensitive and contain '/', which keys may not)
                     b-{inv}-{nonce}           a build; {inv} = 99999999999 - epoch seconds, so a
                                               range read of 'b-' returns one template's history
                                               newest first, a page at a time
                     r-{inv}-{nonce}-{region}  that build's region rows (one build with its regions:
                                               a point read and one range read)
                     t-{inv}-{nonce}-{seq}     that build's transitions, append-only, seq from 000001
                     c-{sha256 of the key}     a claim: insert-only, maps an idempotency key to a build
                     a-{inv}-{digest}          the template's own audit trail (re-enabled, by whom, why),
                                               insert-only, newest first
                     Claim, build and first transition share a partition, so they are written in one
                     entity-group transaction: a key is either claimed with its build, or not at all.
                     Every later write of a build carries its ETag and its new transition and region
                     rows in one transaction, so the trail can never disagree with the build.
  {prefix}history    PartitionKey = 'history', RowKey = {inv}-{template key}-{nonce}: every build across
                     templates in history order (newest first), so a page of the whole history is
                     one range read. Written just before the build's claim (another table: not in its
                     transaction), so an entry may name a build that was never claimed; readers skip
                     those. One partition holds every build: builds are created tens a day, far
                     below a partition's throughput.
  {prefix}templates  PartitionKey = 'template', RowKey = template key: "where do we stand" for every
                     template × region is one partition read (the regions are a JSON column).
  {prefix}sources    PartitionKey = sha256 of the source key (location/publisher/offer/sku or gallery
                     image), RowKey = the version encoded to sort numerically: every version seen per
                     source with its first-seen time, in version order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rebuilder.domain.builds import (
    Build,
    BuildId,
    BuildReason,
    BuildSource,
    BuildState,
    Lineage,
    Provenance,
    RegionStatus,
    Transition,
    parse_build_id,
    template_key,
)
from rebuilder.domain.errors import InvalidRecord
from rebuilder.domain.model import ImageState, RunSubState, SourceKind, SourceRef, TemplateId
from rebuilder.domain.ports import IndexedBuild, Join, KeyClaim, Versioned
from rebuilder.domain.regions import Region
from rebuilder.domain.standing import (
    LatestDrift,
    RegionStanding,
    RollbackIntent,
    SeenVersion,
    TemplateAction,
    TemplateState,
)

Entity = dict[str, Any]
TEMPLATES_PARTITION = "template"
_INVERT_FROM = 99_999_999_999
_UNSAFE_IN_KEYS = set("/\\#?%~") | {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))}


# -- keys ----------------------------------------------------------------------------------------------
def key_safe(text: str) -> str:
    """`text` with every character that Table keys forbid (and our escape '~') escaped as ~XXXX."""
    return "".join(f"~{ord(ch):04x}" if ch in _UNSAFE_IN_KEYS else ch for ch in text)


SHARDS = "0123456789abcdef"


def builds_table(prefix: str, partition: str) -> str:
    """The builds table of a template partition (see the layout above)."""
    return f"{prefix}builds{partition[0]}"


def build_stem(build_id: str) -> tuple[str, str]:
    """(partition, '{inv}-{nonce}') of a build: derived from its id, so a lookup is a point read."""
    parsed = parse_build_id(build_id)
    return parsed.template_key, f"{inverted(parsed.at)}-{parsed.nonce}"


def build_row(stem: str) -> str:
    return f"b-{stem}"


def region_row(stem: str, region: str) -> str:
    """Readable for real region names; a digest for anything long enough to break the 1 KiB key limit
    (an escaped name never starts with '~h', so the two cannot collide)."""
    safe = key_safe(region)
    if len(safe) > 100:
        safe = "~h" + hashlib.sha256(region.encode()).hexdigest()
    return f"r-{stem}-{safe}"


def transition_row(stem: str, seq: int) -> str:
    return f"t-{stem}-{seq:06d}"


HISTORY_PARTITION = "history"


def index_row(build_id: str) -> str:
    """The history index key of a build: history order is key order."""
    parsed = parse_build_id(build_id)
    return f"{inverted(parsed.at)}-{parsed.template_key}-{parsed.nonce}"


def index_to_entity(build: Build) -> Entity:
    return {
        "PartitionKey": HISTORY_PARTITION,
        "RowKey": index_row(build.id),
        "BuildId": build.id,
        "TemplateId": build.template_id,
        "Reason": build.reason.value,
        "CreatedAt": _aware(build.created_at, "created_at"),
    }


def index_from_entity(e: Mapping[str, Any]) -> IndexedBuild:
    return IndexedBuild(
        BuildId(e["BuildId"]),
        TemplateId(e["TemplateId"]),
        BuildReason(e["Reason"]),
        _required_utc(e["CreatedAt"]),
    )


def claim_row(idempotency_key: str) -> str:
    return "c-" + hashlib.sha256(idempotency_key.encode()).hexdigest()


def inverted(at: datetime) -> str:
    """Epoch seconds inverted, so a range read returns newest first."""
    return f"{_INVERT_FROM - int(at.timestamp()):011d}"


def action_row(action: TemplateAction) -> str:
    """Newest first to the microsecond (two actions in one second keep their order)."""
    fact = f"{action.action}\n{action.by}\n{action.correlation_id}\n{action.at.isoformat()}"
    micros = _INVERT_FROM * 1_000_000 - int(action.at.timestamp() * 1_000_000)
    return f"a-{micros:017d}-{hashlib.sha256(fact.encode()).hexdigest()[:16]}"


def prefix_range(prefix: str) -> tuple[str, str]:
    """[low, high) bounds of every key that starts with `prefix` (which ends in '-')."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def source_partition(source: SourceRef) -> str:
    return hashlib.sha256(source.key.encode()).hexdigest()[:32]


def version_row(version: str) -> str:
    """Sorts numerically, dot by dot: each numeric part is written with its length first."""
    parts = []
    for part in version.split("."):
        if part.isascii() and part.isdigit():
            digits = str(int(part))
            parts.append(f"0{len(digits):03d}{digits}")
        else:
            parts.append("1" + key_safe(part))
    row = ".".join(parts) + "!" + key_safe(version)
    if len(row.encode()) > 1000:
        raise InvalidRecord(f"source version {version[:60]!r}… is too long to record ({len(version)} chars)")
    return row


# -- values --------------------------------------------------------------------------------------------
def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidRecord(f"expected a timestamp, found {type(value).__name__}")
    return datetime.fromtimestamp(value.timestamp(), UTC)  # a plain aware datetime, not the SDK subclass


def _required_utc(value: Any) -> datetime:
    found = _utc(value)
    if found is None:
        raise InvalidRecord("a required timestamp is missing")
    return found


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.utcoffset() is None:
        raise InvalidRecord(f"{name} must be an aware UTC timestamp, not naive")
    return value


def _sub_state(value: Any) -> RunSubState | None:
    return RunSubState(value) if value else None


def _present(entity: Mapping[str, Any]) -> Entity:
    return {k: v for k, v in entity.items() if v is not None}


# -- builds --------------------------------------------------------------------------------------------
def build_to_entity(build: Build, *, transitions: int) -> Entity:
    partition, stem = build_stem(build.id)
    for name in (
        "created_at",
        "updated_at",
        "next_attempt_at",
        "run_started_at",
        "run_ended_at",
        "cancel_requested_at",
    ):
        _aware(getattr(build, name), name)
    src, prov = build.source, build.provenance
    return _present(
        {
            "PartitionKey": partition,
            "RowKey": build_row(stem),
            "Kind": "build",
            "BuildId": build.id,
            "TemplateId": build.template_id,
            "TemplateName": build.template_name,
            "Location": build.location,
            "Reason": build.reason.value,
            "Trigger": prov.trigger,
            "Caller": prov.caller,
            "CallerId": prov.caller_id,
            "Note": prov.note,
            "Bypassed": prov.bypassed,
            "RequestDigest": prov.request_digest,
            "CorrelationId": prov.correlation_id,
            "IdempotencyKey": prov.idempotency_key,
            "SourceType": src.kind.value,
            "SourcePublisher": src.publisher,
            "SourceOffer": src.offer,
            "SourceSku": src.sku,
            "SourceGalleryImage": src.gallery_image_id,
            "DeclaredVersion": src.declared_version,
            "ResolvedVersion": src.resolved_version,
            "PreviousBaseline": build.previous_baseline,
            "State": build.state.value,
            "SubState": build.sub_state.value if build.sub_state else "",
            "Attempts": build.attempts,
            "NextAttemptAt": build.next_attempt_at,
            "RunStartedAt": build.run_started_at,
            "RunEndedAt": build.run_ended_at,
            "Outputs": json.dumps(list(build.outputs)),
            "Message": build.message,
            "DefinitionHashBefore": build.definition_hash_before,
            "DefinitionHashAfter": build.definition_hash_after,
            "DefinitionAfter": build.definition_after,
            "CancelRequestedAt": build.cancel_requested_at,
            "Lineage": _lineage_json(build.lineage),
            "SupersededBy": build.superseded_by,
            "TemporaryRefusals": build.temporary_refusals,
            "CandidateAt": _aware(build.candidate_at, "candidate_at"),
            "ApprovedBy": build.approved_by,
            "ApprovedById": build.approved_by_id,
            "PromotedAt": _aware(build.promoted_at, "promoted_at"),
            "RunOutcome": build.run_outcome,
            "Claim": build.claim,
            "ClaimedAt": _aware(build.claimed_at, "claimed_at"),
            "ClaimedBy": build.claimed_by,
            "CreatedAt": build.created_at,
            "UpdatedAt": build.updated_at,
            "Transitions": transitions,
        }
    )


def build_from_entity(e: Mapping[str, Any]) -> Build:
    return Build(
        id=BuildId(e["BuildId"]),
        template_id=TemplateId(e["TemplateId"]),
        template_name=e["TemplateName"],
        location=Region(e["Location"]),
        reason=BuildReason(e["Reason"]),
        provenance=Provenance(
            e["Trigger"],
            e.get("Caller", ""),
            e.get("CorrelationId", ""),
            e.get("IdempotencyKey", ""),
            e.get("CallerId", ""),
            e.get("Note", ""),
            e.get("Bypassed", ""),
            e.get("RequestDigest", ""),
        ),
        source=BuildSource(
            SourceKind(e["SourceType"]),
            e.get("SourcePublisher", ""),
            e.get("SourceOffer", ""),
            e.get("SourceSku", ""),
            e.get("SourceGalleryImage", ""),
            e.get("DeclaredVersion", ""),
            e.get("ResolvedVersion", ""),
        ),
        created_at=_required_utc(e["CreatedAt"]),
        updated_at=_required_utc(e["UpdatedAt"]),
        previous_baseline=e.get("PreviousBaseline", ""),
        state=BuildState(e["State"]),
        sub_state=_sub_state(e.get("SubState")),
        attempts=int(e.get("Attempts", 0)),
        next_attempt_at=_utc(e.get("NextAttemptAt")),
        run_started_at=_utc(e.get("RunStartedAt")),
        run_ended_at=_utc(e.get("RunEndedAt")),
        outputs=tuple(json.loads(e.get("Outputs", "[]"))),
        message=e.get("Message", ""),
        definition_hash_before=e.get("DefinitionHashBefore", ""),
        definition_hash_after=e.get("DefinitionHashAfter", ""),
        definition_after=e.get("DefinitionAfter", ""),
        cancel_requested_at=_utc(e.get("CancelRequestedAt")),
        lineage=_lineage_from(e.get("Lineage")),
        superseded_by=e.get("SupersededBy", ""),
        temporary_refusals=int(e.get("TemporaryRefusals", 0)),
        candidate_at=_utc(e.get("CandidateAt")),
        approved_by=e.get("ApprovedBy", ""),
        approved_by_id=e.get("ApprovedById", ""),
        promoted_at=_utc(e.get("PromotedAt")),
        run_outcome=e.get("RunOutcome", ""),
        claim=e.get("Claim", ""),
        claimed_at=_utc(e.get("ClaimedAt")),
        claimed_by=e.get("ClaimedBy", ""),
    )


def _source_dict(source: SourceRef) -> dict[str, str]:
    return {
        "type": source.kind.value,
        "location": source.location,
        "publisher": source.publisher,
        "offer": source.offer,
        "sku": source.sku,
        "gallery_image": source.gallery_image_id,
    }


def _source_from(d: Mapping[str, Any]) -> SourceRef:
    return SourceRef(
        SourceKind(d["type"]),
        d.get("location", ""),
        d.get("publisher", ""),
        d.get("offer", ""),
        d.get("sku", ""),
        d.get("gallery_image", ""),
    )


def _lineage_json(lineage: Lineage | None) -> str | None:
    if lineage is None:
        return None
    return json.dumps(
        {
            "parent_build": lineage.parent_build_id,
            "parent_template": lineage.parent_template,
            "root_version": lineage.root_version,
            "root_source": _source_dict(lineage.root_source),
            "previous_root_version": lineage.previous_root_version,
        },
        separators=(",", ":"),
    )


def _lineage_from(text: Any) -> Lineage | None:
    if not text:
        return None
    d = json.loads(text)
    return Lineage(
        d["parent_build"],
        d.get("parent_template", ""),
        d["root_version"],
        _source_from(d["root_source"]),
        d.get("previous_root_version", ""),
    )


def transition_to_entity(t: Transition, *, seq: int) -> Entity:
    partition, stem = build_stem(t.build_id)
    _aware(t.at, "transition time")
    return {
        "PartitionKey": partition,
        "RowKey": transition_row(stem, seq),
        "Kind": "transition",
        "BuildId": t.build_id,
        "At": t.at,
        "FromState": t.from_state.value if t.from_state else "",
        "FromSubState": t.from_sub_state.value if t.from_sub_state else "",
        "ToState": t.to_state.value,
        "ToSubState": t.to_sub_state.value if t.to_sub_state else "",
        "Why": t.why,
        "By": t.by,
    }


def transition_from_entity(e: Mapping[str, Any]) -> Transition:
    return Transition(
        build_id=BuildId(e["BuildId"]),
        at=_required_utc(e["At"]),
        from_state=BuildState(e["FromState"]) if e.get("FromState") else None,
        from_sub_state=_sub_state(e.get("FromSubState")),
        to_state=BuildState(e["ToState"]),
        to_sub_state=_sub_state(e.get("ToSubState")),
        why=e.get("Why", ""),
        by=e.get("By", ""),
    )


def region_to_entity(r: RegionStatus) -> Entity:
    partition, stem = build_stem(r.build_id)
    return _present(
        {
            "PartitionKey": partition,
            "RowKey": region_row(stem, r.region),
            "Kind": "region",
            "BuildId": r.build_id,
            "Region": r.region,
            "Target": r.target,
            "State": r.state,
            "Progress": r.progress,
            "Details": r.details,
            "FirstSeenReplicatingAt": _aware(r.first_seen_replicating_at, "first_seen_replicating_at"),
            "CompletedAt": _aware(r.completed_at, "completed_at"),
            "Repairs": r.repairs,
            "UpdatedAt": _aware(r.updated_at, "updated_at"),
        }
    )


def region_from_entity(e: Mapping[str, Any]) -> RegionStatus:
    return RegionStatus(
        build_id=BuildId(e["BuildId"]),
        region=Region(e["Region"]),
        target=bool(e.get("Target", True)),
        state=e["State"],
        progress=int(e.get("Progress", 0)),
        details=e.get("Details", ""),
        first_seen_replicating_at=_utc(e.get("FirstSeenReplicatingAt")),
        completed_at=_utc(e.get("CompletedAt")),
        repairs=int(e.get("Repairs", 0)),
        updated_at=_utc(e.get("UpdatedAt")),
    )


def claim_to_entity(build: Build) -> Entity:
    partition, _ = build_stem(build.id)
    prov = build.provenance
    return {
        "PartitionKey": partition,
        "RowKey": claim_row(prov.idempotency_key),
        "Kind": "claim",
        "IdempotencyKey": prov.idempotency_key,
        "BuildId": build.id,
        "ClaimedAt": build.created_at,
        "CallerId": prov.caller_id or prov.caller,
        "RequestDigest": prov.request_digest,
        "Joined": False,
    }


def join_to_entity(join: Join) -> Entity:
    """A caller's key naming a build already open: the claim row alone, no build of its own."""
    return {
        "PartitionKey": template_key(join.template_id),
        "RowKey": claim_row(join.key),
        "Kind": "claim",
        "IdempotencyKey": join.key,
        "BuildId": join.build_id,
        "ClaimedAt": _aware(join.at, "at"),
        "CallerId": join.caller_id,
        "RequestDigest": join.digest,
        "Joined": True,
    }


def key_claim(e: Mapping[str, Any], build: Versioned[Build]) -> KeyClaim:
    """A claim row with the build it names (claims written before callers were kept: from the build)."""
    prov = build.record.provenance
    return KeyClaim(
        key=e["IdempotencyKey"],
        build=build,
        claimed_at=_required_utc(e["ClaimedAt"]),
        caller_id=e.get("CallerId") or prov.caller_id or prov.caller,
        digest=e.get("RequestDigest") or ("" if e.get("Joined") else prov.request_digest),
        joined=bool(e.get("Joined", False)),
    )


# -- templates -----------------------------------------------------------------------------------------
def template_to_entity(s: TemplateState) -> Entity:
    _aware(s.updated_at, "updated_at")
    regions = [
        {
            "region": r.region,
            "build": r.build_id,
            "source_version": r.source_version,
            "image_version": r.image_version,
            "state": r.state,
            "completed_at": r.completed_at.isoformat() if r.completed_at else None,
        }
        for r in s.regions
    ]
    return _present(
        {
            "PartitionKey": TEMPLATES_PARTITION,
            "RowKey": template_key(s.template_id),
            "TemplateId": s.template_id,
            "Name": s.name,
            "Location": s.location,
            "Mode": s.mode,
            "GalleryImage": s.gallery_image_id,
            "BaselineVersion": s.baseline_version,
            "BaselineBuildId": s.baseline_build_id,
            "BaselineAt": _aware(s.baseline_at, "baseline_at"),
            "LastBuildId": s.last_build_id,
            "LastBuildState": s.last_build_state.value if s.last_build_state else "",
            "OpenBuilds": json.dumps(list(s.open_builds)),
            "ConsecutiveFailures": s.consecutive_failures,
            "Disabled": s.disabled,
            "DisabledReason": s.disabled_reason,
            "DisabledAt": _aware(s.disabled_at, "disabled_at"),
            "Regions": json.dumps(regions, separators=(",", ":")),
            "KnownRunStartedAt": _aware(s.known_run_started_at, "known_run_started_at"),
            "DistributesTo": json.dumps(list(s.distributes_to)),
            "FollowAfter": _aware(s.follow_after, "follow_after"),
            "FollowErrors": s.follow_errors,
            "Source": json.dumps(_source_dict(s.source), separators=(",", ":")) if s.source else None,
            "BaselineParentBuild": s.baseline_parent_build,
            "Revoked": json.dumps([list(r) for r in s.revoked]) if s.revoked else None,
            "CandidateBuild": s.candidate_build,
            "CandidateVersion": s.candidate_version,
            "PolicyTags": json.dumps([list(p) for p in s.policy_tags]) if s.policy_tags else None,
            "Rollback": _rollback_json(s.rollback),
            "LatestDrift": (
                json.dumps([[d.region, d.version, d.ledger_in_latest] for d in s.latest_drift])
                if s.latest_drift
                else None
            ),
            "UpdatedAt": s.updated_at,
        }
    )


def template_from_entity(e: Mapping[str, Any]) -> TemplateState:
    regions = tuple(
        RegionStanding(
            region=Region(r["region"]),
            build_id=BuildId(r["build"]),
            source_version=r["source_version"],
            image_version=r["image_version"],
            state=r["state"],
            completed_at=datetime.fromisoformat(r["completed_at"]) if r.get("completed_at") else None,
        )
        for r in json.loads(e.get("Regions", "[]"))
    )
    return TemplateState(
        template_id=TemplateId(e["TemplateId"]),
        name=e["Name"],
        location=Region(e["Location"]),
        updated_at=_required_utc(e["UpdatedAt"]),
        mode=e.get("Mode", "auto"),
        gallery_image_id=e.get("GalleryImage", ""),
        baseline_version=e.get("BaselineVersion", ""),
        baseline_build_id=e.get("BaselineBuildId", ""),
        baseline_at=_utc(e.get("BaselineAt")),
        last_build_id=e.get("LastBuildId", ""),
        last_build_state=BuildState(e["LastBuildState"]) if e.get("LastBuildState") else None,
        open_builds=tuple(BuildId(b) for b in json.loads(e.get("OpenBuilds", "[]"))),
        consecutive_failures=int(e.get("ConsecutiveFailures", 0)),
        disabled=bool(e.get("Disabled", False)),
        disabled_reason=e.get("DisabledReason", ""),
        disabled_at=_utc(e.get("DisabledAt")),
        regions=regions,
        known_run_started_at=_utc(e.get("KnownRunStartedAt")),
        distributes_to=tuple(json.loads(e.get("DistributesTo", "[]"))),
        follow_after=_utc(e.get("FollowAfter")),
        follow_errors=int(e.get("FollowErrors", 0)),
        source=_source_from(json.loads(e["Source"])) if e.get("Source") else None,
        baseline_parent_build=e.get("BaselineParentBuild", ""),
        revoked=tuple((str(b), str(v)) for b, v in json.loads(e.get("Revoked") or "[]")),
        candidate_build=e.get("CandidateBuild", ""),
        candidate_version=e.get("CandidateVersion", ""),
        policy_tags=tuple((str(n), str(v)) for n, v in json.loads(e.get("PolicyTags") or "[]")),
        rollback=_rollback_from(e.get("Rollback")),
        latest_drift=tuple(
            LatestDrift(Region(str(r)), str(v), bool(inside))
            for r, v, inside in json.loads(e.get("LatestDrift") or "[]")
        ),
    )


def _rollback_json(intent: RollbackIntent | None) -> str | None:
    if intent is None:
        return None
    _aware(intent.at, "rollback.at")
    fields = {
        "build": intent.build_id,
        "at": intent.at.isoformat(),
        "by": intent.by,
        "by_id": intent.by_id,
        "reason": intent.reason,
        "correlation_id": intent.correlation_id,
    }
    return json.dumps(fields, separators=(",", ":"))


def _rollback_from(text: str | None) -> RollbackIntent | None:
    if not text:
        return None
    fields = json.loads(text)
    return RollbackIntent(
        build_id=str(fields["build"]),
        at=_required_utc(datetime.fromisoformat(fields["at"])),
        by=str(fields.get("by", "")),
        by_id=str(fields.get("by_id", "")),
        reason=str(fields.get("reason", "")),
        correlation_id=str(fields.get("correlation_id", "")),
    )


# -- the template's audit trail ------------------------------------------------------------------------
def action_to_entity(a: TemplateAction) -> Entity:
    partition = template_key(a.template_id)
    return {
        "PartitionKey": partition,
        "RowKey": action_row(a),
        "Kind": "action",
        "TemplateId": a.template_id,
        "At": _aware(a.at, "at"),
        "Action": a.action,
        "By": a.by,
        "ById": a.by_id,
        "Why": a.why,
        "CorrelationId": a.correlation_id,
        "Changed": a.changed,
    }


def action_from_entity(e: Mapping[str, Any]) -> TemplateAction:
    return TemplateAction(
        template_id=TemplateId(e["TemplateId"]),
        at=_required_utc(e["At"]),
        action=e["Action"],
        by=e.get("By", ""),
        by_id=e.get("ById", ""),
        why=e.get("Why", ""),
        correlation_id=e.get("CorrelationId", ""),
        changed=e.get("Changed", ""),
    )


# -- source versions -----------------------------------------------------------------------------------
def seen_to_entity(s: SeenVersion) -> Entity:
    src = s.source
    return _present(
        {
            "PartitionKey": source_partition(src),
            "RowKey": version_row(s.version),
            "SourceType": src.kind.value,
            "Location": src.location,
            "Publisher": src.publisher,
            "Offer": src.offer,
            "Sku": src.sku,
            "GalleryImage": src.gallery_image_id,
            "Version": s.version,
            "FirstSeenAt": _aware(s.first_seen_at, "first_seen_at"),
            "Deprecation": s.deprecation.value,
            "DeprecationChangedAt": _aware(s.deprecation_changed_at, "deprecation_changed_at"),
        }
    )


def seen_from_entity(e: Mapping[str, Any]) -> SeenVersion:
    source = SourceRef(
        SourceKind(e["SourceType"]),
        e.get("Location", ""),
        e.get("Publisher", ""),
        e.get("Offer", ""),
        e.get("Sku", ""),
        e.get("GalleryImage", ""),
    )
    return SeenVersion(
        source=source,
        version=e["Version"],
        first_seen_at=_required_utc(e["FirstSeenAt"]),
        deprecation=ImageState(e.get("Deprecation", ImageState.ACTIVE.value)),
        deprecation_changed_at=_utc(e.get("DeprecationChangedAt")),
    )
