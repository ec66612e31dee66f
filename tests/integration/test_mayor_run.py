"""The Mayor's one run, as a real subprocess: a timeout fails the plan; structured output is read."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import pytest

from gastown.mayor import MayorRun, PlanInvalid
from gastown.runtimes import PRESETS

PLAN = {"beads": [{"key": "add", "title": "Make add() return the sum"}]}


def test_a_mayor_that_never_answers_fails_the_plan_with_the_reason(tmp_path):
    run = MayorRun(PRESETS["script"], tmp_path, tmp_path / "s", args=(sys.executable, "-c", "import time; time.sleep(30)"),
                   timeout=0.5)
    with pytest.raises(PlanInvalid, match=r"gave no answer within 0.5s"):
        run.plan("Add things", "calc")


def test_a_plan_inside_stream_json_events_is_read_from_the_result_event(tmp_path):
    """claude --output-format stream-json: the plan arrives inside JSON events, escaped."""
    events = [{"type": "system", "subtype": "init"},
              {"type": "assistant", "message": {"content": [{"type": "text", "text": json.dumps(PLAN)}]}},
              {"type": "result", "subtype": "success", "is_error": False, "result": json.dumps(PLAN),
               "usage": {"input_tokens": 10, "output_tokens": 5}}]
    printer = "import json, sys; [print(json.dumps(e)) for e in json.loads(sys.argv[1])]"
    runtime = replace(PRESETS["script"], output="claude")
    run = MayorRun(runtime, tmp_path, tmp_path / "s", args=(sys.executable, "-c", printer, json.dumps(events)))
    plan = run.plan("Add things", "calc")
    assert [b.key for b in plan.beads] == ["add"]
