#!/usr/bin/env python3
"""The PostgreSQL ledger's batch write: executemany (pipelined INSERTs) vs COPY into a staging table + one
INSERT … SELECT (what `PostgresStore.write` does), client CPU and wall time per row at the writer's batch sizes.

The writer thread shares the GIL (and, on a one-core gateway, the core) with the event loop, so its client
CPU per row is what the request path pays. Uses its own schema, dropped at the end.

usage: python bench/ledger_copy.py [--url postgresql://root@127.0.0.1:5432/test] [--rows 4000]
"""

from __future__ import annotations

import argparse
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

    def copy(batch: list[list]) -> None:  # PostgresStore.write without building the rows again
        store.write_rows(batch)

    try:
        print("| batch | method | client CPU µs/row | wall µs/row |\n|---|---|---|---|")
        for size in (10, 40, 100, 200):
            for name, fn in (("executemany", executemany), ("COPY + INSERT … SELECT", copy)):
                batches = [rows(size) for _ in range(max(1, a.rows // size))]
                c0, t0 = time.process_time(), time.perf_counter()
                for b in batches:
                    fn(b)
                n = sum(map(len, batches))
                print(f"| {size} | {name} | {1e6 * (time.process_time() - c0) / n:.1f} | "
                      f"{1e6 * (time.perf_counter() - t0) / n:.1f} |")
    finally:
        store._run(lambda conn: conn.execute(f'DROP SCHEMA "{schema}" CASCADE'), retry=False)
        store.close()


if __name__ == "__main__":
    main()
