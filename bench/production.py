#!/usr/bin/env python3
"""The production path side by side with the minimal path, the direct upstream and the peers, in one sitting.

Targets (each alone on core 1, the mock upstream and the load generator on core 0; every request body is
unique, so a caching gateway is measured on misses):

    minimal     master key, SQLite ledger, no limits, no cache            (bench/hedgeway-bench.yaml)
    production  a virtual key with its own budget and rpm, a global budget, Redis limits, the Redis exact
                cache, the PostgreSQL ledger
    semantic    production + the semantic cache (MiniLM) on every model
    mixed       the semantic gateway; model `plain` (no cache) measured while a semantic load runs beside it
                on model `fast` (wrk, --semantic-load connections)
    portkey     Portkey's gateway (Node), defaults (needs `npm install @portkey-ai/gateway@1.15.2` in
                --portkey-dir)
    litellm     LiteLLM proxy, one worker, no database (needs /work/shared/bench/setup.sh peer)
    production-noleases / production-noindex   production with budget and rate leases off
                (limits.redis.lease.requests 0) / with the cache's key index off (cache.key_index false):
                what each of the two costs or saves, in the same sitting
    production-lease128  production with leases of 128 requests (the default is 32)

usage: python bench/production.py [--targets minimal,production,semantic,mixed] [--repeats 3]
           [--duration 10] [--scenarios ns-c1,ns-c16,ns50-c64] [--bin .venv/bin/hedgeway] [--before BIN]
With --before, every Hedgeway target also runs from BIN (another build: a change measured against what it
changes, in the same sitting), labelled `<target>-before`.
Writes bench/results/production-<date>.md (the summarize.py table plus RSS after load).
Each production target gets its own PostgreSQL schema and Redis prefix, dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
HARNESS = Path(os.environ.get("HARNESS", "/work/shared/bench"))
WORK = Path(os.environ.setdefault("BENCH_WORK", "/tmp/gateway-bench"))
PG = os.environ.get("HEDGEWAY_BENCH_PG", "postgresql://root@127.0.0.1:5432/test")
REDIS = os.environ.get("HEDGEWAY_BENCH_REDIS", "redis://127.0.0.1:6379/0")
PORT = 4100
MOCK = "http://127.0.0.1:18000"


def config(target: str, run: str, master: str) -> dict:
    """The gateway config of a Hedgeway target; `run` names this run's schema and Redis prefixes."""
    cfg = yaml.safe_load((HERE / "hedgeway-bench.yaml").read_text())
    cfg["auth"]["master_key"] = master
    cfg["models"].append({"name": "plain", "deployments": [dict(cfg["models"][0]["deployments"][0])]})
    if target == "minimal":
        cfg["ledger"]["url"] = f"sqlite:///{WORK}/{run}.db"
        return cfg
    cfg["ledger"] = {"url": f"{PG}?schema={run}"}
    cfg["limits"] = {"backend": "redis", "redis": {"url": REDIS, "prefix": f"{run}:limits:"},
                     "budgets": [{"limit": "1000000", "period": "monthly"}]}
    cfg["cache"] = {"enabled": True, "backend": "redis", "redis_url": REDIS, "prefix": f"{run}:cache",
                    "embedder": "minilm" if target in ("semantic", "mixed") else "none",
                    "models": {"plain": {"enabled": False}}}
    if target == "production-noleases":
        cfg["limits"]["redis"]["lease"] = {"requests": 0}
    if target == "production-lease128":
        cfg["limits"]["redis"]["lease"] = {"requests": 128}
    if target == "production-noindex":
        cfg["cache"]["key_index"] = False
    return cfg


def wait_up(url: str, proc: subprocess.Popen | None = None, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"target exited with {proc.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:  # noqa: BLE001 - not up yet (refused, 404 before routes exist, ...)
            time.sleep(0.25)
    raise SystemExit(f"{url} did not answer within {seconds:g} s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def cleanup(run: str) -> None:
    import psycopg
    import redis

    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{run}" CASCADE')
    r = redis.Redis.from_url(REDIS)
    for key in r.scan_iter(f"{run}:*", count=1000):
        r.delete(key)


def bench(a, label: str, url: str, auth: str, pid: int, extra: list[str], scenarios: str | None = None,
          model: str | None = None) -> None:
    cmd = [sys.executable, str(HARNESS / "run_bench.py"), url, "--label", label, "--auth", auth, "--pid", str(pid),
           "--scenarios", scenarios or a.scenarios, "--repeats", "1", "--duration", str(a.duration),
           "--unique", "--json-out", str(a.runs), *extra]
    if model:
        cmd += ["--model", model]
    subprocess.run(cmd, check=True)


def hedgeway(a, target: str, rep: int, bin: str, tag: str) -> None:
    run = f"hwbench_{target.replace('-', '_')}_{secrets.token_hex(3)}"
    master = "sk-bench-" + secrets.token_hex(16)
    path = WORK / f"{run}.yaml"
    path.write_text(yaml.safe_dump(config(target, run, master)))
    proc = subprocess.Popen(["taskset", "-c", "1", bin, "serve", "--config", str(path), "--port", str(PORT)],
                            stdout=open(WORK / f"{run}.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_up(f"http://127.0.0.1:{PORT}/healthz", proc)
        auth = master
        if target != "minimal":
            out = subprocess.run([bin, "keys", "create", "--config", str(path), "--budget", "100000/monthly",
                                  "--rpm", "100000000", "--json"], check=True, capture_output=True, text=True)
            auth = json.loads(out.stdout)["key"]
            time.sleep(1)  # the key ring's poll picks the new key up
        url = f"http://127.0.0.1:{PORT}"
        if target == "mixed":
            env = dict(os.environ, BENCH_MODEL="fast", BENCH_AUTH=auth, BENCH_UNIQUE="1", BENCH_RUNID=str(rep))
            load = subprocess.Popen(["taskset", "-c", "0", "wrk", "-t1", f"-c{a.semantic_load}",
                                     f"-d{int(a.duration * 3 + 30)}s", "-s", str(HARNESS / "chat.lua"), url],
                                    env=env, stdout=subprocess.DEVNULL, start_new_session=True)
            try:
                bench(a, "mixed" + tag, url, auth, proc.pid, [], scenarios="ns-c1,ns-c16", model="plain")
            finally:
                stop(load)
        else:
            bench(a, target + tag, url, auth, proc.pid, [])
        a.rss.setdefault(target + tag, []).append(rss_mb(proc.pid))
    finally:
        stop(proc)
        cleanup(run)


def litellm(a, rep: int) -> None:
    subprocess.run([str(HARNESS / "start_litellm.sh"), "4000", "1", "1"], check=True)
    key = next(line.split()[1] for line in (HARNESS / "litellm_config.yaml").read_text().splitlines()
               if line.strip().startswith("master_key:"))
    pid = int((WORK / "run" / "litellm_4000.pid").read_text())
    try:
        bench(a, "litellm", "http://127.0.0.1:4000", key, pid, [])
        a.rss.setdefault("litellm", []).append(rss_mb(pid))
    finally:
        os.kill(pid, signal.SIGTERM)
        time.sleep(3)


def portkey(a, rep: int) -> None:
    start = Path(a.portkey_dir) / "node_modules/@portkey-ai/gateway/build/start-server.js"
    proc = subprocess.Popen(["taskset", "-c", "1", "node", str(start), "--headless", "--port=8787"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(3)
        headers = ["--header", "x-portkey-provider: openai", "--header", f"x-portkey-custom-host: {MOCK}/v1"]
        plain = ",".join(s for s in a.scenarios.split(",") if not s.startswith("ns50"))
        slow = ",".join(s for s in a.scenarios.split(",") if s.startswith("ns50"))
        if plain:
            bench(a, "portkey", "http://127.0.0.1:8787", "sk-dummy", proc.pid, headers, scenarios=plain)
        if slow:  # Portkey takes the upstream from a header: the 50 ms path is another host prefix
            headers[-1] = f"x-portkey-custom-host: {MOCK}/d50/v1"
            bench(a, "portkey", "http://127.0.0.1:8787", "sk-dummy", proc.pid, headers, scenarios=slow)
        a.rss.setdefault("portkey", []).append(rss_mb(proc.pid))
    finally:
        stop(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="minimal,production,semantic,mixed")
    ap.add_argument("--scenarios", default="ns-c1,ns-c16,ns50-c64")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--semantic-load", type=int, default=4, help="connections of the semantic load in `mixed`")
    ap.add_argument("--bin", default=shutil.which("hedgeway") or str(HERE.parent / ".venv/bin/hedgeway"))
    ap.add_argument("--portkey-dir", default="/tmp/portkey")
    ap.add_argument("--tag", default="", help="appended to the Hedgeway targets' labels")
    ap.add_argument("--before", help="another build's hedgeway executable: every Hedgeway target runs from it too")
    a = ap.parse_args()
    a.runs, a.rss = WORK / f"production-{time.strftime('%Y%m%d-%H%M%S')}.jsonl", {}
    WORK.mkdir(parents=True, exist_ok=True)
    targets = [t for t in a.targets.split(",") if t]
    labels = [t if t in ("litellm", "portkey") else t + a.tag for t in targets]
    runners = {"litellm": litellm, "portkey": portkey}
    if a.before:
        labels += [t + a.tag + "-before" for t in targets if t not in runners]
    subprocess.run([str(HARNESS / "start_mock.sh"), "0"], check=True)
    try:
        for rep in range(1, a.repeats + 1):  # targets take turns, so drift in machine load hits all alike
            bench(a, "direct", MOCK, "sk-bench", 0, ["--d50-path", "/d50/v1/chat/completions"])
            for t in targets:
                if t in runners:
                    runners[t](a, rep)
                    continue
                hedgeway(a, t, rep, a.bin, a.tag)
                if a.before:
                    hedgeway(a, t, rep, a.before, a.tag + "-before")
    finally:
        subprocess.run([str(HARNESS / "stop_all.sh")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    table = subprocess.run([sys.executable, str(HARNESS / "summarize.py"), str(a.runs), "--base", "direct",
                            "--targets", ",".join(labels), "--md"], capture_output=True, text=True).stdout
    rss = ", ".join(f"{t} {sorted(v)[len(v) // 2]:.0f} MB" for t, v in a.rss.items())
    out = HERE / "results" / f"production{a.tag}{'-ab' if a.before else ''}-{time.strftime('%F')}.md"
    out.write_text(f"# Production path, one sitting ({time.strftime('%F %T %Z')})\n\n"
                   f"- command: `python bench/production.py --targets {a.targets} --repeats {a.repeats} --tag '{a.tag}' "
                   f"--duration {a.duration:g} --scenarios {a.scenarios}{' --before ' + a.before if a.before else ''}`\n"
                   f"- machine: {os.cpu_count()} cores, load before the run {os.getloadavg()[0]:.1f}; every body unique"
                   f" (cache misses); mixed = model `plain` while {a.semantic_load} connections of semantic "
                   f"traffic run on `fast`\n- RSS after load (median): {rss}\n\n{table}")
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
