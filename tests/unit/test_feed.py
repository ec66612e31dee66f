"""The feed's read model on a real ledger: incremental reads, kinds, filters, newest first."""

from __future__ import annotations

from gastown.escalation import Raise
from gastown.feed import Feed, Filter, RigFeed

from rigs import make_rig


def test_the_feed_reads_only_new_commits_and_classifies_them(tmp_path):
    rig = make_rig(tmp_path)
    with rig.ledger() as lg:
        lg.ensure()
        first = lg.create("First <script>alert(1)</script>")
        feed = RigFeed("webapp", lg)
        seen = feed.poll()
        assert [e.kind for e in seen] == ["bead", "ledger"]  # newest first: the create, then the ledger's birth
        assert seen[0].bead == first.id and seen[0].title == "First <script>alert(1)</script>"
        assert feed.poll() == []  # nothing new: nothing read
        esc = lg.apply(Raise("P1", "the build is on fire", "user tester", related=first.id))
        lg.close_bead(first.id, "done")
        new = feed.poll()
        assert [(e.kind, e.bead) for e in new] == [("bead", first.id), ("escalation", esc.id)]
        assert new[1].actor == "user tester" and new[1].text.startswith("escalation P1")
        assert len(feed.events) == 4  # what was seen before, and the new ones

        town = Feed({"webapp": lg})
        town.poll()
        assert [e.bead for e in town.recent(Filter(kinds=("escalation",)))] == [esc.id]
        assert town.recent(Filter(rig="other")) == []
        assert len(town.recent(limit=2)) == 2


def test_an_escalation_that_says_where_it_was_raised_is_read(tmp_path):
    """`gt escalate` records its source as {"rig": ...}: not a bead ID to follow to a convoy."""
    rig = make_rig(tmp_path)
    with rig.ledger() as lg:
        lg.ensure()
        esc = lg.apply(Raise("P1", "help", "user tester", source={"rig": "webapp", "polecat": "toast"}))
        new = RigFeed("webapp", lg).poll()
        assert [(e.kind, e.bead, e.convoy) for e in new][0] == ("escalation", esc.id, None)
