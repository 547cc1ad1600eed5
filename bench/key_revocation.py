#!/usr/bin/env python3
"""How long a revoked key keeps working on another replica (issue 6: "within a second").

Two gateways in this process share one ledger database (SQLite in a temp dir, or `--db URL`, e.g. a
PostgreSQL `?schema=`); a simulated model answers. Each round creates a key on A, waits until B accepts it,
revokes it on A, then asks B every 10 ms until it refuses; the time from the revocation's answer to B's
first 401 is the propagation delay (the key ring's poll, 0.25 s, bounds it).

    python bench/key_revocation.py [--rounds 20] [--db postgresql://root@127.0.0.1:5432/test?schema=hw_rev]

With `--db`, the tables are created in that database or schema and left there (drop the schema after).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import time
from urllib.parse import urlsplit

from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway

MASTER = "sk-bench-revocation-master"


def call(gw, method: str, path: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    u = urlsplit(gw.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    out = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, out


def models_status(gw, key: str) -> int:
    return call(gw, "GET", "/v1/models", key)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--db", help="ledger URL (default: a temporary SQLite file)")
    a = ap.parse_args()
    url = a.db or f"sqlite:///{tempfile.mkdtemp(prefix='hw-revoke-')}/ledger.db"
    cfg = from_dict({"auth": {"master_key": MASTER}, "ledger": {"url": url},
                     "models": [{"name": "sim", "deployments": [{"provider": "simulated", "model": "sim"}]}]})
    delays = []
    with BackgroundGateway(cfg) as gw_a, BackgroundGateway(cfg) as gw_b:
        for _ in range(a.rounds):
            status, key = call(gw_a, "POST", "/admin/keys", MASTER, {})
            assert status == 201, key
            while models_status(gw_b, key["key"]) != 200:
                time.sleep(0.01)
            assert call(gw_a, "DELETE", f"/admin/keys/{key['id']}", MASTER)[0] == 200
            start = time.monotonic()
            while models_status(gw_b, key["key"]) != 401:
                time.sleep(0.01)
            delays.append(time.monotonic() - start)
    delays.sort()
    print(f"{a.rounds} revocations: reached the other replica after p50 {statistics.median(delays) * 1000:.0f} ms, "
          f"max {delays[-1] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
