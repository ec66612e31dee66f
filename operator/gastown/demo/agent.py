"""The demo's scripted agent (the `script` runtime): applies the prepared change of its bead.

As the Mayor (GT_ROLE=mayor) it answers with the canned plan. As a polecat it finds its bead's
change by the title on the prompt's first line, writes it and commits; when the prompt carries a
rejection by the merge queue, it applies the fixed version instead. The session wrapper then
pushes the branch and records `gt done`. DEMO_AGENT_SECONDS makes it take a little while, as a
real agent would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .project import change_titled, plan


def main() -> int:
    prompt = Path(os.environ["GT_PROMPT_FILE"]).read_text()
    if os.environ.get("GT_ROLE") == "mayor":
        print("Here is the plan.\n```json\n" + json.dumps(plan(), indent=2) + "\n```")
        return 0
    title = prompt.splitlines()[0].split(": ", 1)[1]
    change = change_titled(title)
    if change is None:
        print(f"no prepared change for {title!r}", file=sys.stderr)
        return 2
    retry = "rejected by the merge queue" in prompt
    files = {**change.files, **change.fixed} if retry and change.fixed else change.files
    print(f"{'fixing' if retry else 'writing'} {', '.join(sorted(files))}", flush=True)
    time.sleep(float(os.environ.get("DEMO_AGENT_SECONDS", "1.0")))
    for path, text in files.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    subprocess.run(["git", "add", "--", *files], check=True)
    message = f"{change.key}: {'fix after review' if retry else change.title.lower()}"
    subprocess.run(["git", "commit", "-q", "-m", message], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
