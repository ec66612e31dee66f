"""The operator's probes, served on its event loop from start-up on (a standby too).

- liveness (the ``--liveness`` URL's path, /healthz in the chart): 200 while the event loop
  answers, as kopf's own endpoint did (gastown has no kopf probe handlers);
- readiness (/readyz): 200 only when ``ready()`` says so, else 503; the body says why.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlparse

from aiohttp import web

READINESS_PATH = "/readyz"


class HealthServer:
    def __init__(self, url: str, ready: Callable[[], tuple[bool, str]]):
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname or "0.0.0.0", parsed.port or 8080  # noqa: S104 (a pod's port)
        self.liveness_path = parsed.path or "/healthz"
        self.ready = ready
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.get(self.liveness_path, self._alive), web.get(READINESS_PATH, self._readiness)])
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _alive(self, _: web.Request) -> web.Response:
        return web.json_response({})

    async def _readiness(self, _: web.Request) -> web.Response:
        ok, why = self.ready()
        return web.json_response({"ready": ok, "reason": why}, status=200 if ok else 503)
