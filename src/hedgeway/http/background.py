"""Run a gateway in a background thread with its own event loop (the demo and the tests use this).

    with BackgroundGateway(config) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key=...)

Leaving the block drains the server and flushes the ledger before returning.
"""

from __future__ import annotations

import asyncio
import threading

from hedgeway.config import Config
from hedgeway.http.app import install_uvloop, serve


class BackgroundGateway:
    def __init__(self, config: Config, host: str = "127.0.0.1", port: int = 0):
        self.config = config
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hedgeway-gateway", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def _run(self) -> None:
        install_uvloop()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def ready(port: int) -> None:
            self.port = port
            self._ready.set()

        async def main():
            self._stop = asyncio.Event()
            await serve(self.config, self.host, self.port, on_ready=ready, stop=self._stop)

        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # surfaced to the caller of start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    def start(self) -> "BackgroundGateway":
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def __enter__(self) -> "BackgroundGateway":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
