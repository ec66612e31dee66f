"""A local session's wrapper process: ``python -m gastown.runtimes.wrapper SPEC`` (SPEC: the
session's ``SessionSpec`` as JSON, written by ``argv``).

What `gt session run` does, without its command line: this module imports nothing but the
standard library and ``session`` before the agent starts (no click, no settings, no ledger), so that
a freed slot's next agent waits for no import of its wrapper; and once the session's result is
written, the process ends without tearing down the modules it loaded (100 to 300 ms of a
freed slot's gap spent in the interpreter's finalization, its ledger, pydantic and git): what
must be on disk or on the remote is, and the spans were sent (``tracing.carried_on``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from .session import SessionSpec, run_session

TYPE_CHECKING = False  # typing is not loaded before the agent starts
if TYPE_CHECKING:
    from typing import Any

_PATHS = ("workdir", "session_dir", "cache_root", "state_dir")


def argv(spec: SessionSpec) -> list[str]:
    """The wrapper process of ``spec``, with this Python."""
    fields = {k: str(v) if k in _PATHS and v is not None else v for k, v in dataclasses.asdict(spec).items()}
    return [sys.executable, "-m", __name__, json.dumps(fields)]


def spec_of(text: str) -> SessionSpec:
    fields: dict[str, Any] = json.loads(text)
    for k in _PATHS:
        fields[k] = Path(fields[k]) if fields.get(k) is not None else None
    return SessionSpec(**fields)


def main() -> None:
    spec = spec_of(sys.argv[1])
    outcome = run_session(spec)
    print(f"session {spec.session}: {outcome.status}" + (f": {outcome.reason}" if outcome.reason else ""),
          file=sys.stdout if outcome.code == 0 else sys.stderr, flush=True)
    sys.stderr.flush()
    os._exit(outcome.code)  # the result is written, the spans sent: nothing left to tear down


if __name__ == "__main__":
    main()
