"""Sourcegraph Amp, the real CLI, against a stand-in of the Amp server (``AMP_URL``).

Amp calls no model API: its agent loop runs on Amp's server, in a thread actor the CLI reaches
by a RivetKit WebSocket and for which it only runs tools. The stand-in plays the server's
start-up calls and its thread creation, not that protocol (see gastown.standin.amp), so these
tests prove the start-up, the key and the rate-limit path, and no bead is done.
"""

from __future__ import annotations

from gastown.standin import StandIn, Turn, steps
from gastown.standin.amp import Amp

from contract import rate_limited_first

KEY = "sgamp-contract-0001"


def env(standin: StandIn) -> dict[str, str]:
    return {"AMP_URL": standin.url, "AMP_API_KEY": KEY}


def threads(standin: StandIn) -> list:
    return [s for s in standin.seen if s.path == "/api/thread-actors"]


def test_amp_starts_with_its_flags_and_its_key_reaches_the_server(agent_town, cli):
    with StandIn([Amp()], steps(Turn(text="ok"))) as standin:
        town = agent_town("amp", standin, cli("amp"), env=env(standin)).start()
        first = town.first_result()
        # the flags were accepted: execute mode got as far as creating its thread
        assert threads(standin), town.report()
        assert threads(standin)[0].body["executorType"] == "local-client"
        # the key reached the CLI in AMP_API_KEY and the server as its bearer, on every call
        assert {s.headers.get("authorization") for s in standin.seen} == {f"Bearer {KEY}"}
        # start-up: its internal API (JSON-RPC), then the thread
        assert {"/api/internal?getUserInfo", "/api/internal?loadPlugins", "/api/internal?loadSkills"} <= \
            {s.path for s in standin.seen}
        # the unplayed agent loop ends the session as a failure, said plainly (AMP_DEBUG=1)
        assert first["status"] == "failed", town.report()
        assert "Failed to create thread-actors thread: 501" in town.log(0)


def test_amp_rate_limit_is_classified_and_backed_off(agent_town, cli):
    """429s on thread creation, the delay (3 s) in the body's retryAfterSeconds: the session is
    rate limited with that delay, spends no attempt, and the next one starts only after it."""
    armed: list[bool] = []

    def play(conv):
        # limit from the first start-up call on, so that the user's info is answered and the
        # 429 that ends the session is thread creation's (its body is what the CLI prints)
        if getattr(conv, "method", "") == "getUserInfo" and not armed:
            armed.append(True)
            standin.rate_limit(retry_after=3)
        return Turn(text="ok")

    with StandIn([Amp(retry_after=3)], play) as standin:
        town = agent_town("amp", standin, cli("amp"), env=env(standin)).start()
        # the body's delay, as the CLI printed it
        _, until = rate_limited_first(town, retry_after=3, backoff=3, after_first=lambda: standin.rate_limit(count=0))
        assert any(s.status == 429 for s in threads(standin))
        # the next session starts only after the backoff (and fails: the agent loop is not played)
        town.wait(lambda: len(town.results()) >= 2, 60, "the second session's result")
        assert town.started()[1] >= until.timestamp() - 0.5, town.report()
        assert town.results()[1]["status"] == "failed"
