"""The ledger: every bead of a rig, stored as commits on the rig's ``gastown/ledger`` branch.

Only this package writes git state. See ``Ledger`` for the entry point.

The names below are imported when first used (PEP 562), so a light module of the package
(``errors``, ``handoff``) is imported without pydantic and the rest: a `gt bead create` that
hands its write to the machine's committer loads only those.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not loaded by a light module of the package (handoff)

if TYPE_CHECKING:  # the names, for mypy (`X as X`: re-exported)
    from .claim import Claim as Claim
    from .claim import Drive as Drive
    from .errors import CorruptRecord as CorruptRecord
    from .errors import InvalidOperation as InvalidOperation
    from .errors import LedgerError as LedgerError
    from .errors import NotFound as NotFound
    from .errors import Unavailable as Unavailable
    from .gitrun import GitStopped as GitStopped
    from .gitrun import git_stopped as git_stopped
    from .gitrun import stop_git as stop_git
    from .gitstore import LEDGER_BRANCH as LEDGER_BRANCH
    from .handoff import default_actor as default_actor
    from .ledger import HistoryEntry as HistoryEntry
    from .ledger import Ledger as Ledger
    from .model import Bead as Bead
    from .model import BeadType as BeadType
    from .model import Comment as Comment
    from .model import Dependency as Dependency
    from .model import DepType as DepType
    from .model import Status as Status
    from .query import blockers as blockers
    from .query import counts_by_status as counts_by_status
    from .query import ready as ready
    from .query import select as select

_WHERE = {
    "Claim": "claim", "Drive": "claim",
    "CorruptRecord": "errors", "InvalidOperation": "errors", "LedgerError": "errors", "NotFound": "errors",
    "Unavailable": "errors",
    "LEDGER_BRANCH": "gitstore", "GitStopped": "gitrun", "git_stopped": "gitrun", "stop_git": "gitrun",
    "HistoryEntry": "ledger", "Ledger": "ledger", "default_actor": "handoff",
    "Bead": "model", "BeadType": "model", "Comment": "model", "Dependency": "model", "DepType": "model",
    "Status": "model",
    "blockers": "query", "counts_by_status": "query", "ready": "query", "select": "query",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(__import__(f"{__name__}.{module}", fromlist=[name]), name)  # (importlib: 2 ms of a `gt`)
    globals()[name] = value
    return value
