"""A scripted agent for the `script` runtime: deterministic, no LLM.

usage: agent_script.py MODE   (edit | commit | convoy | resumable | steady | notes | fail | hang | ratelimit |
                              escalate | usage | runaway | discover)
It reads its prompt from $GT_PROMPT_FILE, as any runtime with prompt mode `file` would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    mode = sys.argv[1]
    prompt = Path(os.environ["GT_PROMPT_FILE"]).read_text()
    if os.environ.get("GT_ROLE") == "mayor":  # asked for a plan: answer with the canned one
        plan = Path(os.environ["AGENT_PLAN"]).read_text()
        if "rejected" in prompt and os.environ.get("AGENT_PLAN_FIXED"):
            plan = Path(os.environ["AGENT_PLAN_FIXED"]).read_text()
        print(f"Here is the plan.\n```json\n{plan}\n```")
        return 0
    title_line = prompt.splitlines()[0]
    if mode in ("edit", "commit"):
        Path("WORK.md").write_text(f"{title_line}\n")
        if mode == "commit":
            subprocess.run(["git", "add", "WORK.md"], check=True)
            subprocess.run(["git", "commit", "-q", "-m", "agent work"], check=True)
        print("did the work")
        return 0
    if mode == "convoy":  # one file per bead; a bead titled BROKEN always fails
        if "BROKEN" in title_line:
            print("error: this one cannot be done", flush=True)
            return 2
        bead = os.environ["GT_BEAD"]
        Path("work").mkdir(exist_ok=True)
        Path("work", f"{bead}.txt").write_text(f"{title_line}\n")
        time.sleep(float(os.environ.get("AGENT_SECONDS", "0.3")))
        return 0
    if mode == "resumable":  # a long first try, leaving committed but unpushed work; a quick second
        if Path("PARTIAL.md").exists():
            Path("WORK.md").write_text("finished after a restart\n")
            return 0
        Path("PARTIAL.md").write_text("half done\n")
        subprocess.run(["git", "add", "PARTIAL.md"], check=True)
        subprocess.run(["git", "commit", "-q", "-m", "half of it"], check=True)
        print("committed half, thinking...", flush=True)
        time.sleep(float(os.environ.get("AGENT_SECONDS", "60")))
        return 0
    if mode == "usage":  # a bead's file, then Claude Code's result event saying what it spent (AGENT_TOKENS, in)
        log = os.environ.get("AGENT_LOG")  # "start|end RIG TIME" lines: who ran when
        if log:
            with open(log, "a") as f:
                f.write(f"start {os.environ['GT_RIG']} {time.time()}\n")
        Path("work").mkdir(exist_ok=True)
        Path("work", f"{os.environ['GT_BEAD']}.txt").write_text(f"{title_line}\n")
        time.sleep(float(os.environ.get("AGENT_SECONDS", "0.2")))
        if log:
            with open(log, "a") as f:
                f.write(f"end {os.environ['GT_RIG']} {time.time()}\n")
        tokens = int(os.environ.get("AGENT_TOKENS", "500"))
        if os.environ.get("AGENT_DONE_FIRST"):  # as a real agent does: `gt done` is its last tool call, then
            subprocess.run(["gt", "done"], check=True)  # it answers, and the wrapper records what it spent
            time.sleep(float(os.environ["AGENT_DONE_FIRST"]))
        print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": "done",
                          "usage": {"input_tokens": tokens - tokens // 5, "output_tokens": tokens // 5},
                          "total_cost_usd": float(os.environ.get("AGENT_COST", "0.01"))}))
        return 0
    if mode in ("steady", "runaway"):  # commits every 0.3 s for AGENT_SECONDS, then is done; a runaway
        # also prints Codex's turn.completed with AGENT_TOKENS each time, and goes on for 30 s by default
        end = time.monotonic() + float(os.environ.get("AGENT_SECONDS", "4" if mode == "steady" else "30"))
        step = 0
        while time.monotonic() < end:
            step += 1
            Path("WORK.md").write_text(f"{title_line}\nstep {step}\n")
            subprocess.run(["git", "add", "WORK.md"], check=True)
            subprocess.run(["git", "commit", "-q", "-m", f"step {step}"], check=True)
            if mode == "runaway":
                usage = {"input_tokens": int(os.environ.get("AGENT_TOKENS", "300")), "output_tokens": 0}
                print(json.dumps({"type": "turn.completed", "usage": usage}), flush=True)
            time.sleep(0.3)
        return 0
    if mode == "notes":  # appends "SESSION STEP" to NOTES.md and commits it every 0.2 s, for AGENT_SECONDS
        session, step = os.environ["GT_SESSION"], 0
        end = time.monotonic() + float(os.environ.get("AGENT_SECONDS", "3"))
        while time.monotonic() < end:
            step += 1
            with open("NOTES.md", "a") as notes:
                notes.write(f"{session} {step}\n")
            subprocess.run(["git", "add", "NOTES.md"], check=False)  # it goes on, whatever happens around it
            subprocess.run(["git", "commit", "-q", "-m", f"note {session} {step}"], check=False)
            time.sleep(0.2)
        return 0
    if mode == "fail":
        print("compiling...\nerror: the tests do not pass", flush=True)
        return 2
    if mode == "hang":
        Path("PARTIAL.md").write_text("half done\n")
        print("thinking very hard", flush=True)
        time.sleep(600)
        return 0
    if mode == "ratelimit":
        print("API Error: 429 Too Many Requests: rate limit exceeded, retry later", flush=True)
        return 1
    if mode == "escalate":
        subprocess.run(["gt", "done", "--status", "escalated", "--reason", "the spec contradicts itself"],
                       check=True)
        return 0
    if mode == "discover":  # files the work it found on the way, and says it is done, with its own `gt`
        subprocess.run(["gt", "bead", "create", f"found while working on {os.environ['GT_BEAD']}"], check=True)
        subprocess.run(["gt", "done"], check=True)
        return 0
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(main())
