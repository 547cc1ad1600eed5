"""Wiring: config → ledger store → Gateway → routes → server, and one worker's lifecycle."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from typing import Callable

from hedgeway.config import Config
from hedgeway.http.routes import Routes
from hedgeway.http.server import Limits, Server
from hedgeway.pipeline import Gateway

log = logging.getLogger("hedgeway")


def build(config: Config) -> tuple[Gateway, Server]:
    from hedgeway.ledger import open_store

    store = open_store(config.ledger.url)
    store.migrate()
    gateway = Gateway(config, store)
    s = config.server
    limits = Limits(s.max_body_bytes, s.head_timeout, s.body_timeout, s.idle_timeout, s.max_connections)
    routes = Routes(gateway)
    return gateway, Server(routes, limits, routes.rejection)


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # optional: plain asyncio works, a little slower
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(config: Config, host: str, port: int, *, reuse_port: bool = False,
                on_ready: Callable[[int], None] | None = None, stop: asyncio.Event | None = None) -> None:
    """Run one worker until SIGTERM/SIGINT (or `stop` is set), then drain and flush the ledger.
    `on_ready(port)` is called once the socket listens."""
    gateway, server = build(config)
    handlers, scrub = list(logging.getLogger().handlers), gateway.redact.log_filter()
    for handler in handlers:  # no configured credential in any log line, whoever logs it
        handler.addFilter(scrub)
    # The ledger writer is a second thread: when it holds the GIL, the event loop would wait up to the
    # default 5 ms switch interval for it — straight into the latency tail. 0.25 ms bounds that wait.
    sys.setswitchinterval(0.00025)
    gc.freeze()  # start-up objects (config, catalogues, modules) never need scanning again
    # At the default threshold (700 new containers) the young generation is scanned every few dozen
    # requests, while most of what it holds is still in flight and gets scanned again a generation up:
    # 7-10 µs of collection per production-path request, 1-3 µs at 10,000 (bench/production.py load, GC
    # callbacks timing each collection). The price is a few MB more of young objects between scans.
    gc.set_threshold(10_000, 10, 10)
    bound = await server.start(host, port, reuse_port=reuse_port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests, demo)
            pass
    # only now: a SIGTERM sent on seeing this line must drain and flush, not kill the process outright
    log.info("hedgeway listening on http://%s:%d (%d models)", host, bound, len(config.models))
    if on_ready is not None:
        on_ready(bound)
    try:
        await stop.wait()
    finally:
        await server.shutdown()
        await gateway.close()
        server.app.close()
        log.info("hedgeway stopped; ledger flushed (%d records written)", gateway.ledger.written)
        for handler in handlers:
            handler.removeFilter(scrub)
