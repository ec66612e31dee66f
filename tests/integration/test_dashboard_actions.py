"""The dashboard's actions over HTTP on a real ledger: off without a token; with one, only after a
login, with the page's CSRF token and from the same origin; each a ledger write signed by its actor."""

from __future__ import annotations

import http.cookiejar
import urllib.error
import urllib.parse
import urllib.request

import pytest

from gastown import escalation, scheduler
from gastown.dashboard.server import Dashboard
from gastown.dashboard.sources import RigView
from gastown.refinery import QueueSettings

from conftest import free_port, wait_for
from rigs import make_rig


def serve(rig, token):
    ledger = rig.ledger("gastown dashboard")
    ledger.ensure()
    dash = Dashboard(lambda: {"webapp": RigView("webapp", ledger, 3, QueueSettings())}, token=token)
    server = dash.start("127.0.0.1", 0)
    return dash, ledger, f"http://127.0.0.1:{server.server_address[1]}"


def post(opener, url, headers=None, **form):
    req = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), headers=headers or {})
    try:
        with opener.open(req) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def csrf(jar):
    return next(c.value for c in jar if c.name == "gt_csrf")


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_actions_need_the_token_a_login_and_the_csrf_token(tmp_path, token):
    rig = make_rig(tmp_path)
    dash, ledger, base = serve(rig, token)
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    try:
        browser.open(base + "/").read()
        tip = ledger.refresh()
        code, text = post(browser, base + "/action/pause", rig="webapp", csrf=csrf(jar))
        assert code == 403 and ("no token configured" if token is None else "log in") in text
        if token is None:
            return
        assert post(browser, base + "/login", token="wrong", actor="mallory", csrf=csrf(jar))[0] == 403
        assert post(browser, base + "/login", token=token, actor="alice")[0] == 403  # no CSRF token
        assert post(browser, base + "/login", token=token, actor="alice", csrf=csrf(jar))[0] == 200  # 303 followed
        assert post(browser, base + "/action/pause", rig="webapp", csrf="forged")[0] == 403
        code, _ = post(browser, base + "/action/pause", {"Origin": "http://evil.example"}, rig="webapp",
                       csrf=csrf(jar))
        assert code == 403 and ledger.refresh() == tip  # nothing written by any refused request
        code, text = post(browser, base + "/action/pause", rig="webapp", csrf=csrf(jar))
        assert code == 200 and "dispatch paused" in text
        state = scheduler.state_of(ledger.beads(), "gt")
        assert state.paused and state.paused_by == "user alice (dashboard)"
        assert post(browser, base + "/action/resume", rig="webapp", csrf=csrf(jar))[0] == 200
        assert not scheduler.state_of(ledger.beads(), "gt").paused
        assert post(browser, base + "/action/reject", rig="webapp", id="gt-nope", csrf=csrf(jar))[0] == 409
    finally:
        dash.stop()
        ledger.close()


def test_pages_escape_what_the_ledger_holds(tmp_path):
    rig = make_rig(tmp_path)
    dash, ledger, base = serve(rig, None)
    try:
        bead = ledger.create("<img src=x onerror=alert(1)> & co")
        dash.poll()
        for path in (f"/bead/webapp/{bead.id}", "/feed"):
            page = urllib.request.urlopen(base + path).read().decode()
            assert "&lt;img src=x onerror=alert(1)&gt; &amp; co" in page and "<img" not in page
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/rig/<script>")
        body = e.value.read().decode()
        assert e.value.code == 404 and "&lt;script&gt;" in body and body.count("<script>") == 1  # the page's own
    finally:
        dash.stop()
        ledger.close()


def test_the_town_page_is_rendered_again_when_a_ledger_moves(tmp_path):
    rig = make_rig(tmp_path)
    dash, ledger, base = serve(rig, None)
    try:
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        first = browser.open(base + "/").read().decode()  # one browser session: one kept page
        assert browser.open(base + "/").read().decode() == first  # kept: nothing moved
        ledger.apply(escalation.Raise("P1", "The gate is red on main", "witness"))  # the town page lists it
        dash.poll()
        assert "The gate is red on main" in browser.open(base + "/").read().decode()
    finally:
        dash.stop()
        ledger.close()


def test_the_operator_serves_the_dashboard_of_the_clusters_rigs(tmp_path, kubeapi, operator):
    rig = make_rig(tmp_path)
    with rig.ledger() as lg:
        lg.create("Served by the operator")
    port = free_port()
    op = operator("--dashboard-port", str(port))
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig",
                    "metadata": {"name": "webapp", "namespace": "default"},
                    "spec": {"gitUrl": f"file://{rig.remote}", "maxPolecats": 2}})

    def page(path):
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read().decode()
        except OSError:
            return None
    town = wait_for(lambda: (p := page("/")) and "default/webapp" in p and p, timeout=60,
                    what=f"the operator's dashboard to list the rig ({op.output()[-500:]})")
    assert "2" in town and "Served by the operator" in wait_for(lambda: page("/feed"), what="the feed")
