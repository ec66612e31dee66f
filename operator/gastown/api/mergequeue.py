"""MergeQueue: the Refinery of one rig, a Bors-style bisecting merge queue."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import BranchName, Conditions, Model, ObjectName


class MergeQueueSpec(Model):
    rig: ObjectName = Field(description="Rig whose merge requests this queue merges.")
    target_branch: BranchName | None = Field(default=None,
                                             description="Branch to merge into (default: the rig's).")
    batch_size: int = Field(default=8, ge=1, le=64, description="Most merge requests verified together.")
    fill_window_seconds: int = Field(default=30, ge=0, le=3600,
                                     description="How long a batch waits to fill before it starts.")
    parallel_verifications: int = Field(default=4, ge=1, le=16,
                                        description="Verification runs at once while bisecting (4 keeps a batch of 32 "
                                                    "with 2 bad MRs within log2(32)+2 rounds).")
    retry_flaky: bool = Field(default=False, description="Verify a red batch once more before bisecting.")


class MergeCounters(Model):
    merged: int = 0
    rejected: int = 0
    conflicts: int = 0
    verification_runs: int = 0


MergeQueuePhase = Literal["Idle", "Filling", "Verifying", "Bisecting", "Merging", "Invalid"]


class MergeQueueStatus(Model):
    phase: MergeQueuePhase | None = None
    observed_generation: int | None = None
    conditions: Conditions
    queue_length: int = 0
    current_batch: list[str] = Field(default_factory=list, description="Merge-request bead IDs.")
    last_merged_commit: str | None = None
    counters: MergeCounters = Field(default_factory=MergeCounters)
