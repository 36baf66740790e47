"""The security report (GET /api/report, `python -m rebuilder report --html FILE`): one self-contained
HTML page — no scripts, fonts, images or external styles, nothing that needs a network to render.

Every value from the ledger is escaped on its way in (names, versions, and text people wrote). Stale
and failed cells, disabled templates and failed regions are made to stand out by colour *and* words,
so the page reads the same printed in black and white.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape

from rebuilder.domain.builds import Build
from rebuilder.domain.estate import Cell, Exposure, TemplateSummary, is_failing
from rebuilder.domain.regions import Region
from rebuilder.domain.waves import Wave

RECENT = 25  # builds listed at the end of the report
_LEGEND = (
    '<p class="small legend"><span class="tag green">current</span>built from the newest root version '
    'seen <span class="tag amber">stale</span>a newer patched source exists, or a window is open '
    '<span class="tag red">failed</span>replication failed in the region, the template is disabled, or its '
    "image was built on a revoked parent "
    '<span class="tag grey">candidate</span>replicated, out of latest until promoted</p>'
)

_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#57606a;margin:0}
table{border-collapse:collapse;margin-top:4px}
th,td{border:1px solid #d0d7de;padding:6px 8px;vertical-align:top;text-align:left}
thead th{background:#f6f8fa}
td.cell{min-width:150px}
.ok{background:#e6f4ea}
.stale{background:#fff1c2;outline:2px solid #d4a72c;outline-offset:-2px}
.failed{background:#ffd7d5;outline:3px solid #cf222e;outline-offset:-3px}
.empty{background:#f6f8fa;color:#57606a}
.tag{display:inline-block;font-size:12px;font-weight:600;border-radius:10px;padding:0 7px;margin:2px 2px 0 0}
.tag.red{background:#cf222e;color:#fff}.tag.amber{background:#9a6700;color:#fff}
.tag.grey{background:#57606a;color:#fff}.tag.green{background:#1a7f37;color:#fff}
tr.disabled>th{background:#ffd7d5}
.small{font-size:12px;color:#57606a}
.alerts{border:2px solid #cf222e;background:#fff5f5;padding:8px 14px;margin-top:16px}
.alerts li{margin:2px 0}
.legend span{margin-right:14px}
"""

# The report is one self-contained page: nothing to load, nothing to run, and only its own style block
# applies (by its hash, CSP Level 2: no 'unsafe-inline', so an injected <style> or style= is inert).
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
REPORT_CSP = (
    f"default-src 'none'; style-src '{STYLE_HASH}'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def render(
    summaries: Sequence[TemplateSummary], waves: Sequence[Wave], *, now: datetime, scopes: Sequence[str]
) -> str:
    regions = sorted({c.region for s in summaries for c in s.cells})
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape(REPORT_CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>rebuilder — security report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<header><h1>Golden images: security report</h1>",
        f'<p class="meta" id="generated">Generated {_at(now)} UTC from the rebuilder ledger · '
        f"{len(summaries)} templates · {len(regions)} regions</p>",
        f'<p class="meta" id="scopes">Scopes: {escape(", ".join(scopes)) or "none configured"}</p></header>',
        _alerts(summaries),
        _waves(waves),
        _matrix(summaries, regions),
        _recent(summaries),
        _LEGEND,
        '<p class="small">Exposure: from the first sighting of a source version to its image replicated in '
        "the region (promoted into latest, for a gated template; a revoked image protects nobody). "
        "<b>root</b>: of the Marketplace version at the root of a child's lineage; "
        "<b>direct</b>: of the template's own source (its parent's gallery image, for a child).</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _alerts(summaries: Sequence[TemplateSummary]) -> str:
    items = []
    for s in summaries:
        if s.state.disabled:
            items.append(
                f'<li class="alert-disabled"><b>{escape(s.state.name)} is disabled</b>: '
                f"{escape(s.state.disabled_reason)}</li>"
            )
        if s.built_on_revoked:
            items.append(
                f'<li class="alert-revoked"><b>{escape(s.state.name)} is {escape(s.built_on_revoked)}</b>: '
                "rebuilt from its parent's latest</li>"
            )
        for drift in s.state.latest_drift:
            items.append(
                f'<li class="alert-drift"><b>The gallery\'s latest for {escape(s.state.name)} disagrees '
                f"with the ledger</b>: {escape(drift.describe())}</li>"
            )
        for cell in s.cells:
            if cell.failed:
                items.append(
                    f'<li class="alert-region"><b>Replication of {escape(s.state.name)} to '
                    f"{escape(cell.region)} failed</b></li>"
                )
    if not items:
        return '<p id="alerts" class="meta">No template is disabled and no region has failed.</p>'
    return f'<div id="alerts" class="alerts"><b>Needs attention</b><ul>{"".join(items)}</ul></div>'


def _waves(waves: Sequence[Wave]) -> str:
    if not waves:
        return (
            '<section id="waves"><h2>Patch waves</h2><p class="meta">No new source version yet.</p></section>'
        )
    rows = "".join(
        f'<tr class="wave"><td>{escape(w.image)}</td><td class="wave-summary">{escape(w.describe())}</td>'
        f"<td>{_at(w.first_seen_at)}</td>"
        f"<td>{_tag('done', 'green') if w.done else _tag('in progress', 'amber')}</td></tr>"
        for w in waves
    )
    return (
        '<section id="waves"><h2>Patch waves</h2><p class="small">Per root source version: templates and '
        "template × region windows closed, worst and median exposure (open windows counted to now).</p>"
        "<table><thead><tr><th>image</th><th>wave</th><th>first seen (UTC)</th><th>status</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _matrix(summaries: Sequence[TemplateSummary], regions: Sequence[Region]) -> str:
    head = "".join(f"<th>{escape(r)}</th>" for r in regions)
    rows = []
    for s in summaries:
        cells = {c.region: c for c in s.cells}
        row_class = ' class="disabled"' if s.state.disabled else ""
        rows.append(
            f'<tr{row_class} data-template="{escape(s.state.name)}"><th>{_template_label(s)}</th>'
            f"<td>{_root_label(s)}</td>" + "".join(_cell(cells.get(r), s) for r in regions) + "</tr>"
        )
    return (
        '<section id="matrix"><h2>Templates × regions</h2>'
        f"<table><thead><tr><th>template</th><th>root source</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _template_label(s: TemplateSummary) -> str:
    tags = []
    if s.state.disabled:
        tags.append(_tag("DISABLED", "red"))
    elif is_failing(s):
        tags.append(_tag("last build failed", "red"))
    if s.parents:
        tags.append(_tag(f"child of {', '.join(s.parents)}", "grey"))
    if s.state.mode == "manual":
        tags.append(_tag("manual", "grey"))
    last = s.last_build
    built = f"last build {escape(last.state.value)} {_at(last.created_at)}" if last else "no build recorded"
    when = f"{_at(s.next_due_at)}: " if s.next_due_at else ""
    due = (
        f'<div class="small next-due">next due {when}{escape(s.next_due_why)}</div>' if s.next_due_why else ""
    )
    policy = f'<div class="small">{escape(s.policies)}</div>' if s.policies else ""
    return f'{escape(s.state.name)}<br>{"".join(tags)}<div class="small">{built}</div>{due}{policy}'


def _root_label(s: TemplateSummary) -> str:
    if s.root_source is None:
        return '<span class="small">unknown</span>'
    newest = f'<div class="small">newest seen {escape(s.newest_root)}</div>' if s.newest_root else ""
    return f"{escape(s.root_source.image)}{newest}"


def _cell(cell: Cell | None, s: TemplateSummary) -> str:
    if cell is None or not (cell.image_version_id or cell.replication):
        return '<td class="cell empty">—</td>'
    drifted = any(d.region == cell.region for d in s.state.latest_drift)
    bad = cell.failed or s.state.disabled or bool(s.built_on_revoked) or drifted
    kind = "failed" if bad else ("stale" if cell.stale else "ok")
    lines = [f'<div class="img">{escape(cell.image_version or "no image yet")}</div>']
    if cell.root_version:
        lines.append(f'<div class="small root">from {escape(cell.root_version)}</div>')
    if cell.promoted:
        lines.append(_tag("promoted", "green"))
    if cell.failed:
        lines.append(_tag("replication failed", "red"))
    if cell.revoked:
        lines.append(_tag(f"revoked {cell.revoked}: rolled back", "red"))
    if cell.candidate:
        lines.append(_tag(f"candidate {cell.candidate}: awaits promotion", "grey"))
    for drift in (d for d in s.state.latest_drift if d.region == cell.region):
        lines.append(
            _tag(
                f"gallery disagrees: {drift.version} "
                + ("out of latest" if drift.ledger_in_latest else "in latest"),
                "red",
            )
        )
    if s.built_on_revoked:
        lines.append(_tag(s.built_on_revoked, "red"))
    if cell.newer:
        lines.append(_tag(f"newer source {cell.newer}", "amber"))
    lines.append(_exposure(cell.root, "exposure"))
    if s.is_child and cell.direct is not None:
        lines.append(_exposure(cell.direct, "direct"))
    data = f'data-region="{escape(cell.region)}" data-state="{kind}"'
    return f'<td class="cell {kind}" {data}>{"".join(lines)}</td>'


def _exposure(exposure: Exposure | None, label: str) -> str:
    if exposure is None:
        return ""
    hours = exposure.duration.total_seconds() / 3600
    state = "open" if exposure.open else "closed"
    return (
        f'<div class="small exposure">{label} ({escape(exposure.basis.value)} {escape(exposure.version)}): '
        f"{hours:.1f} h, {state}</div>"
    )


def _recent(summaries: Sequence[TemplateSummary]) -> str:
    builds: list[Build] = sorted(
        (b for s in summaries for b in s.builds), key=lambda b: b.created_at, reverse=True
    )[:RECENT]
    rows = "".join(_build_row(b) for b in builds)
    return (
        '<section id="builds"><h2>Recent builds</h2>'
        "<table><thead><tr><th>created (UTC)</th><th>template</th><th>reason</th><th>who</th><th>why</th>"
        "<th>source</th><th>root</th><th>state</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _build_row(b: Build) -> str:
    who = b.provenance.caller or b.provenance.trigger
    cells: Iterable[str] = (
        _at(b.created_at),
        b.template_name,
        b.reason.value,
        who,
        b.provenance.note,
        b.source.resolved_version or "latest",
        b.root_version,
        b.state.value,
    )
    return f'<tr data-build="{escape(b.id)}">' + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"


def _tag(text: str, colour: str) -> str:
    return f'<span class="tag {colour}">{escape(text)}</span>'


def _at(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "-"
