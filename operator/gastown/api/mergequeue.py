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


class RunStatus(Model):
    run: str = Field(description="The run's ID: the gastown.dev/verification label of its Job.")
    group: list[str] = Field(default_factory=list, description="The merge requests it verifies (none: the "
                                                               "accepted ones alone, or the target).")
    stacked_on: int = Field(default=0, description="How many accepted merge requests the group is stacked on.")
    result: Literal["pass", "fail", "conflict", "running"]
    summary: str = Field(default="", description="What it verifies, in words.")
    gate: str | None = Field(default=None, description="The gate that failed.")


class RoundStatus(Model):
    round: int = Field(description="The round's number in the batch (1: the whole batch).")
    runs: list[RunStatus] = Field(default_factory=list, description="The runs verified at once in this round.")


class BatchStatus(Model):
    id: str = Field(description="The batch's bead ID.")
    phase: str = Field(default="", description="verifying, merging, merged, finished (every MR rejected) or "
                                               "target-red (the target fails by itself).")
    mrs: list[str] = Field(default_factory=list, description="Its merge requests, in order.")
    round: int = Field(default=0, description="Rounds so far.")
    rounds: list[RoundStatus] = Field(default_factory=list,
                                      description="Its bisection, round by round (the last 12).")
    accepted: list[str] = Field(default_factory=list, description="Merge requests accepted so far.")
    rejected: list[str] = Field(default_factory=list, description="Merge requests rejected so far.")


class Outcome(Model):
    mr: str = Field(description="The merge request's bead ID.")
    title: str = ""
    outcome: Literal["merged", "rejected", "conflict"]
    commit: str | None = Field(default=None, description="The merge commit.")
    reason: str | None = Field(default=None, description="Why it was rejected: the failing gate and run, or the "
                                                         "conflicting files.")
    at: str | None = None


MergeQueuePhase = Literal["Idle", "Filling", "Verifying", "Bisecting", "Merging", "Invalid"]


class MergeQueueStatus(Model):
    phase: MergeQueuePhase | None = None
    observed_generation: int | None = None
    conditions: Conditions
    queue_length: int = 0
    current_batch: list[str] = Field(default_factory=list, description="Merge-request bead IDs.")
    batch: BatchStatus | None = Field(default=None, description="The batch being verified (else the last one) "
                                                                "and its bisection's rounds and runs.")
    recent: list[Outcome] = Field(default_factory=list,
                                  description="The last 10 merges and the last 10 rejections, newest first.")
    last_merged_commit: str | None = None
    counters: MergeCounters = Field(default_factory=MergeCounters)
