"""The Refinery: each rig's Bors-style merge queue (batch, verify, bisect, isolate, merge).

- ``bisect``: which runs to verify next and what their results mean (pure)
- ``queue``: queue order, batch formation, counters (pure)
- ``records``: the ledger operations (batches, runs, merges, rejections, conflicts)
- ``verify``: one verification run (checkout and gates), in a Job's pod or a subprocess
- ``refinery``: the Refinery, the merge queue itself: one step of it per rig pass
"""

from .queue import QueueSettings
from .records import RecordConflict, RecordMerge, Reject, Requeue
from .refinery import Refinery, RefineryReport, VerifyPort

__all__ = ["QueueSettings", "RecordConflict", "RecordMerge", "Refinery", "RefineryReport", "Reject", "Requeue",
           "VerifyPort"]
