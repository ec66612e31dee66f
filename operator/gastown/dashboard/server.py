"""The dashboard's HTTP server: pages, a server-sent event stream, and token-guarded actions.

One poller thread refreshes the rigs' ledgers every ``interval`` seconds (the feed reads only the
new commits) and wakes the event streams; pages read the ledgers as the poller last saw them.
Read-only unless a token is configured: then an action (pause or resume the scheduler, retry or
reject an MR, ack an escalation) is a ledger write signed by its actor, accepted only from a
browser that logged in with the token, with the page's CSRF token, from the same origin.
Everything else is refused with 403 and nothing is written.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
from collections.abc import Callable
from http import cookies
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .. import escalation, scheduler
from ..feed import KINDS, Feed, Filter
from ..ledger import BeadType, LedgerError, NotFound, Status
from ..refinery import Reject, Requeue
from ..refinery import queue as mq
from . import views
from .sources import RigView

log = logging.getLogger("gastown.dashboard")
ACTIONS = ("pause", "resume", "retry", "reject", "ack")


class Refused(Exception):
    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code


class Dashboard:
    def __init__(self, rigs: Callable[[], dict[str, RigView]], *, token: str | None = None,
                 interval: float = 1.0):
        self.rigs_of, self.token, self.interval = rigs, token or None, interval
        self.rigs: dict[str, RigView] = {}
        self.feed = Feed({})
        self.version = 0  # bumped when a ledger moved
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self.server: ThreadingHTTPServer | None = None
        self._town: tuple[tuple, dict[tuple[bool, str], views.Page]] = ((), {})  # the town page per ledger tips

    # --- the poller ---------------------------------------------------------------------------

    def poll(self) -> int:
        """Refresh every rig's ledger once; how many new events there were."""
        rigs = self.rigs_of()
        if {n: r.ledger for n, r in rigs.items()} != {n: r.ledger for n, r in self.rigs.items()}:
            old = self.feed.rigs
            self.feed = Feed({n: r.ledger for n, r in rigs.items()})
            for name, rf in self.feed.rigs.items():  # keep what was read of the rigs that stay
                if name in old and old[name].ledger is rf.ledger:
                    self.feed.rigs[name] = old[name]
            self.rigs = rigs
        try:
            new = len(self.feed.poll())
        except LedgerError as e:
            log.warning("dashboard: %s", e)
            return 0
        if new:
            with self._changed:
                self.version += 1
                self._changed.notify_all()
        return new

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # a bad town.json or a bug: said, and the next poll tries again
                log.exception("dashboard: the poll failed")
            self._stop.wait(self.interval)

    def wait_change(self, seen: int, timeout: float) -> int:
        with self._changed:
            self._changed.wait_for(lambda: self.version != seen or self._stop.is_set(), timeout)
            return self.version

    # --- serving ------------------------------------------------------------------------------

    def start(self, host: str, port: int) -> ThreadingHTTPServer:
        self.poll()
        dashboard = self

        class Handler(_Handler):
            app = dashboard

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self._poll_loop, name="dashboard-poll", daemon=True).start()
        threading.Thread(target=self.server.serve_forever, name="dashboard-http", daemon=True).start()
        log.info("dashboard at http://%s:%d/ (actions %s)", host, self.server.server_address[1],
                 "on, with the token" if self.token else "off: no token configured")
        return self.server

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # --- pages --------------------------------------------------------------------------------

    def _town_page(self, actions: views.Actions) -> views.Page:
        """The town page, rendered again only when a rig's ledger tip (or its settings) moved: it reads
        every bead of every rig (bench/dashboard_bench.py has the figures)."""
        tips = tuple((n, r.ledger.tip, r.limit, r.queue.target) for n, r in self.rigs.items())
        seen, pages = self._town
        if seen != tips or len(pages) > 64:  # a page per browser session (its CSRF token), a few at a time
            pages = {}
            self._town = (tips, pages)
        key = (actions.enabled, actions.csrf)
        page = pages.get(key)
        if page is None:
            beads = {n: r.ledger.beads(refresh=False) for n, r in self.rigs.items()}
            page = pages[key] = views.town_page(self.rigs, beads, actions)
        return page

    def render(self, path: str, query: dict[str, list[str]], actions: views.Actions) -> views.Page:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if not parts:
            return self._town_page(actions)
        if parts[0] == "feed" and len(parts) == 1:
            one = {k: v[0] for k, v in query.items() if v and k in ("rig", "convoy", "polecat")}
            kinds = tuple(k for k in query.get("kind", []) if k in KINDS)
            return views.feed_page(self.feed.recent(Filter(kinds=kinds, **one), 300))
        if parts[0] in ("rig", "convoy", "bead") and len(parts) >= 2:
            rig = self.rigs.get(parts[1])
            if rig is None:
                raise Refused(404, f"no rig {parts[1]!r}")
            beads = rig.ledger.beads(refresh=False)
            if parts[0] == "rig" and len(parts) == 2:
                batch = mq.active_batch(beads, rig.queue.target)
                history = rig.ledger.history(batch.id) if batch else []
                return views.rig_page(rig, beads, history, actions)
            if len(parts) == 3:
                try:
                    bead = rig.ledger.get(parts[2], refresh=False)
                except NotFound:
                    raise Refused(404, f"no bead {parts[2]!r} on rig {rig.name}") from None
                if parts[0] == "convoy" and bead.type == BeadType.CONVOY:
                    return views.convoy_page(rig.name, bead, beads)
                if parts[0] == "bead":
                    return views.bead_page(rig.name, bead, rig.ledger.history(bead.id))
        raise Refused(404, f"no page {path}")

    # --- actions ------------------------------------------------------------------------------

    def act(self, action: str, form: dict[str, str], actor: str) -> str:
        """One action, as a ledger write signed by ``actor``; what it did, in words."""
        rig = self.rigs.get(form.get("rig", ""))
        if rig is None:
            raise Refused(404, f"no rig {form.get('rig', '')!r}")
        ledger, target = rig.ledger, form.get("id", "")
        if action in ("pause", "resume"):
            ledger.apply(scheduler.SetPaused(action == "pause", actor))
            return f"rig {rig.name}: dispatch {action}d"
        if action == "retry":
            return f"{target}: {ledger.apply(Requeue(target, actor)).status}"
        if action == "reject":
            mr = ledger.get(target)
            if mr.type != BeadType.MERGE_REQUEST or mr.status != Status.OPEN:
                raise Refused(409, f"{target} is not a queued merge request")
            reason = form.get("reason", "").strip() or "rejected from the dashboard"
            ledger.apply(Reject(mr_id=target, reason=f"rejected by {actor}: {reason}", log="", actor=actor))
            return f"{target}: rejected"
        if action == "ack":
            ledger.apply(escalation.Ack(target, actor))
            return f"{target}: acknowledged"
        raise Refused(404, f"no action {action!r}")

    def token_ok(self, given: str | None) -> bool:
        return bool(self.token and given and hmac.compare_digest(given.encode(), self.token.encode()))


class _Handler(BaseHTTPRequestHandler):
    app: Dashboard
    server_version = "gastown-dashboard"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s " + format, self.address_string(), *args)

    def _cookies(self) -> dict[str, str]:
        jar = cookies.SimpleCookie(self.headers.get("Cookie", ""))
        return {k: v.value for k, v in jar.items()}

    def _send(self, code: int, body: str, ctype: str = "text/html; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline' 'self'; "
                                                    "style-src 'unsafe-inline'")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _csrf(self) -> tuple[str, dict[str, str]]:
        """This browser's CSRF token (a cookie, set when it has none) and the header that sets it."""
        token = self._cookies().get("gt_csrf")
        if token:
            return token, {}
        token = secrets.token_urlsafe(24)
        return token, {"Set-Cookie": f"gt_csrf={token}; Path=/; SameSite=Strict; HttpOnly"}

    def do_GET(self) -> None:  # noqa: N802 (the base class's name)
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._send(200, "ok", "text/plain")
            return
        if url.path == "/events":
            self._events()
            return
        csrf, set_cookie = self._csrf()
        if url.path == "/login":
            title, body = views.message("log in", "Actions need the dashboard's token.")
            form = (f"<form method=post action=/login><input type=hidden name=csrf value='{views.e(csrf)}'>"
                    "<input name=actor placeholder='your name' required> "
                    "<input type=password name=token placeholder=token required> <button>log in</button></form>")
            self._send(200, views.page(title, body + form), headers=set_cookie)
            return
        actions = views.Actions(self.app.token_ok(self._cookies().get("gt_token")), csrf)
        try:
            title, body = self.app.render(url.path, parse_qs(url.query), actions)
            code = 200
        except Refused as e:
            (title, body), code = views.message("not found", str(e)), e.code
        except LedgerError as e:
            (title, body), code = views.message("the ledger did not answer", str(e)), 503
        if self.app.token and not actions.enabled:
            body = f"<p><a href=/login>log in</a> for actions</p>{body}"
        fragment = self.headers.get("X-Fragment") == "1"
        self._send(code, body if fragment else views.page(title, body), headers=set_cookie)

    def _events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        seen = self.app.version
        try:
            self.wfile.write(b"retry: 2000\n\n")
            self.wfile.flush()
            while not self.app._stop.is_set():
                now = self.app.wait_change(seen, 15.0)
                if now == seen:
                    self.wfile.write(b": ping\n\n")
                else:
                    latest = self.app.feed.recent(limit=1)
                    data = json.dumps({"version": now, "latest": latest[0].to_dict() if latest else None})
                    self.wfile.write(f"data: {data}\n\n".encode())
                    seen = now
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def do_POST(self) -> None:  # noqa: N802 (the base class's name)
        url = urlsplit(self.path)
        length = min(int(self.headers.get("Content-Length") or 0), 65536)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode(errors="replace")).items()}
        try:
            self._check(form)
            if url.path == "/login":
                if not self.app.token_ok(form.get("token")):
                    raise Refused(403, "wrong token")
                actor = "".join(ch for ch in form.get("actor", "") if ch.isalnum() or ch in " .-_@")[:60] or "someone"
                jar = {"gt_token": self.app.token or "", "gt_actor": actor.replace(" ", "_")}
                self.send_response(303)
                self.send_header("Location", "/")
                for k, v in jar.items():
                    self.send_header("Set-Cookie", f"{k}={v}; Path=/; SameSite=Strict; HttpOnly")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            name = url.path.removeprefix("/action/")
            if not url.path.startswith("/action/") or name not in ACTIONS:
                raise Refused(404, f"no action at {url.path}")
            if not self.app.token_ok(self._cookies().get("gt_token")):
                raise Refused(403, "log in with the dashboard's token first (/login)")
            actor = f"user {self._cookies().get('gt_actor', 'someone')} (dashboard)"
            done = self.app.act(name, form, actor)
        except Refused as e:
            self._send(e.code, views.page(*views.message("refused", str(e))))
            return
        except LedgerError as e:
            self._send(409, views.page(*views.message("not done", str(e))))
            return
        log.info("dashboard: %s by %s", done, actor)
        self._send(200, views.page(*views.message("done", done)))

    def _check(self, form: dict[str, str]) -> None:
        """Actions on, the same origin, and the CSRF token of this browser's pages."""
        if not self.app.token:
            raise Refused(403, "actions are off: the dashboard has no token configured")
        origin = self.headers.get("Origin")
        if origin and urlsplit(origin).netloc != self.headers.get("Host"):
            raise Refused(403, "cross-origin request refused")
        cookie = self._cookies().get("gt_csrf", "")
        if not cookie or not hmac.compare_digest(cookie.encode(), form.get("csrf", "").encode()):
            raise Refused(403, "missing or wrong CSRF token: reload the page")
