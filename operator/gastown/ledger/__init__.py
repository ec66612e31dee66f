"""The ledger: every bead of a rig, stored as commits on the rig's ``gastown/ledger`` branch.

Only this package writes git state. See ``Ledger`` for the entry point.
"""

from .claim import Claim, Drive
from .errors import CorruptRecord, InvalidOperation, LedgerError, NotFound, Unavailable
from .gitstore import LEDGER_BRANCH
from .ledger import HistoryEntry, Ledger, default_actor
from .model import Bead, BeadType, Comment, Dependency, DepType, Status
from .query import blockers, counts_by_status, ready, select

__all__ = [
    "Claim", "Drive",
    "CorruptRecord", "InvalidOperation", "LedgerError", "NotFound", "Unavailable",
    "LEDGER_BRANCH", "HistoryEntry", "Ledger", "default_actor",
    "Bead", "BeadType", "Comment", "Dependency", "DepType", "Status",
    "blockers", "counts_by_status", "ready", "select",
]
