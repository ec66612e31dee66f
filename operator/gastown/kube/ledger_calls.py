"""The one way a kopf handler calls into a rig's ledger, and what its errors become.

At a SIGTERM the operator ends the git commands under way (``stop_git``, kube/run.py) so that it stops
at once: a handler in the middle of one then gets GitStopped (or, waiting on another thread's push,
that push's error). That is no failure of the handler's: it ends quietly, with no ERROR, no Event and
no retry, and the next start runs it again (each handler that touches a ledger also runs on resume,
on this replica or the next leader). Any other ledger error is a Warning Event on the object and a
retry (kopf's TemporaryError).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import kopf

from ..ledger import LedgerError, git_stopped

log = logging.getLogger("gastown.operator")
RETRY_SECONDS = 30  # a handler whose ledger failed runs again this long after

F = TypeVar("F", bound=Callable[..., Any])


def ledger_handler(fn: F) -> F:
    """Decorate a kopf handler (under its ``kopf.on`` decorators) that reads or writes a ledger."""

    @functools.wraps(fn)
    def handler(**kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except LedgerError as e:
            if git_stopped():
                log.info("%s %s/%s: left for the next start (the operator is stopping)", fn.__name__,
                         kwargs.get("namespace"), kwargs.get("name"))
                return None
            message = f"the rig's ledger: {e}"
            kopf.warn(kwargs["body"], reason="LedgerUnavailable", message=message)
            raise kopf.TemporaryError(message, delay=RETRY_SECONDS) from e

    return handler  # type: ignore[return-value]
