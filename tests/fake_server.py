"""The plumbing every fake upstream shares: an aiohttp app on its own event loop in a daemon thread, on a
free loopback port, recording what it received. A fake subclasses it and adds its routes in `routes`."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from aiohttp import web


class LoopbackServer:
    path_prefix = ""  # what base_url adds after the origin (e.g. "/v1")

    def __init__(self):
        self.calls: Counter[str] = Counter()  # requests per model
        self.requests: list[dict] = []  # every JSON body received, in order
        self.headers: list[dict] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _run(self):
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        self.routes(app)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    def start(self):
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self):
        self._loop.call_soon_threadsafe(self._loop.stop)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path_prefix}"

    async def received(self, request: web.Request) -> dict:
        """The request's JSON body, recorded with its headers."""
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        return body
