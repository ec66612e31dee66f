"""`gt tui` driven by textual's test pilot against a real local town (real git, the real daemon,
scripted agents): its panels agree with the ledger, enter on a polecat shows its session's
output, and the problems view lists an open escalation and a blocked rig."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

pytest.importorskip("textual")

from textual.widgets import DataTable, Log, Tree  # noqa: E402

from gastown.ledger import BeadType  # noqa: E402
from gastown.tui.app import PeekScreen, TownApp  # noqa: E402

from towns import convoy_done, gt, ok, town_with_convoy  # noqa: E402
from tuiview import rows, title  # noqa: E402

TITLE = "need a human <b>[bold]here[/bold]</b>"  # shown as text: neither markup nor HTML


async def until(app: TownApp, check, timeout: float, what: str):
    """Read the town again until ``check(app)`` is truthy (the pilot's loop keeps running)."""
    deadline = time.monotonic() + timeout
    while True:
        await app.reload()
        found = check(app)
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.5)


def polecat_nodes(app: TownApp) -> dict[str, object]:
    return {n.data[2]: n for rig in app.query_one(Tree).root.children for n in rig.children}


@pytest.mark.slow
@pytest.mark.asyncio
async def test_the_tui_follows_a_convoy_and_agrees_with_the_ledger(tmp_path):
    rig, town = town_with_convoy(tmp_path, ["Good one", "BAD one"], polecats=2, gate_seconds=2, fill=2)
    ok(gt(town, "up"))
    try:
        app = TownApp(town, interval=3600)  # the test reads the town when it wants to
        async with app.run_test(size=(220, 60)) as pilot:
            # the merge queue panel shows the batch being verified, with its rounds
            batch = await until(app, lambda a: next((r for r in rows(a, "queue") if r[1] == "batch"), None),
                                timeout=120, what="a batch verifying in the queue panel")
            assert any(r[1] == "round 1" for r in rows(app, "queue")), rows(app, "queue")
            assert f"verifying {batch[2]}" in title(app, "queue")
            await until(app, lambda a: convoy_done(rig), timeout=150, what="the convoy to be done")
            await app.reload()

            with rig.ledger() as lg:
                beads = lg.beads()
            convoy = next(b for b in beads.values() if b.type == BeadType.CONVOY)
            members = [b for b in beads.values() if b.title in ("Good one", "BAD one")]
            mrs = [b for b in beads.values() if b.type == BeadType.MERGE_REQUEST]
            agents = {b.metadata["name"] for b in beads.values() if b.type == BeadType.AGENT and "name" in b.metadata}
            assert batch[2] in beads and beads[batch[2]].type == BeadType.MERGE_BATCH

            # convoys: the one convoy, Done, every bead merged
            assert rows(app, "convoys") == [["webapp", "docs", "Done", f"{'█' * 10} {len(members)}/{len(members)}",
                                             rows(app, "convoys")[0][4]]]
            assert convoy.metadata["name"] == "docs" and title(app, "convoys") == "Convoys (1)"
            # the merge queue: nothing waiting, the merges and the rejection the ledger has
            merged = sum(1 for m in mrs if m.metadata.get("merged_commit"))
            rejected = sum(int(m.metadata.get("rejections", 0)) for m in mrs)
            assert merged == 2 and rejected >= 1
            assert title(app, "queue") == f"Merge queue: 0 waiting, no batch verifying; merged {merged}, rejected " \
                                          f"{rejected}"
            # and the newest merges and rejections: each merge with its commit, the rejection with its reason
            outcomes = {(r[1], r[2]): r[3] for r in rows(app, "queue") if r[1] in ("merged", "rejected")}
            assert {mr for kind, mr in outcomes if kind == "merged"} == {m.id for m in mrs
                                                                         if m.metadata.get("merged_commit")}
            assert all(outcomes[("merged", m.id)].endswith(m.metadata["merged_commit"][:12]) for m in mrs
                       if m.metadata.get("merged_commit"))
            assert any(kind == "rejected" and "gate" in text for (kind, _), text in outcomes.items()), outcomes
            # the agent tree: the rig, and under it every polecat the ledger knows
            tree = app.query_one(Tree)
            assert [str(n.label).split()[0] for n in tree.root.children] == ["webapp"]
            assert set(polecat_nodes(app)) == agents and len(agents) == 2
            # the events: the feed's, newest first, as `gt feed` reads them from the ledger's history
            feed = json.loads(ok(gt(town, "feed", "--json", "-n", "1000")))
            shown = rows(app, "events")
            assert len(shown) == min(200, len(feed)) and title(app, "events") == f"Events ({len(shown)} newest)"
            assert [(r[2], r[3]) for r in shown[:20]] == [(e["kind"], e["bead"] or "") for e in feed[:20]]
            assert {"merge", "rejection", "verification", "session"} <= {r[2] for r in shown}
            assert rows(app, "problems") == [] and title(app, "problems") == "Problems (0)"

            # enter on the polecat that had the bad change: its session's output, as it printed it
            bad = next(b for b in members if b.title == "BAD one")
            polecat = bad.assignee or bad.metadata.get("worker")
            tree.focus()
            tree.move_cursor(polecat_nodes(app)[polecat])
            await pilot.press("enter")
            peek = await until(app, lambda a: isinstance(a.screen, PeekScreen) and a.screen.query_one("#peek", Log)
                               .lines and a.screen, timeout=10, what="the peek screen with the session's output")
            assert peek.polecat == polecat
            text = "\n".join(peek.query_one("#peek", Log).lines)
            assert "agent output for" in text and "<b>untouched</b>" in text
            assert f"polecat {polecat}: session" in str(peek.query_one("#peek-head").render())
            await pilot.press("escape")
            assert not isinstance(app.screen, PeekScreen)
            # p peeks at the polecat under the cursor too
            await pilot.press("p")
            await pilot.pause()
            assert isinstance(app.screen, PeekScreen) and app.screen.polecat == polecat
            await pilot.press("escape")

            # enter on the rig drills into it; escape shows the whole town again
            tree.move_cursor(tree.root.children[0])
            await pilot.press("enter")
            assert app.focus_rig == "webapp" and "rig webapp" in app.sub_title
            await pilot.press("escape")
            assert app.focus_rig is None

            # the problems view: an open escalation (its title as text), then a blocked rig
            raised = ok(gt(town, "escalate", "-s", "P1", TITLE, "--rig", "webapp")).split()[0]
            problems = await until(app, lambda a: rows(a, "problems"), timeout=30, what=f"the escalation {raised}")
            assert problems == [["webapp", "escalation", raised, f"P1 {TITLE}"]]
            assert rows(app, "events")[0][2] == "escalation"
            hidden = rig.remote.with_name("hidden.git")
            rig.remote.rename(hidden)
            try:
                blocked = await until(app, lambda a: [r for r in rows(a, "problems") if r[1] == "blocked"],
                                      timeout=30, what="the rig to be blocked in the problems view")
                assert blocked[0][0] == "webapp" and "blocked: " in blocked[0][3] and "cannot reach" in blocked[0][3]
            finally:
                hidden.rename(rig.remote)
    finally:
        ok(gt(town, "down"))


@pytest.mark.asyncio
async def test_the_tui_of_a_town_without_rigs_and_a_rig_that_is_not_there(tmp_path):
    app = TownApp(tmp_path / "town", interval=3600)
    async with app.run_test() as pilot:
        await app.reload()
        assert "daemon not running (gt up)" in app.sub_title
        assert [app.query_one(f"#{n}", DataTable).row_count for n in ("convoys", "queue", "problems", "events")] \
            == [0, 0, 0, 0]
        await pilot.press("p")  # nothing to peek at: said, not a traceback
        assert not isinstance(app.screen, PeekScreen)
    res = gt(tmp_path / "town", "tui", "--rig", "ghost")
    assert res.returncode == 1 and "no rig 'ghost'" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.asyncio
async def test_the_problems_view_lists_a_stalled_polecat_and_a_rate_limit(tmp_path):
    """No daemon: the ledger says a session is under way that is not on disk (the Witness: stalled),
    and the scheduler backs off a rate limit."""
    from gastown.polecats import EnsureAgent, Hook, StartSession
    from gastown.scheduler import RateLimitStrike

    from rigs import make_rig

    rig, town = make_rig(tmp_path), tmp_path / "town"
    ok(gt(town, "rig", "add", "webapp", str(rig.remote)))
    with rig.ledger() as lg:
        lg.ensure()
        work = lg.create("Fix [red]it[/red]")
        lg.apply(EnsureAgent("toast", "webapp", "test"))
        lg.apply(Hook(work.id, "toast", "test"))
        lg.apply(StartSession(work.id, "toast", "gone-1", "test"))
        lg.apply(RateLimitStrike("gone-1", "test", retry_after=600))
    app = TownApp(town, interval=3600)
    async with app.run_test(size=(200, 50)) as pilot:
        await app.reload()
        problems = sorted(rows(app, "problems"))
        assert [p[:3] for p in problems] == [["webapp", "rate-limited", ""], ["webapp", "stalled", "toast"]]
        assert "rate-limit backoff until" in problems[0][3] and f"{work.id}: session gone-1 is gone" in problems[1][3]
        label = str(polecat_nodes(app)["toast"].label)
        assert f"toast  stalled  {work.id} Fix [red]it[/red]" in label  # the title as text, not markup
        tree = app.query_one(Tree)
        tree.focus()
        tree.move_cursor(polecat_nodes(app)["toast"])
        await pilot.press("p")
        await pilot.pause()
        head = await until(app, lambda a: isinstance(a.screen, PeekScreen) and str(a.screen.query_one(
            "#peek-head").render()), timeout=10, what="the peek screen")
        assert head == "polecat toast (rig webapp): no session yet"
