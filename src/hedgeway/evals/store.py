"""Eval results in the ledger database (tables `eval_results` and `eval_scores`, migration 005).

`EvalStore(url)` migrates the ledger (so the tables exist), then keeps its own connection: SQLite or
PostgreSQL, the same URL forms as `ledger.url`. Methods are synchronous and thread-safe (one connection
behind a lock); the runner calls them between awaits (each is one small statement).

A result's `cost` is the gateway's own figure: the ledger row with the same request_id (present when the
gateway writes to this database), else the value the runner stored (NULL when it had none).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hedgeway.ledger import open_store, sqlite_path


@dataclass(slots=True)
class Result:
    run: str
    case_id: str
    model: str
    output: str | None
    error: str | None = None
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal | None = None
    request_id: str | None = None
    deployment: str | None = None
    cache: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Score:
    """One scorer's verdict on one case: `value` in [0, 1], or None when it could not score (counted).
    `parts`: its sub-measures (precision "p", recall "r"), for `eval score`'s output; not stored."""

    scorer: str
    value: float | None
    detail: str = ""
    parts: dict[str, float] = field(default_factory=dict)


class EvalStore:
    def __init__(self, url: str):
        ledger = open_store(url)  # validates the URL; ConfigError (password-free) when it is bad
        try:
            ledger.migrate()
        finally:
            ledger.close()
        self.dialect = ledger.dialect
        self._lock = threading.Lock()
        if self.dialect == "sqlite":
            import sqlite3

            self._conn: Any = sqlite3.connect(sqlite_path(url), check_same_thread=False, isolation_level=None,
                                              timeout=5.0)
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self._mark = "?"
        else:
            import psycopg

            from hedgeway.ledger.postgres import PostgresStore, parse_url

            conninfo, schema, _ = parse_url(url)
            self._conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=5,
                                         application_name="hedgeway-eval")
            if schema:
                PostgresStore._use_schema(self._conn, schema)  # same search_path rule as the ledger
            self._mark = "%s"

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self._mark)

    def _exec(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            cur = self._conn.execute(self._sql(sql), params)
            return cur.fetchall() if cur.description else []

    # --- writes ---
    def save(self, result: Result, scores: list[Score]) -> None:
        """Store one case's result and scores (replacing an earlier attempt of the same case)."""
        cost = None if result.cost is None else format(result.cost, "f")
        with self._lock:
            conn = self._conn
            tx = conn.transaction() if self.dialect != "sqlite" else None
            if tx is None:
                conn.execute("BEGIN IMMEDIATE")
            else:
                tx.__enter__()
            try:
                conn.execute(self._sql("DELETE FROM eval_results WHERE run = ? AND case_id = ?"),
                             (result.run, result.case_id))
                conn.execute(self._sql("DELETE FROM eval_scores WHERE run = ? AND case_id = ?"),
                             (result.run, result.case_id))
                conn.execute(self._sql(
                    "INSERT INTO eval_results (run, case_id, model, ts, output, error, latency_ms, prompt_tokens, "
                    "completion_tokens, cost, request_id, deployment, cache, tags) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                    (result.run, result.case_id, result.model, time.time(), result.output, result.error,
                     result.latency_ms, result.prompt_tokens, result.completion_tokens, cost, result.request_id,
                     result.deployment, result.cache, json.dumps(result.tags)))
                for s in scores:
                    conn.execute(self._sql("INSERT INTO eval_scores (run, case_id, scorer, score, detail) "
                                           "VALUES (?, ?, ?, ?, ?)"),
                                 (result.run, result.case_id, s.scorer, s.value, s.detail))
            except BaseException as exc:
                if tx is None:
                    conn.execute("ROLLBACK")
                else:
                    tx.__exit__(type(exc), exc, exc.__traceback__)
                raise
            if tx is None:
                conn.execute("COMMIT")
            else:
                tx.__exit__(None, None, None)

    # --- reads ---
    def done(self, run: str) -> set[str]:
        """Case ids of `run` already answered without error (what a resumed run skips)."""
        rows = self._exec("SELECT case_id FROM eval_results WHERE run = ? AND error IS NULL", (run,))
        return {r[0] for r in rows}

    def runs(self) -> list[tuple[str, str, int]]:
        """(run, model, cases) for every stored run."""
        return [tuple(r) for r in self._exec(
            "SELECT run, min(model), count(*) FROM eval_results GROUP BY run ORDER BY run")]

    def results(self, run: str) -> list[dict[str, Any]]:
        """The run's results, each with `tags` as a list and `cost` (Decimal | None; the ledger's if any)."""
        rows = self._exec(
            "SELECT e.case_id, e.model, e.output, e.error, e.latency_ms, e.prompt_tokens, e.completion_tokens, "
            "coalesce(r.cost, e.cost), e.request_id, e.deployment, e.cache, e.tags FROM eval_results e "
            "LEFT JOIN requests r ON r.request_id = e.request_id WHERE e.run = ? ORDER BY e.case_id", (run,))
        keys = ("case_id", "model", "output", "error", "latency_ms", "prompt_tokens", "completion_tokens", "cost",
                "request_id", "deployment", "cache", "tags")
        out = []
        for row in rows:
            item = dict(zip(keys, row))
            item["tags"] = json.loads(item["tags"])
            item["cost"] = None if item["cost"] is None else Decimal(str(item["cost"]))
            out.append(item)
        return out

    def scores(self, run: str) -> list[tuple[str, str, float | None, str]]:
        """(case_id, scorer, score, detail) rows of `run`."""
        return [tuple(r) for r in self._exec(
            "SELECT case_id, scorer, score, detail FROM eval_scores WHERE run = ? ORDER BY case_id, scorer",
            (run,))]

    def logged_prompts(self, limit: int) -> list[tuple[str, str, str]]:
        """(request_id, model_name, prompt JSON) of successful OpenAI chat requests with a logged prompt,
        newest first, at most `limit`. Anthropic-format requests (/v1/messages) are left out: their logged
        messages lack the separate `system` field, so replaying them would change the question."""
        return [tuple(r) for r in self._exec(
            "SELECT request_id, model_name, prompt FROM requests WHERE prompt IS NOT NULL AND status = 200 "
            "AND endpoint = 'chat' ORDER BY ts DESC LIMIT ?", (limit,))]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
