#!/usr/bin/env python3
"""The PostgreSQL ledger's batch write, three ways, at the writer's batch sizes: executemany (pipelined
INSERTs), COPY into a staging table + one INSERT … ON CONFLICT (the path of a batch that repeats stored rows),
and COPY straight into the table on the autocommit connection (what `PostgresStore.write` tries first).

Per row: the client's CPU (the writer thread shares the GIL, and on a one-core gateway the core, with the
event loop), the server's CPU (every `postgres` process on this host, read from /proc: a local server only)
and wall time. Uses its own schema, dropped at the end.

usage: python bench/ledger_copy.py [--url postgresql://root@127.0.0.1:5432/test] [--rows 4000]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from decimal import Decimal

from hedgeway.ledger.base import RECORD_FIELDS, Record
from hedgeway.ledger.postgres import PostgresStore
from hedgeway.ledger.query import COLUMNS, record_values

INSERT = (f"INSERT INTO requests ({COLUMNS}) VALUES ({', '.join(['%s'] * len(RECORD_FIELDS))}) "
          "ON CONFLICT (request_id) DO NOTHING")


def rows(n: int) -> list[list]:
    return [record_values(Record(request_id=uuid.uuid4().hex, ts=time.time(), endpoint="chat", model_name="fast",
                                 deployment="fast/0", provider="openai", status=200, key_id="k1", team="search",
                                 prompt_tokens=25, completion_tokens=40, cost=Decimal("0.000123"), latency_ms=1.2,
                                 overhead_ms=0.2, route='{"strategy":"simple"}', cache="miss"))
            for _ in range(n)]


def server_cpu() -> float:
    """CPU seconds of every postgres process on this host."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if open(f"/proc/{pid}/comm").read().startswith("postgres"):
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="postgresql://root@127.0.0.1:5432/test")
    ap.add_argument("--rows", type=int, default=4000)
    a = ap.parse_args()
    schema = f"hw_ledger_copy_{uuid.uuid4().hex[:6]}"
    store = PostgresStore(f"{a.url}?schema={schema}")
    store.migrate()

    def executemany(batch: list[list]) -> None:
        def go(conn):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(INSERT, batch)
        store._run(go, retry=False)

    methods = (("executemany", executemany), ("COPY staged + INSERT … SELECT", store.merge_rows),
               ("COPY straight (autocommit)", store.copy_rows))
    try:
        print("| batch | method | client CPU µs/row | server CPU µs/row | wall µs/row |\n|---|---|---|---|---|")
        for size in (10, 50, 100, 250):
            for name, fn in methods:
                batches = [rows(size) for _ in range(max(1, a.rows // size))]
                s0, c0, t0 = server_cpu(), time.process_time(), time.perf_counter()
                for b in batches:
                    fn(b)
                n = sum(map(len, batches))
                print(f"| {size} | {name} | {1e6 * (time.process_time() - c0) / n:.1f} | "
                      f"{1e6 * (server_cpu() - s0) / n:.1f} | {1e6 * (time.perf_counter() - t0) / n:.1f} |")
    finally:
        store._run(lambda conn: conn.execute(f'DROP SCHEMA "{schema}" CASCADE'), retry=False)
        store.close()


if __name__ == "__main__":
    main()
