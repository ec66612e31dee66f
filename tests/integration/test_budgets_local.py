"""Budgets and shared limits in a local town: the real `gt up` daemon, real sessions of an agent
that reports its usage as Claude Code does (its result event), real git."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gastown.ledger import BeadType, Status

from conftest import GT, free_port, scrape, wait_for
from rigs import make_rig

AGENT = str(Path(__file__).resolve().parent.parent / "agent_script.py")


@pytest.fixture
def town(tmp_path):
    """`gt` against a town whose `claude` runtime is the script agent, printing Claude's result event."""
    runtimes = tmp_path / "runtimes.yaml"
    runtimes.write_text(yaml.safe_dump({"runtimes": {
        "claude": {"command": [sys.executable, AGENT, "usage"], "promptMode": "file", "apiKeyEnv": ["ANTHROPIC_API_KEY"]},
        "codex": {"command": [sys.executable, AGENT, "runaway"], "promptMode": "file", "apiKeyEnv": ["CODEX_API_KEY"]}}}))
    env = {**os.environ, "GT_TOWN": str(tmp_path / "town"), "GT_RUNTIMES_FILE": str(runtimes),
           "ANTHROPIC_API_KEY": "sk-test-shared", "CODEX_API_KEY": "sk-test-codex", "AGENT_TOKENS": "450",
           "AGENT_COST": "0.01"}

    def gt(*args, ok=True):
        proc = subprocess.run([GT, *args], env=env, capture_output=True, text=True, timeout=60)
        assert (proc.returncode == 0) == ok, proc.stderr + proc.stdout
        return proc.stdout.strip() if ok else proc.stderr.strip()

    gt.env = env
    yield gt
    gt("down")


def beads_of(gt, rig):
    return {b["id"]: b for b in json.loads(gt("bead", "--rig", rig, "list", "--all", "--json"))}


@pytest.mark.slow
def test_a_convoy_over_its_budget_waits_until_the_budget_is_raised_and_a_restart_keeps_its_spend(town, tmp_path):
    gt = town
    rig = make_rig(tmp_path)
    gt("rig", "add", "web", str(rig.remote), "--runtime", "claude", "--max-polecats", "1")
    manifest = tmp_path / "convoy.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "gastown.dev/v1alpha1", "kind": "Convoy", "metadata": {"name": "tight"},
        "spec": {"rig": "web", "mergeStrategy": "direct", "budget": {"tokens": 1000},
                 "beads": [{"key": f"b{i}", "title": f"Bead {i}"} for i in range(4)]}}))
    gt("apply", "-f", str(manifest))
    gt("up")

    def show():
        return json.loads(gt("convoy", "show", "tight", "--rig", "web", "--json"))

    # 450 tokens a session, one at a time: 450, 900 (90 %: P2), 1350 (exhausted: P1), and the fourth waits
    wait_for(lambda: show()["budget"]["state"] == "Exhausted", timeout=90, what="the convoy's budget to run out")
    time.sleep(4)  # passes go on; nothing new starts
    convoy = show()
    states = sorted(b["state"] for b in convoy["beads"])
    assert states == ["merged", "merged", "merged", "ready"], convoy
    assert convoy["budget"]["tokens"] == 1350 and convoy["budget"]["usedPercent"] == 135
    escalations = [b for b in beads_of(gt, "web").values() if b["type"] == BeadType.ESCALATION]
    assert sorted(e["metadata"]["severity"] for e in escalations) == ["P1", "P2"]
    assert all(e["dependencies"][0]["id"] == convoy["id"] for e in escalations)
    status = json.loads(gt("status", "--json"))
    assert status["rigs"][0]["convoys"][0]["budget"]["state"] == "Exhausted"
    assert status["rigs"][0]["spend"][0]["tokens"] == 1350

    # a restart forgets nothing: the spend is the ledger's, and the waiting bead still waits
    gt("down")
    gt("up")
    time.sleep(5)
    assert sorted(b["state"] for b in show()["beads"]) == ["merged", "merged", "merged", "ready"]
    assert len([b for b in beads_of(gt, "web").values() if b["type"] == BeadType.ESCALATION]) == 2

    # raising the budget lets it go on at once
    assert "budget: 5,000 tokens" in gt("budget", "set", "--rig", "web", "--convoy", "tight", "--tokens", "5000")
    wait_for(lambda: show()["phase"] == "Done", timeout=60, what="the convoy to finish once its budget is raised")
    assert show()["budget"]["state"] == "Ok"


@pytest.mark.slow
def test_a_rig_budget_holds_the_whole_rig_and_bad_input_is_refused(town, tmp_path):
    gt = town
    rig = make_rig(tmp_path)
    gt("rig", "add", "web", str(rig.remote), "--runtime", "claude", "--max-polecats", "1")
    assert "daily 400 tokens" in gt("budget", "set", "--rig", "web", "--daily-tokens", "400")
    first = gt("bead", "--rig", "web", "create", "First").split()[-1]
    port = free_port()
    gt("up", "--metrics-port", str(port))
    wait_for(lambda: beads_of(gt, "web")[first]["metadata"].get("usage"), timeout=60, what="the first session")
    second = gt("bead", "--rig", "web", "create", "Second").split()[-1]
    time.sleep(4)
    beads = beads_of(gt, "web")
    assert beads[second]["status"] == Status.OPEN and not beads[second].get("assignee")
    assert [e["metadata"]["severity"] for e in beads.values() if e["type"] == BeadType.ESCALATION] == ["P1"]
    shown = json.loads(gt("budget", "show", "--json"))
    assert shown["rigs"]["web"]["spend"][0]["state"] == "Exhausted"
    assert "Exhausted" in gt("status")
    day = (("convoy", ""), ("namespace", "local"), ("period", "day"), ("rig", "web"), ("scope", "rig"),
           ("unit", "tokens"))
    samples = wait_for(lambda: (m := scrape(port)).get(("gastown_budget_remaining", day)) is not None and m,
                       what="the budget metrics")
    assert samples[("gastown_budget_spent", day)] == 450 and samples[("gastown_budget_remaining", day)] == -50
    # bad input is a one-line error, and changes nothing
    assert "--convoy needs --rig" in gt("budget", "set", "--convoy", "x", "--tokens", "1", ok=False)
    assert "--key 'K': use NAME=SESSIONS" in gt("budget", "set", "--key", "K", ok=False)
    assert "--session-seconds: Input should be greater than or equal to 10" in gt(
        "budget", "set", "--rig", "web", "--session-seconds", "5", ok=False)
    gt("budget", "set", "--rig", "web", "--daily-tokens", "0")  # 0 removes it: the rig goes on
    wait_for(lambda: beads_of(gt, "web")[second]["metadata"].get("usage"), timeout=60, what="the second session")


@pytest.mark.slow
def test_two_rigs_sharing_a_key_limited_to_two_sessions_never_run_more_and_neither_starves(town, tmp_path):
    gt = town
    log = tmp_path / "agent.log"
    # sessions outlast a bead's creation even on a loaded machine, so that two run together
    gt.env.update(AGENT_LOG=str(log), AGENT_SECONDS="4")
    gt("budget", "set", "--key", "ANTHROPIC_API_KEY=2")
    rigs = {name: make_rig(tmp_path / name) for name in ("one", "two")}
    for name, rig in rigs.items():
        gt("rig", "add", name, str(rig.remote), "--runtime", "claude", "--max-polecats", "3")
    gt("up")
    daemon_log = tmp_path / "town" / "daemon.log"
    wait_for(lambda: all(f"rig {n}: driving the ledger" in daemon_log.read_text() for n in rigs), timeout=30,
             what="both rigs to be driven")
    for i in range(4):
        for name in rigs:
            gt("bead", "--rig", name, "create", f"{name} work {i}")

    def done():
        return all(b["metadata"].get("usage") for name in rigs for b in beads_of(gt, name).values()
                   if b["type"] == BeadType.TASK)

    wait_for(done, timeout=120, what="both rigs' work")
    events = agent_events(log)
    running, most, starts = 0, 0, []
    for _t, kind, rig in events:
        running += 1 if kind == "start" else -1
        most = max(most, running)
        if kind == "start":
            starts.append(rig)
    assert len(starts) == 8 and most <= 2, events
    assert most == 2  # the limit is used, not just respected
    # round robin: neither rig gets ahead of the other by more than the two slots there are
    assert all(abs(starts[:n].count("one") - starts[:n].count("two")) <= 2 for n in range(9)), starts


def agent_events(log):
    """(time, "start" or "end", rig) of every session, in order, from the agent's "start|end RIG TIME" lines."""
    return sorted((float(t), kind, Path(remote).parent.name)
                  for kind, remote, t in (line.split() for line in log.read_text().splitlines()))


def starts_in(log):
    """The rigs whose sessions started, in order."""
    return [rig for _t, kind, rig in agent_events(log) if kind == "start"]


@pytest.mark.slow
def test_from_a_cold_start_two_rigs_weighted_two_to_one_share_a_key_two_to_one(town, tmp_path):
    gt = town
    log = tmp_path / "agent.log"
    gt.env.update(AGENT_LOG=str(log), AGENT_SECONDS="0.8")
    gt("budget", "set", "--key", "ANTHROPIC_API_KEY=2")
    rigs = {name: make_rig(tmp_path / name) for name in ("one", "two")}
    for name, rig in rigs.items():
        gt("rig", "add", name, str(rig.remote), "--runtime", "claude", "--max-polecats", "3")
        for i in range(9):  # all the work is there before the daemon starts: a cold start
            gt("bead", "--rig", name, "create", f"{name} work {i}")
    assert "share 2 in shared limits" in gt("budget", "set", "--rig", "two", "--share", "2")
    assert "--share: Input should be greater than or equal to 1" in gt(
        "budget", "set", "--rig", "one", "--share", "0", ok=False)
    gt("up")
    starts = wait_for(lambda: log.exists() and len(s := starts_in(log)) >= 12 and s, timeout=120,
                      what="twelve sessions")[:12]
    # "two" is listed second and weighs twice as much: it gets a slot at once, and two turns in three
    assert "two" in starts[:2] and "one" in starts[:3], starts
    assert 7 <= starts.count("two") <= 9, starts
    assert all(starts[n:n + 4].count("one") >= 1 for n in range(0, 9)), starts  # neither starves


@pytest.mark.slow
def test_a_runaway_session_is_ended_at_its_ceiling_with_its_work_pushed_and_why_recorded(town, tmp_path):
    gt = town
    gt.env.update(AGENT_TOKENS="300")  # a turn every 0.3 s, 300 tokens each, for ever (30 s at most)
    rig = make_rig(tmp_path)
    gt("rig", "add", "web", str(rig.remote), "--runtime", "codex", "--max-polecats", "1")
    assert "1,000 tokens a session" in gt("budget", "set", "--rig", "web", "--session-tokens", "1000",
                                          "--daily-tokens", "1000")
    bead = gt("bead", "--rig", "web", "create", "Never ends").split()[-1]
    started = time.monotonic()
    gt("up")
    ended = wait_for(lambda: (b := beads_of(gt, "web")[bead])["metadata"].get("usage") and b, timeout=30,
                     what="the runaway session to end")
    assert time.monotonic() - started < 20  # its ceiling, not the agent's own 30 s
    assert ended["metadata"]["last_outcome"] == "timeout"
    assert "reached its ceiling of 1,000 tokens" in ended["metadata"]["last_reason"]
    assert any("ceiling of 1,000 tokens" in c["text"] for c in ended["comments"])
    used = next(iter(ended["metadata"]["usage"].values()))
    assert 1000 <= used["input_tokens"] < 3000
    branch = next(b for b in rig.branches() if bead in b)
    assert "step " in rig.branch_file(branch, "WORK.md")  # its work is pushed for the next session
    # and the rig's daily budget (spent by it) keeps a second runaway from starting
    time.sleep(3)
    after = beads_of(gt, "web")[bead]
    assert len(after["metadata"]["usage"]) == 1 and not after["metadata"].get("session")


@pytest.mark.slow
def test_a_convoy_across_rigs_spends_one_budget_on_all_its_rigs_and_goes_on_when_raised(town, tmp_path):
    gt = town
    for name in ("web", "api"):
        gt("rig", "add", name, str(make_rig(tmp_path / name).remote), "--runtime", "claude", "--max-polecats", "1")
    manifest = tmp_path / "convoy.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "gastown.dev/v1alpha1", "kind": "Convoy", "metadata": {"name": "wide"},
        "spec": {"rig": "web", "mergeStrategy": "direct", "budget": {"tokens": 1000},
                 "beads": [{"key": f"{rig}{i}", "title": f"{rig} {i}", **({"rig": "api"} if rig == "api" else {})}
                           for rig in ("web", "api") for i in range(3)]}}))
    gt("apply", "-f", str(manifest))
    gt("up")

    def show(rig="web"):
        return json.loads(gt("convoy", "show", "wide", "--rig", rig, "--json"))

    def spent_on(rig):
        return sum(u["input_tokens"] + u["output_tokens"]
                   for b in beads_of(gt, rig).values() for u in (b["metadata"].get("usage") or {}).values())

    # 450 tokens a session on each rig: the budget is the convoy's total, whichever rig spends it
    wait_for(lambda: show()["budget"]["state"] == "Exhausted", timeout=90, what="the convoy's budget to run out")
    time.sleep(5)  # passes go on on both rigs; nothing new starts on either
    home, part = show(), show("api")
    total = spent_on("web") + spent_on("api")
    assert home["budget"]["tokens"] == total and part["budget"]["tokens"] == total, (home, part)
    assert part["budget"]["state"] == "Exhausted" and part["budget"]["tokenBudget"] == 1000
    states = [b["state"] for b in home["beads"] + part["beads"]]
    assert 1000 <= total < 6 * 450 and "ready" in states, states
    time.sleep(3)
    assert spent_on("web") + spent_on("api") == total  # still nothing started
    # one P1, on the convoy's home rig (where its budget is raised), none from the other part
    escalations = {rig: [b["metadata"]["severity"] for b in beads_of(gt, rig).values() if b["type"] == BeadType.ESCALATION]
                   for rig in ("web", "api")}
    assert "P1" in escalations["web"] and escalations["api"] == [], escalations
    status = json.loads(gt("status", "--json"))
    assert {r["name"]: r["convoys"][0]["budget"]["tokens"] for r in status["rigs"]} == {"web": total, "api": total}

    # raising it on the home rig lets both rigs go on at once
    gt("budget", "set", "--rig", "web", "--convoy", "wide", "--tokens", "5000")
    wait_for(lambda: show()["phase"] == "Done", timeout=60, what="the convoy to finish once its budget is raised")
    assert show()["budget"]["state"] == "Ok" and show()["budget"]["tokens"] == 6 * 450



def sessions_of(gt, rig):
    """Every session recorded on the rig's beads, and what they spent together."""
    used = [u for b in beads_of(gt, rig).values() for u in (b["metadata"].get("usage") or {}).values()]
    return len(used), sum(u.get("input_tokens", 0) + u.get("output_tokens", 0) for u in used)


@pytest.mark.slow
def test_with_a_session_ceiling_a_daily_budget_is_never_overshot_while_usage_is_still_being_recorded(town, tmp_path):
    gt = town
    # the agent runs `gt done` and only then reports what it spent, 2 s later (a real agent's last answer):
    # the bead is in review (or merged) while its session's spend is not yet in the ledger
    gt.env.update(AGENT_TOKENS="300", AGENT_DONE_FIRST="2", PATH=f"{Path(GT).parent}{os.pathsep}{os.environ['PATH']}")
    rig = make_rig(tmp_path)
    gt("rig", "add", "web", str(rig.remote), "--runtime", "claude", "--max-polecats", "3")
    gt("budget", "set", "--rig", "web", "--daily-tokens", "1000", "--session-tokens", "400")
    for i in range(5):
        gt("bead", "--rig", "web", "create", f"Work {i}")
    gt("up")
    # 400 tokens of room a session: two at once (800), one more once they are recorded (600 + 400),
    # then none (900 spent: 100 left)
    wait_for(lambda: sessions_of(gt, "web")[0] >= 3, timeout=90, what="three sessions recorded")
    time.sleep(6)  # passes go on; a fourth session would have started and be recorded by now
    sessions, tokens = sessions_of(gt, "web")
    assert (sessions, tokens) == (3, 900), beads_of(gt, "web")
    ready = [b for b in beads_of(gt, "web").values() if b["type"] == BeadType.TASK and not b.get("assignee")]
    assert len(ready) == 2  # nothing lost: they wait, ready


@pytest.mark.slow
def test_the_towns_room_counts_the_sessions_under_way_on_every_rig(town, tmp_path):
    gt = town
    gt.env.update(AGENT_TOKENS="300", AGENT_SECONDS="2")
    assert "daily 1,000 tokens" in gt("budget", "set", "--daily-tokens", "1000")
    for name in ("one", "two"):
        gt("rig", "add", name, str(make_rig(tmp_path / name).remote), "--runtime", "claude", "--max-polecats", "2")
        gt("budget", "set", "--rig", name, "--session-tokens", "400")
        for i in range(3):
            gt("bead", "--rig", name, "create", f"{name} work {i}")
    gt("up")
    # 400 tokens of room a session in the whole town: two at once on both rigs together, then a third
    wait_for(lambda: sum(sessions_of(gt, n)[0] for n in ("one", "two")) >= 3, timeout=90,
             what="three sessions recorded")
    time.sleep(6)  # passes go on on both rigs; a fourth session would be recorded by now
    spent = {n: sessions_of(gt, n) for n in ("one", "two")}
    assert sum(s for s, _ in spent.values()) == 3 and sum(t for _, t in spent.values()) == 900, spent
    shown = json.loads(gt("budget", "show", "--json"))
    assert shown["town"]["spend"][0]["tokens"] == 900, shown
