"""`hedgeway serve --config FILE [--host H] [--port P] [--workers N]`."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("hedgeway")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the gateway")
    p.add_argument("--config", required=True, help="Hedgeway or LiteLLM YAML config")
    p.add_argument("--host", help="bind address (default: server.host from the config)")
    p.add_argument("--port", type=_server_field("port"), help="port (default: server.port from the config)")
    p.add_argument("--workers", type=_server_field("workers"),
                   help="worker processes sharing the port (SO_REUSEPORT)")
    p.set_defaults(func=run)


def _server_field(name: str):
    """An argparse type checking a flag exactly as the config's `server.<name>` is checked."""
    def parse(text: str) -> int:
        from pydantic import ValidationError

        from hedgeway.config import ServerIn

        try:
            return getattr(ServerIn.model_validate({name: text}), name)
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(exc.errors()[0]["msg"]) from None
    parse.__name__ = name  # argparse names the type in its messages
    return parse


def _worker(config_path: str, host: str, port: int, reuse_port: bool, log_level: str | None = None) -> int:
    """One gateway process until SIGTERM/SIGINT; 1 (logged) when it cannot listen. `log_level` is given to
    spawned workers, which start with logging unconfigured."""
    import asyncio

    from hedgeway.cli import setup_logging
    from hedgeway.config import load
    from hedgeway.http.app import install_uvloop, serve

    if log_level:
        setup_logging(log_level)
    install_uvloop()
    try:
        asyncio.run(serve(load(config_path), host, port, reuse_port=reuse_port))
    except OSError as exc:  # port in use, an address this host does not have, a name that does not resolve
        log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    import multiprocessing
    import os
    import signal

    # Before numpy loads: one BLAS thread per worker. The semantic cache's searches are small matrix-vector
    # products, and OpenBLAS's default (a thread per core) made them 20x slower under load (bench/README.md).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from hedgeway.config import load
    from hedgeway.errors import ConfigError
    from hedgeway.ledger import open_store

    try:
        config = load(args.config)
        store = open_store(config.ledger.url)
        store.migrate()  # once, before workers start
        store.close()
    except ConfigError as exc:
        log.error("invalid config: %s", exc)
        return 2
    for warning in config.warnings:
        log.warning("config: %s", warning)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    workers = args.workers or config.server.workers
    if workers == 1:
        return _worker(args.config, host, port, False)
    if port == 0:
        log.error("--workers > 1 needs a fixed --port")
        return 2
    log.info("starting %d workers on %s:%d", workers, host, port)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(args.config, host, port, True, args.log_level), daemon=False)
             for _ in range(workers)]
    for proc in procs:
        proc.start()

    def forward(signum, _frame):
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: each worker drains and flushes its ledger queue

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for proc in procs:
        proc.join()
    code = max((proc.exitcode or 0 for proc in procs), key=abs)  # negative: killed by that signal
    log.info("all %d workers stopped (exit %d)", workers, code)
    return code if code >= 0 else 128 - code
