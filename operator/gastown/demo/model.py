"""The demo's model, for a real agent CLI with no API key: a stand-in that plays the Mayor and
the polecats with the same prepared plan and changes as the scripted agents, through the
CLI's own tools (write each file, then test, commit and `gt done` with its shell tool)."""

from __future__ import annotations

import json
import shlex

from ..standin import Conversation, StandIn, Turn
from ..standin.profiles import Profile
from .project import CHANGES, plan

KEY = "sk-demo-stand-in"  # a fake: the stand-in takes any key


def script(profile: Profile):
    def play(conv: Conversation) -> Turn:
        if not conv.has_tools:
            return Turn(text="ok")
        if conv.says("You are the Mayor"):
            return Turn(text=json.dumps(plan()))
        change = next((c for c in CHANGES if conv.says(f": {c.title}\n")), None)
        if change is None:
            return Turn(text="I found no work I know how to do in this prompt.")
        retry = conv.says("rejected by the merge queue")
        files = {**change.files, **change.fixed} if retry and change.fixed else change.files
        message = f"{change.key}: {'fix after review' if retry else change.title.lower()}"
        turns = [profile.write(path, text) for path, text in sorted(files.items())]
        turns.append(profile.run(f"git add -A && git commit -q -m {shlex.quote(message)} && gt done"))
        turns.append(Turn(text=f"Done: {change.title}."))
        return turns[min(conv.step, len(turns) - 1)]

    return play


def serve(profile: Profile) -> tuple[StandIn, dict[str, str]]:
    """The started stand-in and the environment that points the CLI at it."""
    standin = StandIn(profile.dialects(), script(profile)).start()
    return standin, profile.env(standin.url, KEY)
