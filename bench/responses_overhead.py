#!/usr/bin/env python3
"""What `/v1/responses` adds over `/v1/chat/completions` on the same deployment (issue 23; target: within 0.1 ms
p50 at concurrency 1), non-streaming (latency) and streaming (TTFB and whole stream).

    python bench/responses_overhead.py [--rounds 10] [--window 2] [--warmup 1]

One `hedgeway serve` (1 worker, master key, SQLite ledger and response store in $BENCH_WORK) in front of the
canned OpenAI mock of bench/provider_mocks.py (20 deltas per answer), both on free loopback ports, nothing
pinned (the lead's side-by-side benchmark owns the pinned cores and port 18000). Targets: chat completions,
responses with `store: false` (translation only) and responses with the default `store: true` (one SQLite
write before the answer). Closed loop, one keep-alive connection; the targets take turns in windows of
`--window` s, `--rounds` times, so machine load drifting during the run hits all of them alike: the
figures are medians over rounds of each window's p50, and the added figure is the median over rounds of
(responses p50 − chat p50) within the same round. `translate µs` is the CPU of the added work alone,
in process: request parse + chat body + answer translation (non-streaming) per request.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import timeit
from datetime import UTC, datetime
from pathlib import Path

import orjson
import provider_mocks  # bench/ is on sys.path when run as a script
from provider_overhead import build_request, load, pct, sh, stop, wait_http

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("BENCH_WORK", "/tmp/responses-bench"))
PROMPT = provider_mocks.PROMPT[0]["content"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def targets(key: str) -> dict[str, tuple[str, callable]]:
    return {"chat": ("/v1/chat/completions", lambda st: {"model": "oai", "messages": provider_mocks.PROMPT,
                                                        "stream": st}),
            "responses store=false": ("/v1/responses", lambda st: {"model": "oai", "input": PROMPT, "stream": st,
                                                                   "store": False}),
            "responses store=true": ("/v1/responses", lambda st: {"model": "oai", "input": PROMPT, "stream": st})}


DONE = {False: b"end.", True: b"[DONE]"}
RESP_DONE = {False: b"end.", True: b"response.completed"}


async def measure(args, port: int, key: str) -> list[dict]:
    rows = []
    headers = {"authorization": f"Bearer {key}"}
    for rnd in range(args.rounds):
        for st in (False, True):
            for name, (path, body) in targets(key).items():
                raw = build_request(port, path, body(st), headers)
                done = (RESP_DONE if path == "/v1/responses" else DONE)[st]
                r = await load(port, raw, done, 1, args.warmup if rnd == 0 else 0.2, args.window)
                rows.append({"round": rnd, "target": name, "mode": "st" if st else "ns", "n": r["n"],
                             "errors": r["errors"], "ttfb50": pct(r["ttfb"], 50), "ttlb50": pct(r["ttlb"], 50),
                             "ttlb99": pct(r["ttlb"], 99)})
                print(f"round {rnd} {'st' if st else 'ns'} {name:<22} n={r['n']:<6} ttfb50={rows[-1]['ttfb50']:.3f} "
                      f"ttlb50={rows[-1]['ttlb50']:.3f} ms err={r['errors']}", flush=True)
    return rows


def translate_us() -> float:
    """CPU µs per non-streaming request of the work /v1/responses adds (parse, chat body, answer translation)."""
    from hedgeway.chat_request import parse_chat
    from hedgeway.ingress.responses import chat_body, parse
    from hedgeway.ingress.responses_reply import to_response

    body = orjson.dumps({"model": "oai", "input": PROMPT, "store": False})
    answer = provider_mocks.BODIES["openai"][0].split(b"\r\n\r\n", 1)[1]

    def once():
        inb = parse(orjson.loads(body))
        parse_chat(chat_body(inb, []))
        orjson.dumps(to_response(answer, inb, "resp_x", 0))
    n = 20000
    return min(timeit.repeat(once, timer=time.process_time, number=n, repeat=5)) / n * 1e6


def report(rows: list[dict], meta: dict, micro: float) -> str:
    out = [f"# /v1/responses vs /v1/chat/completions on the same deployment ({meta['date']})", "",
           f"- command: `python bench/responses_overhead.py {' '.join(sys.argv[1:])}`",
           f"- machine: {meta['machine']}; hedgeway {meta['rev']}; python {sys.version.split()[0]}",
           "- one connection, closed loop, nothing pinned; medians over rounds of each window's p50", "",
           ("| mode | metric | chat p50 ms | target | its p50 ms | added p50 ms (median of per-round diffs) "
            "| errors / requests |"),
           "|---|---|---|---|---|---|---|"]
    for mode, metrics in (("ns", ("ttlb",)), ("st", ("ttfb", "ttlb"))):
        for metric in metrics:
            chat = {r["round"]: r[metric + "50"] for r in rows if r["target"] == "chat" and r["mode"] == mode}
            for name in list(targets("x"))[1:]:
                mine = [r for r in rows if r["target"] == name and r["mode"] == mode]
                diffs = [r[metric + "50"] - chat[r["round"]] for r in mine]
                label = {"ttlb": "latency" if mode == "ns" else "whole stream", "ttfb": "TTFB"}[metric]
                out.append(f"| {mode} | {label} | {statistics.median(chat.values()):.3f} | {name} | "
                           f"{statistics.median(r[metric + '50'] for r in mine):.3f} | "
                           f"{statistics.median(diffs):+.3f} | {sum(r['errors'] for r in mine)} / "
                           f"{sum(r['n'] for r in mine)} |")
    out += ["", f"Translation alone (in process, no I/O): {micro:.1f} µs CPU per non-streaming request.", ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", nargs="?", default="run", choices=["run", "mock"])
    ap.add_argument("--port", type=int, default=0, help="(mock) the port to serve on")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--window", type=float, default=2.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / f"responses-{datetime.now(UTC):%Y-%m-%d}.md")
    args = ap.parse_args()
    with contextlib.suppress(ImportError):
        __import__("uvloop").install()
    if args.cmd == "mock":
        provider_mocks.PORTS.clear()
        provider_mocks.PORTS["openai"] = args.port
        asyncio.run(provider_mocks.serve_mocks())
        return
    WORK.mkdir(parents=True, exist_ok=True)
    key, procs = "sk-bench-" + secrets.token_hex(16), []
    mock_port, gw_port = free_port(), free_port()
    ledger = WORK / "ledger.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ledger}{suffix}").unlink(missing_ok=True)
    cfg = WORK / "hedgeway-responses.yaml"
    cfg.write_bytes(orjson.dumps({
        "server": {"host": "127.0.0.1", "workers": 1}, "auth": {"master_key": "os.environ/RESPONSES_BENCH_KEY"},
        "ledger": {"url": f"sqlite:///{ledger}", "spool_path": None},
        "models": [{"name": "oai", "deployments": [{"provider": "openai", "model": "gpt-4o-mini", "api_key": "sk-mock",
                                                    "api_base": f"http://127.0.0.1:{mock_port}/v1"}]}]}))
    try:
        procs.append(subprocess.Popen([sys.executable, __file__, "mock", "--port", str(mock_port)]))
        wait_http(f"http://127.0.0.1:{mock_port}/", procs[-1], "mock")
        hw_bin = shutil.which("hedgeway") or str(Path(sys.executable).parent / "hedgeway")
        with open(WORK / "hedgeway.log", "w") as lf:
            procs.append(subprocess.Popen([hw_bin, "serve", "--config", str(cfg), "--port", str(gw_port)],
                                          env={**os.environ, "RESPONSES_BENCH_KEY": key}, stdout=lf,
                                          stderr=subprocess.STDOUT))
        wait_http(f"http://127.0.0.1:{gw_port}/healthz", procs[-1], "hedgeway", WORK / "hedgeway.log")
        load0 = "/".join(f"{x:.1f}" for x in os.getloadavg())
        t0 = time.time()
        rows = asyncio.run(measure(args, gw_port, key))
        micro = translate_us()
    finally:
        stop(procs)
    cpu = next((ln.split(":", 1)[1].strip() for ln in sh("lscpu").splitlines() if ln.startswith("Model name")), "?")
    load1 = "/".join(f"{x:.1f}" for x in os.getloadavg())
    rev = sh("git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD")
    meta = {"date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "machine": f"{os.cpu_count()} vCPU, {cpu}; load average {load0} at start, {load1} at end "
                       f"({time.time() - t0:.0f} s)", "rev": rev}
    md = report(rows, meta, micro)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md)
    print("\n" + md + f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
