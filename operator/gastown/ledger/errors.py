"""What can go wrong with a ledger, each with a message a person can act on."""

from __future__ import annotations


class LedgerError(Exception):
    """Base: one clear line that says what is wrong."""


class NotFound(LedgerError):
    pass


class InvalidOperation(LedgerError):
    """The operation makes no sense on the current state (bad transition, cycle, ...)."""


class CorruptRecord(LedgerError):
    def __init__(self, path: str, commit: str, detail: str):
        self.path, self.commit = path, commit
        super().__init__(f"{path} at commit {commit[:12]} is not a valid record ({detail}); "
                         "it was left untouched: repair or remove it with git on the ledger branch")


class Unavailable(LedgerError):
    """The remote cannot be read or written (unreachable, not a repository, no permission)."""


class UnknownOutcome(Unavailable):
    """A push that may or may not have reached the remote (it timed out, the link broke)."""


class UnsupportedFormat(LedgerError):
    """The ledger was written by a newer gastown, in a format this one cannot read."""
