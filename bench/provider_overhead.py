#!/usr/bin/env python3
"""Provider-translation overhead (issue 3): what Hedgeway adds when it translates OpenAI chat requests to the
Anthropic Messages API and to Gemini, and when it serves Anthropic-format requests (`POST /v1/messages`), vs
calling each canned upstream directly in its own format. Core targets: added p50 <= 0.5 ms non-streaming,
added TTFB p50 <= 1 ms streaming, at concurrency 1.

    python bench/provider_overhead.py [--duration 10] [--warmup 2] [--repeats 3] [--formats ...] [--profile F]

Mocks (OpenAI :18500, Anthropic :18501, Gemini :18502; asyncio Protocols + httptools) and this client on core
0, `hedgeway serve` (1 worker, master key, SQLite ledger) on core 1, :18510. Every answer is the same text in
20 deltas in each provider's SSE format. Closed loop, keep-alive, concurrency 1 and 16, `--warmup` s then
`--duration` s measured per run, repeats interleaved, medians over repeats of each run's p50/p99/RPS.
TTFB = first body bytes, TTLB = end of response. `mock` runs the mocks alone (used internally); `--profile
FILE` runs the gateway under cProfile (`python -m pstats FILE`), which slows it: not for the table.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import httptools
import orjson
from provider_mocks import PORTS, PROMPT, NoDelay, serve_mocks  # bench/ is on sys.path when run as a script

HERE = Path(__file__).resolve().parent
GW_PORT = 18510
WORK = Path(os.environ.get("BENCH_WORK", "/tmp/provider-bench"))
TARGETS_MS = {"ns": 0.5, "st": 1.0}   # the core's targets: added p50 latency / TTFB at concurrency 1


class ClientProtocol(NoDelay):
    """One keep-alive HTTP/1.1 connection; `request()` sends and resolves with (t_first_body, t_end, status, body)."""

    def __init__(self):
        self.parser = httptools.HttpResponseParser(self)
        self.fut = None

    def data_received(self, data):
        self.parser.feed_data(data)

    def connection_lost(self, exc):
        if self.fut and not self.fut.done():
            self.fut.set_exception(ConnectionError("connection lost"))

    def on_body(self, body):
        if self.first is None:
            self.first = time.perf_counter()
        self.chunks.append(body)

    def on_message_complete(self):
        self.fut.set_result((self.first, time.perf_counter(), self.parser.get_status_code(), b"".join(self.chunks)))

    def request(self, raw: bytes):
        self.first, self.chunks = None, []
        self.fut = asyncio.get_running_loop().create_future()
        self.t.write(raw)
        return self.fut


def build_request(port: int, path: str, body: dict, headers: dict[str, str]) -> bytes:
    data = orjson.dumps(body)
    head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + f"content-length: {len(data)}\r\n\r\n"
    return head.encode() + data


async def load(port: int, raw: bytes, done_marker: bytes, conc: int, warmup: float, duration: float) -> dict:
    """Closed loop on `conc` connections. Latencies recorded only inside the measured window."""
    loop = asyncio.get_running_loop()
    conns = [(await loop.create_connection(ClientProtocol, "127.0.0.1", port))[1] for _ in range(conc)]
    t_rec = time.perf_counter() + warmup
    t_stop = t_rec + duration
    ttfb, ttlb, errors, total = [], [], [0], [0]

    async def worker(c):
        while True:
            t0 = time.perf_counter()
            if t0 >= t_stop:
                return
            first, end, status, body = await c.request(raw)
            total[0] += 1
            if t0 >= t_rec:
                if status != 200 or done_marker not in body:
                    errors[0] += 1
                else:
                    ttfb.append((first - t0) * 1000)
                    ttlb.append((end - t0) * 1000)
    await asyncio.gather(*(worker(c) for c in conns))
    for c in conns:
        c.t.close()
    n = len(ttlb) + errors[0]
    return {"ttfb": ttfb, "ttlb": ttlb, "errors": errors[0], "rps": n / duration, "n": n, "total": total[0]}


def pct(vals: list[float], p: float) -> float:
    if not vals:
        return float("nan")
    s = sorted(vals)
    return s[min(len(s) - 1, round((len(s) - 1) * p / 100))]


def _t(port, paths, body, headers, done, base=None) -> dict:
    return {"port": port, "path": paths, "body": body, "headers": headers, "done": done, "base": base}


def targets(key: str) -> dict[str, dict]:
    """name -> port, paths, body builder, headers, done markers (each per (non-streaming, streaming)) and `base`,
    the direct target it is compared with."""
    oai = lambda model: lambda st: {"model": model, "messages": PROMPT, "stream": st}
    ant = lambda model: lambda st: {"model": model, "max_tokens": 256, "messages": PROMPT, "stream": st}
    gem = lambda st: {"contents": [{"role": "user", "parts": [{"text": PROMPT[0]["content"]}]}]}
    gem_path = "/v1beta/models/gemini-2.5-flash"
    bearer = {"authorization": f"Bearer {key}"}
    oai_done = (b"end.", b"[DONE]")
    chat, msgs = ("/v1/chat/completions",) * 2, ("/v1/messages",) * 2
    ant_h, ant_done = {"anthropic-version": "2023-06-01"}, (b"end.", b"message_stop")
    return {
        "openai/direct": _t(PORTS["openai"], chat, oai("gpt-4o-mini"), {"authorization": "Bearer sk-mock"}, oai_done),
        "openai/hedgeway": _t(GW_PORT, chat, oai("oai"), bearer, oai_done, "openai/direct"),
        "anthropic/direct": _t(PORTS["anthropic"], msgs, ant("claude-haiku-4-5"), {"x-api-key": "sk-mock", **ant_h},
                               ant_done),
        "anthropic/hedgeway": _t(GW_PORT, chat, oai("claude"), bearer, oai_done, "anthropic/direct"),
        "gemini/direct": _t(PORTS["gemini"], (gem_path + ":generateContent", gem_path + ":streamGenerateContent?alt=sse"),
                            gem, {"x-goog-api-key": "mock"}, (b"end.", b"STOP")),
        "gemini/hedgeway": _t(GW_PORT, chat, oai("gem"), bearer, oai_done, "gemini/direct"),
        "ingress/hedgeway": _t(GW_PORT, msgs, ant("oai"), {"x-api-key": key, **ant_h}, ant_done, "openai/direct"),
    }


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])   # utime + stime


async def run_all(args, key: str, gw_pid: int) -> list[dict]:
    tg = targets(key)
    names = [n for n in tg if n.split("/")[0] in args.formats]
    runs, hz = [], os.sysconf("SC_CLK_TCK")
    for rep in range(args.repeats):
        for mode in ("ns", "st"):
            for conc in args.concurrency:
                for name in names:
                    t = tg[name]
                    st = mode == "st"
                    raw = build_request(t["port"], t["path"][st], t["body"](st), t["headers"])
                    c0 = cpu_ticks(gw_pid) if t["port"] == GW_PORT else None
                    r = await load(t["port"], raw, t["done"][st], conc, args.warmup, args.duration)
                    cpu = (cpu_ticks(gw_pid) - c0) / hz * 1000 / max(1, r["total"]) if c0 is not None else None
                    row = {"rep": rep, "target": name, "mode": mode, "c": conc, "rps": r["rps"], "n": r["n"],
                           "errors": r["errors"], "ttfb50": pct(r["ttfb"], 50), "ttfb99": pct(r["ttfb"], 99),
                           "ttlb50": pct(r["ttlb"], 50), "ttlb99": pct(r["ttlb"], 99), "cpu_ms": cpu}
                    runs.append(row)
                    print(f"rep {rep} {mode}-c{conc:<2} {name:<19} n={r['n']:<7} rps={r['rps']:8.0f} "
                          f"ttfb p50/p99 {row['ttfb50']:.3f}/{row['ttfb99']:.3f} ms  ttlb p50/p99 "
                          f"{row['ttlb50']:.3f}/{row['ttlb99']:.3f} ms  err={r['errors']}", flush=True)
    return runs


def med(rows, k):
    vals = [r[k] for r in rows if r[k] is not None]
    return statistics.median(vals) if vals else float("nan")


def rows_for(runs, fmt, name, base, mode, conc) -> list[str]:
    """Table rows for one target/scenario: latency (non-streaming) or TTFB + TTLB (streaming), vs its base."""
    hw = [r for r in runs if r["target"] == name and r["mode"] == mode and r["c"] == conc]
    dr = [r for r in runs if r["target"] == base and r["mode"] == mode and r["c"] == conc]
    if not hw or not dr:
        return []
    out = []
    for label, k in [("latency", "ttlb")] if mode == "ns" else [("TTFB", "ttfb"), ("TTLB", "ttlb")]:
        d50, d99, h50, h99 = med(dr, k + "50"), med(dr, k + "99"), med(hw, k + "50"), med(hw, k + "99")
        verdict, extra = "", "  |  |  "
        if conc == 1 and label != "TTLB":
            verdict = f"{'met' if h50 - d50 <= TARGETS_MS[mode] else 'MISSED'} (<= {TARGETS_MS[mode]} ms)"
        if label != "TTLB":
            extra = (f" {med(dr, 'rps'):.0f} / {med(hw, 'rps'):.0f} | {med(hw, 'cpu_ms'):.3f} | "
                     f"{sum(r['errors'] for r in hw)} / {sum(r['n'] for r in hw)} ")
        out.append(f"| {fmt} | {mode}-c{conc} | {label} | {d50:.3f} / {d99:.3f} | {h50:.3f} / {h99:.3f} "
                   f"| +{h50 - d50:.3f} / +{h99 - d99:.3f} |{extra}| {verdict} |")
    return out


def report(runs: list[dict], args, meta: dict) -> str:
    direct = [r for r in runs if r["target"].endswith("/direct")]
    out = [f"# Provider translation overhead: direct vs through Hedgeway ({meta['date']})", "",
           f"- command: `{' '.join(['python bench/provider_overhead.py', *sys.argv[1:]])}`",
           f"- machine: {meta['machine']}; hedgeway {meta['rev']}; python {sys.version.split()[0]}",
           "- pinning: mocks + client on core 0, hedgeway (1 worker, master key, SQLite ledger on) on core 1",
           (f"- {args.repeats} repeats x {args.duration:g} s measured after {args.warmup:g} s warm-up per run; "
            "figures are medians over repeats of each run's p50 / p99 / RPS"),
           ("- added = hedgeway minus its direct base; TTFB = first body bytes, TTLB = whole response; `ingress` = "
            "Anthropic-format client to Hedgeway `/v1/messages` routed to the OpenAI mock, base = direct OpenAI"), "",
           ("| format | scenario | metric | direct p50 / p99 ms | hedgeway p50 / p99 ms | added p50 / p99 ms "
            "| RPS direct / hedgeway | hedgeway CPU ms/req | errors / requests | core target (c1 p50) |"),
           "|---|---|---|---|---|---|---|---|---|---|"]
    for name, t in targets("x").items():
        fmt = name.split("/")[0]
        if t["base"] and fmt in args.formats:
            out += [row for mode in ("ns", "st") for conc in args.concurrency
                    for row in rows_for(runs, fmt, name, t["base"], mode, conc)]
    out += ["", (f"Direct runs: {sum(r['n'] for r in direct)} requests, {sum(r['errors'] for r in direct)} errors. "
                 "Hedgeway CPU ms/req = the worker's utime+stime over the run (warm-up included) / requests."), ""]
    return "\n".join(out)


def gw_config(ledger: Path) -> bytes:
    """Hedgeway config (JSON is YAML): models oai / claude / gem -> the three mocks; the key comes from the env."""
    dep = {"oai": ("openai", "gpt-4o-mini", "/v1"), "claude": ("anthropic", "claude-haiku-4-5", ""),
           "gem": ("gemini", "gemini-2.5-flash", "")}
    models = [{"name": name, "deployments": [{"provider": prov, "model": model, "api_key": "sk-mock",
                                              "api_base": f"http://127.0.0.1:{PORTS[prov]}{suffix}"}]}
              for name, (prov, model, suffix) in dep.items()]
    models[2]["deployments"][0]["settings"] = {"api_version": "v1beta"}
    return orjson.dumps({"server": {"host": "127.0.0.1", "workers": 1}, "ledger": {"url": f"sqlite:///{ledger}"},
                         "auth": {"master_key": "os.environ/PROVIDER_BENCH_KEY"}, "models": models})


def wait_http(url: str, proc: subprocess.Popen, what: str, log: Path | None = None) -> None:
    for _ in range(160):
        if proc.poll() is not None:
            sys.exit(f"{what} exited during start-up" + (f"; {log}:\n{log.read_text()[-3000:]}" if log else ""))
        try:
            urllib.request.urlopen(url, timeout=1)   # an HTTPError (4xx/5xx) would not count as up
            return
        except OSError:
            time.sleep(0.25)
    sys.exit(f"{what} not up after 40 s")


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > core else []


def stop(procs: list[subprocess.Popen]) -> None:
    """Our own children only, by handle, last started first; SIGTERM lets the gateway flush its ledger."""
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, check=False, text=True).stdout.strip()


def smoke(key: str) -> None:
    """One request per route before loading it: a 401/404/502 would otherwise be a table of fast errors."""
    for name, t in targets(key).items():
        for st in (False, True):
            req = urllib.request.Request(f"http://127.0.0.1:{t['port']}{t['path'][st]}",
                                         data=orjson.dumps(t["body"](st)),
                                         headers={"content-type": "application/json", **t["headers"]})
            with urllib.request.urlopen(req, timeout=5) as r:
                body = r.read()
            if t["done"][st] not in body:
                sys.exit(f"smoke {name} stream={st}: marker {t['done'][st]!r} missing in {body[:400]!r}")


def start(args, key: str, procs: list) -> subprocess.Popen:
    """Mocks on core 0, then hedgeway on core 1 with a fresh ledger; both appended to `procs` for the caller."""
    ledger, cfg = WORK / "ledger.db", WORK / "hedgeway-providers.yaml"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{ledger}{suffix}").unlink(missing_ok=True)
    cfg.write_bytes(gw_config(ledger))
    procs.append(subprocess.Popen([*pinned(0), sys.executable, __file__, "mock"]))
    wait_http(f"http://127.0.0.1:{PORTS['openai']}/", procs[-1], "mock")
    hw_bin = shutil.which("hedgeway") or str(Path(sys.executable).parent / "hedgeway")
    prof = [sys.executable, "-m", "cProfile", "-o", str(args.profile)] if args.profile else []
    with open(WORK / "hedgeway.log", "w") as lf:
        procs.append(subprocess.Popen([*pinned(1), *prof, hw_bin, "serve", "--config", str(cfg), "--port", str(GW_PORT)],
                                      env={**os.environ, "PROVIDER_BENCH_KEY": key}, stdout=lf, stderr=subprocess.STDOUT))
    wait_http(f"http://127.0.0.1:{GW_PORT}/healthz", procs[-1], "hedgeway", WORK / "hedgeway.log")
    smoke(key)
    return procs[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", nargs="?", default="run", choices=["run", "mock"])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    ap.add_argument("--formats", type=lambda s: s.split(","), default=["openai", "anthropic", "gemini", "ingress"])
    ap.add_argument("--profile", type=Path, help="run the gateway under cProfile, stats written here on exit")
    ap.add_argument("--out", type=Path, default=HERE / "results" / f"providers-{datetime.now(UTC):%Y-%m-%d}.md")
    args = ap.parse_args()
    with contextlib.suppress(ImportError):
        __import__("uvloop").install()
    if args.cmd == "mock":
        asyncio.run(serve_mocks())
        return
    if "ingress" in args.formats and "openai" not in args.formats:
        args.formats.append("openai")   # ingress is compared with direct OpenAI
    WORK.mkdir(parents=True, exist_ok=True)
    if pinned(0):
        os.sched_setaffinity(0, {0})   # this client shares core 0 with the mocks
    key, procs = "sk-bench-" + secrets.token_hex(16), []
    try:
        gw = start(args, key, procs)
        affinity = sh("taskset", "-cp", str(gw.pid)).split(":")[-1].strip() if pinned(1) else "unpinned"
        cpu = next((ln.split(":", 1)[1].strip() for ln in sh("lscpu").splitlines() if ln.startswith("Model name")), "?")
        machine = f"{os.cpu_count()} vCPU, {cpu}, kernel {os.uname().release}, hedgeway affinity {affinity}"
        load0 = "/".join(f"{x:.1f}" for x in os.getloadavg())   # other jobs on the 2 cores skew everything
        runs = asyncio.run(run_all(args, key, gw.pid))
    finally:
        stop(procs)
    load = f"load average {load0} at start, {'/'.join(f'{x:.1f}' for x in os.getloadavg())} at end"
    meta = {"date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "machine": f"{machine}; {load}",
            "rev": (sh("git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD") or "unknown")
            + (" (src/ modified in the working tree)" if sh("git", "-C", str(HERE.parent), "status", "--porcelain",
                                                             "--", "src") else "")}
    md = report(runs, args, meta)
    (WORK / "runs.json").write_bytes(orjson.dumps(runs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md)
    print("\n" + md)
    print(f"written to {args.out}; raw runs in {WORK / 'runs.json'}; gateway log {WORK / 'hedgeway.log'}")


if __name__ == "__main__":
    main()
