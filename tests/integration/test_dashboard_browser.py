"""The dashboard in a real browser (headless Chromium from the system) against a real local town:
a convoy with one bad change is bisected, rejected with its output, fixed and merged, and the
pages follow it without a reload; untrusted titles are text; actions without the token are refused."""

from __future__ import annotations

import json
import os

import pytest

from gastown import scheduler

from cdp import Browser, chromium
from conftest import ROOT, free_port
from towns import gt, ok, town_with_convoy

BINARY = chromium()
XSS = "BAD one <script>window.__xss=1</script>"
# the README's screenshots are taken again only when asked: GT_SCREENSHOTS=1 (else into the test's tmp_path)
DOCS = ROOT / "docs" if os.environ.get("GT_SCREENSHOTS") else None


@pytest.mark.slow
@pytest.mark.skipif(BINARY is None, reason="no chromium found (make test installs Debian's chromium with apt-get)")
def test_the_dashboard_follows_a_bisection_live_and_refuses_actions_without_the_token(tmp_path):
    shots = DOCS or tmp_path
    rig, town = town_with_convoy(tmp_path, ["Good one", "Also good", XSS, "Fine too"], polecats=4,
                                 gate_seconds=2, fill=3)
    town.mkdir(exist_ok=True)
    (town / "dashboard.token").write_text("s3cret-token\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    assert f"dashboard: {base}/" in ok(gt(town, "up", "--dashboard-port", str(port)))
    browser = Browser(BINARY, tmp_path / "profile")
    try:
        home = browser.tab(base + "/")
        home.wait("document.readyState == 'complete' && !!document.getElementById('convoys')", what="the town page")
        home.js("window.__marker = 'no reload'")
        rig_tab = browser.tab(base + "/rig/webapp")
        rig_tab.wait("location.pathname == '/rig/webapp' && document.readyState == 'complete' "
                     "&& !!document.getElementById('main')", what="the rig page")  # not the blank tab before it
        rig_tab.js("window.__marker = 'no reload'")

        # the batch being bisected, drawn as its rounds and runs, without a reload
        rig_tab.wait("document.querySelectorAll('#batch svg .run rect.fail').length > 0 && "
                     "document.querySelector('#batch svg').textContent.includes('round 2')",
                     timeout=120, what="the bisection's second round on the rig page")
        rig_tab.screenshot(shots / "dashboard-rig.png")
        home.screenshot(shots / "dashboard-town.png")
        # the rejection, with the failing gate's output
        rig_tab.wait("document.getElementById('rejections').textContent.includes('FAIL: bad line in')",
                     timeout=60, what="the rejection with its output")
        # the convoy reaches Done on the town page, which was never reloaded
        home.wait("[...document.querySelectorAll('#convoys tr')].some(r => r.textContent.includes('docs') "
                  "&& r.textContent.includes('Done'))", timeout=150, what="the convoy to be Done on the town page")
        assert home.js("window.__marker") == "no reload" and rig_tab.js("window.__marker") == "no reload"

        # the untrusted title is text, on the feed and on the bead's page: no script ran
        feed = browser.tab(base + "/feed")
        feed.wait("document.readyState == 'complete' && !!document.getElementById('feed')", what="the feed")
        assert XSS in feed.js("document.getElementById('feed').innerText")
        assert feed.js("typeof window.__xss") == "undefined" and feed.js("document.scripts.length") == 1

        # an action without the token (nor a login): 403, and nothing is written
        with rig.ledger() as lg:
            tip = lg.refresh()
        refused = feed.js("fetch('/action/pause', {method: 'POST', headers: {'Content-Type': "
                          "'application/x-www-form-urlencoded'}, body: 'rig=webapp&csrf=forged'})"
                          ".then(r => r.text().then(t => [r.status, t]))")
        assert refused[0] == 403 and "CSRF" in refused[1]
        with rig.ledger() as lg:
            assert lg.refresh() == tip and not scheduler.state_of(lg.beads(), "gt").paused
    finally:
        browser.close()
        ok(gt(town, "down"))
    assert json.loads(ok(gt(town, "feed", "--json", "--kind", "rejection")))
    assert all((shots / n).stat().st_size > 10_000 for n in ("dashboard-rig.png", "dashboard-town.png"))
