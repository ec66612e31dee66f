"""`gt tui`: the town in a terminal, with textual.

Left, the agent tree: rigs, their polecats, what each holds and its session's state (the
Witness's verdict). Right, the convoys with their progress, the merge queue (waiting MRs, the
batch being verified and its bisection's rounds with each run's ID, the newest merges and
rejections), the problems (blocked rigs, rate limits, hung,
stalled or stuck polecats, open escalations) and the activity feed. Keys: enter on a rig drills
into it (escape: the whole town again), enter or p on a polecat peeks at its session's output,
r reads the town now, q quits. Every string from a ledger or a session is shown as text, never
as markup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Log, Static, Tree
from textual.widgets.tree import TreeNode

from ..feed import Event
from .model import RECENT, Polecat, Snapshot, TownModel

if TYPE_CHECKING:
    from .cluster import ClusterModel

Key = tuple[str, ...]  # ("rig", NAME) or ("polecat", RIG, NAME): a tree node's data


def t(value: object) -> Text:
    """Untrusted text as a cell or label: never parsed as markup."""
    return Text("" if value is None else str(value))


def bar(done: int, total: int, width: int = 10) -> Text:
    filled = round(width * done / total) if total else 0
    return Text.assemble(("█" * filled, "green"), ("░" * (width - filled), "dim"), f" {done}/{total}")


def run_text(run: dict) -> str:
    """A run of a bisection's round: what it verifies, its result, the failing gate, its ID (``gt peek --verify``)."""
    gate = f" ({run['gate']})" if run.get("gate") else ""
    return f"{run['describe']}: {run['result']}{gate}" + (f" [{run['run']}]" if run.get("run") else "")


def outcome_text(o: dict) -> str:
    """A merge (its commit) or a rejection (its reason) of the queue."""
    if o["outcome"] == "merged":
        return f"{o['title']} as {o['commit'][:12]}"
    return f"{o['title']}: {o.get('reason') or o['outcome']}"


def polecat_label(p: Polecat) -> Text:
    state = p.verdict or p.state or "idle"
    style = {"healthy": "green", "hung": "bold red", "stalled": "bold red", "stuck": "yellow",
             "done-not-cleaned": "yellow"}.get(p.verdict or "", "dim")
    label = Text.assemble((p.name, "bold"), "  ", (state, style))
    if p.bead:
        label.append(f"  {p.bead} ")
        label.append(t(p.title))
    if p.session:
        label.append(f"  [{'running' if p.running else 'ended'}]", style="cyan" if p.running else "dim")
    return label


class PeekScreen(Screen[None]):
    """A polecat's session output (its newest session's log), read again with r."""

    BINDINGS = [Binding("escape,q", "app.pop_screen", "back"), Binding("r", "reload", "read again")]

    def __init__(self, model: TownModel | ClusterModel, rig: str, polecat: str):
        super().__init__()
        self.model, self.rig, self.polecat = model, rig, polecat

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="peek-head", markup=False)
        yield Log(id="peek", highlight=False)
        yield Footer()

    async def on_mount(self) -> None:
        await self.action_reload()

    async def action_reload(self) -> None:
        head, text = await asyncio.to_thread(self.model.peek, self.rig, self.polecat)
        self.query_one("#peek-head", Static).update(t(head))
        log = self.query_one("#peek", Log)
        log.clear()
        log.write(text)


class TownApp(App[None]):
    TITLE = "Gas Town"
    CSS = """
    #agents { width: 45%; border: round $accent; }
    #panels { width: 55%; }
    #panels DataTable { height: 1fr; border: round $primary; }
    #peek-head { background: $boost; padding: 0 1; }
    """
    BINDINGS = [
        Binding("p", "peek", "peek"),
        Binding("escape", "town", "whole town"),
        Binding("r", "reload", "refresh"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, root: Path | None = None, rig: str | None = None, interval: float = 2.0,
                 model: TownModel | ClusterModel | None = None):
        super().__init__()
        self.model = model if model is not None else TownModel(root, rig)
        self.interval = interval
        self.focus_rig: str | None = rig
        self.snapshot: Snapshot | None = None
        self._reading = asyncio.Lock()
        self._tree_keys: dict[Key, TreeNode[Key]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            tree: Tree[Key] = Tree("town", id="agents")
            tree.auto_expand = False
            tree.show_root = False
            yield tree
            with Vertical(id="panels"):
                for name, columns in (("convoys", ("rig", "convoy", "phase", "progress", "spend")),
                                      ("queue", ("rig", "what", "", "")),
                                      ("problems", ("rig", "problem", "about", "what")),
                                      ("events", ("at", "rig", "kind", "bead", "what", "actor"))):
                    table: DataTable = DataTable(id=name, cursor_type="row", zebra_stripes=True)
                    table.add_columns(*columns)
                    yield table
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one(Tree).root.expand()
        await self.reload()
        self.set_interval(self.interval, self.reload)

    def on_unmount(self) -> None:
        self.model.close()

    async def reload(self) -> None:
        """Read the town (off the event loop: git) and show it."""
        async with self._reading:
            try:
                snap = await asyncio.to_thread(self.model.read)
            except Exception as e:  # a bad town.json, an unreadable session dir: said, and the next read tries again
                self.notify(f"could not read the town: {e}", severity="error", timeout=5, markup=False)
                return
            self.snapshot = snap
            self.show()

    # --- what is shown ------------------------------------------------------------------------

    def show(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        self.sub_title = ((snap.title or f"{snap.town}: daemon " + (f"running (pid {snap.daemon})" if snap.daemon
                                                                    else "not running (gt up)"))
                          + (f"; rig {self.focus_rig}" if self.focus_rig else ""))
        self._show_tree(snap)
        mine = self.focus_rig
        self._fill("convoys", [(t(c.rig), t(c.name), t(c.phase), bar(c.done, c.total), t(c.spend))
                               for c in snap.convoys if mine in (None, c.rig)],
                   "Convoys ({n})")
        queues = [q for q in snap.queues if mine in (None, q.rig)]
        rows = []
        for q in queues:
            rows += [(t(q.rig), t("waiting"), t(mr), t(title)) for mr, title in q.waiting]
            if q.length:  # a cluster's queue: how many wait, not which
                rows.append((t(q.rig), t("waiting"), t(f"{q.length} MRs"), t("")))
            if q.batch:
                rows.append((t(q.rig), t("last batch" if q.ended else "batch"), t(q.batch),
                             t(f"{q.phase}: {len(q.mrs)} MRs ({', '.join(q.mrs)})")))
                rows += [(t(q.rig), t(f"round {i}"), t(f"{len(runs)} runs"), t("; ".join(run_text(r) for r in runs)))
                         for i, runs in enumerate(q.rounds, 1)]
            rows += [(t(q.rig), t(o["outcome"]), t(o["mr"]), t(outcome_text(o))) for o in q.recent[:RECENT]]
        waiting = sum(q.waiting_count for q in queues)
        batches = [q.batch for q in queues if q.batch and not q.ended]
        self._fill("queue", rows, f"Merge queue: {waiting} waiting, " + (f"verifying {', '.join(batches)}" if batches
                                                                         else "no batch verifying")
                   + f"; merged {sum(q.merged for q in queues)}, rejected {sum(q.rejected for q in queues)}")
        self._fill("problems", [(t(p.rig), t(p.kind), t(p.subject), t(p.text)) for p in snap.problems
                                if mine in (None, p.rig)], "Problems ({n})")
        self._fill("events", [event_row(e) for e in snap.events if mine in (None, e.rig)], "Events ({n} newest)")

    def _fill(self, name: str, rows: Sequence[tuple[Text, ...]], title: str) -> None:
        table = self.query_one(f"#{name}", DataTable)
        table.clear()
        for row in rows:
            table.add_row(*row)
        table.border_title = title.format(n=len(rows))

    def _show_tree(self, snap: Snapshot) -> None:
        tree: Tree[Key] = self.query_one(Tree)
        seen: set[Key] = set()
        for r in snap.rigs:
            if self.focus_rig not in (None, r.name):
                continue
            key: Key = ("rig", r.name)
            label = Text.assemble((r.name, "bold"), f"  {r.working} of {r.limit} working, {r.in_flight} in flight; ",
                                  t(r.error or r.scheduler))
            self._node(tree.root, key, label, leaf=False)
            seen.add(key)
            for p in snap.polecats:
                if p.rig == r.name:
                    pkey: Key = ("polecat", r.name, p.name)
                    self._node(self._tree_keys[key], pkey, polecat_label(p), leaf=True)
                    seen.add(pkey)
        for key in sorted((k for k in self._tree_keys if k not in seen), key=len, reverse=True):
            self._tree_keys.pop(key).remove()  # polecats first, then their rigs
        if tree.cursor_node is None or tree.cursor_line < 0:
            tree.cursor_line = 0

    def _node(self, parent: TreeNode[Key], key: Key, label: Text, leaf: bool) -> None:
        node = self._tree_keys.get(key)
        if node is None:
            self._tree_keys[key] = parent.add_leaf(label, data=key) if leaf else parent.add(label, data=key, expand=True)
        else:
            node.set_label(label)

    # --- keys ---------------------------------------------------------------------------------

    def on_tree_node_selected(self, message: Tree.NodeSelected[Key]) -> None:
        key = message.node.data
        if key and key[0] == "rig":
            self.focus_rig = key[1]
            self.show()
        elif key and key[0] == "polecat":
            self.push_screen(PeekScreen(self.model, key[1], key[2]))

    def action_peek(self) -> None:
        node = self.query_one(Tree).cursor_node
        if node is not None and node.data and node.data[0] == "polecat":
            self.push_screen(PeekScreen(self.model, node.data[1], node.data[2]))
        else:
            self.notify("select a polecat in the tree first", timeout=3)

    def action_town(self) -> None:
        if self.model.only is None and self.focus_rig is not None:
            self.focus_rig = None
            self.show()

    async def action_reload(self) -> None:
        await self.reload()


def event_row(e: Event) -> tuple[Text, ...]:
    what = t(e.text)
    if e.title:
        what.append(f" [{e.title[:60]}]", style="dim")
    return (t(e.at[11:19]), t(e.rig), t(e.kind), t(e.bead), what, t(e.actor))
