"""status.ledgerHead after a Rig's reconcile (kube/rig_handlers.py ``ledger_head``), on a real
ledger: the rig loop may have shown a later tip while the reconcile applied the rig's objects, and
the head a Rig shows never moves back."""

from __future__ import annotations

from gastown.kube.rig_handlers import ledger_head

from rigs import make_rig


def test_the_head_a_rig_shows_never_moves_back_to_what_its_reconcile_read(tmp_path):
    rig = make_rig(tmp_path)
    with rig.ledger() as ledger:
        read = ledger.ensure()  # what the reconcile read
        ledger.create("a write of the rig loop's first pass")
        later = ledger.tip
        assert later != read
        assert ledger_head(ledger, later, read) == later  # the loop showed it meanwhile: it stays
        assert ledger_head(ledger, read, later) == later
        assert ledger_head(ledger, None, read) == read
        assert ledger_head(ledger, read, read) == read
        assert ledger_head(ledger, "0" * 40, read) == read  # a head this cache never saw: the reconcile's
