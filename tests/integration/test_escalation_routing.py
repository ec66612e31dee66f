"""Escalation routing through the local rig pass: a real webhook server, real git, the clock injected."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gastown import escalation as esc
from gastown.api.common import RuntimeSpec
from gastown.api.rig import EscalationSpec
from gastown.local.driver import RigConfig, RigDriver
from gastown.runtimes.local import LocalBackend

from conftest import GT
from rigs import make_rig


@pytest.fixture
def hook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/gastown", received
    server.shutdown()


@pytest.fixture
def rig(tmp_path):
    return make_rig(tmp_path)


def test_webhook_json_bumps_and_ack(rig, hook, tmp_path):
    url, received = hook
    spec = EscalationSpec.model_validate({"routes": {"P2": ["log"], "P1": ["webhook", "log"]},
                                          "bumpAfterSeconds": 3600})
    ledger = rig.ledger("gastown daemon")
    driver = RigDriver(RigConfig(rig.name, str(rig.remote), max_polecats=3, runtime=RuntimeSpec(preset="script"), escalation=spec,
                                 webhook_url=url), LocalBackend(tmp_path / "town"), ledger)
    try:
        with rig.ledger() as lg:
            p1 = lg.apply(esc.Raise("P1", "the target branch is red", "refinery", reason="tests fail on main",
                                    source={"rig": rig.name}))
            p2 = lg.apply(esc.Raise("P2", "a convoy is slow", "deacon", source={"rig": rig.name}))
        now = datetime.now(UTC)
        driver.step(now=now)
        driver.step(now=now)  # delivered once, not twice
        assert received == [{"text": "[P1] the target branch is red (rig webapp)\ntests fail on main",
                             "attachments": [{"fields": [
                                 {"title": "severity", "value": "P1", "short": True},
                                 {"title": "escalation", "value": p1.id, "short": True},
                                 {"title": "rig", "value": "webapp", "short": True}]}]}]

        # an hour later, unacknowledged: P2 goes to P1 (and so to the webhook); P1 to P0 (no route)
        driver.step(now=now + timedelta(minutes=61))
        assert [r["text"].split("]")[0] for r in received] == ["[P1", "[P1"]
        assert "a convoy is slow" in received[1]["text"]
        driver.step(now=now + timedelta(minutes=62))  # not again within the period
        with rig.ledger() as lg:
            assert lg.get(p2.id).metadata["severity"] == "P1" and lg.get(p2.id).metadata["bumps"] == 1
        # acknowledged through the CLI: no more bumps, ever
        subprocess.run([GT, "escalate", "ack", p2.id, "--rig", str(rig.remote)], check=True,
                       env={**os.environ, "GT_TOWN": str(tmp_path / "town")}, capture_output=True)
        driver.step(now=now + timedelta(hours=10))
        with rig.ledger() as lg:
            assert lg.get(p2.id).metadata["bumps"] == 1  # acked
            assert lg.get(p1.id).metadata["severity"] == "P0"
            assert lg.get(p1.id).metadata["bumps"] == 1  # P0 is the top
        driver.step(now=now + timedelta(hours=30))
        with rig.ledger() as lg:
            assert lg.get(p1.id).metadata["bumps"] == 1
    finally:
        ledger.close()


def test_a_webhook_configured_later_still_gets_what_is_open(rig, hook, tmp_path):
    url, received = hook
    spec = EscalationSpec.model_validate({"routes": {"P1": ["webhook", "log"]}})
    config = RigConfig(rig.name, str(rig.remote), max_polecats=3, runtime=RuntimeSpec(preset="script"), escalation=spec)
    ledger = rig.ledger("gastown daemon")
    try:
        with rig.ledger() as lg:
            p1 = lg.apply(esc.Raise("P1", "the target branch is red", "refinery", source={"rig": rig.name}))
        RigDriver(config, LocalBackend(tmp_path / "town"), ledger).step()  # no webhook URL yet
        with rig.ledger() as lg:
            assert lg.get(p1.id).metadata["delivered"] == ["P1:log"]
        config.webhook_url = url  # `gt apply` of the Rig with its webhook, the daemon restarted
        RigDriver(config, LocalBackend(tmp_path / "town"), ledger).step()
        assert [r["text"].split("\n")[0] for r in received] == ["[P1] the target branch is red (rig webapp)"]
        with rig.ledger() as lg:
            assert sorted(lg.get(p1.id).metadata["delivered"]) == ["P1:log", "P1:webhook"]
    finally:
        ledger.close()
