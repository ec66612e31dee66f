"""The dashboard's pages, rendered from beads. Pure: every string from a ledger is escaped here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from urllib.parse import quote

from .. import convoy as convoys
from .. import overview, scheduler, spend
from ..escalation import open_escalations
from ..feed import Event
from ..graph import topo_order
from ..ledger import Bead, BeadType, DepType, HistoryEntry, Status
from ..refinery import queue as mq
from ..refinery.bisect import Bisection
from .sources import RigView

Page = tuple[str, str]  # (title, the main part's HTML)

STYLE = """
body{font:14px system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#2b2d42;color:#fff;padding:.5em 1em}header a{color:#fff;margin-right:1em}
main{padding:1em}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.2em .5em;
text-align:left;vertical-align:top}.bar{background:#ddd;width:12em;height:.8em;display:inline-block}
.bar span{background:#2a9d8f;height:100%;display:block}.pass{fill:#2a9d8f}.fail{fill:#e63946}
.conflict{fill:#f4a261}.running{fill:#e9c46a}pre{background:#eee;padding:.5em;max-height:20em;overflow:auto;
white-space:pre-wrap}.merged{fill:#2a9d8f}.working,.review{fill:#e9c46a}.waiting,.ready{fill:#ccc}
.skipped,.blocked{fill:#e63946}form.inline{display:inline}
"""

# The few lines of JavaScript: on each server-sent event, fetch this page's main part again.
SCRIPT = """
(function(){var es=new EventSource('/events');var busy=false;
es.onmessage=function(){if(busy)return;busy=true;
fetch(location.pathname+location.search,{headers:{'X-Fragment':'1'}}).then(function(r){return r.text()})
.then(function(t){document.getElementById('main').innerHTML=t;busy=false},function(){busy=false})};})();
"""


def e(value: object) -> str:
    return escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{e(title)} - Gas Town</title>"
            f"<style>{STYLE}</style></head><body><header><b>Gas Town</b> &nbsp; <a href='/'>town</a>"
            f"<a href='/feed'>feed</a></header><main id=main>{body}</main><script>{SCRIPT}</script></body></html>")


def link(path: str, text: object) -> str:
    return f"<a href='{e(path)}'>{e(text)}</a>"


def q(text: str) -> str:
    return quote(text, safe="")


def bar(done: int, total: int) -> str:
    pct = int(100 * done / total) if total else 0
    return f"<span class=bar title='{done}/{total}'><span style='width:{pct}%'></span></span> {done}/{total}"


class Actions:
    """The action forms: shown only when actions are on, each carrying the page's CSRF token."""

    def __init__(self, enabled: bool, csrf: str):
        self.enabled, self.csrf = enabled, csrf

    def button(self, action: str, label: str, **fields: str) -> str:
        if not self.enabled:
            return ""
        hidden = "".join(f"<input type=hidden name='{e(k)}' value='{e(v)}'>" for k, v in
                         {**fields, "csrf": self.csrf}.items())
        reason = "<input name=reason placeholder=reason required>" if action == "reject" else ""
        return (f"<form class=inline method=post action='/action/{e(action)}'>{hidden}{reason}"
                f"<button>{e(label)}</button></form>")


def town_page(rigs: Mapping[str, RigView], beads_of: Mapping[str, Mapping[str, Bead]], actions: Actions) -> Page:
    rows, convoy_rows, escalations = [], [], []
    spent: dict[str, float] = {}
    for name, rig in rigs.items():
        beads = beads_of[name]
        batch = mq.active_batch(beads, rig.queue.target)
        state = scheduler.state_of(beads, overview.prefix(beads))
        rows.append(f"<tr><td>{link(f'/rig/{q(name)}', name)}</td><td>{len(scheduler.in_flight(beads))} of "
                    f"{rig.limit}</td><td>{len(mq.queued(beads, rig.queue.target))}</td>"
                    f"<td>{link(f'/rig/{q(name)}', batch.id) if batch else '-'}</td>"
                    f"<td>{'paused' if state.paused else 'dispatching'}</td></tr>")
        for c in overview.convoys_shown(beads):
            p = convoys.progress(c, beads)
            convoy_rows.append(f"<tr><td>{link(f'/convoy/{q(name)}/{q(c.id)}', c.metadata.get('name', c.id))}</td>"
                               f"<td>{e(name)}</td><td class=phase>{e(p.phase)}</td><td>{bar(p.done, p.total)}</td>"
                               f"<td>{e(spend.describe(p.spend)) if p.spend else ''}</td></tr>")
        for esc in open_escalations(beads.values()):
            ack = "" if esc.metadata.get("acked_by") else actions.button("ack", "ack", rig=name, id=esc.id)
            escalations.append(f"<tr><td>{e(esc.metadata.get('severity', ''))}</td><td>{e(name)}</td>"
                               f"<td>{link(f'/bead/{q(name)}/{q(esc.id)}', esc.title)}</td>"
                               f"<td>{e(esc.metadata.get('acked_by') or 'unacknowledged')} {ack}</td></tr>")
        for k, v in spend.total(beads.values()).items():
            spent[k] = spent.get(k, 0) + v
    return ("town", (
        "<h1>Town</h1><h2>Rigs</h2><table><tr><th>rig</th><th>sessions</th><th>queued MRs</th><th>batch</th>"
        f"<th>scheduler</th></tr>{''.join(rows)}</table>"
        "<h2>Convoys</h2><table id=convoys><tr><th>convoy</th><th>rig</th><th>phase</th><th>progress</th>"
        f"<th>spend</th></tr>{''.join(convoy_rows)}</table>"
        f"<h2>Escalations</h2><table id=escalations>{''.join(escalations) or '<tr><td>none open</td></tr>'}</table>"
        f"<h2>Spend</h2><p>{e(spend.describe(spent)) if spent else 'nothing recorded yet'}</p>"))


def rig_page(rig: RigView, beads: Mapping[str, Bead], batch_history: Sequence[HistoryEntry],
             actions: Actions) -> Page:
    name, target = rig.name, rig.queue.target
    state = scheduler.state_of(beads, overview.prefix(beads))
    toggle = actions.button("resume", "resume", rig=name) if state.paused else actions.button("pause", "pause",
                                                                                           rig=name)
    polecats = []
    for a, held in overview.polecats(beads):
        polecats.append(f"<tr><td>{e(a.metadata.get('name', a.id))}</td><td>{e(a.metadata.get('state', ''))}</td>"
                        f"<td>{link(f'/bead/{q(name)}/{q(held.id)}', held.title) if held else '-'}</td></tr>")
    queued = "".join(f"<li>{link(f'/bead/{q(name)}/{q(m.id)}', m.title)} "
                     + actions.button("reject", "reject", rig=name, id=m.id) + "</li>"
                     for m in mq.queued(beads, target))
    batch = mq.active_batch(beads, target)
    merged = overview.recently_merged(m for m in beads.values() if m.type == BeadType.MERGE_REQUEST)
    rejected = overview.recently_rejected(mq.merge_requests(beads, target))
    return (f"rig {name}", (
        f"<h1>Rig {e(name)}</h1><p>scheduler: {e(state.held(_now()) or 'dispatching')} {toggle}; up to "
        f"{rig.limit} polecats</p><h2>Polecats</h2><table id=polecats><tr><th>polecat</th><th>state</th>"
        f"<th>holds</th></tr>{''.join(polecats)}</table>"
        f"<h2>Merge queue into {e(target)}</h2><ul id=queued>{queued or '<li>nothing waiting</li>'}</ul>"
        + (batch_view(batch, batch_history, rig.queue.parallel) if batch else "<p id=batch>no batch verifying</p>")
        + "<h2>Rejected</h2><div id=rejections>"
        + ("".join(rejection_view(name, m, beads, actions) for m in rejected) or "<p>none</p>") + "</div>"
        + "<h2>Merged</h2><ul id=merges>"
        + "".join(f"<li>{link(f'/bead/{q(name)}/{q(m.id)}', m.title)} as {e(m.metadata['merged_commit'][:12])}</li>"
                  for m in merged) + "</ul>"))


def _now():  # a function of its own so that the page module stays free of clocks elsewhere
    from datetime import UTC, datetime
    return datetime.now(UTC)


def batch_view(batch: Bead, history: Sequence[HistoryEntry], parallel: int) -> str:
    """The batch being bisected: one row per round, one box per run over the MRs it verifies (its
    tooltip: what it verifies, the MRs, the run's ID for `gt peek --verify`)."""
    mrs = list(batch.metadata.get("mrs", []))
    rounds = overview.rounds_of(batch, history, parallel)
    width, row, unit = 640, 34, 640 / max(1, len(mrs))
    boxes = []
    for i, runs in enumerate(rounds):
        y = 20 + i * row
        boxes.append(f"<text x=0 y={y + 18}>round {i + 1}</text>")
        for r in runs:
            group = r.get("group") or r.get("prefix") or mrs
            xs = [mrs.index(m) for m in group if m in mrs] or [0]
            x, w = 70 + min(xs) * unit, (max(xs) - min(xs) + 1) * unit - 4
            label = f"{r['describe']}: {r['result']}" + (f" ({r['gate']})" if r.get("gate") else "")
            boxes.append(f"<g class=run><rect class='{e(r['result'])}' x={x:.0f} y={y} width={w:.0f} height={row - 8}>"
                         f"<title>{e(label)}: {e(', '.join(group))} (run {e(r['run'])})</title></rect>"
                         f"<text x={x + 4:.0f} y={y + 17}>{e(r['result'])}</text></g>")
    header = "".join(f"<text x={70 + i * unit + 2:.0f} y=12 font-size=10>{e(m)}</text>" for i, m in enumerate(mrs))
    height = 30 + len(rounds) * row
    state = Bisection.from_dict(batch.metadata["state"])
    return (f"<section id=batch><h3>Batch {e(batch.id)} ({e(batch.metadata.get('phase', ''))}): "
            f"{len(mrs)} MRs, bisecting</h3><svg width={width + 80} height={height} role=img "
            f"aria-label='bisection of {e(batch.id)}'>{header}{''.join(boxes)}</svg>"
            f"<p>accepted: {e(', '.join(state.accepted) or '-')}; rejected: "
            f"{e(', '.join(state.rejected) or '-')}</p></section>")


def rejection_view(rig: str, mr: Bead, beads: Mapping[str, Bead], actions: Actions) -> str:
    """A rejected (or conflicting) MR with the reason and the failing output its polecat got."""
    source = beads.get(mr.metadata.get("source", ""))
    said = next((c.text for c in reversed(source.comments) if "rejected" in c.text or "conflict" in c.text), "") \
        if source else ""
    reason = overview.rejection_reason(mr)
    return (f"<div class=rejection><p>{link(f'/bead/{q(rig)}/{q(mr.id)}', mr.title)}: {e(reason)} "
            f"{actions.button('retry', 'retry', rig=rig, id=mr.id) if mr.status == Status.BLOCKED else ''}</p>"
            f"<pre>{e(said)}</pre></div>")


def convoy_page(rig: str, convoy: Bead, beads: Mapping[str, Bead]) -> Page:
    """The convoy's beads as a dependency graph: columns by depth, arrows from what a bead needs."""
    p = convoys.progress(convoy, beads)
    members = {b.id: b for b in convoys.tracked(convoy, beads)}
    needs = {i: [d for d in b.deps(DepType.BLOCKS) if d in members] for i, b in members.items()}
    depth: dict[str, int] = {}
    for i in topo_order(members, lambda n: needs[n]):
        depth[i] = 1 + max((depth[d] for d in needs[i]), default=-1)
    columns: dict[int, list[str]] = {}
    for i in sorted(members, key=lambda i: (depth.get(i, 0), i)):
        columns.setdefault(depth.get(i, 0), []).append(i)
    pos = {i: (20 + c * 220, 20 + r * 50) for c, ids in columns.items() for r, i in enumerate(ids)}
    states = {b.id: b.state for b in p.beads}
    edges = "".join(f"<line x1={pos[d][0] + 180} y1={pos[d][1] + 15} x2={pos[i][0]} y2={pos[i][1] + 15} "
                    f"stroke=#888 marker-end='url(#arrow)'/>" for i, ds in needs.items() for d in ds)
    nodes = "".join(
        f"<a href='/bead/{e(q(rig))}/{e(q(i))}'><g class=node><rect class='{e(states.get(i, ''))}' x={x} y={y} "
        f"width=180 height=30 rx=4/><text x={x + 6} y={y + 19}>{e(members[i].title[:24])}</text>"
        f"<title>{e(members[i].title)}: {e(states.get(i, ''))}</title></g></a>" for i, (x, y) in pos.items())
    w = 40 + 220 * (max(columns, default=0) + 1)
    h = 40 + 50 * max((len(c) for c in columns.values()), default=1)
    table = "".join(f"<tr><td>{link(f'/bead/{q(rig)}/{q(b.id)}', b.title)}</td><td>{e(b.state)}</td></tr>"
                    for b in p.beads)
    return (f"convoy {convoy.metadata.get('name', convoy.id)}", (
        f"<h1>Convoy {e(convoy.metadata.get('name', convoy.id))}</h1><p>rig {link(f'/rig/{q(rig)}', rig)}; "
        f"<b class=phase>{e(p.phase)}</b> {bar(p.done, p.total)}</p>"
        f"<svg width={w} height={h}><defs><marker id=arrow viewBox='0 0 10 10' refX=10 refY=5 markerWidth=6 "
        f"markerHeight=6 orient=auto><path d='M0,0L10,5L0,10z'/></marker></defs>{edges}{nodes}</svg>"
        f"<table id=beads><tr><th>bead</th><th>state</th></tr>{table}</table>"))


def bead_page(rig: str, bead: Bead, history: Iterable[HistoryEntry]) -> Page:
    rows = "".join(f"<tr><td>{e(h.date)}</td><td>{e(h.author)}</td><td>{e(h.change)}</td></tr>" for h in history)
    comments = "".join(f"<p><b>{e(c.author)}</b>:</p><pre>{e(c.text)}</pre>" for c in bead.comments)
    return (f"bead {bead.id}", (
        f"<h1>{e(bead.id)}: {e(bead.title)}</h1><p>rig {link(f'/rig/{q(rig)}', rig)}; {e(bead.type)}, "
        f"{e(bead.status)}{', assigned to ' + e(bead.assignee) if bead.assignee else ''}</p>"
        f"<pre>{e(bead.description)}</pre><h2>History</h2><table id=history>{rows}</table>"
        f"<h2>Comments</h2>{comments or '<p>none</p>'}"))


def feed_page(events: Sequence[Event]) -> Page:
    rows = "".join(
        f"<tr class='{e(ev.kind)}'><td>{e(ev.at[:19].replace('T', ' '))}</td><td>{link(f'/rig/{q(ev.rig)}', ev.rig)}"
        f"</td><td>{e(ev.kind)}</td><td>{link(f'/bead/{q(ev.rig)}/{q(ev.bead)}', ev.bead) if ev.bead else ''}</td>"
        f"<td>{e(ev.title or '')}</td><td>{e(ev.text)}</td><td>{e(ev.actor)}</td></tr>" for ev in events)
    return ("feed", f"<h1>Feed</h1><table id=feed>{rows}</table>")


def message(title: str, text: str) -> Page:
    return (title, f"<h1>{e(title)}</h1><p>{e(text)}</p>")
