"""The prompt a polecat's session starts with: the bead, its steps, and the rules. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from ..ledger import Bead

RULES = """\
Rules of this session:
- You work in a git checkout on the branch {branch}. Commit your work there as you go,
  in small commits with clear messages.
- Do not push to {target} or to any other branch: gastown pushes your branch and the
  merge queue merges it after verification.
- When the work is done, run `gt done`. If you cannot finish, run
  `gt done --status escalated --reason "..."` to ask a person for help, or
  `gt done --status deferred --reason "..."` to leave it for later.
"""


MAX_COMMENTS = 5


def render(bead: Bead, *, branch: str, target: str, steps: Sequence[Bead] = (),
           notes: str = "") -> str:
    parts = [f"# {bead.id}: {bead.title}", ""]
    if bead.description:
        parts += [bead.description.strip(), ""]
    if bead.acceptance:
        parts += ["## Done when", bead.acceptance.strip(), ""]
    if steps:
        parts.append("## Steps")
        for step in steps:
            mark = "x" if step.status == "closed" else " "
            parts.append(f"- [{mark}] {step.id}: {step.title}")
            if step.description:
                parts += ["  " + ln for ln in step.description.strip().splitlines()]
        parts += ["", "Start at the first step that is not checked. When a step is done and committed, "
                      "run `gt bead close STEP-ID` so that a later session knows.", ""]
    if bead.notes:
        parts += ["## Notes", bead.notes.strip(), ""]
    if bead.comments:  # a rejection by the merge queue, with the failing gate's output, is one
        parts.append("## Comments (newest last)")
        for c in bead.comments[-MAX_COMMENTS:]:
            parts += [f"### {c.author}, {c.created:%Y-%m-%d %H:%M} UTC", c.text.strip(), ""]
    if notes:
        parts += ["## From earlier sessions", notes.strip(), ""]
    parts.append(RULES.format(branch=branch, target=target))
    return "\n".join(parts)
